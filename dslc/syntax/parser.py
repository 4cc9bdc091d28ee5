"""Parser: `.dl` text to AST with the Lark grammar in `grammar/dslc.lark`."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from dslc.diagnostics import SOURCES, Diagnostic, DslcError, Span, did_you_mean
from dslc.limits import MAX_NESTING
from dslc.syntax import ast, conditional, recovery, strings, train_ast
from dslc.syntax.recovery import TOP_KEYWORDS

MAX_SOURCE_BYTES = 1_000_000  # documented limit (docs/limits.md)

# Human names for the grammar's pattern terminals, for "expected ..." in syntax errors. Fixed
# strings ('(', 'model') are named by their own text, read from the grammar (see _literals), so a
# new keyword needs no change here.
REGEX_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/', '//', '%' or '@'",
    "COMP_OP": "a comparison",
    "IFX": "'if'",
    "$END": "end of file",
}
STATEMENT_KEYWORDS = ("input", "output", "const", "repeat", "if", "assert")
CLOSERS = {"(": ")", "[": "]", "{": "}"}
# Characters people type from other languages, and what this one writes instead.
CHAR_HINTS = {
    "'": 'strings are written in double quotes: "..."',
    "!": "write `not x`; `!=` compares",
    "&": "write `and`",
    "|": "write `or`",
    "$": "names are written without a sigil: `out`, not `$out`",
    "`": "backquotes have no meaning in dslc",
}


def _grammar_text() -> str:
    # Installed wheels carry the grammar inside the package; a source checkout keeps it in
    # the top-level grammar/ folder, where the product card puts it.
    packaged = resources.files("dslc") / "grammar" / "dslc.lark"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "dslc.lark").read_text("utf-8")


class _ConditionalIf:
    """Post-lexer: gives the `if` of `a if cond else b` the terminal IFX, so the LALR parser
    can tell it from the `if` that starts a statement (dslc/syntax/conditional.py decides
    which is which, before the parse)."""

    always_accept = ("IF",)  # lexable where only IFX fits, so it can be renamed here

    def process(self, stream):
        positions = conditional.CONDITIONAL_IFS.get()
        for tok in stream:
            if tok.type == "IF" and tok.start_pos in positions:
                tok = Token.new_borrow_pos("IFX", tok.value, tok)
            yield tok


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(_grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                postlex=_ConditionalIf())


def _span(file: str, meta_or_tok) -> Span:
    if isinstance(meta_or_tok, Token):
        return Span(file, meta_or_tok.line, meta_or_tok.column, meta_or_tok.end_line,
                    meta_or_tok.end_column)
    m = meta_or_tok
    if getattr(m, "empty", True):
        return Span(file, 0, 0, 0, 0)
    return Span(file, m.line, m.column, m.end_line, m.end_column)


def _unescape(file: str, tok: Token) -> str:
    return strings.decode(str(tok), file, tok.line, tok.column)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def sp(self, meta) -> Span:
        return _span(self.file, meta)

    # ---- top level
    def start(self, meta, items):
        imports = [i for i in items if isinstance(i, ast.Import)]
        defs = [i for i in items if isinstance(i, ast.Definition)]
        trains = [i for i in items if isinstance(i, train_ast.TrainDef)]
        return ast.Module(span=self.sp(meta), file=self.file, imports=imports, definitions=defs,
                          trains=trains)

    def import_stmt(self, meta, ch):
        return ast.Import(span=self.sp(meta), path=_unescape(self.file, ch[0]))

    def _definition(self, kind, meta, ch):
        name, params, *body = ch
        return ast.Definition(span=self.sp(meta), kind=kind, name=str(name),
                              name_span=_span(self.file, name), params=params or [],
                              body=[b for b in body if b is not None])

    def model_def(self, meta, ch):
        return self._definition("model", meta, ch)

    def block_def(self, meta, ch):
        return self._definition("block", meta, ch)

    def param_list(self, meta, ch):
        return [p for p in ch if p is not None]

    def param(self, meta, ch):
        name, typ, default = ch
        return ast.Param(span=self.sp(meta), name=str(name), type=str(typ),
                         type_span=_span(self.file, typ), default=default)

    # ---- statements
    def input_decl(self, meta, ch):
        return ast.InputDecl(span=self.sp(meta), name=str(ch[0]), type=ch[1])

    def output_decl(self, meta, ch):
        return ast.OutputDecl(span=self.sp(meta), items=list(ch))

    def output_item(self, meta, ch):
        name, value, label = ch
        return ast.OutputItem(span=self.sp(meta), name=str(name),
                              value=self._labelled(value, label))

    def const_decl(self, meta, ch):
        return ast.ConstDecl(span=self.sp(meta), name=str(ch[0]), type=ch[1], value=ch[2])

    def assign(self, meta, ch):
        *targets, value, label = ch
        return ast.Assign(span=self.sp(meta), targets=[str(t) for t in targets],
                          value=self._labelled(value, label))

    def _labelled(self, value, label):
        """`y = conv2d(x, 6) as c1`: the name goes to the call (or scan) that makes the value,
        as in `x -> conv2d(6) as c1`. (In `y = x -> f(1) as a` the parser already gave the
        name to the stage: a shift/reduce choice that labels the same call either way.)"""
        if label is None:
            return value
        call = value.stage if isinstance(value, ast.Pipe) else \
            value.cell if isinstance(value, ast.Scan) else value
        span = _span(self.file, label)
        if not isinstance(call, ast.Call):
            raise DslcError(Diagnostic(
                "E0110", "'as' names the layer that a call makes", span,
                expected="a call before 'as', as in `y = conv2d(x, 6) as c1`",
                found=_expr_words(value),
                hint="name the call inside: `y = (x -> conv2d(6) as c1) + x`"))
        if call.label is not None:
            raise DslcError(Diagnostic(
                "E0110", f"this layer is already named '{call.label}'", span,
                expected="one 'as' per call", found=f"as {call.label} as {label}"))
        named = call.model_copy(update={"label": self._label(label)})
        if isinstance(value, ast.Pipe):
            return value.model_copy(update={"stage": named})
        if isinstance(value, ast.Scan):
            return value.model_copy(update={"cell": named})
        return named

    def _label(self, tok) -> str:
        """A layer label: a name, or an index written as a plain non-negative integer."""
        text = str(tok)
        if tok.type == "NUMBER" and not (text.isdigit() and str(int(text)) == text):
            raise DslcError(Diagnostic(
                "E0260", "a layer index must be a plain non-negative integer",
                _span(self.file, tok), expected="a name or an index such as 0, 1, 12",
                found=text))
        return text

    def repeat_stmt(self, meta, ch):
        count, index, *body = ch
        return ast.Repeat(span=self.sp(meta), count=count, index=str(index) if index else None,
                          body=[b for b in body if b is not None])

    def labelled(self, meta, ch):
        label, stmt = ch
        return stmt.model_copy(update={"label": str(label)})

    def if_stmt(self, meta, ch):
        cond, *rest = ch
        orelse: list = []
        if rest and isinstance(rest[-1], tuple):
            orelse = list(rest[-1][1])
            rest = rest[:-1]
        elif rest and rest[-1] is None:
            rest = rest[:-1]
        return ast.If(span=self.sp(meta), cond=cond, body=[b for b in rest if b is not None],
                      orelse=orelse)

    def else_block(self, meta, ch):
        return ("else", [b for b in ch if b is not None])

    def else_if(self, meta, ch):
        return ("else", [ch[0]])

    def assert_stmt(self, meta, ch):
        cond, msg = ch
        return ast.Assert(span=self.sp(meta), cond=cond,
                          message=_unescape(self.file, msg) if msg else None)

    def tensor_type(self, meta, ch):
        dtype, *dims = ch
        return ast.TensorType(span=self.sp(meta), dtype=str(dtype),
                              dtype_span=_span(self.file, dtype),
                              dims=[d for d in dims if d is not None])

    # ---- scan (recurrences)
    def scan_expr(self, meta, ch):
        name, args, *parts = ch
        pos, kw = args if args else ([], [])
        cell = ast.Call(span=_span(self.file, name), func=str(name),
                        func_span=_span(self.file, name), args=pos, kwargs=kw)
        fields: dict = {"over": [], "init": []}
        for kind, value in parts:
            if kind in ("over", "init"):
                fields[kind] = fields[kind] + value
            elif kind == "reverse":
                fields["reverse"] = True
            else:
                fields[kind] = value
        return ast.Scan(span=self.sp(meta), cell=cell, **fields)

    def scan_over(self, meta, ch):
        return ("over", list(ch))

    def scan_from(self, meta, ch):
        return ("init", list(ch))

    def scan_steps(self, meta, ch):
        return ("steps", ch[0])

    def scan_along(self, meta, ch):
        return ("along", ch[0])

    def scan_reverse(self, meta, ch):
        return ("reverse", True)

    # ---- expressions
    def conditional(self, meta, ch):
        then, _, cond, orelse = ch
        return ast.Conditional(span=self.sp(meta), cond=cond, then=then, orelse=orelse)

    def pipe(self, meta, ch):
        return ast.Pipe(span=self.sp(meta), source=ch[0], stage=ch[1])

    def stage(self, meta, ch):
        name, args, label = ch
        pos, kw = args if args else ([], [])
        return ast.Call(span=self.sp(meta), func=str(name), func_span=_span(self.file, name),
                        args=pos, kwargs=kw, label=self._label(label) if label else None)

    def call(self, meta, ch):
        name, args = ch
        pos, kw = args if args else ([], [])
        return ast.Call(span=self.sp(meta), func=str(name), func_span=_span(self.file, name),
                        args=pos, kwargs=kw)

    def args(self, meta, ch):
        pos = [a for a in ch if a is not None and not isinstance(a, ast.Kwarg)]
        kw = [a for a in ch if isinstance(a, ast.Kwarg)]
        return (pos, kw)

    def kwarg(self, meta, ch):
        return ast.Kwarg(span=self.sp(meta), name=str(ch[0]), value=ch[1])

    def or_op(self, meta, ch):
        return ast.BinOp(span=self.sp(meta), op="or", left=ch[0], right=ch[1])

    def and_op(self, meta, ch):
        return ast.BinOp(span=self.sp(meta), op="and", left=ch[0], right=ch[1])

    def not_op(self, meta, ch):
        return ast.UnaryOp(span=self.sp(meta), op="not", operand=ch[0])

    def compare(self, meta, ch):
        return ast.BinOp(span=self.sp(meta), op=str(ch[1]), left=ch[0], right=ch[2])

    def binop(self, meta, ch):
        return ast.BinOp(span=self.sp(meta), op=str(ch[1]), left=ch[0], right=ch[2])

    def unary_op(self, meta, ch):
        return ast.UnaryOp(span=self.sp(meta), op=str(ch[0]), operand=ch[1])

    def pow_op(self, meta, ch):
        return ast.BinOp(span=self.sp(meta), op="**", left=ch[0], right=ch[2])

    def index(self, meta, ch):
        return ast.Index(span=self.sp(meta), value=ch[0], items=list(ch[1:]))

    def slice(self, meta, ch):
        return ast.Slice(span=self.sp(meta), start=ch[0], stop=ch[1])

    def attribute(self, meta, ch):
        return ast.Attribute(span=self.sp(meta), value=ch[0], attr=str(ch[1]))

    def number(self, meta, ch):
        text = str(ch[0])
        is_float = any(c in text for c in ".eE")
        return ast.Number(span=self.sp(meta), value=float(text) if is_float else int(text),
                          text=text)

    def string(self, meta, ch):
        return ast.String(span=self.sp(meta), value=_unescape(self.file, ch[0]))

    def true(self, meta, ch):
        return ast.Bool(span=self.sp(meta), value=True)

    def false(self, meta, ch):
        return ast.Bool(span=self.sp(meta), value=False)

    def name(self, meta, ch):
        return ast.Name(span=self.sp(meta), name=str(ch[0]))

    def tuple(self, meta, ch):
        return ast.TupleLit(span=self.sp(meta), items=[c for c in ch if c is not None])

    def list(self, meta, ch):
        return ast.ListLit(span=self.sp(meta), items=[c for c in ch if c is not None])

    # ---- train sections (kept together: grammar/dslc.lark's last block)
    def train_def(self, meta, ch):
        name, models, *items = ch
        items = [i for i in items if i is not None]
        models = models or []
        model = models[0] if models else None
        return train_ast.TrainDef(
            span=self.sp(meta), name=str(name) if name else None,
            name_span=_span(self.file, name) if name else self.sp(meta),
            model=str(model) if model else None,
            model_span=_span(self.file, model) if model else None,
            targets=[i for i in items if isinstance(i, train_ast.TrainTarget)
                     and i.kind == "target"],
            settings=[i for i in items if isinstance(i, train_ast.TrainSetting)],
            models=[(str(m), _span(self.file, m)) for m in models] if len(models) > 1 else [],
            noises=[i for i in items if isinstance(i, train_ast.TrainTarget)
                    and i.kind == "noise"],
            updates=[i for i in items if isinstance(i, train_ast.TrainUpdate)])

    def train_models(self, meta, ch):
        return list(ch)

    def train_update(self, meta, ch):
        word, model, *items = ch
        if str(word) != "update":
            raise DslcError(Diagnostic(
                "E0286", f"unknown block '{word}' in a train section", _span(self.file, word),
                expected="`update MODEL { ... }`", found=str(word),
                hint=did_you_mean(str(word), ["update"])))
        items = [i for i in items if i is not None]
        return train_ast.TrainUpdate(
            span=self.sp(meta), model=str(model), model_span=_span(self.file, model),
            targets=[i for i in items if isinstance(i, train_ast.TrainTarget)],
            settings=[i for i in items if isinstance(i, train_ast.TrainSetting)],
            updates=[i for i in items if isinstance(i, train_ast.TrainUpdate)])

    def train_target(self, meta, ch):
        word, name, typ = ch
        if str(word) not in ("target", "noise"):
            raise DslcError(Diagnostic(
                "E0286", f"unknown declaration '{word}' in a train section",
                _span(self.file, word), expected="`target NAME: TYPE` or `setting = value`",
                found=str(word), hint=did_you_mean(str(word), ["target", "noise"])))
        return train_ast.TrainTarget(span=self.sp(meta), name=str(name),
                                     name_span=_span(self.file, name), type=typ,
                                     kind=str(word))

    def train_setting(self, meta, ch):
        return train_ast.TrainSetting(span=self.sp(meta), key=str(ch[0]),
                                      key_span=_span(self.file, ch[0]), value=ch[1])

    def train_key(self, meta, ch):
        return ch[0]


# ---- syntax errors -----------------------------------------------------------------------
# Lark reports the parser state and the token it could not take; these helpers turn that into
# the wording a person would use: which bracket is open, which keyword was taken for a name,
# what kind of thing (a statement, an expression) was expected.

_EXPR_START = {"NUMBER", "STRING", "NAME", "(", "[", "ADD_OP", "true", "false", "not"}
_OPERATORS = {"ADD_OP", "MUL_OP", "COMP_OP", "and", "or", "**", "->", ".", "["}
_BAD_NUMBER = re.compile(r"(?<![\w.])(?:\d|\.\d)(?:[\w.]|(?<=[eE])[+-])*")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


@functools.lru_cache(maxsize=1)
def _literals() -> dict[str, str]:
    """Terminal name -> its fixed text ('LPAR' -> '(', 'MODEL' -> 'model')."""
    return {t.name: t.pattern.value for t in _lark().terminals
            if isinstance(t.pattern, PatternStr)}


@functools.lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    return frozenset(v for v in _literals().values() if v.isidentifier())


def _join(parts: list[str], limit: int = 8) -> str:
    if len(parts) > limit:
        parts = parts[:limit] + ["..."]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _expected_words(expected) -> str:
    """`{'RPAR', 'COMMA'}` -> "')' or ','"; whole families become "a statement", "an
    expression" or "an operator" instead of a list of twenty tokens."""
    keys = {_literals().get(e, e) for e in expected}
    parts = [f"'{c}'" for c in ("}", ")", "]") if c in keys]
    keys -= {"}", ")", "]"}
    if {"input", "output", "assert"} <= keys:
        keys -= set(STATEMENT_KEYWORDS) | {"NAME"}
        parts.append("a statement")
    if {"NUMBER", "STRING", "("} <= keys:
        keys -= _EXPR_START
        parts.append("an expression")
    if {"ADD_OP", "MUL_OP", "COMP_OP"} <= keys:
        keys -= _OPERATORS
        parts.append("an operator")
    # Punctuation first, then keywords, then the kinds of token, then end of file.
    rest = sorted(keys, key=lambda k: (k == "$END", k in REGEX_WORDS, k.isidentifier(), k))
    parts += [REGEX_WORDS.get(k, f"'{k}'") for k in rest]
    return _join(parts)


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    if tok.type == "STRING":
        return f"string {tok}"
    if str(tok) in _keywords():
        return f"keyword '{tok}'"
    return f"'{tok}'"


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column or tok.column + 1)


