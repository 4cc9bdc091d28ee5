"""Tests for dslc/ops/index.py: `x[...]` indexing and slicing with Python's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dslc import dims as D
from dslc.ops.base import Example
from dslc.ops.index import INDEX_OPS
from dslc.ops.registry import OPS
from dslc.types import tensor
from tests.helpers import compare_numpy_torch
from tests.ops.test_shape import diag, load, out_type, run_example

INDEX = OPS["index"]


def test_op_record_is_complete():
    assert INDEX_OPS == (INDEX,)
    assert INDEX.family == "shape" and INDEX.doc and INDEX.examples
    a = INDEX.attrs.model_validate({"items": (("slice", None, None), ("index", 0, None))})
    assert INDEX.label(a) == "[:, 0]"


@pytest.mark.parametrize("i", range(len(INDEX.examples)))
def test_examples_match_torch(i):
    run_example(INDEX, INDEX.examples[i])


BOUNDS = [None, -7, -5, -3, -1, 0, 1, 2, 4, 5, 9]


@pytest.mark.parametrize("start", BOUNDS)
def test_slices_clamp_like_python(start):
    # Every start/stop pair on an axis of 5, including out-of-range bounds, against torch.
    for stop in BOUNDS:
        n = len(range(5)[start:stop])
        ex = Example({"items": (("slice", None, None), ("slice", start, stop))},
                     (tensor("f32", 2, 5),))
        if n == 0:
            with pytest.raises(Exception, match="empty"):
                run_example(INDEX, ex)
            continue
        out = run_example(INDEX, ex)[0]
        assert out.shape == torch.empty(2, 5)[:, start:stop].shape == (2, n)


@pytest.mark.parametrize("i", range(-4, 4))
def test_integer_index_every_position(i):
    out = run_example(INDEX, Example({"items": (("index", i, None),)},
                                     (tensor("f32", 4, 3),)))[0]
    assert out.shape == (3,)


def test_index_and_slice_through_language():
    prog = load("  input x: f32[B, 5, 4]\n  a = x[:, 0]\n  b = x[:, 1:3]\n  c = x[0, -1, 1:]\n"
                "  output a, b, c")
    assert out_type(prog, "a") == "f32[B, 4]"
    assert out_type(prog, "b") == "f32[B, 2, 4]"
    assert out_type(prog, "c") == "f32[3]"
    src = prog.to_torch_source()
    assert "a = x[:, 0]" in src and "b = x[:, 1:3]" in src and "c = x[0, -1, 1:]" in src
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 3})
    x = prog.random_inputs(0, {"B": 3})["x"]
    np.testing.assert_array_equal(np_out["a"], x[:, 0])
    np.testing.assert_array_equal(np_out["b"], x[:, 1:3])
    np.testing.assert_array_equal(t_out["c"], x[0, -1, 1:])


def test_slices_of_runtime_axes_stay_symbolic():
    prog = load("  input x: f32[B, T]\n  a = x[:, 1:]\n  b = x[:, :-1]\n  c = x[:, -2:]\n"
                "  d = x[-1]\n  e = x[-3:-1, 2:-2]\n  output a, b, c, d, e")
    assert [out_type(prog, n) for n in "abcd"] == [
        "f32[B, T-1]", "f32[B, T-1]", "f32[B, Min(2,T)]", "f32[T]"]
    assert out_type(prog, "e").startswith("f32[Min(3,B)-1, ")
    for b in (1, 4):
        for t in (1, 2, 5):
            bind = {"B": b, "T": t}
            np_out, _, _ = compare_numpy_torch(prog, bind=bind)
            for name in "abcde":
                want = prog.graph.type_of(dict(prog.graph.outputs)[name]).shape
                assert np_out[name].shape == tuple(D.evaluate(d, bind) for d in want)


def test_index_out_of_range_is_located():
    d = diag("  input x: f32[B, 6, 4]\n  y = x[:, 6]\n  output y")
    assert d.code == "E0301" and (d.span.line, d.span.column) == (3, 7)
    assert "-6 <= index < 6" in d.expected and "6" in d.found
    d = diag("  input x: f32[B, 6, 4]\n  y = x[:, -7]\n  output y")
    assert d.code == "E0301"


def test_index_on_runtime_axis():
    d = diag("  input x: f32[B, 6]\n  y = x[3]\n  output y")
    assert d.code == "E0304" and "runtime size B" in d.message


def test_too_many_indices_and_empty_slices():
    d = diag("  input x: f32[2, 3]\n  y = x[0, 0, 0]\n  output y")
    assert d.code == "E0301" and "too many indices" in d.message
    d = diag("  input x: f32[2, 6]\n  y = x[:, 4:2]\n  output y")
    assert d.code == "E0301" and "empty" in d.message


def test_index_full_scalar():
    prog = load("  input x: f32[2, 3]\n  y = x[1, 2]\n  output y")
    assert out_type(prog) == "f32[]"
    np_out, t_out, _ = compare_numpy_torch(prog)
    assert np_out["y"].shape == () and t_out["y"].shape == ()
