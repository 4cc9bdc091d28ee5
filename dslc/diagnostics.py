"""Diagnostics: source spans, error values and their rendering (used by every stage)."""

from __future__ import annotations

import difflib
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns are 1-based, end is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        # Line 0 means "the whole file" (an unreadable file, a bad .npz): no position to give.
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


UNKNOWN_SPAN = Span("<unknown>", 0, 0, 0, 0)


@dataclass
class Diagnostic:
    """One user-facing message with a stable code (see docs/errors.md)."""

    code: str
    message: str
    span: Span = UNKNOWN_SPAN
    expected: str | None = None
    found: str | None = None
    notes: list[tuple[str, Span | None]] = field(default_factory=list)
    hint: str | None = None
    severity: str = "error"

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "expected": self.expected,
            "found": self.found,
            "notes": [
                {"message": m, "location": str(s) if s else None} for m, s in self.notes
            ],
            "hint": self.hint,
        }


class DslcError(Exception):
    """Carries one or more diagnostics out of any stage; the CLI renders them."""

    def __init__(self, diagnostics: Diagnostic | list[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        super().__init__("; ".join(f"{d.span}: {d.code}: {d.message}" for d in diagnostics))


def error(code: str, message: str, span: Span | None = None, **kw) -> DslcError:
    return DslcError(Diagnostic(code, message, span or UNKNOWN_SPAN, **kw))


class SourceCache:
    """Remembers file texts so diagnostics can quote the offending line."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, name: str, text: str) -> None:
        self.texts[name] = text

    def line(self, name: str, lineno: int) -> str | None:
        text = self.texts.get(name)
        if text is None:
            try:
                text = Path(name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                return None
            self.texts[name] = text
        lines = text.splitlines()
        if 1 <= lineno <= len(lines):
            return lines[lineno - 1]
        return None


SOURCES = SourceCache()


def _display(ch: str) -> str:
    """How one source character is shown: tabs as 4 spaces, control characters (a NUL, say)
    as '?', so the quoted line never carries raw bytes to the terminal."""
    if ch == "\t":
        return "    "
    if not ch.isprintable():
        return "?"
    return ch


def _width(text: str) -> int:
    # East Asian wide characters take two terminal cells; the caret must count them so.
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else len(_display(c))
               for c in text)


def _caret_block(span: Span) -> list[str]:
    src = SOURCES.line(span.file, span.line) if span.line else None
    if src is None:
        return []
    start = max(span.column - 1, 0)
    end = start + 1
    if span.end_line == span.line and span.end_column > span.column:
        end = span.end_column - 1
    width = max(1, _width(src[start:end]))
    gutter = f"{span.line:>4} | "
    pad = " " * (len(gutter) - 2) + "| "
    shown = "".join(_display(c) for c in src)
    return [gutter + shown, pad + " " * _width(src[:start]) + "^" + "~" * (width - 1)]


def render(diag: Diagnostic) -> str:
    """Render as `file:line:col: error[CODE]: message`, the source line, a caret, then details."""
    out = [f"{diag.span}: {diag.severity}[{diag.code}]: {diag.message}"]
    out += _caret_block(diag.span)
    if diag.expected is not None:
        out.append(f"  expected: {diag.expected}")
    if diag.found is not None:
        out.append(f"     found: {diag.found}")
    for msg, span in diag.notes:
        out.append(f"  note: {msg}" + (f" ({span})" if span else ""))
        if span is not None and span.line:
            out += ["    " + line for line in _caret_block(span)]
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


def render_all(diags: list[Diagnostic], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps([d.to_json() for d in diags], indent=2)
    return "\n\n".join(render(d) for d in diags)


def did_you_mean(name: str, candidates) -> str | None:
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    # `Relu` for `relu`: a difference of case only is the likeliest slip; offer it first.
    same = [c for c in pool if c.lower() == name.lower() and c != name]
    close = same + [c for c in close if c not in same][:3 - len(same)]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    two neighbours (`lienar` is one edit from `linear`)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def did_you_mean_op(name: str, candidates) -> str | None:
    """"did you mean" for an unknown op or block: only names a slip of the keyboard away.

    A candidate must be within max(1, len(name) // 3) edits of the name (case ignored), so a
    long name never suggests a short op it merely contains (`conv_transpose2d` is 7 edits from
    `transpose`, which does something else entirely), and a name that contains another with
    two or more characters more is a different op, not a slip (`upsample` is not `sample`;
    `relu6` may be `relu`). Among those, fewer edits first, then the
    longer shared prefix (the same family: `conv2` prefers `conv2d`), then the name."""
    low = name.lower()
    budget = max(1, len(name) // 3)
    scored = []
    for c in sorted(set(candidates)):
        if c == name:
            continue
        cl = c.lower()
        d = edit_distance(low, cl)
        contained = cl in low or low in cl
        if d <= budget and not (contained and d >= 2):
            prefix = len(os.path.commonprefix([low, c.lower()]))
            scored.append((d, -prefix, c))
    close = [c for _, _, c in sorted(scored)[:3]]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