def _tokens_before(text: str, pos: int) -> list[Token]:
    """The tokens that start before `pos`, from a fresh lexer (the parse stopped at `pos`)."""
    out: list[Token] = []
    try:
        for tok in _lark().lex(text):
            if tok.start_pos >= pos:
                break
            out.append(tok)
    except UnexpectedInput:
        pass
    return out


def _open_brackets(tokens: list[Token]) -> list[Token]:
    stack: list[Token] = []
    for t in tokens:
        if str(t) in CLOSERS:
            stack.append(t)
        elif str(t) in (")", "]", "}") and stack and CLOSERS[str(stack[-1])] == str(t):
            stack.pop()
    return stack


def _expected_at(text: str, pos: int, fallback) -> set[str]:
    """What the parser would accept at `pos` (lexer errors carry no reliable list)."""
    try:
        ip = _lark().parse_interactive(text[:pos])
        ip.exhaust_lexer()
        return set(ip.accepts())
    except Exception:  # noqa: BLE001 - only a better wording is at stake; fall back
        return set(fallback or ())


def _malformed_number(file: str, text: str, pos: int) -> Diagnostic | None:
    """`1.2.3` or `3x` lex as several tokens; name the whole run instead of its tail."""
    line_start = text.rfind("\n", 0, pos) + 1
    for m in _BAD_NUMBER.finditer(text, line_start):
        if m.start() >= pos:
            return None
        if pos < m.end() and not _NUMBER.fullmatch(m.group()):
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - line_start + 1
            return Diagnostic("E0108", f"malformed number '{m.group()}'",
                              Span(file, line, col, line, col + len(m.group())),
                              expected="a number such as 3, 0.5 or 1e-3", found=m.group())
    return None


