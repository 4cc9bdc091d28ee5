"""Tests for dslc/ops/concat.py: concat, stack and the multi-output split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dslc.ops.base import Example
from dslc.ops.concat import CONCAT_OPS
from dslc.ops.registry import OPS
from dslc.types import tensor
from tests.helpers import compare_numpy_torch
from tests.ops.test_shape import diag, load, out_type, run_example


@pytest.mark.parametrize("op", CONCAT_OPS, ids=lambda o: o.name)
def test_op_record_is_complete(op):
    assert OPS[op.name] is op
    assert op.family == "shape" and op.doc and op.examples
    for ex in op.examples:
        assert isinstance(op.label(op.attrs.model_validate(ex.attrs)), str)


@pytest.mark.parametrize("op,i", [(op, i) for op in CONCAT_OPS for i in range(len(op.examples))],
                         ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_examples_match_torch(op, i):
    run_example(op, op.examples[i])


def test_arity_and_positional():
    assert (OPS["concat"].min_inputs, OPS["concat"].max_inputs) == (2, None)
    assert (OPS["stack"].min_inputs, OPS["stack"].max_inputs) == (2, None)
    assert OPS["concat"].positional == ("dim",)
    assert OPS["split"].positional == ("sections", "dim")


# ---- concat ------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_concat_every_axis(dim):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, extra in zip(shapes, (1, 2, 3)):
        s[dim] = extra
    ex = Example({"dim": dim}, tuple(tensor("f32", *s) for s in shapes))
    out = run_example(OPS["concat"], ex)[0]
    assert out.shape == torch.cat([torch.empty(s) for s in shapes], dim=dim).shape


def test_concat_through_language_with_symbolic_batch():
    prog = load("  input a: f32[B, 3, 4]\n  input b: f32[B, 5, 4]\n"
                "  y = concat(a, b, a, dim=1)\n  z = a -> concat(b, 1)\n  output y, z")
    assert out_type(prog) == "f32[B, 11, 4]"
    assert out_type(prog, "z") == "f32[B, 8, 4]"
    assert "y = torch.cat([a, b, a], dim=1)" in prog.to_torch_source()
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 3})
    assert np_out["y"].shape == (3, 11, 4)
    np.testing.assert_array_equal(np_out["y"], t_out["y"])


def test_concat_mismatch_is_located():
    src = ("  input a: f32[B, 6, 4]\n  input b: f32[B, 5, 3]\n"
           "  c = concat(a, b, dim=1)\n  output c")
    d = diag(src)
    assert d.code == "E0301"
    # Points at `b`, the input at fault: line 4, column 17.
    assert (d.span.line, d.span.column) == (4, 17)
    assert "input 1 axis 2" in d.message
    assert "f32[B, 6, 4]" in d.expected and "f32[B, 5, 3]" in d.found
    assert any("input 0 has shape" in n for n, _ in d.notes)


def test_concat_runtime_dims_that_may_differ():
    d = diag("  input a: f32[B, 3]\n  input b: f32[T, 3]\n  c = concat(a, b, dim=1)\n"
             "  output c")
    assert d.code == "E0301" and "cannot be shown equal" in d.message and d.span.line == 4


def test_concat_dtype_and_rank_mismatch():
    d = diag("  input a: f32[2, 3]\n  input b: i64[2, 3]\n  c = concat(a, b)\n  output c")
    assert d.code == "E0302"
    d = diag("  input a: f32[2, 3]\n  input b: f32[2, 3, 1]\n  c = concat(a, b)\n  output c")
    assert d.code == "E0301" and "rank" in d.message


def test_concat_needs_two_inputs():
    d = diag("  input a: f32[2, 3]\n  c = concat(a)\n  output c")
    assert d.code == "E0240"


def test_concat_axis_out_of_range():
    d = diag("  input a: f32[2, 3]\n  c = concat(a, a, dim=2)\n  output c")
    assert d.code == "E0301" and d.span.column == 20  # the `dim=2` argument


# ---- stack -------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [-3, -2, -1, 0, 1, 2])
def test_stack_every_position(dim):
    ex = Example({"dim": dim}, (tensor("f32", 2, 3),) * 3)
    out = run_example(OPS["stack"], ex)[0]
    assert out.shape == torch.stack([torch.empty(2, 3)] * 3, dim=dim).shape


def test_stack_through_language():
    prog = load("  input a: f32[B, 3]\n  input b: f32[B, 3]\n  y = stack(a, b, dim=1)\n"
                "  output y")
    assert out_type(prog) == "f32[B, 2, 3]"
    compare_numpy_torch(prog, bind={"B": 2})


def test_stack_mismatch():
    d = diag("  input a: f32[2, 3]\n  input b: f32[2, 4]\n  y = stack(a, b)\n  output y")
    assert d.code == "E0301" and (d.span.line, d.span.column) == (4, 16)


# ---- split -------------------------------------------------------------------------------


def test_split_tuple_assignment():
    prog = load("  input x: f32[B, 6, 4]\n  a, b = split(x, 2, dim=1)\n  y = a * b\n"
                "  output a, b, y")
    assert out_type(prog, "a") == "f32[B, 3, 4]" and out_type(prog, "b") == "f32[B, 3, 4]"
    src = prog.to_torch_source()
    assert "a, b = torch.chunk(x, 2, dim=1)" in src
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 3})
    x = prog.random_inputs(0, {"B": 3})["x"]
    np.testing.assert_array_equal(np_out["a"], x[:, :3])
    np.testing.assert_array_equal(np_out["b"], t_out["b"])


def test_split_sizes_through_language():
    prog = load("  input x: f32[B, 6]\n  a, b, c = x -> split((1, 2, 3))\n  output a, b, c")
    assert [out_type(prog, n) for n in "abc"] == ["f32[B, 1]", "f32[B, 2]", "f32[B, 3]"]
    assert "torch.split(x, [1, 2, 3], dim=-1)" in prog.to_torch_source()
    compare_numpy_torch(prog, bind={"B": 2})


def test_split_runtime_axis_that_provably_divides():
    # 2*T splits into two halves of T: sympy proves the divisibility.
    prog = load("  input x: f32[B, 2*T]\n  a, b = split(x, 2, dim=1)\n  output a, b")
    assert out_type(prog, "a") == "f32[B, T]"
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2, "T": 3})
    assert np_out["b"].shape == (2, 3)


def test_split_one_piece_is_one_tensor():
    prog = load("  input x: f32[2, 4]\n  y = split(x, 1, dim=0)\n  output y")
    assert out_type(prog) == "f32[2, 4]"
    assert "torch.chunk(x, 1, dim=0)[0]" in prog.to_torch_source()
    compare_numpy_torch(prog)


@pytest.mark.parametrize("call,code,words", [
    ("split(x, 4, dim=1)", "E0301", "does not split into 4"),
    ("split(x, 2, dim=0)", "E0304", "runtime size B"),
    ("split(x, (2, 3), dim=1)", "E0301", "sum to 5"),
    ("split(x, (6, 0), dim=1)", "E0301", "positive"),
    ("split(x, 0, dim=1)", "E0301", "at least one"),
])
def test_split_errors(call, code, words):
    d = diag(f"  input x: f32[B, 6, 4]\n  a, b = {call}\n  output a")
    assert d.code == code and words in d.message
    assert (d.span.line, d.span.column) == (3, 19)  # the sections argument


def test_split_unpack_count_must_match():
    d = diag("  input x: f32[B, 6]\n  a, b = split(x, 3)\n  output a")
    assert d.code == "E0219"
