"""Tests for dslc/ops/shape.py: flatten, reshape, permute, transpose, squeeze, unsqueeze.

Also holds `run_example`, the small direct op harness the concat and index tests share: shape
rule, NumPy kernel and the emitted torch expression on the same random inputs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.base import EmitCtx, Example, RunCtx
from dslc.ops.registry import OPS
from dslc.ops.shape import SHAPE_OPS
from dslc.types import numpy_dtype, tensor
from tests.helpers import compare_numpy_torch


def run_example(op, ex: Example, seed: int = 0):
    """Shape rule, NumPy kernel and torch emitter on one example; returns the NumPy outputs.

    Data movement is exact, so NumPy and torch must agree bit for bit."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in ex.inputs:
        shape = tuple(int(d) for d in t.shape)
        if t.is_float:
            xs.append(rng.standard_normal(shape).astype(numpy_dtype(t.dtype)))
        else:
            xs.append(rng.integers(0, ex.int_high, shape).astype(numpy_dtype(t.dtype)))
    a = op.attrs.model_validate(ex.attrs)
    want = op.shape(a, list(ex.inputs))
    assert len(want) == op.n_outputs(a)
    outs = [np.asarray(o) for o in op.numpy(a, xs, RunCtx(train=False,
                                                          rng=np.random.default_rng(0)))]
    assert [o.shape for o in outs] == [tuple(int(d) for d in t.shape) for t in want]
    assert [str(o.dtype) for o in outs] == [str(numpy_dtype(t.dtype)) for t in want]
    names = [f"x{i}" for i in range(len(xs))]
    expr = op.torch_call(a, names, EmitCtx(module=None, dim_names={}), list(ex.inputs))
    env = {"torch": torch, "nn": nn, "F": F}
    env.update({n: torch.from_numpy(x.copy()) for n, x in zip(names, xs)})
    got = eval(expr, env)  # noqa: S307 - our own emitter's expression
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(outs), expr
    for g, o in zip(got, outs):
        np.testing.assert_array_equal(g.numpy(), o, err_msg=expr)
    return outs


def load(body: str) -> dslc.Program:
    return dslc.load("t.dl", text="model m {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


def out_type(prog, name: str = "y") -> str:
    ref = dict(prog.graph.outputs)[name]
    return str(prog.graph.type_of(ref))


# ---- every op: its facts and its examples -----------------------------------------------


@pytest.mark.parametrize("op", SHAPE_OPS, ids=lambda o: o.name)
def test_op_record_is_complete(op):
    assert OPS[op.name] is op
    assert op.family == "shape"
    assert op.doc and op.examples
    for ex in op.examples:
        assert isinstance(op.label(op.attrs.model_validate(ex.attrs)), str)
    for p in op.positional:
        assert p in op.attrs.model_fields


@pytest.mark.parametrize("op,i", [(op, i) for op in SHAPE_OPS for i in range(len(op.examples))],
                         ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_examples_match_torch(op, i):
    run_example(op, op.examples[i])


# ---- reshape -----------------------------------------------------------------------------

RESHAPE_CASES = [
    ((2, 3, 4), (24,)), ((2, 3, 4), (4, 6)), ((2, 3, 4), (-1, 2)), ((2, 3, 4), (3, -1, 2)),
    ((6,), (1, 6, 1)), ((5, 1), (-1,)), ((2, 2, 2, 2), (4, 1, -1)),
]


@pytest.mark.parametrize("shape,target", RESHAPE_CASES)
def test_reshape_against_torch(shape, target):
    op = OPS["reshape"]
    out = run_example(op, Example({"shape": target}, (tensor("f32", *shape),)))[0]
    assert out.shape == torch.empty(shape).reshape(target).shape


def test_reshape_positional_order():
    assert OPS["reshape"].positional == ("shape",)
    assert OPS["permute"].positional == ("dims",)
    assert OPS["transpose"].positional == ("dim0", "dim1")


def test_symbolic_reshape_keeps_batch_symbolic():
    prog = load("  input x: f32[B, 3, 4]\n  y = reshape(x, [x.shape[0], -1])\n  output y")
    assert out_type(prog) == "f32[B, 12]"
    src = prog.to_torch_source()
    assert "y = x.reshape(x.shape[0], -1)" in src
    for b in (3, 5):
        np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": b})
        assert np_out["y"].shape == (b, 12)
        np.testing.assert_array_equal(np_out["y"], t_out["y"])


def test_symbolic_reshape_with_symbolic_entries_everywhere():
    # [B, T] -> [T, B]: element counts match symbolically; the emitter prints both dims from
    # the input's runtime shape.
    prog = load("  input x: f32[B, T]\n  y = x -> reshape((x.shape[1], x.shape[0]))\n"
                "  z = reshape(x, [x.shape[0] * x.shape[1]])\n  output y, z")
    assert out_type(prog) == "f32[T, B]"
    assert out_type(prog, "z") == "f32[B*T]"
    assert "x.reshape(x.shape[1], x.shape[0])" in prog.to_torch_source()
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 3, "T": 4})
    assert np_out["y"].shape == (4, 3) and np_out["z"].shape == (12,)


