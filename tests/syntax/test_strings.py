"""String literals: every Python escape and any non-ASCII text round-trip exactly; a malformed
escape is a located E0111 diagnostic that points at the escape."""

import ast as pyast

import pytest

from dslc.diagnostics import DslcError
from dslc.syntax.parser import parse


def value_of(literal: str) -> str:
    mod = parse(f'model m(s: string = {literal}) {{ input x: f32[B] output x }}', "t.dl")
    return mod.definitions[0].params[0].default.value


@pytest.mark.parametrize("literal", [
    r'"é\n"', r'"\t\"\\"', r'"\u00e9"', r'"\x41\x7f"', r'"\101\0\7"', r'"\a\b\f\v\r"',
    r'"it\'s"', r'"\N{BULLET} \N{LATIN SMALL LETTER E WITH ACUTE}"',
    r'"\U0001F600 日本語 ünï"', '"tab\there"', r'"\\n is not a newline"', '""',
])
def test_escapes_match_python(literal):
    assert value_of(literal) == pyast.literal_eval(literal)


def test_non_ascii_is_kept_as_written():
    assert value_of('"é\\n"') == "é\n"
    assert value_of('"日本"') == "日本"


@pytest.mark.parametrize("literal,column,found,words", [
    (r'"\x"', 22, r"\x", "2 hex digits"),
    (r'"ab\xZ1"', 24, r"\x", "2 hex digits"),
    (r'"\u12"', 22, r"\u12", "4 hex digits"),
    (r'"é\N{nonexistent}"', 23, r"\N{nonexistent}", "unknown Unicode character name"),
    (r'"\N"', 22, r"\N", "malformed"),
    (r'"\q"', 22, r"\q", "unknown escape"),
    (r'"\ud800"', 22, r"\ud800", "not a Unicode character"),
    (r'"\U00110000"', 22, r"\U00110000", "not a Unicode character"),
])
def test_malformed_escape_is_located(literal, column, found, words):
    with pytest.raises(DslcError) as exc:
        value_of(literal)
    d = exc.value.diagnostics[0]
    assert d.code == "E0111"
    assert (d.span.line, d.span.column) == (1, column)
    assert d.span.end_column - d.span.column == len(found)
    assert d.found == found
    assert words in d.message + (d.expected or "")


def test_import_and_assert_strings_are_decoded():
    mod = parse('model m { input x: f32[B]\n assert true, "d\\u00e9j\\u00e0"\n output x }', "t.dl")
    assert mod.definitions[0].body[1].message == "déjà"


def test_strings_reach_the_model_and_the_generated_code_unchanged():
    import dslc

    src = ('model m(tag: string = "caf\\u00e9 \\"q\\"\\n\\t日") {\n'
           '  input x: f32[B, 4]\n  output y = x -> linear(2) }\n')
    prog = dslc.load("t.dl", text=src)
    assert prog.graph.hparams["tag"] == 'café "q"\n\t日'
    namespace: dict = {}
    exec(compile(prog.to_torch_source(), "gen.py", "exec"), namespace)  # noqa: S102
    import inspect

    cls = next(v for v in namespace.values() if inspect.isclass(v) and v.__name__ == "M")
    assert inspect.signature(cls.__init__).parameters["tag"].default == 'café "q"\n\t日'
