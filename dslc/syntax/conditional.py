"""Which `if` words of a source are the `if` of a conditional expression `a if cond else b`
(used by the parser's post-lexer). Newlines carry no meaning to the grammar, so the parser's
one token of look-ahead cannot tell `y = a if c else b` from `y = a` followed by an
`if c { ... }` statement; reading ahead in the text can.

The rule: an `if` is a conditional when an `else` at its own bracket depth comes before any
`{`, `}` or `;` (skipping strings, comments and the conditionals nested in it); otherwise it
starts an if statement, whose condition always ends at a `{`.
"""

from __future__ import annotations

import contextvars
import re

# Strings, comments, words and the brackets that delimit expressions and bodies.
WORDS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[^\W\d]\w*|[()\[\]{};]')

# The offsets found for the source being parsed, for the post-lexer (per thread and task, so
# two parses never see each other's).
CONDITIONAL_IFS: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "dslc_conditional_ifs", default=frozenset())


def conditional_ifs(text: str) -> frozenset[int]:
    """Start offsets of the `if` words in `text` that begin the condition of an `a if c else
    b` expression. One pass over the words, in linear time: the `if`s not yet decided wait on
    a stack with their bracket depth; an `else` at the same depth decides the innermost one
    (a conditional), a closing bracket decides those inside it (a conditional missing its
    `else`, which the parser then reports), and `{`, `}` or `;` decide all that wait (if
    statements)."""
    found: set[int] = set()
    waiting: list[tuple[int, int]] = []  # (offset, bracket depth) of undecided `if`s
    depth = 0
    for m in WORDS.finditer(text):
        word = m.group()
        if word[0] in '"#':
            continue
        if word in ("(", "["):
            depth += 1
        elif word in (")", "]"):
            depth = max(depth - 1, 0)
            while waiting and waiting[-1][1] > depth:
                found.add(waiting.pop()[0])
        elif word == "if":
            waiting.append((m.start(), depth))
        elif word == "else":
            if waiting and waiting[-1][1] == depth:
                found.add(waiting.pop()[0])
        elif word in ("{", "}", ";"):
            waiting.clear()
    return frozenset(found)