def test_reshape_numel_mismatch_is_located():
    d = diag("  input x: f32[B, 6, 4]\n  y = reshape(x, [x.shape[0], 5, 5])\n  output y")
    assert d.code == "E0301"
    assert (d.span.line, d.span.column) == (3, 18)  # the `[...]` argument
    assert "24*B" in d.expected and "25*B" in d.found


def test_reshape_fixed_numel_mismatch():
    d = diag("  input x: f32[2, 3]\n  y = x -> reshape((4, 2))\n  output y")
    assert d.code == "E0301"
    assert "6 elements" in d.expected and "8 elements" in d.found


@pytest.mark.parametrize("target,words", [
    ("[5, -1]", "cannot be shown to divide"),     # 24*B / 5: undecidable is an error too
    ("[x.shape[0], 7, -1]", "does not divide"),  # 24*B / (7*B) is a non-integer number
    ("[-1, -1]", "only once"),
    ("[x.shape[0], 0, -1]", "positive"),
])
def test_reshape_bad_targets(target, words):
    d = diag(f"  input x: f32[B, 6, 4]\n  y = reshape(x, {target})\n  output y")
    assert d.code == "E0301"
    assert words in d.message


def test_reshape_undecidable_counts_are_refused():
    # B*T elements into [B, 4]: equal only when T == 4, so the checker cannot prove it.
    d = diag("  input x: f32[B, T]\n  y = reshape(x, [x.shape[0], 4])\n  output y")
    assert d.code == "E0301" and "cannot be shown equal" in d.message


def test_reshape_entry_type_is_checked():
    d = diag("  input x: f32[2, 3]\n  y = reshape(x, [2, 3.0])\n  output y")
    assert d.code == "E0301" and "not a dim" in d.message


# ---- permute / transpose / squeeze / unsqueeze ------------------------------------------


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_permute_all_orders(perm):
    run_example(OPS["permute"], Example({"dims": perm}, (tensor("f32", 2, 3, 4),)))


@pytest.mark.parametrize("dims,words", [((0, 1), "one entry per axis"),
                                        ((0, 0, 1), "exactly once"),
                                        ((0, 1, 3), "out of range")])
def test_permute_invalid(dims, words):
    d = diag(f"  input x: f32[B, 3, 4]\n  y = x -> permute({dims})\n  output y")
    assert d.code == "E0301" and words in d.message


def test_shape_ops_through_language():
    prog = load("  input x: f32[B, 3, 4]\n"
                "  y = x -> transpose(1, 2) -> unsqueeze(1) -> permute((0, 2, 3, 1))"
                " -> squeeze(-1)\n  output y")
    assert out_type(prog) == "f32[B, 4, 3]"
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 2})
    assert np_out["y"].shape == (2, 4, 3)
    np.testing.assert_array_equal(np_out["y"], t_out["y"])


@pytest.mark.parametrize("dim", [0, 1, -1, 2, -3])
def test_transpose_pairs(dim):
    run_example(OPS["transpose"], Example({"dim0": dim, "dim1": 1}, (tensor("f32", 2, 3, 4),)))


@pytest.mark.parametrize("dim", range(-4, 4))
def test_unsqueeze_every_position(dim):
    out = run_example(OPS["unsqueeze"], Example({"dim": dim}, (tensor("f32", 2, 3, 4),)))[0]
    assert out.shape == torch.empty(2, 3, 4).unsqueeze(dim).shape


def test_unsqueeze_out_of_range():
    d = diag("  input x: f32[2, 3]\n  y = x -> unsqueeze(3)\n  output y")
    assert d.code == "E0301" and d.span.line == 3 and "-3 <= dim <= 2" in d.expected


def test_squeeze_refuses_non_unit_and_runtime_axes():
    d = diag("  input x: f32[B, 3]\n  y = x -> squeeze(1)\n  output y")
    assert d.code == "E0301" and "size 1" in d.message
    # B may be 1 at run time or not: torch would then change the rank depending on the data.
    d = diag("  input x: f32[B, 3]\n  y = x -> squeeze(0)\n  output y")
    assert d.code == "E0301" and "runtime dim" in d.message


def test_flatten_then_symbolic_shape():
    prog = load("  input x: f32[B, 2, 3]\n  y = x -> flatten()\n  output y")
    assert out_type(prog) == "f32[B, 6]"
    assert D.fmt(prog.graph.type_of(dict(prog.graph.outputs)["y"]).shape[1]) == "6"
