"""String literals: decoding the escapes of a `.dl` string token (used by the parser).

The escapes are Python's: `\\n \\t \\r \\a \\b \\f \\v \\0-7 \\\\ \\" \\'`, `\\xhh`, `\\uXXXX`,
`\\UXXXXXXXX` and `\\N{name}`. Every other character, ASCII or not, stands for itself. A malformed
escape is a located E0111 diagnostic that points at the escape itself.
"""

from __future__ import annotations

import re
import unicodedata

from dslc.diagnostics import Diagnostic, DslcError, Span

SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
          "\\": "\\", '"': '"', "'": "'"}
HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_OCTAL = re.compile(r"[0-7]{1,3}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_NAMED = re.compile(r"\{([^}]*)\}")


def decode(token: str, file: str, line: int, column: int) -> str:
    """The value of the string token `token` (quotes included) found at line:column."""
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        value, length = _escape(body, i, file, line, column + 1)
        out.append(value)
        i += length
    return "".join(out)


def _escape(body: str, i: int, file: str, line: int, col0: int) -> tuple[str, int]:
    """The character of the escape at body[i] (a backslash) and how many characters it takes.
    `col0` is the column of body[0]."""

    def bad(message: str, length: int, expected: str, hint: str | None = None) -> DslcError:
        text = body[i:i + length]
        start = col0 + i
        return DslcError(Diagnostic("E0111", message, Span(file, line, start, line,
                                                          start + max(1, len(text))),
                                    expected=expected, found=text,
                                    hint=hint))

    if i + 1 >= len(body):  # the lexer never ends a token on a lone backslash; be safe
        raise bad("incomplete escape at the end of the string", 1, "a character after '\\'")
    kind = body[i + 1]
    if kind in SIMPLE:
        return SIMPLE[kind], 2
    if kind in "01234567":
        digits = _OCTAL.match(body, i + 1).group()
        return chr(int(digits, 8)), 1 + len(digits)
    if kind in HEX_DIGITS:
        want = HEX_DIGITS[kind]
        digits = _HEX.match(body, i + 2).group()[:want]
        if len(digits) < want:
            raise bad(f"malformed '\\{kind}' escape: it needs {want} hex digits", 2 + len(digits),
                      f"\\{kind} and {want} hex digits, e.g. \\{kind}{'0' * (want - 2)}e9")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise bad(f"'\\{kind}{digits}' is not a Unicode character", 2 + want,
                      "a code point up to 10FFFF, outside the surrogates D800-DFFF")
        return chr(code), 2 + want
    if kind == "N":
        m = _NAMED.match(body, i + 2)
        if m is None:
            raise bad("malformed '\\N' escape", 2, "\\N{NAME OF A CHARACTER}")
        try:
            return unicodedata.lookup(m.group(1)), 2 + len(m.group())
        except KeyError:
            raise bad(f"unknown Unicode character name '{m.group(1)}'", 2 + len(m.group()),
                      "a Unicode character name, e.g. \\N{LATIN SMALL LETTER E WITH ACUTE}"
                      ) from None
    raise bad(f"unknown escape '\\{kind}'", 2,
              "one of \\n \\t \\r \\\\ \\\" \\' \\a \\b \\f \\v \\ooo \\xhh \\uXXXX "
              "\\UXXXXXXXX \\N{name}", hint='write "\\\\" for a backslash itself')