def _bad_character(file: str, text: str, exc: UnexpectedCharacters) -> Diagnostic:
    pos = exc.pos_in_stream
    ch = text[pos] if pos < len(text) else ""
    line, col = exc.line, exc.column
    if ch == '"':
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        return Diagnostic("E0107", "unterminated string", Span(file, line, col, line,
                                                                col + max(1, end - pos)),
                          expected="a closing '\"' on the same line", found="end of line",
                          hint="a string cannot span lines")
    shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}" if ch else "nothing"
    expected = _expected_at(text, pos, exc.allowed)
    return Diagnostic("E0101", f"unexpected character {shown}",
                      Span(file, line, col, line, col + 1),
                      expected=_expected_words(expected) if expected else None, found=shown,
                      hint=CHAR_HINTS.get(ch))


AS_HINT = ("'as NAME' names a layer right after a pipeline stage, `x -> conv2d(6) as c1 -> "
           "relu`, or at the end of a statement, `y = conv2d(x, 6) as c1`")


def _syntax_error(file: str, text: str, exc: UnexpectedInput) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(file, text, exc)
    if not isinstance(exc, UnexpectedToken):  # UnexpectedEOF: only Earley raises it
        return Diagnostic("E0102", "unexpected end of file", Span(file, exc.line, exc.column,
                                                                  exc.line, exc.column + 1))
    tok = exc.token
    at_end = tok.type == "$END"
    pos = len(text) if at_end else tok.start_pos
    if not at_end:
        bad = _malformed_number(file, text, pos)
        if bad is not None:
            return bad
    before = _tokens_before(text, pos)
    prev = before[-1] if before else None
    opened = _open_brackets(before)
    try:  # `accepts` replays the parser: exact after default reductions, unlike `expected`
        expected = set(exc.accepts or exc.expected)
    except Exception:  # noqa: BLE001 - only a better wording is at stake; fall back
        expected = set(exc.expected)
    keys = {_literals().get(e, e) for e in expected}
    words = _expected_words(expected)
    found = _describe(tok)

    def opened_note(o: Token) -> list:
        return [(f"'{o}' opened here", _tok_span(file, o))]

    def closes(o: Token) -> str:
        return f"'{CLOSERS[str(o)]}' to close the '{o}' at {o.line}:{o.column}"

    if at_end:
        lines = text.rstrip().splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        if opened:
            o = opened[-1]
            return Diagnostic("E0102", f"unexpected end of file: the '{o}' at line {o.line} is "
                              "never closed", span, expected=closes(o), found="end of file",
                              notes=opened_note(o))
        return Diagnostic("E0102", "unexpected end of file", span, expected=words,
                          found="end of file")
    span = _tok_span(file, tok)
    text_tok = str(tok)
    # `model B {` inside an unclosed body: the lexer took `model` for a name, so the parse
    # fails one token later; blame the keyword and the brace.
    if (opened and str(opened[-1]) == "{" and prev is not None and str(prev) in TOP_KEYWORDS
            and prev.line > opened[-1].line):
        o = opened[-1]
        return Diagnostic("E0103", f"unexpected keyword '{prev}'; is a '}}' missing?",
                          _tok_span(file, prev), expected=closes(o), found=f"keyword '{prev}'",
                          notes=opened_note(o))
    # A bracket left open: the parse fails on a later line, far from the real mistake.
    if opened and text_tok not in (")", "]", "}"):
        o = opened[-1]
        late = tok.line > o.line and str(o) != "{"
        if (late or (str(o) == "{" and text_tok in TOP_KEYWORDS)) and CLOSERS[str(o)] in keys:
            return Diagnostic("E0103", f"unexpected {found}; is a '{CLOSERS[str(o)]}' missing?",
                              span, expected=closes(o), found=found, notes=opened_note(o))
    if text_tok in (")", "]", "}"):
        # Inside a body, a stray ')' or ']' closes nothing; only a '(' or '[' can be mismatched.
        if opened and str(opened[-1]) != "{" and CLOSERS[str(opened[-1])] != text_tok:
            o = opened[-1]
            return Diagnostic("E0103", f"mismatched '{tok}'", span, expected=closes(o),
                              found=found, notes=opened_note(o))
        if not opened or (str(opened[-1]) == "{" and text_tok != "}"):
            return Diagnostic("E0103", f"unmatched '{tok}'", span, expected=words, found=found,
                              hint=f"there is no open bracket for this '{tok}' to close")
    if text_tok in _keywords() and tok.type != "NAME" and "NAME" in keys:
        return Diagnostic("E0103", f"'{tok}' is a keyword and cannot be used as a name", span,
                          expected=words, found=found, hint=f"choose another name, e.g. '{tok}_'")
    if prev is not None and text_tok in ("=", ",") and str(prev) in STATEMENT_KEYWORDS:
        return Diagnostic("E0103", f"'{prev}' is a keyword and cannot be used as a name",
                          _tok_span(file, prev), expected="a name", found=f"keyword '{prev}'",
                          hint=f"choose another name, e.g. '{prev}_'")
    if text_tok == "as":
        return Diagnostic("E0103", "unexpected 'as' here", span, expected=words, found=found,
                          hint=AS_HINT)
    if text_tok == "->" and len(before) >= 2 and str(before[-2]) == "as":
        return Diagnostic("E0103", "a statement's 'as NAME' comes last", span, expected=words,
                          found=found, hint=AS_HINT)
    if prev is not None and str(prev) == "->" and "NAME" in keys:
        return Diagnostic("E0103", "missing op or block name after '->'", span,
                          expected="an op or block name, e.g. `x -> relu`", found=found)
    if prev is not None and prev.type == "NAME" and tok.type == "NAME" and "=" in keys:
        guess = did_you_mean(str(prev), STATEMENT_KEYWORDS)
        if guess:
            return Diagnostic("E0103", f"unknown statement '{prev}'", _tok_span(file, prev),
                              expected="a statement: " + ", ".join(STATEMENT_KEYWORDS)
                              + " or `name = expression`", found=f"name '{prev}'", hint=guess)
        return Diagnostic("E0103", f"missing '=' after '{prev}'", span, expected="'='",
                          found=found, hint="a statement looks like `name = expression`")
    hint = None
    if tok.type == "NAME":
        hint = did_you_mean(text_tok, [k for k in keys if k in _keywords()])
    return Diagnostic("E0103", f"unexpected {found}", span, expected=words, found=found, hint=hint)


