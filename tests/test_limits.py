"""Resource limits (docs/limits.md): hostile sizes and depths give located diagnostics, never a
hang, a crash or an allocation that exhausts memory."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.diagnostics import DslcError
from dslc.limits import MAX_DIM, MAX_NESTING, MAX_PARAM_ELEMENTS, MAX_REPEAT, MAX_RUN_ELEMENTS
from dslc.syntax.parser import MAX_SOURCE_BYTES


def diag(text: str, **kw):
    with pytest.raises(DslcError) as exc:
        dslc.load("limits.dl", text=text, **kw)
    return exc.value.diagnostics[0]


def test_huge_repeat_is_refused_at_its_count():
    d = diag("model m { input x: f32[B, 4]\n repeat 1000000000 { x = x -> relu }\n"
             " output y = x }\n")
    assert d.code == "E0220" and (d.span.line, d.span.column) == (2, 9)
    assert str(MAX_REPEAT) in d.expected


def test_deep_brackets_stop_at_the_bracket_that_goes_over():
    n = 10_000
    d = diag("model m { input x: f32[B, 4]\n output y = " + "(" * n + "x" + ")" * n + " }\n")
    assert d.code == "E0104" and d.span.line == 2
    assert d.span.column == len(" output y = ") + MAX_NESTING + 1


def test_nesting_at_the_limit_is_fine():
    n = MAX_NESTING - 1
    prog = dslc.load("ok.dl", text="model m { input x: f32[B, 4]\n output y = "
                     + "(" * n + "x" + ")" * n + " }\n")
    assert prog.graph.outputs


def test_ten_thousand_deep_block_nesting_is_e0237():
    n = 10_000
    d = diag("model m { input x: f32[B, 4]\n" + "if true { " * n + "x = x -> relu"
             + " }" * n + "\n output y = x }\n")
    assert d.code == "E0237" and d.span.line == 2


def test_brackets_inside_strings_and_comments_do_not_count():
    deep = "(" * (MAX_NESTING + 5)
    prog = dslc.load("ok.dl", text=f'# {deep}\nmodel m {{ input x: f32[B, 4]\n'
                     f'  assert true, "{deep}"\n  output y = x }}\n')
    assert prog.graph.outputs


@pytest.mark.parametrize("expr", ["- " * 5000 + "x", "x" + " -> relu" * 5000,
                                  " + ".join(["x"] * 5000)])
def test_long_operator_chains_are_e0104_not_a_recursion_error(expr):
    d = diag("model m { input x: f32[B, 4]\n output y = " + expr + " }\n")
    assert d.code == "E0104"


def test_block_call_chain_stops_at_the_block_depth_limit():
    n = 200
    text = "".join(f"block b{i} {{ input x\n output y = x -> b{i + 1} }}\n" for i in range(n))
    text += f"block b{n} {{ input x\n output y = x }}\n"
    text += "model m { input x: f32[B, 4]\n output y = x -> b0 }\n"
    d = diag(text)
    assert d.code == "E0237" and d.span.line >= 1


def test_a_dimension_over_two_to_the_forty_is_e0218():
    d = diag(f"model m {{ input x: f32[B, {MAX_DIM + 1}]\n output y = x }}\n")
    assert d.code == "E0218" and d.span.line == 1 and "2**40" in d.expected


def test_a_product_of_fixed_dims_over_the_limit_is_e0218():
    d = diag("model m { input x: f32[B, 1048576, 1048576, 2]\n output y = x }\n")
    assert d.code == "E0218" and "too large" in d.message


@pytest.mark.parametrize("src", [
    "model m { input x: f32[B, 4]\n output y = x -> linear(1000000000000) }\n",
    "model m { input x: f32[B, 100000]\n output y = x -> linear(100000) }\n",
    "model m { input x: f32[B, 4096]\n repeat 300 { x = x -> linear(4096) }\n output y = x }\n",
])
def test_parameters_too_large_to_allocate_are_e0241(src):
    d = diag(src)
    assert d.code == "E0241" and d.span.line == 2
    assert str(MAX_PARAM_ELEMENTS) in d.expected


def test_a_huge_tensor_asked_to_run_is_refused_before_allocating():
    prog = dslc.load("big.dl", text="model m { input x: f32[B, 1000000000000]\n"
                     " output y = x * 2.0 }\n")
    with pytest.raises(DslcError) as exc:
        prog.random_inputs(0, {"B": 1})
    assert exc.value.diagnostics[0].code == "E0505"
    with pytest.raises(DslcError) as exc:
        prog.run({"x": np.zeros((1, 1), np.float32)}, {}, bind={"B": 1})
    assert exc.value.diagnostics[0].code in ("E0503", "E0505")


def test_a_kernel_buffer_too_large_to_run_is_e0505_at_the_op():
    # A huge stride samples rows 2**29 apart, reached by both taps: the rows the kernel would
    # read (2**32 of them) are refused before they are allocated. (Huge padding with huge
    # dilation alone runs: ops/window.py leaves out the taps that read only padding.)
    prog = dslc.load("big.dl", text="model m { input x: f32[2, 3, 5]\n output y = x -> "
                     "conv1d(2, 2, stride=536870912, padding=2147483647, "
                     "dilation=2147483648) }\n")
    with pytest.raises(DslcError) as exc:
        prog.run({"x": np.zeros((2, 3, 5), np.float32)})
    d = exc.value.diagnostics[0]
    assert d.code == "E0505" and d.span.line == 2 and "conv1d" in d.message
    assert str(MAX_RUN_ELEMENTS) in d.expected


def test_file_too_large_is_e0105_without_reading_it(tmp_path):
    p = tmp_path / "big.dl"
    p.write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    d = diag_path(p)
    assert d.code == "E0105"


def diag_path(p):
    with pytest.raises(DslcError) as exc:
        dslc.load(p)
    return exc.value.diagnostics[0]


def test_import_depth_is_bounded(tmp_path):
    from dslc.limits import MAX_IMPORT_DEPTH

    n = MAX_IMPORT_DEPTH + 3
    for i in range(n):
        (tmp_path / f"f{i}.dl").write_text(f'import "f{i + 1}.dl"\n', encoding="utf-8")
    (tmp_path / f"f{n}.dl").write_text("block last { input x\n output y = x }\n")
    d = diag_path(tmp_path / "f0.dl")
    assert d.code == "E0213"
