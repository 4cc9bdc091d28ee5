"""Syntax error recovery (used by the parser): after a syntax error, the top-level definition
that holds it is blanked out and the file parsed again, to find the next error in another
definition.

Within one definition, LALR recovery cannot know reliably where the next statement starts, so
each definition (`model`, `block`, `import`) gives at most one syntax error. Blanking keeps every
newline and replaces every other character by a space, so the later errors keep their lines and
columns. Recovery stops where the boundaries of the definitions are themselves in doubt: at an
unterminated string, at the end of the file, at a brace that closes nothing, and at the limits.
"""

from __future__ import annotations

from collections.abc import Callable

from dslc.diagnostics import Diagnostic, DslcError
from dslc.syntax.conditional import WORDS

# Errors at one token, after which the definitions around are still well delimited.
RECOVERABLE = frozenset({"E0101", "E0103", "E0108", "E0110", "E0111"})
MAX_SYNTAX_ERRORS = 20
# The words that start a top-level definition (parser.py uses them for its hints too).
TOP_KEYWORDS = ("model", "block", "import", "train")


def more_errors(text: str, first: Diagnostic,
                parse: Callable[[str], object]) -> list[Diagnostic]:
    """The syntax errors after `first`, one per other definition, in the order found (which is
    source order: the parser reads from the top)."""
    found: list[Diagnostic] = []
    diag = first
    while len(found) + 1 < MAX_SYNTAX_ERRORS and diag.code in RECOVERABLE:
        segments = definition_segments(text)
        if segments is None:
            break
        pos = offset_of(text, diag.span.line, diag.span.column)
        holder = [s for s in segments if s[0] <= pos < s[1]]
        if not holder:
            break
        start, end = holder[0]
        text = text[:start] + "".join(c if c == "\n" else " " for c in text[start:end]) + \
            text[end:]
        try:
            parse(text)
            break
        except DslcError as exc:
            nxt = exc.diagnostics[0]
            if offset_of(text, nxt.span.line, nxt.span.column) < end:
                break  # not in a later definition: the blanking itself confused the parser
            found.append(nxt)
            diag = nxt
    return found


def definition_segments(text: str) -> list[tuple[int, int]] | None:
    """[start, end) offsets of the text before the first definition and of each top-level
    definition (from its keyword to the next one's); None when a brace closes nothing."""
    starts = [0]
    depth = 0
    for m in WORDS.finditer(text):
        word = m.group()
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and word in TOP_KEYWORDS:
            starts.append(m.start())
    ends = starts[1:] + [len(text)]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def offset_of(text: str, line: int, column: int) -> int:
    """The offset of a 1-based line and column (columns count characters)."""
    start = 0
    for _ in range(line - 1):
        nl = text.find("\n", start)
        if nl < 0:
            return len(text)
        start = nl + 1
    return start + max(column - 1, 0)
