"""Tests of dslc/ops/pool_adaptive.py: adaptive average and max pooling (1-D, 2-D, 3-D), global
average and k-max pooling through the language against torch (torch's bins, overlapping bins,
outputs larger than the input, size-1 axes, unbatched inputs, NaN), the generated PyTorch and
diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc.diagnostics import DslcError
from dslc.ops.registry import OPS
from tests.helpers import assert_close, compare_numpy_torch


def _lit(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def load(shape, call: str):
    return dslc.load("t.dl", text=(f"model t {{\n  input x: f32[{', '.join(map(str, shape))}]"
                                   f"\n  output y = x -> {call}\n}}\n"))


CASES = {
    1: [((2, 3, 11), 4), ((2, 3, 11), 11), ((2, 3, 5), 8), ((3, 7), (3,)), ((2, 4, 1), 3),
        ((1, 2, 10), 1), ((2, 2, 13), 5)],
    2: [((2, 3, 7, 10), 3), ((1, 2, 5, 5), (2, 4)), ((1, 2, 13, 9), (7, 7)), ((1, 1, 4, 4), 6),
        ((2, 3, 14, 14), 7), ((3, 9, 9), (4, 2)), ((2, 1, 1, 6), (3, 4)), ((1, 2, 8, 3), (1, 5))],
    3: [((2, 3, 5, 7, 9), (2, 3, 4)), ((1, 2, 4, 4, 4), 2), ((2, 3, 1, 5, 2), (2, 3, 3)),
        ((2, 6, 3, 5), 4), ((1, 1, 7, 6, 9), (7, 1, 4))],
}


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("nd,shape,out", [(nd, s, o) for nd, cs in CASES.items()
                                          for s, o in cs])
def test_adaptive_pool_equals_torch(mode, nd, shape, out):
    name = f"adaptive_{mode}_pool{nd}d"
    prog = load(shape, f"{name}({_lit(out)})")
    x = np.random.default_rng(nd).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x})["y"]
    want = getattr(F, name)(torch.from_numpy(x), out).numpy()
    assert got.shape == want.shape == tuple(
        int(d) for d in prog.graph.type_of(prog.graph.outputs[0][1]).shape)
    if mode == "max":
        np.testing.assert_array_equal(got, want)  # a max is one of the inputs: exact
    else:
        assert_close(got, want, what=name)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_pools_through_generated_torch(nd):
    shape = ("B", 3) + (7, 5, 6)[:nd]
    for mode in ("avg", "max"):
        prog = load(shape, f"adaptive_{mode}_pool{nd}d({_lit((4, 3, 2)[:nd])})")
        np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2})
        assert np_out["y"].shape == (2, 3) + (4, 3, 2)[:nd]


def test_adaptive_max_propagates_nan_like_torch():
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 5)).astype(np.float32)
    x[0, 1, 3, 2] = np.nan
    got = load(x.shape, "adaptive_max_pool2d((3, 2))").run({"x": x})["y"]
    want = F.adaptive_max_pool2d(torch.from_numpy(x), (3, 2)).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


def test_adaptive_avg_symbolic_input_sizes():
    prog = load(("B", 2, "T"), "adaptive_avg_pool1d(4)")
    for t in (3, 4, 9, 17):
        np_out, _, _ = compare_numpy_torch(prog, bind={"B": 1, "T": t})
        assert np_out["y"].shape == (1, 2, 4)


def test_emitted_calls_and_labels():
    src = load((1, 2, 9, 9), "adaptive_max_pool2d((3, 4))").to_torch_source()
    assert "F.adaptive_max_pool2d(x, (3, 4))" in src
    src = load((1, 2, 9), "adaptive_avg_pool1d(4)").to_torch_source()
    assert "F.adaptive_avg_pool1d(x, 4)" in src
    assert OPS["adaptive_avg_pool2d"].label(
        OPS["adaptive_avg_pool2d"].attrs(output_size=7)) == "7x7"
    assert OPS["adaptive_max_pool3d"].label(
        OPS["adaptive_max_pool3d"].attrs(output_size=(1, 2, 3))) == "1x2x3"


@pytest.mark.parametrize("shape,call", [
    ((1, 2, 8, 8), "adaptive_avg_pool2d(0)"),
    ((1, 2, 8, 8), "adaptive_max_pool2d((2, 0))"),
    ((2, 8), "adaptive_max_pool2d(2)"),
    ((1, 2, 3, 8, 8), "adaptive_avg_pool2d(2)"),
    ((1, 8), "adaptive_avg_pool3d(2)"),
])
def test_bad_adaptive_calls(shape, call):
    with pytest.raises(DslcError) as exc:
        load(shape, call)
    d = exc.value.diagnostics[0]
    assert d.code == "E0301" and d.span.line == 3


def test_adaptive_avg_long_axis_many_bins():
    """A long axis pooled to many (overlapping) bins: linear in the size (no o*n matrix)."""
    x = np.random.default_rng(3).standard_normal((1, 2, 300_001)).astype(np.float32)
    prog = load(x.shape, "adaptive_avg_pool1d(150000)")
    got = prog.run({"x": x})["y"]
    want = F.adaptive_avg_pool1d(torch.from_numpy(x), 150_000).numpy()
    assert_close(got, want)
    got = load(x.shape, "adaptive_max_pool1d(150000)").run({"x": x})["y"]
    np.testing.assert_array_equal(got, F.adaptive_max_pool1d(torch.from_numpy(x), 150_000))


# ---- global average and k-max -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 3, 9), (1, 2, 3, 4, 5)])
def test_global_avg_pool(shape):
    prog = load(shape, "global_avg_pool")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x})["y"]
    assert got.shape == shape[:2] + (1,) * (len(shape) - 2)
    want = torch.from_numpy(x).mean(dim=tuple(range(2, len(shape))), keepdim=True).numpy()
    assert_close(got, want)
    if len(shape) == 4:
        assert_close(got, torch.nn.AdaptiveAvgPool2d(1)(torch.from_numpy(x)).numpy())
    compare_numpy_torch(prog)


@pytest.mark.parametrize("shape,k,dim", [((2, 4, 9), 3, -1), ((2, 5, 3), 2, 1),
                                         ((3, 7), 7, -1), ((2, 6, 4), 1, 1)])
def test_k_max_pool_keeps_order(shape, k, dim):
    prog = load(shape, f"k_max_pool({k}, dim={dim})")
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x})["y"]
    t = torch.from_numpy(x)
    want = t.gather(dim, t.topk(k, dim=dim).indices.sort(dim=dim).values).numpy()
    np.testing.assert_array_equal(got, want)
    compare_numpy_torch(prog)


def test_k_max_pool_example_from_the_notes():
    x = np.array([[[1, 5, 2, 4, 3]]], np.float32)
    prog = load((1, 1, 5), "k_max_pool(3)")
    np.testing.assert_array_equal(prog.run({"x": x})["y"], [[[5, 4, 3]]])


def test_global_and_k_max_labels_and_diagnostics():
    assert OPS["k_max_pool"].label(OPS["k_max_pool"].attrs(k=3)) == "k=3"
    for shape, call, code in [((1, 2, 5), "k_max_pool(6)", "E0305"),
                              ((1, 2, 8), "k_max_pool(2, dim=3)", "E0301"),
                              ((8, 8), "global_avg_pool", "E0301")]:
        with pytest.raises(DslcError) as exc:
            load(shape, call)
        d = exc.value.diagnostics[0]
        assert d.code == code and d.span.line == 3
