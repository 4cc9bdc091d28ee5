"""Parser: the grammar accepts the language's constructs and builds the right AST."""

import pytest

from dslc.diagnostics import DslcError
from dslc.syntax import ast
from dslc.syntax.parser import parse

SRC = """
# a comment
import "lib.dl"
block b(n: int = 2) { input x  output y = x }
model m(k: int = 3, name: string = "a") {
  input x: f32[B, 3]
  h = x -> linear(k) as fc -> relu   # trailing comment
  layers: repeat 2 as i { h = h + b(h, n=i) }
  if k > 2 and not false { a, c = (h, h) } else if k == 1 { a = h } else { a = h }
  assert k % 1 == 0, "k"
  const w: f32[2] = [1.0, -2]
  output h, y = h[:, 0:2] @ h.shape[0]
}
"""


def test_parses_every_construct():
    mod = parse(SRC, "t.dl")
    assert [i.path for i in mod.imports] == ["lib.dl"]
    assert [d.name for d in mod.definitions] == ["b", "m"]
    m = mod.definitions[1]
    kinds = [type(s).__name__ for s in m.body]
    assert kinds == ["InputDecl", "Assign", "Repeat", "If", "Assert", "ConstDecl", "OutputDecl"]
    pipe = m.body[1].value
    assert isinstance(pipe, ast.Pipe) and pipe.stage.func == "relu"
    assert pipe.source.stage.label == "fc"
    rep = m.body[2]
    assert rep.label == "layers" and rep.index == "i"
    assert isinstance(m.body[3].orelse[0], ast.If)
    assert m.params[1].default.value == "a"


def test_spans_point_at_source():
    mod = parse(SRC, "t.dl")
    assign = mod.definitions[1].body[1]
    assert (assign.span.file, assign.span.line, assign.span.column) == ("t.dl", 7, 3)


@pytest.mark.parametrize("src,code,line", [
    ("model m { input x: f32[B] output x", "E0102", 1),
    ("model m {\n  h = x -> \n}", "E0103", 3),
    ("model m { h = $ }", "E0101", 1),
    ("model m {\n h = = 3 }", "E0103", 2),
])
def test_syntax_errors_are_located(src, code, line):
    with pytest.raises(DslcError) as exc:
        parse(src, "bad.dl")
    d = exc.value.diagnostics[0]
    assert d.code == code
    assert d.span.line == line
    assert d.span.file == "bad.dl"


def test_precedence():
    e = parse("model m { a = 1 + 2 * 3 - -4 }", "t.dl").definitions[0].body[0].value
    assert e.op == "-" and e.left.op == "+" and e.left.right.op == "*"


# ---- conditional expressions -------------------------------------------------------------


def _value(src_expr: str):
    mod = parse(f"model m {{ input x: f32[B]\n y = {src_expr}\n output y }}", "t.dl")
    return mod.definitions[0].body[1].value


def test_conditional_binds_loosest_like_python():
    e = _value("x -> relu if a or b else x -> gelu")
    assert isinstance(e, ast.Conditional)
    assert isinstance(e.then, ast.Pipe) and isinstance(e.orelse, ast.Pipe)
    assert isinstance(e.cond, ast.BinOp) and e.cond.op == "or"
    nested = _value("1 if a else 2 if b else 3")  # the else part nests to the right
    assert isinstance(nested.orelse, ast.Conditional) and nested.then.value == 1
    inner = _value("f(x, stride=2 if i == 0 else 1)")
    assert isinstance(inner.kwargs[0].value, ast.Conditional)


def test_if_statement_after_a_value_on_the_same_line_is_still_a_statement():
    mod = parse("model m { input x: f32[B] h = x if k > 1 { h = x } else { h = x } "
                "output h }", "t.dl")
    kinds = [type(s).__name__ for s in mod.definitions[0].body]
    assert kinds == ["InputDecl", "Assign", "If", "OutputDecl"]
    # ...and a conditional may sit inside the statement's condition.
    mod = parse("model m { input x: f32[B] if (a if c else b) > 1 and 2 if d else e { h = x } "
                "output x }", "t.dl")
    cond = mod.definitions[0].body[1].cond
    assert isinstance(cond, ast.Conditional) and isinstance(cond.then, ast.BinOp)


def test_conditional_may_span_lines_and_strings_or_comments_do_not_confuse_it():
    mod = parse('model m { input x: f32[B]\n y = x\n   if k > 1   # "else" in a comment\n'
                '   else x -> relu\n z = "if { else"\n output y }', "t.dl")
    body = mod.definitions[0].body
    assert isinstance(body[1].value, ast.Conditional)
    assert body[2].value.value == "if { else"


