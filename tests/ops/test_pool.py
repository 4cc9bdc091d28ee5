"""Tests of dslc/ops/pool.py: max/avg pooling (1-D, 2-D), global and adaptive average and
k-max pooling through the language against torch.nn.functional, output sizes (incl. ceil
mode), memory layouts and located diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.pool import pool2d_nchw
from dslc.ops.registry import OPS
from tests.helpers import assert_close, compare_numpy_torch


def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def load(shape, call: str, dtype="f32"):
    return dslc.load("t.dl", text=(f"model t {{\n  input x: {dtype}[{', '.join(map(str, shape))}]"
                                   f"\n  output y = x -> {call}\n}}\n"))


def run_pool(shape, op, kernel, seed=0, **kw):
    args = ", ".join([_lit(kernel)] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(shape, f"{op}({args})")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x})["y"]
    fn = getattr(F, op)
    want = fn(torch.from_numpy(x), kernel, **kw).numpy()
    t = prog.graph.type_of(prog.graph.outputs[0][1])
    return got, want, t


POOL2D_CASES = [
    ((2, 3, 8, 8), 2, {}),
    ((2, 3, 9, 9), 2, {}),  # odd size: last row dropped
    ((2, 3, 9, 11), 2, {"ceil_mode": True}),
    ((1, 4, 9, 11), 3, {"stride": 2, "padding": 1}),
    ((1, 4, 9, 11), 3, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 2, 10, 7), 3, {"stride": 2, "ceil_mode": True}),
    ((2, 2, 10, 7), 3, {"stride": 3, "ceil_mode": True}),
    ((1, 3, 8, 9), (3, 2), {"stride": (2, 1), "padding": (1, 0)}),
    ((1, 3, 8, 9), (2, 3), {"stride": (1, 2), "padding": (1, 1), "ceil_mode": True}),
    ((1, 3, 7, 7), 3, {"stride": 1, "padding": 1}),  # Inception's pool branch
    ((1, 2, 6, 6), 6, {}),
    ((3, 5, 6), 2, {}),  # unbatched [C, H, W]
    ((1, 2, 13, 13), 5, {"stride": 4, "padding": 2, "ceil_mode": True}),
    # taps that read only padding are left out (ops/window.py)
    ((1, 2, 3, 3), 9, {"stride": 1, "padding": 4}),
    ((1, 2, 4, 5), 7, {"stride": 3, "padding": 3, "ceil_mode": True}),
]


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("shape,kernel,kw", POOL2D_CASES,
                         ids=[f"p2-{i}" for i in range(len(POOL2D_CASES))])
def test_pool2d_equals_torch(op, shape, kernel, kw):
    got, want, t = run_pool(shape, op, kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert_close(got, want, what=op)


@pytest.mark.parametrize("shape,kernel,kw", [c for c in POOL2D_CASES if "padding" in c[2]])
def test_avg_pool2d_count_include_pad_false(shape, kernel, kw):
    got, want, _ = run_pool(shape, "avg_pool2d", kernel, count_include_pad=False, **kw)
    assert_close(got, want, what="avg exclude pad")


POOL1D_CASES = [
    ((2, 3, 10), 2, {}),
    ((2, 3, 11), 3, {"stride": 2, "padding": 1}),
    ((2, 3, 11), 3, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 12), 4, {"stride": 3, "ceil_mode": True}),
    ((4, 7), 3, {}),  # unbatched [C, L]
]


@pytest.mark.parametrize("op", ["max_pool1d", "avg_pool1d"])
@pytest.mark.parametrize("shape,kernel,kw", POOL1D_CASES,
                         ids=[f"p1-{i}" for i in range(len(POOL1D_CASES))])
def test_pool1d_equals_torch(op, shape, kernel, kw):
    got, want, t = run_pool(shape, op, kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert_close(got, want, what=op)


def test_avg_pool1d_exclude_pad():
    got, want, _ = run_pool((2, 3, 11), "avg_pool1d", 3, stride=2, padding=1, ceil_mode=True,
                            count_include_pad=False)
    assert_close(got, want)


@pytest.mark.parametrize("w", [4, 5, 6, 7, 13, 27, 55, 224])
@pytest.mark.parametrize("f,s,p", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2),
                                   (4, 4, 0), (3, 3, 1)])
@pytest.mark.parametrize("ceil", [False, True])
def test_output_size_formula(w, f, s, p, ceil):
    """(w + 2P - F)/S + 1, rounded down (or up in ceil mode, as torch), matches torch."""
    if w + 2 * p < f:
        return
    prog = load((1, 1, w), f"max_pool1d({f}, stride={s}, padding={p}, "
                           f"ceil_mode={_lit(ceil)})")
    got = int(prog.graph.type_of(prog.graph.outputs[0][1]).shape[2])
    want = F.max_pool1d(torch.zeros(1, 1, w), f, s, p, ceil_mode=ceil).shape[2]
    assert got == want
    if not ceil:
        assert got == (w + 2 * p - f) // s + 1


def test_ceil_mode_symbolic_size_runs_and_matches_torch():
    prog = load(("B", 2, "H", "W"), "max_pool2d(3, stride=2, ceil_mode=true)")
    for h, w in ((7, 8), (9, 9), (10, 5)):
        np_out, _, _ = compare_numpy_torch(prog, bind={"B": 1, "H": h, "W": w})
        want = F.max_pool2d(torch.zeros(1, 2, h, w), 3, 2, ceil_mode=True).shape
        assert np_out["y"].shape == tuple(want)


def test_pool_keeps_channels_last_layout_and_values():
    rng = np.random.default_rng(0)
    nhwc = rng.standard_normal((2, 9, 10, 4)).astype(np.float32)
    x = nhwc.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory, as conv returns
    tx = torch.from_numpy(np.ascontiguousarray(x))
    for mode, fn in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
        got = pool2d_nchw(x, (3, 3), (2, 2), (1, 1), True, mode)
        assert_close(got, fn(tx, 3, 2, 1, ceil_mode=True).numpy(), what=mode)
        assert got.strides[1] < got.strides[3]  # still channels-last


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 4, 4), np.float32) * 5
    got = pool2d_nchw(x, (3, 3), (2, 2), (1, 1), False, "max")
    assert (got == -5).all()


# ---- global / adaptive / k-max -----------------------------------------------------------


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


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 10), 3), ((1, 2, 5, 5), (2, 4)),
                                       ((1, 2, 13, 9), (7, 7)), ((1, 1, 4, 4), 6),
                                       ((2, 3, 14, 14), 7), ((3, 9, 9), (4, 2))])
def test_adaptive_avg_pool2d_bins_equal_torch(shape, out):
    prog = load(shape, f"adaptive_avg_pool2d({_lit(out)})")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x})["y"]
    want = F.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy()
    assert got.shape == want.shape
    assert_close(got, want)


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


# ---- emitters, labels, diagnostics -------------------------------------------------------


def test_emitted_calls():
    src = load((1, 2, 9, 9), "max_pool2d(3, stride=2, padding=1, ceil_mode=true)"
               ).to_torch_source()
    assert "F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)" in src
    src = load((1, 2, 9), "avg_pool1d(3, count_include_pad=false)").to_torch_source()
    assert "F.avg_pool1d(x, kernel_size=3, count_include_pad=False)" in src
    assert "nn." not in load((1, 2, 9, 9), "max_pool2d(2)").to_torch_source().split(
        "def forward")[1]


def test_labels():
    a = OPS["max_pool2d"].attrs
    assert OPS["max_pool2d"].label(a(kernel=2)) == "2x2"
    assert OPS["max_pool2d"].label(a(kernel=3, stride=2, padding=1)) == "3x3, s2, p1"
    assert OPS["k_max_pool"].label(OPS["k_max_pool"].attrs(k=3)) == "k=3"
    assert OPS["adaptive_avg_pool2d"].label(
        OPS["adaptive_avg_pool2d"].attrs(output_size=7)) == "7x7"


def test_pools_have_no_params_and_zero_macs():
    prog = load((1, 2, 8, 8), "max_pool2d(2) -> avg_pool2d(2) -> global_avg_pool")
    assert prog.init_params() == {}
    assert prog.summary()["macs"] == 0


def diag(shape, call):
    with pytest.raises(DslcError) as exc:
        load(shape, call)
    return exc.value.diagnostics[0]


def test_kernel_larger_than_input_is_located():
    d = diag((1, 2, 3, 3), "max_pool2d(4)")
    assert d.code == "E0305"
    assert (d.span.line, d.span.column) == (3, 30)  # at the kernel argument
    assert "4" in d.expected and "3" in d.found
    d = diag((1, 2, 5), "k_max_pool(6)")
    assert d.code == "E0305" and d.span.line == 3


@pytest.mark.parametrize("shape,call,code", [
    ((1, 2, 8, 8), "max_pool2d(2, padding=2)", "E0301"),  # pad > kernel/2, as torch refuses
    ((2, 8), "max_pool2d(2)", "E0301"),
    ((1, 2, 8, 8), "avg_pool2d(0)", "E0301"),
    ((1, 2, 8), "k_max_pool(2, dim=3)", "E0301"),
    ((8, 8), "global_avg_pool", "E0301"),
    ((1, 2, 8, 8), "adaptive_avg_pool2d(0)", "E0301"),
])
def test_bad_pool_calls(shape, call, code):
    assert diag(shape, call).code == code


def test_formula_uses_dims_conv_out():
    prog = load(("B", 3, "H", "W"), "avg_pool2d(2)")
    t = prog.graph.type_of(prog.graph.outputs[0][1])
    assert D.equal(t.shape[2], D.conv_out(D.symbol("H"), 2, 2, 0, 1))


def test_pool1d_kernel_far_past_the_input():
    # Once a 2**30-step loop over taps and a 2**30-wide pad (fuzzing).
    big = 2 ** 30
    x = np.random.default_rng(2).standard_normal((1, 2, 5)).astype(np.float32)
    got = load((1, 2, 5), f"max_pool1d({big}, padding={big // 2})").run({"x": x})["y"]
    np.testing.assert_array_equal(got, x.max(axis=2, keepdims=True))
    got = load((1, 2, 5), f"avg_pool1d({big}, padding={big // 2})").run({"x": x})["y"]
    assert_close(got, x.sum(axis=2, keepdims=True) / big, rtol=1e-6)