def read_source(path: str | Path) -> str:
    """Read a `.dl` file as UTF-8 text, or raise a located E01xx diagnostic."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_SOURCE_BYTES:
            raise DslcError(Diagnostic("E0105", "source file too large", Span(str(p), 0, 0, 0, 0),
                                       expected=f"at most {MAX_SOURCE_BYTES} bytes",
                                       found=f"{p.stat().st_size} bytes"))
        data = p.read_bytes()
    except OSError as exc:
        raise DslcError(Diagnostic("E0109", f"cannot read '{p}'", Span(str(p), 0, 0, 0, 0),
                                   expected="a readable .dl file",
                                   found=exc.strerror or type(exc).__name__)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        head = data[data.rfind(b"\n", 0, exc.start) + 1:exc.start]
        col = len(head.decode("utf-8", errors="replace")) + 1
        SOURCES.add(str(p), data.decode("utf-8", errors="replace"))
        raise DslcError(Diagnostic("E0106", "file is not valid UTF-8 text",
                                   Span(str(p), line, col, line, col + 1),
                                   expected="UTF-8 text", found=f"byte 0x{data[exc.start]:02x}",
                                   hint="save the file as UTF-8")) from None
    # Editors on Windows may start a UTF-8 file with a byte-order mark; it is not content.
    return text[1:] if text.startswith("\ufeff") else text


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one `.dl` source; raises DslcError with located E01xx diagnostics: the first
    syntax error, then at most one more per other definition (dslc/syntax/recovery.py)."""
    SOURCES.add(file, text)
    try:
        return _parse_with_conditionals(text, file)
    except DslcError as exc:
        more = recovery.more_errors(text, exc.diagnostics[0],
                                    lambda blanked: _parse_with_conditionals(blanked, file))
        if not more:
            raise
        raise DslcError(exc.diagnostics + more) from None


