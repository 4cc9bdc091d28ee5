"""Tests of dslc/ops/reduce.py beyond the registry's examples: cumsum's accumulator and dtype,
topk's order, NaN ranking and diagnostics, against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from tests.ops.pointwise import DTYPES, assert_matches, load_error, one_op

# ---- cumsum ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
def test_cumsum_equals_torch_bit_for_bit_over_long_rows(dtype):
    # 5000 terms: a float32 running sum drifts 1e-4 from torch's, which accumulates float32 in
    # float64 and float16 in float32; the interpreter keeps the same accumulators.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5000)).astype(DTYPES[dtype])
    got, generated = one_op("x -> cumsum(1)", x)
    want = torch.from_numpy(x).cumsum(1).numpy()
    assert_matches(generated, want)
    assert_matches(got, want)


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_cumsum_along_each_axis(dim):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    got, generated = one_op(f"x -> cumsum({dim})", x)
    want = torch.from_numpy(x).cumsum(dim).numpy()
    assert_matches(got, want)
    assert_matches(generated, want)


def test_cumsum_carries_inf_and_nan_as_torch():
    x = np.array([1.0, np.inf, -np.inf, 2.0, np.nan, 3.0], np.float32)
    got = one_op("x -> cumsum(0)", x)[0]
    assert_matches(got, torch.from_numpy(x).cumsum(0).numpy())
    assert got[1] == np.inf and np.isnan(got[2:]).all()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_cumsum_of_integers_and_bools_is_int64(dtype):
    x = (np.array([2**31 - 1, 2**31 - 1, 5, -3]) if dtype != np.bool_
         else np.array([1, 0, 1, 1])).astype(dtype)
    got, generated = one_op("x -> cumsum(0)", x)
    want = torch.from_numpy(x).cumsum(0).numpy()
    assert got.dtype == np.int64  # an int32 running sum would have overflowed here
    assert_matches(got, want)
    assert_matches(generated, want)


def test_cumsum_emits_the_method_call():
    prog = dslc.load("t.dl", text="model t {\n  input x: f32[B, 7]\n"
                     "  output y = x -> cumsum(1)\n}\n")
    assert "y = x.cumsum(1)" in prog.to_torch_source()


@pytest.mark.parametrize("text,code", [("x -> cumsum", "E0208"), ("x -> cumsum(2)", "E0301"),
                                       ("s -> cumsum(0)", "E0301")])
def test_cumsum_diagnostics(text, code):
    d = load_error(f"model t {{\n  input x: f32[4, 5]\n  input s: f32[]\n  output y = {text}\n}}\n")
    assert d.code == code and d.span.line == 4, d


# ---- topk --------------------------------------------------------------------------------


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
def test_topk_values_equal_torch(dtype, dim, largest):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, 7, 5)) * 10).astype(DTYPES[dtype])
    x[0, :3, 0] = [np.inf, -np.inf, -0.0]
    k = 3
    flag = "" if largest else ", largest=false"
    got, generated = one_op(f"x -> topk({k}, dim={dim}{flag})", x)
    want = torch.topk(torch.from_numpy(x), k, dim=dim, largest=largest).values.numpy()
    assert got.shape == want.shape and got.shape[dim] == k
    assert_matches(got, want)
    assert_matches(generated, want)


def test_topk_ranks_nan_above_every_number_as_torch():
    x = np.array([[1.0, np.nan, 3.0, -np.inf, np.nan, np.inf]], np.float32)
    for k in range(7):
        for largest in (True, False):
            flag = "true" if largest else "false"
            got = one_op(f"x -> topk({k}, largest={flag})", x)[0]
            want = torch.topk(torch.from_numpy(x), k, largest=largest).values.numpy()
            assert_matches(got, want)
    top = one_op("x -> topk(3)", x)[0]
    assert np.isnan(top[0, :2]).all() and top[0, 2] == np.inf


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_topk_of_integers_with_ties(dtype):
    x = np.array([[5, 1, 5, -7, 2, 5, np.iinfo(dtype).min, np.iinfo(dtype).max]], dtype)
    for largest in ("true", "false"):
        got, generated = one_op(f"x -> topk(4, -1, {largest})", x)
        want = torch.topk(torch.from_numpy(x), 4, largest=largest == "true").values.numpy()
        assert_matches(got, want)
        assert_matches(generated, want)


def test_topk_unsorted_holds_the_same_values():
    # torch leaves the order of sorted=False unspecified; the values are the same set.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 50)).astype(np.float32)
    got, generated = one_op("x -> topk(7, sorted=false)", x)
    want = torch.topk(torch.from_numpy(x), 7, sorted=False).values.numpy()
    assert_matches(np.sort(got, axis=1), np.sort(want, axis=1))
    assert_matches(np.sort(generated, axis=1), np.sort(want, axis=1))


def test_topk_emits_values_of_torch_topk():
    prog = dslc.load("t.dl", text="model t {\n  input x: f32[4, 7]\n  a = x -> topk(3)\n"
                     "  b = x -> topk(2, dim=0, largest=false)\n  output a, b\n}\n")
    src = prog.to_torch_source()
    assert "a = torch.topk(x, 3).values" in src
    assert "b = torch.topk(x, 2, dim=0, largest=False).values" in src


@pytest.mark.parametrize("text,code", [
    ("x -> topk(8)", "E0343"),  # more than the axis holds
    ("x -> topk(-1)", "E0343"),
    ("x -> topk(2, dim=0)", "E0304"),  # the batch axis has no fixed size
    ("x -> topk(2, dim=2)", "E0301"),
    ("x -> topk", "E0208"),
    ("b -> topk(1)", "E0302"),
])
def test_topk_diagnostics(text, code):
    d = load_error("model t {\n  input x: f32[B, 7]\n  input b: bool[3]\n"
                   f"  output y = {text}\n}}\n")
    assert d.code == code and d.span.line == 4, d
