"""Which `if` words of a source are the `if` of a conditional expression `a if cond else b`
(used by the parser's post-lexer). Newlines carry no meaning to the grammar, so the parser's
one token of look-ahead cannot tell `y = a if c else b` from `y = a` followed by an
`if c { ... }` statement; reading ahead in the text can.

The rule: from an `if`, read on (skipping strings, comments and the conditionals nested in it)
to the first `else` or `{` outside brackets. An `else` first makes it a conditional; a `{`, a
`}`, a `;` or the end of the file first makes it a statement.
"""

from __future__ import annotations

import contextvars
import re

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[^\W\d]\w*|[()\[\]{};]')
LOOK_AHEAD = 4096  # tokens read from one `if`; a longer condition is taken for a statement

# The offsets found for the source being parsed, for the post-lexer (per thread and task, so
# two parses never see each other's).
CONDITIONAL_IFS: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "dslc_conditional_ifs", default=frozenset())


def conditional_ifs(text: str) -> frozenset[int]:
    """Start offsets of the `if` words in `text` that begin the condition of an `a if c else
    b` expression."""
    tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(text)
              if m.group()[0] not in '"#']
    found = set()
    for i, (word, pos) in enumerate(tokens):
        if word == "if" and _is_conditional(tokens, i):
            found.add(pos)
    return frozenset(found)


def _is_conditional(tokens: list[tuple[str, int]], i: int) -> bool:
    depth = 0
    nested = 0  # conditionals inside this one's condition, each waiting for its `else`
    for word, _ in tokens[i + 1:i + 1 + LOOK_AHEAD]:
        if word in ("(", "["):
            depth += 1
        elif word in (")", "]"):
            depth -= 1
            if depth < 0:  # the bracket around `a if c` closed: a conditional without else
                return True
        elif word == "if":
            nested += 1
        elif word == "else":
            if nested == 0:
                return True
            nested -= 1
        elif word in ("{", "}", ";") and depth == 0:
            return False
    return False