def test_conditional_without_else_is_a_syntax_error():
    with pytest.raises(DslcError) as exc:
        parse("model m { input x: f32[B]\n y = f(x if c)\n output y }", "t.dl")
    d = exc.value.diagnostics[0]
    assert d.code == "E0103" and d.span.line == 2 and "'else'" in (d.expected or "")


# ---- recovery: one syntax error per definition -------------------------------------------


def test_each_definition_reports_its_own_syntax_error_at_its_own_place():
    src = ('block a { input x\n output y = x ) }\n'
           'block b { input x\n h = x $ 2\n h = h ) \n output h }\n'
           'model m { input x: f32[B]\n output y = "\\q" }\n')
    with pytest.raises(DslcError) as exc:
        parse(src, "t.dl")
    got = [(d.code, d.span.line, d.span.column) for d in exc.value.diagnostics]
    # line 5's `)` is a second error in block b: not reported
    assert got == [("E0103", 2, 15), ("E0101", 4, 8), ("E0111", 8, 14)]


@pytest.mark.parametrize("src", [
    'block a { input x\n output y = "unterminated\n }\nblock b { h = ) }',
    'block a { input x\n output y = x )\nblock b { h = ) }',      # a missing brace
    'block a { input x\n output y = x ) }\n}\nblock b { h = ) }',  # a brace closing nothing
])
def test_recovery_stops_where_definitions_are_in_doubt(src):
    with pytest.raises(DslcError) as exc:
        parse(src, "t.dl")
    assert len(exc.value.diagnostics) == 1


def _canon(e) -> str:
    """A fully parenthesised form of the expressions the property test generates."""
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.Conditional):
        return f"({_canon(e.then)} ? {_canon(e.cond)} : {_canon(e.orelse)})"
    if isinstance(e, ast.Pipe):
        return f"({_canon(e.source)} -> {e.stage.func})"
    if isinstance(e, ast.BinOp):
        return f"({_canon(e.left)} {e.op} {_canon(e.right)})"
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(_canon(a) for a in e.args)})"
    raise AssertionError(type(e))


def test_conditionals_and_if_statements_parse_as_written_wherever_the_newlines_fall():
    """Property: a random mix of conditionals (nested in every position, in parentheses, in
    calls, in an if statement's condition) followed by if statements, with newlines anywhere
    outside the conditionals' own tokens, parses to exactly the tree it was printed from."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(["a", "b", "c", "d"])
    ws = st.sampled_from([" ", "\n", " \n  "])

    def extend(children):
        return st.one_of(
            st.tuples(st.just("cond"), children, names, children),
            st.tuples(st.just("pipe"), children, st.sampled_from(["relu", "gelu"])),
            st.tuples(st.just("call"), children),
            st.tuples(st.just("or"), names, names),
        )

    trees = st.recursive(names, extend, max_leaves=8)

    def show(t, w, top=True) -> tuple[str, str]:
        """(source text, canonical form)"""
        if isinstance(t, str):
            return t, t
        kind = t[0]
        if kind == "cond":
            then, tc = show(t[1], w, False)
            other, oc = show(t[3], w, False)
            text = f"{then}{w}if {t[2]}{w}else {other}"
            # At the top of a statement or a condition it needs no parentheses.
            return (text if top else f"({text})"), f"({tc} ? {t[2]} : {oc})"
        if kind == "pipe":
            src, sc = show(t[1], w, False)
            return f"({src}{w}-> {t[2]})", f"({sc} -> {t[2]})"
        if kind == "call":
            arg, ac = show(t[1], w, False)
            return f"f({arg})", f"f({ac})"
        return f"({t[1]} or {t[2]})", f"({t[1]} or {t[2]})"

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(trees, trees, ws)
    def check(value, cond, w):
        vsrc, vcanon = show(value, w)
        csrc, ccanon = show(cond, w)
        src = (f"model m {{ input x: f32[B]{w}y = {vsrc}{w}if {csrc} {{ z = {vsrc} }}"
               f"{w}else if {csrc} {{ z = x }}{w}output y }}")
        body = parse(src, "t.dl").definitions[0].body
        assert [type(s).__name__ for s in body] == ["InputDecl", "Assign", "If", "OutputDecl"]
        assert _canon(body[1].value) == vcanon
        assert _canon(body[2].cond) == ccanon
        assert _canon(body[2].body[0].value) == vcanon
        assert _canon(body[2].orelse[0].cond) == ccanon

    check()
