"""Parser: `.dl` text to AST with the Lark grammar in `grammar/dslc.lark`."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dslc.diagnostics import SOURCES, Diagnostic, DslcError, Span
from dslc.syntax import ast

MAX_SOURCE_BYTES = 1_000_000  # documented limit (docs/limits.md)

# Human names for the grammar's terminals, for "expected ..." in syntax errors.
TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "__ANON_0": "'->'",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "an operator",
    "COMP_OP": "a comparison",
    "$END": "end of file",
}


def _grammar_text() -> str:
    # Installed wheels carry the grammar inside the package; a source checkout keeps it in
    # the top-level grammar/ folder, where the product card puts it.
    packaged = resources.files("dslc") / "grammar" / "dslc.lark"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "dslc.lark").read_text("utf-8")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(_grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _span(file: str, meta_or_tok) -> Span:
    if isinstance(meta_or_tok, Token):
        return Span(file, meta_or_tok.line, meta_or_tok.column, meta_or_tok.end_line,
                    meta_or_tok.end_column)
    m = meta_or_tok
    if getattr(m, "empty", True):
        return Span(file, 0, 0, 0, 0)
    return Span(file, m.line, m.column, m.end_line, m.end_column)


def _unescape(s: str) -> str:
    body = s[1:-1]
    return body.encode("utf-8").decode("unicode_escape") if "\\" in body else body


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
        return ast.Module(span=self.sp(meta), file=self.file, imports=imports, definitions=defs)

    def import_stmt(self, meta, ch):
        return ast.Import(span=self.sp(meta), path=_unescape(ch[0]))

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
        return ast.OutputItem(span=self.sp(meta), name=str(ch[0]), value=ch[1])

    def const_decl(self, meta, ch):
        return ast.ConstDecl(span=self.sp(meta), name=str(ch[0]), type=ch[1], value=ch[2])

    def assign(self, meta, ch):
        return ast.Assign(span=self.sp(meta), targets=[str(t) for t in ch[:-1]], value=ch[-1])

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
        return ast.Assert(span=self.sp(meta), cond=cond, message=_unescape(msg) if msg else None)

    def tensor_type(self, meta, ch):
        dtype, *dims = ch
        return ast.TensorType(span=self.sp(meta), dtype=str(dtype),
                              dtype_span=_span(self.file, dtype),
                              dims=[d for d in dims if d is not None])

    # ---- expressions
    def pipe(self, meta, ch):
        return ast.Pipe(span=self.sp(meta), source=ch[0], stage=ch[1])

    def stage(self, meta, ch):
        name, args, label = ch
        pos, kw = args if args else ([], [])
        return ast.Call(span=self.sp(meta), func=str(name), func_span=_span(self.file, name),
                        args=pos, kwargs=kw, label=str(label) if label else None)

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
        return ast.BinOp(span=self.sp(meta), op="**", left=ch[0], right=ch[1])

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
        return ast.String(span=self.sp(meta), value=_unescape(ch[0]))

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


def _expected_words(expected) -> str:
    words = sorted({TERMINAL_WORDS.get(e, f"'{e.lower()}'" if e.isupper() else e)
                    for e in expected})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _syntax_error(file: str, text: str, exc: UnexpectedInput) -> Diagnostic:
    line, col = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        return Diagnostic("E0101", f"unexpected character {ch!r}",
                          Span(file, line, col, line, col + 1),
                          expected=_expected_words(exc.allowed) if exc.allowed else None,
                          found=repr(ch))
    if isinstance(exc, UnexpectedEOF) or (
            isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        expected = exc.expected if isinstance(exc, UnexpectedEOF) else exc.expected
        return Diagnostic("E0102", "unexpected end of file", Span(file, line, col, line, col + 1),
                          expected=_expected_words(expected), found="end of file",
                          hint="is a '}' or ')' missing?")
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    span = Span(file, tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column or tok.column + 1)
    hint = None
    if tok.type == "NAME" and "EQUAL" in exc.expected:
        hint = "a statement looks like `name = expression`"
    if str(tok) in ("model", "block", "input", "output", "repeat", "import", "const"):
        hint = f"'{tok}' is a keyword and cannot be used as a name"
    return Diagnostic("E0103", f"unexpected {TERMINAL_WORDS.get(tok.type, repr(str(tok)))}"
                      + (f" {str(tok)!r}" if tok.type in ("NAME", "NUMBER") else ""),
                      span, expected=_expected_words(exc.expected), found=repr(str(tok)),
                      hint=hint)


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one `.dl` source; raises DslcError with a located E01xx diagnostic."""
    SOURCES.add(file, text)
    if len(text.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise DslcError(Diagnostic("E0105", "source file too large", Span(file, 1, 1, 1, 2),
                                   expected=f"at most {MAX_SOURCE_BYTES} bytes",
                                   found=f"{len(text)} characters"))
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DslcError(Diagnostic("E0101", "unexpected NUL byte in source",
                                   Span(file, line, 1, line, 2)))
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise DslcError(_syntax_error(file, text, exc)) from None
    except RecursionError:
        raise DslcError(Diagnostic("E0104", "expression nested too deeply",
                                   Span(file, 1, 1, 1, 2))) from None
    try:
        return _ToAst(file).transform(tree)
    except RecursionError:
        raise DslcError(Diagnostic("E0104", "expression nested too deeply",
                                   Span(file, 1, 1, 1, 2))) from None