def _parse_with_conditionals(text: str, file: str) -> ast.Module:
    token = conditional.CONDITIONAL_IFS.set(conditional.conditional_ifs(text))
    try:
        return _parse(text, file)
    finally:
        conditional.CONDITIONAL_IFS.reset(token)


def _parse(text: str, file: str) -> ast.Module:
    if len(text.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise DslcError(Diagnostic("E0105", "source file too large", Span(file, 1, 1, 1, 2),
                                   expected=f"at most {MAX_SOURCE_BYTES} bytes",
                                   found=f"{len(text)} characters"))
    if "\x00" in text:
        pos = text.index("\x00")
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise DslcError(Diagnostic("E0101", "unexpected NUL byte", Span(file, line, col, line,
                                                                         col + 1),
                                   expected="text", found="U+0000",
                                   hint="is this a binary file?"))
    _check_nesting(file, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise DslcError(_syntax_error(file, text, exc)) from None
    except RecursionError:
        raise _too_deep(file) from None
    try:
        return _ToAst(file).transform(tree)
    except RecursionError:
        raise _too_deep(file) from None
    except VisitError as exc:
        # Lark wraps what a transformer callback raises; a chain of thousands of operators
        # (`- - - x`, a 5,000-stage pipeline) overflows the recursive tree walk.
        if isinstance(exc.orig_exc, RecursionError):
            raise _too_deep(file) from None
        if isinstance(exc.orig_exc, DslcError):  # a located diagnostic of the transformer
            raise exc.orig_exc from None
        raise


def _expr_words(e) -> str:
    """What an expression is, in the words of a diagnostic's `found:` line."""
    words = {ast.BinOp: "an arithmetic expression", ast.UnaryOp: "an arithmetic expression",
             ast.Name: "a name", ast.Number: "a number", ast.String: "a string",
             ast.Bool: "a bool", ast.Index: "an indexing expression",
             ast.Attribute: "an attribute", ast.TupleLit: "a tuple", ast.ListLit: "a list"}
    return words.get(type(e), "an expression")


def _too_deep(file: str) -> DslcError:
    return DslcError(Diagnostic("E0104", "expression nested too deeply", Span(file, 1, 1, 1, 2),
                                expected="a chain of at most a few hundred operators",
                                hint="split the expression over several statements"))


_NEST = re.compile(r'[(\[{}\])"#\n\\]')


def _check_nesting(file: str, text: str) -> None:
    """Refuse more than MAX_NESTING open brackets or braces, at the one that goes over, before
    the recursive stages (tree transform, elaboration) can overflow Python's stack."""
    depth = {"(": 0, "{": 0}
    kind = {"(": "(", "[": "(", "{": "{", ")": "(", "]": "(", "}": "{"}
    in_str = in_comment = False
    line, line_start = 1, 0
    skip = -1
    for m in _NEST.finditer(text):
        c, pos = m.group(), m.start()
        if pos == skip:
            continue
        if c == "\n":
            line, line_start = line + 1, pos + 1
            in_str = in_comment = False
        elif in_comment:
            continue
        elif in_str:
            if c == "\\":
                skip = pos + 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "#":
            in_comment = True
        elif c in "([{":
            k = kind[c]
            depth[k] += 1
            if depth[k] > MAX_NESTING:
                col = pos - line_start + 1
                at = Span(file, line, col, line, col + 1)
                if k == "{":
                    raise DslcError(Diagnostic(
                        "E0237", "blocks nested too deeply", at,
                        expected=f"at most {MAX_NESTING} nested {{ }}",
                        found=f"{MAX_NESTING + 1} levels here",
                        hint="move the inner part into a block of its own"))
                raise DslcError(Diagnostic(
                    "E0104", "expression nested too deeply", at,
                    expected=f"at most {MAX_NESTING} nested brackets",
                    found=f"{MAX_NESTING + 1} levels here",
                    hint="name the inner parts with `name = ...` statements"))
        elif c in ")]}":
            k = kind[c]
            depth[k] = max(depth[k] - 1, 0)
