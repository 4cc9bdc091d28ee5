"""Tests of dslc/ops/pool.py: max, average and power-average pooling (1-D, 2-D, 3-D) through
the language and the NumPy kernel against torch.nn.functional: dilation, divisor_override,
per-side and "same"/"valid" padding, output sizes (incl. ceil mode), windows of padding only,
memory layouts, the generated PyTorch and located diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.padding import fpad_order
from dslc.ops.pool import out_size, per_axis, pool_nchw
from dslc.ops.registry import OPS
from tests.helpers import assert_close, compare_numpy_torch, torch_outputs


def _lit(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
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
        got = pool_nchw(x, (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), True, False, mode)
        assert_close(got, fn(tx, 3, 2, 1, ceil_mode=True).numpy(), what=mode)
        assert got.strides[1] < got.strides[3]  # still channels-last


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 4, 4), np.float32) * 5
    got = pool_nchw(x, (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), False, False, "max")
    assert (got == -5).all()


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


@pytest.mark.parametrize("shape,call,code", [
    ((1, 2, 8, 8), "max_pool2d(2, padding=2)", "E0301"),  # pad > kernel/2, as torch refuses
    ((2, 8), "max_pool2d(2)", "E0301"),
    ((1, 2, 8, 8), "avg_pool2d(0)", "E0301"),
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


# ---- 3-D pools, dilation, divisor_override (through the language, against F) -------------


def run_f(shape, op, kernel, seed=0, **kw):
    """NumPy through the language, and F.<op> called with the same keywords (DSL names)."""
    got, _, t = _run_np(shape, op, kernel, seed, **kw)
    x = torch.from_numpy(_input(shape, seed))
    fkw = dict(kw)
    want = getattr(F, op)(x, kernel, **fkw).numpy()
    return got, want, t


def _input(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _run_np(shape, op, kernel, seed=0, **kw):
    args = ", ".join([_lit(kernel)] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(shape, f"{op}({args})")
    got = prog.run({"x": _input(shape, seed)})["y"]
    return got, prog, prog.graph.type_of(prog.graph.outputs[0][1])


POOL3D_CASES = [
    ((2, 3, 6, 6, 6), 2, {}),
    ((1, 2, 7, 5, 9), (3, 2, 3), {"stride": (2, 1, 2), "padding": (1, 0, 1)}),
    ((1, 2, 7, 5, 9), (3, 2, 3), {"stride": (2, 1, 2), "padding": (1, 1, 1),
                                  "ceil_mode": True}),
    ((2, 1, 5, 8, 4), 3, {"stride": 2, "ceil_mode": True}),
    ((1, 2, 4, 4, 4), 3, {"stride": 3, "padding": 1, "ceil_mode": True}),
    ((2, 1, 1, 6, 5), (1, 3, 2), {"stride": (1, 2, 2), "ceil_mode": True}),  # size-1 depth
    ((3, 5, 6, 7), 2, {"stride": 1}),  # unbatched [C, D, H, W]
    ((1, 1, 3, 3, 3), 3, {"stride": 1, "padding": 1}),
]


@pytest.mark.parametrize("op", ["max_pool3d", "avg_pool3d"])
@pytest.mark.parametrize("shape,kernel,kw", POOL3D_CASES,
                         ids=[f"p3-{i}" for i in range(len(POOL3D_CASES))])
def test_pool3d_equals_torch(op, shape, kernel, kw):
    got, want, t = run_f(shape, op, kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert_close(got, want, what=op)
    if op == "avg_pool3d" and "padding" in kw:
        got, want, _ = run_f(shape, op, kernel, count_include_pad=False, **kw)
        assert_close(got, want, what="avg_pool3d exclude pad")


DILATED_CASES = [
    (1, (2, 3, 13), 3, {"dilation": 2}),
    (1, (2, 3, 13), 3, {"dilation": 3, "stride": 2, "ceil_mode": True}),
    (1, (2, 3, 12), 2, {"dilation": 4, "stride": 3, "padding": 1, "ceil_mode": True}),
    (1, (1, 1, 5), 3, {"dilation": 2}),  # the dilated window is the whole input
    (1, (1, 2, 1), 1, {"dilation": 5}),  # size-1 input, 1-tap kernel
    (2, (1, 2, 9, 11), 3, {"dilation": 2, "stride": 2, "padding": 1}),
    (2, (1, 2, 9, 11), (3, 2), {"dilation": (2, 3), "stride": (2, 3), "padding": (1, 1),
                                "ceil_mode": True}),
    (2, (2, 1, 10, 7), 2, {"dilation": (3, 1), "stride": 3, "ceil_mode": True}),
    (2, (3, 8, 8), 3, {"dilation": 2, "stride": 1, "padding": 1}),  # unbatched
    (3, (1, 2, 7, 8, 9), 2, {"dilation": (1, 2, 3), "stride": (1, 2, 2)}),
    (3, (1, 2, 7, 8, 9), 3, {"dilation": 2, "stride": 2, "padding": 1, "ceil_mode": True}),
]


@pytest.mark.parametrize("nd,shape,kernel,kw", DILATED_CASES,
                         ids=[f"dil-{i}" for i in range(len(DILATED_CASES))])
def test_dilated_max_pool_equals_torch(nd, shape, kernel, kw):
    got, want, t = run_f(shape, f"max_pool{nd}d", kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    np.testing.assert_array_equal(got, want)  # a max is one of the inputs: exact


@pytest.mark.parametrize("op,shape,kernel,kw", [
    ("avg_pool2d", (2, 3, 9, 11), 3, {"stride": 2, "padding": 1, "divisor_override": 4}),
    ("avg_pool2d", (2, 3, 9, 11), (3, 2), {"stride": 2, "padding": (1, 0), "ceil_mode": True,
                                           "divisor_override": 5}),
    ("avg_pool2d", (1, 2, 6, 6), 2, {"divisor_override": -3}),
    ("avg_pool3d", (1, 2, 5, 6, 7), 2, {"stride": 2, "ceil_mode": True,
                                        "divisor_override": 1}),
    ("avg_pool3d", (1, 2, 5, 6, 7), 3, {"padding": 1, "count_include_pad": False,
                                        "divisor_override": 7}),
])
def test_divisor_override_equals_torch(op, shape, kernel, kw):
    got, want, _ = run_f(shape, op, kernel, **kw)
    assert_close(got, want, what=op)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("ceil", [False, True])
def test_output_size_sweep_with_dilation(nd, ceil):
    """Output sizes (and which calls have none, E0305) equal torch's for every small
    size/kernel/stride/dilation/padding, in floor and ceil mode."""
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
    checked = refused = 0
    for n in range(1, 9):
        for k in range(1, 5):
            for s in range(1, 4):
                for d in range(1, 4):
                    for p in range(0, k // 2 + 1):
                        x = torch.zeros((1, 1) + (n,) * nd)
                        try:
                            want = fn(x, k, s, p, d, ceil_mode=ceil).shape[2]
                        except RuntimeError:
                            want = None
                        got = out_size(n, k, s, d, p, p, ceil, False)
                        if want is None:
                            assert got < 1, (n, k, s, d, p)
                            refused += 1
                        else:
                            assert got == want, (n, k, s, d, p)
                            checked += 1
    assert checked > 350 and refused > 50


@pytest.mark.parametrize("n,k,s,d,p", [(2, 3, 2, 1, 0), (5, 3, 3, 2, 0), (1, 2, 2, 1, 1),
                                       (4, 2, 3, 3, 1), (1, 3, 3, 1, 1)])
def test_ceil_mode_corner_cases_through_the_language(n, k, s, d, p):
    """ceil mode keeps a window that starts inside the input or the front padding, even when
    the (dilated) kernel is larger than the padded input, and drops one that would start in
    the right padding, as torch does."""
    shape = (1, 2, n)
    kw = {"stride": s, "padding": p, "dilation": d, "ceil_mode": True}
    got, want, t = run_f(shape, "max_pool1d", k, **kw)
    assert got.shape == want.shape == tuple(int(v) for v in t.shape)
    np.testing.assert_array_equal(got, want)
    if p > 0:
        del kw["dilation"]
        got, want, _ = run_f(shape, "avg_pool1d", k, **kw)
        assert_close(got, want)


def test_kernel_larger_than_the_input_is_e0305_exactly_when_torch_refuses():
    for n, k, d, ceil in [(4, 3, 2, False), (5, 3, 2, False), (4, 3, 2, True), (3, 2, 3, True)]:
        x = torch.zeros(1, 1, n)
        try:
            F.max_pool1d(x, k, 2, 0, d, ceil_mode=ceil)
            torch_ok = True
        except RuntimeError:
            torch_ok = False
        call = f"max_pool1d({k}, stride=2, dilation={d}, ceil_mode={_lit(ceil)})"
        if torch_ok:
            load((1, 1, n), call)
        else:
            d_ = diag((1, 1, n), call)
            assert d_.code == "E0305" and str(d * (k - 1) + 1) in d_.expected


# ---- per-side padding and "same"/"valid" ---------------------------------------------------


def fpad_reference(x: torch.Tensor, nd: int, mode: str, kernel, stride, fpad, dilation=1,
                   ceil=False, include_pad=True, divisor=None) -> torch.Tensor:
    """The documented meaning of per-side padding, written with torch: F.pad (-inf for max,
    zeros for avg), then the pool unpadded; count_include_pad=False divides each window's sum
    by its input elements (counted on a padded tensor of ones, at least 1)."""
    if mode == "max":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
        return fn(F.pad(x, fpad, value=float("-inf")), kernel, stride, 0, dilation, ceil)
    if nd == 1:  # avg_pool1d has no divisor_override: a 2-D pool over a unit height
        x = x.unsqueeze(-2)
        kernel = per_axis(kernel, 1)[0]
        stride = kernel if stride is None else per_axis(stride, 1)[0]
        kernel, stride = (1, kernel), (1, stride)
        fpad = tuple(fpad) + (0, 0)
        out = fpad_reference(x, 2, mode, kernel, stride, fpad, 1, ceil, include_pad, divisor)
        return out.squeeze(-2)
    fn = (None, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    padded = F.pad(x, fpad)
    if divisor is not None:
        return fn(padded, kernel, stride, 0, ceil, True, divisor)
    if include_pad:
        return fn(padded, kernel, stride, 0, ceil)
    sums = fn(padded, kernel, stride, 0, ceil, True, 1)
    counts = fn(F.pad(torch.ones_like(x), fpad), kernel, stride, 0, ceil, True, 1)
    return sums / counts.clamp(min=1)


def assert_same_values(got, want, what=""):
    """Equal, -inf and NaN included (np.testing treats matching infs and NaNs as equal)."""
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


PER_SIDE_CASES = [
    # nd, shape, kernel, kw (padding per side in F.pad order)
    (1, (2, 3, 11), 3, {"stride": 2, "padding": (2, 1)}),
    (1, (2, 3, 11), 3, {"stride": 2, "padding": (0, 2), "ceil_mode": True}),
    (1, (2, 3, 10), 2, {"stride": 3, "padding": (3, 0)}),  # the first window is all padding
    (1, (1, 2, 1), 2, {"stride": 2, "padding": (1, 4), "ceil_mode": True}),  # size-1 input
    (1, (2, 5), 4, {"stride": 1, "padding": (1, 1)}),  # unbatched
    (2, (2, 3, 9, 11), 3, {"stride": 2, "padding": (0, 1, 1, 1)}),
    (2, (2, 3, 9, 11), (3, 2), {"stride": (2, 3), "padding": (2, 0, 0, 3), "ceil_mode": True}),
    (2, (1, 2, 5, 6), 2, {"stride": 2, "padding": (1, 2, 0, 1), "ceil_mode": True}),
    (2, (1, 2, 4, 4), 2, {"stride": 2, "padding": (4, 0, 0, 4)}),  # windows of padding only
    (2, (3, 7, 6), 3, {"stride": 1, "padding": (1, 1, 1, 1), "ceil_mode": True}),  # symmetric
    (2, (1, 1, 1, 1), 3, {"stride": 2, "padding": (1, 1, 2, 0)}),
    (3, (1, 2, 5, 6, 7), 2, {"stride": 2, "padding": (0, 1, 1, 0, 1, 1), "ceil_mode": True}),
    (3, (1, 2, 5, 6, 7), (3, 2, 2), {"stride": (1, 2, 3), "padding": (2, 0, 0, 1, 1, 1)}),
    (3, (2, 4, 3, 5), 2, {"stride": 2, "padding": (0, 0, 3, 0, 0, 2)}),  # unbatched
]


def _per_side_check(nd, shape, kernel, kw, mode, extra):
    op = f"{mode}_pool{nd}d"
    kw = {**kw, **extra}
    got, prog, t = _run_np(shape, op, kernel, **kw)
    x = torch.from_numpy(_input(shape, 0))
    want = fpad_reference(x, nd, mode, kernel, kw.get("stride"), kw["padding"],
                          kw.get("dilation", 1), kw.get("ceil_mode", False),
                          kw.get("count_include_pad", True), kw.get("divisor_override")).numpy()
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert_same_values(got, want, what=op)
    gen, _ = torch_outputs(prog, {"x": _input(shape, 0)}, {})
    assert_same_values(gen["y"], got, what=f"{op}: generated torch")
    return got


@pytest.mark.parametrize("nd,shape,kernel,kw", PER_SIDE_CASES,
                         ids=[f"side-{i}" for i in range(len(PER_SIDE_CASES))])
def test_per_side_padding_max_pool(nd, shape, kernel, kw):
    got = _per_side_check(nd, shape, kernel, kw, "max", {})
    _per_side_check(nd, shape, kernel, kw, "max", {"dilation": 2}) if min(
        shape[-nd:]) >= 3 else None
    assert not np.isnan(got).any()


AVG_EXTRAS = {"incl": {}, "excl": {"count_include_pad": False}, "div": {"divisor_override": 3}}


@pytest.mark.parametrize("nd,shape,kernel,kw,extra", [
    pytest.param(*case, extra, id=f"side-{i}-{name}")
    for i, case in enumerate(PER_SIDE_CASES) for name, extra in AVG_EXTRAS.items()
    if not (case[0] == 1 and name == "div")])  # F.avg_pool1d has no divisor_override
def test_per_side_padding_avg_pool(nd, shape, kernel, kw, extra):
    got = _per_side_check(nd, shape, kernel, kw, "avg", extra)
    assert np.isfinite(got).all()  # a window of padding only averages to 0, never NaN


def test_windows_of_padding_only():
    """Max: -inf (F.pad's -inf wins); average: 0 whether padding counts or not."""
    x = np.ones((1, 1, 3), np.float32)
    got = load((1, 1, 3), "max_pool1d(2, padding=(4, 0))").run({"x": x})["y"]
    np.testing.assert_array_equal(got, [[[-np.inf, -np.inf, 1.0]]])
    for excl in ("true", "false"):
        got = load((1, 1, 3), f"avg_pool1d(2, padding=(4, 0), count_include_pad={excl})"
                   ).run({"x": x})["y"]
        np.testing.assert_array_equal(got, [[[0.0, 0.0, 1.0 if excl == "false" else 1.0]]])
    got = load((1, 1, 3), "avg_pool1d(2, padding=(3, 0), count_include_pad=false)"
               ).run({"x": x})["y"]
    np.testing.assert_array_equal(got, [[[0.0, 1.0, 1.0]]])  # [pad, x0] counts one element


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_symmetric_per_side_equals_int_padding_in_floor_mode(nd, mode):
    shape = (2, 3) + (9, 8, 7)[:nd]
    one = _run_np(shape, f"{mode}_pool{nd}d", 3, stride=2, padding=1)[0]
    side = _run_np(shape, f"{mode}_pool{nd}d", 3, stride=2, padding=(1,) * (2 * nd))[0]
    np.testing.assert_array_equal(one, side)
    src = load(shape, f"{mode}_pool{nd}d(3, stride=2, padding={_lit((1,) * (2 * nd))})"
               ).to_torch_source()
    if (mode, nd) == ("avg", 3):  # F.pad first: torch's avg_pool3d checks the size it sees
        assert f"F.avg_pool3d(F.pad(x, {_lit((1,) * 6)}), kernel_size=3, stride=2)" in src
    else:
        assert f"F.{mode}_pool{nd}d(x, kernel_size=3, stride=2, padding=1)" in src


def test_symmetric_per_side_in_ceil_mode_keeps_a_window_in_the_right_padding():
    """padding=1 drops a ceil-mode window that would start in the right padding (torch);
    padding=(1, 1) pads first, as F.pad, so that window starts inside the padded input."""
    x = _input((1, 1, 5), 3)
    torch_int = F.max_pool1d(torch.from_numpy(x), 2, 2, 1, ceil_mode=True).numpy()
    got_int = load((1, 1, 5), "max_pool1d(2, stride=2, padding=1, ceil_mode=true)"
                   ).run({"x": x})["y"]
    got_side = load((1, 1, 5), "max_pool1d(2, stride=2, padding=(1, 1), ceil_mode=true)"
                    ).run({"x": x})["y"]
    np.testing.assert_array_equal(got_int, torch_int)
    assert torch_int.shape[-1] == 3 and got_side.shape[-1] == 4
    np.testing.assert_array_equal(got_side[..., :3], torch_int)
    assert got_side[0, 0, 3] == -np.inf  # [x5 = pad, pad]: padding only


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
def test_same_padding_keeps_the_size(nd, mode, kernel):
    shape = (2, 2) + (7, 6, 5)[:nd]
    kw = {"stride": 1, "padding": "same"}
    if mode == "max":
        kw["dilation"] = 2
    got, prog, t = _run_np(shape, f"{mode}_pool{nd}d", kernel, **kw)
    assert got.shape == shape == tuple(int(d) for d in t.shape)
    total = kw.get("dilation", 1) * (kernel - 1)
    fpad = (total // 2, total - total // 2) * nd  # the odd extra after the input, as torch
    want = fpad_reference(torch.from_numpy(_input(shape, 0)), nd, mode, kernel, 1, fpad,
                          kw.get("dilation", 1)).numpy()
    assert_same_values(got, want)
    gen, _ = torch_outputs(prog, {"x": _input(shape, 0)}, {})
    assert_same_values(gen["y"], got)
    if mode == "avg" and kernel % 2:  # symmetric: torch's own padding= says it
        want = getattr(F, f"avg_pool{nd}d")(torch.from_numpy(_input(shape, 0)), kernel, 1,
                                            kernel // 2).numpy()
        assert_close(got, want)


def test_valid_padding_is_no_padding():
    for nd in (1, 2, 3):
        shape = (1, 2) + (7, 6, 5)[:nd]
        for mode in ("max", "avg"):
            a = _run_np(shape, f"{mode}_pool{nd}d", 2, stride=2, padding="valid",
                        ceil_mode=True)[0]
            b = _run_np(shape, f"{mode}_pool{nd}d", 2, stride=2, ceil_mode=True)[0]
            np.testing.assert_array_equal(a, b)


def test_random_windows_equal_torch():
    """Many random window pools (1-3-D, every attribute, symmetric and per-side padding,
    sizes down to 1) on the NumPy kernel against torch, in float64."""
    rng = np.random.default_rng(7)
    ran = 0
    for _ in range(400):
        nd = int(rng.integers(1, 4))
        mode = ("max", "avg")[int(rng.integers(2))]
        n = tuple(int(v) for v in rng.integers(1, 8, nd))
        k = tuple(int(v) for v in rng.integers(1, 5, nd))
        s = tuple(int(v) for v in rng.integers(1, 4, nd))
        d = tuple(int(v) for v in rng.integers(1, 4, nd)) if mode == "max" else (1,) * nd
        ceil = bool(rng.integers(2))
        include = bool(rng.integers(2))
        divisor = int(rng.integers(1, 6)) if mode == "avg" and nd > 1 and rng.random() < .2 \
            else None
        per_side = bool(rng.integers(2))
        if per_side:
            pads = tuple((int(rng.integers(0, 5)), int(rng.integers(0, 5))) for _ in range(nd))
        else:
            pads = tuple((p, p) for p in (int(rng.integers(0, kk // 2 + 1)) for kk in k))
        x = rng.standard_normal((2, 3) + n)
        xt = torch.from_numpy(x)
        outs = [out_size(nn, kk, ss, dd, lo, hi, ceil, per_side)
                for nn, kk, ss, dd, (lo, hi) in zip(n, k, s, d, pads)]
        try:
            if per_side:
                want = fpad_reference(xt, nd, mode, k, s, fpad_order(pads), d, ceil, include,
                                      divisor)
            elif mode == "max":
                want = getattr(F, f"max_pool{nd}d")(xt, k, s, [p for p, _ in pads], d, ceil)
            else:
                extra = (divisor,) if nd > 1 else ()
                want = getattr(F, f"avg_pool{nd}d")(xt, k, s, [p for p, _ in pads], ceil,
                                                    include, *extra)
        except RuntimeError:
            # torch's avg_pool3d also refuses an input (padded by F.pad, not by padding=)
            # smaller than the kernel
            seen = [nn + lo + hi if per_side else nn for nn, (lo, hi) in zip(n, pads)]
            assert min(outs) < 1 or (mode == "avg" and nd == 3 and any(
                v < kk for v, kk in zip(seen, k))), (nd, mode, n, k, s, d, pads, ceil)
            continue
        for by_windows in (False, True):  # one view per tap, or window by window per axis
            got = pool_nchw(x, k, s, d, pads, ceil, per_side, mode, include, divisor,
                            by_windows=by_windows)
            what = str((nd, mode, n, k, s, d, pads, ceil, by_windows))
            assert got.shape == tuple(want.shape), what
            assert_same_values(got, want.numpy(), what=what)
        ran += 1
    assert ran > 250


# ---- lp pools ------------------------------------------------------------------------------


LP_CASES = [
    (1, (2, 3, 11), 2.0, 3, {}),
    (1, (2, 3, 11), 3.0, 3, {"stride": 2, "ceil_mode": True}),  # negative sums: NaN
    (1, (2, 3, 10), 1.5, 4, {"stride": 3, "ceil_mode": True}),  # x^1.5 of x < 0: NaN
    (1, (3, 7), 1.0, 2, {}),  # unbatched; p=1 is a signed sum
    (2, (2, 3, 9, 11), 2.0, 2, {}),
    (2, (2, 3, 9, 11), 2.0, (3, 2), {"stride": (2, 3), "ceil_mode": True}),
    (2, (1, 2, 5, 5), 4.0, 3, {"stride": 1}),
    (2, (1, 2, 7, 6), -1.0, 2, {}),
    (2, (1, 1, 1, 4), 2.0, (1, 3), {"stride": 2, "ceil_mode": True}),
    (3, (1, 2, 5, 6, 7), 2.0, 2, {}),
    (3, (1, 2, 5, 6, 7), 3.0, (2, 3, 2), {"stride": (1, 2, 3), "ceil_mode": True}),
]


@pytest.mark.parametrize("nd,shape,p,kernel,kw", LP_CASES,
                         ids=[f"lp-{i}" for i in range(len(LP_CASES))])
def test_lp_pool_equals_torch_including_nan(nd, shape, p, kernel, kw):
    op = f"lp_pool{nd}d"
    args = ", ".join([repr(p), _lit(kernel)] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(shape, f"{op}({args})")
    x = _input(shape, 1)
    got = prog.run({"x": x})["y"]
    want = getattr(F, op)(torch.from_numpy(x), p, kernel, **kw).numpy()
    assert got.shape == want.shape
    assert_same_values(got, want, what=op)
    gen, _ = torch_outputs(prog, {"x": x}, {})
    assert_same_values(gen["y"], got, what=f"{op}: generated")
    xp = np.abs(x) + 0.1  # positive inputs: no NaN, a real comparison of every value
    got = prog.run({"x": xp})["y"]
    want = getattr(F, op)(torch.from_numpy(xp), p, kernel, **kw).numpy()
    assert np.isfinite(got).all()
    assert_close(got, want, what=f"{op} positive")


def test_lp_pool_nan_where_torch_has_it():
    x = np.array([[[1.0, -2.0, 3.0, -4.0, 5.0]]], np.float32)
    got = load((1, 1, 5), "lp_pool1d(3, 2)").run({"x": x})["y"]
    want = F.lp_pool1d(torch.from_numpy(x), 3, 2).numpy()
    assert np.isnan(want).all() and np.isnan(got).all()


@pytest.mark.parametrize("p", ["1e999", "-1e999"])
def test_lp_pool_infinite_norm_is_max_of_abs(p):
    x = _input((2, 3, 7, 8), 2)
    prog = load(x.shape, f"lp_pool2d({p}, 3, stride=2, ceil_mode=true)")
    got = prog.run({"x": x})["y"]
    want = F.lp_pool2d(torch.from_numpy(x), float(p), 3, 2, ceil_mode=True).numpy()
    np.testing.assert_array_equal(got, want)
    assert 'float("' in prog.to_torch_source()
    gen, _ = torch_outputs(prog, {"x": x}, {})
    np.testing.assert_array_equal(gen["y"], got)


# ---- emitters, labels and diagnostics of the new attributes ------------------------------


def test_emitted_calls_of_new_attributes():
    def src(shape, call):
        return load(shape, call).to_torch_source()

    assert ("F.max_pool3d(x, kernel_size=(3, 2, 3), stride=2, padding=1, dilation=2, "
            "ceil_mode=True)") in src((1, 2, 9, 9, 9), "max_pool3d((3, 2, 3), stride=2, "
                                      "padding=1, dilation=2, ceil_mode=true)")
    assert ('F.max_pool2d(F.pad(x, (0, 1, 2, 0), value=float("-inf")), kernel_size=3, '
            'stride=2)') in src((1, 2, 9, 9), "max_pool2d(3, stride=2, padding=(0, 1, 2, 0))")
    assert ("F.avg_pool2d(F.pad(x, (0, 1, 2, 0)), kernel_size=3, stride=2, "
            "divisor_override=2)") in src((1, 2, 9, 9), "avg_pool2d(3, stride=2, "
                                          "padding=(0, 1, 2, 0), divisor_override=2)")
    assert "F.avg_pool1d(x, kernel_size=3, stride=1, padding=1)" in src(
        (1, 2, 9), 'avg_pool1d(3, stride=1, padding="same")')
    excl = src((1, 2, 9), "avg_pool1d(2, padding=(1, 0), count_include_pad=false)")
    assert "x.new_ones(1, *x.shape[-1:])" in excl and ".clamp(min=1.0 / 2)" in excl
    assert "F.lp_pool2d(x, 2.0, kernel_size=(3, 2), stride=2)" in src(
        (1, 2, 9, 9), "lp_pool2d(2, (3, 2), stride=2)")
    assert "F.lp_pool1d(x, 3.0, kernel_size=3)" in src((1, 2, 9), "lp_pool1d(3, (3,))")


def test_labels_of_new_attributes():
    def label(name, **kw):
        return OPS[name].label(OPS[name].attrs(**kw))

    assert label("max_pool3d", kernel=2) == "2x2x2"
    assert label("max_pool2d", kernel=3, stride=2, dilation=2) == "3x3, s2, d2"
    assert label("max_pool2d", kernel=3, padding=(0, 1, 1, 0)) == "3x3, p(0,1,1,0)"
    assert label("avg_pool1d", kernel=3, stride=1, padding="same") == "3, s1, same"
    assert label("avg_pool3d", kernel=2, divisor_override=3) == "2x2x2, /3"
    assert label("lp_pool2d", norm_type=2.0, kernel=3, ceil_mode=True) == "p=2, 3x3, ceil"


@pytest.mark.parametrize("shape,call,code,attr_col", [
    ((1, 2, 8), "lp_pool1d(0, 2)", "E0330", None),
    ((1, 2, 8, 8), "lp_pool2d(norm_type=0.0, kernel=2)", "E0330", None),
    ((1, 2, 8, 8), "avg_pool2d(2, divisor_override=0)", "E0331", None),
    ((1, 2, 8, 8, 8), "avg_pool3d(2, divisor_override=0)", "E0331", None),
    ((1, 2, 8, 8), "max_pool2d(2, dilation=0)", "E0301", None),
    ((1, 2, 8, 8), "max_pool2d(2, padding=(1, 2, 3))", "E0320", None),
    ((1, 2, 8, 8), "max_pool2d(2, padding=(1, -1, 0, 0))", "E0320", None),
    ((1, 2, 8, 8), 'avg_pool2d(2, padding="full")', "E0320", None),
    ((1, 2, 8, 8), 'max_pool2d(3, stride=2, padding="same")', "E0321", None),
    ((1, 2, 8, 8), "max_pool2d(3, stride=1, padding=(2, 1))", "E0301", None),
    ((1, 2, 5), "max_pool1d(3, dilation=3)", "E0305", None),
    ((1, 2, 4, 4, 4), "avg_pool3d((2, 5, 2))", "E0305", None),
    ((2, 8), "max_pool3d(2)", "E0301", None),
    ((1, 2, 2, 6, 6), "avg_pool3d(3, padding=1)", "E0305", None),  # torch refuses it too
    ((1, 2, 2, 6, 6), "lp_pool3d(2, (3, 1, 1), stride=2, ceil_mode=true)", "E0305", None),
])
def test_bad_new_pool_calls(shape, call, code, attr_col):
    d = diag(shape, call)
    assert d.code == code, (d.code, d.message)
    assert d.span.line == 3


def test_padding_over_half_the_kernel_suggests_per_side():
    d = diag((1, 2, 8, 8), "max_pool2d(2, padding=2)")
    assert d.code == "E0301" and "per-side" in d.message and d.expected == "padding <= 1"
    load((1, 2, 8, 8), "max_pool2d(2, padding=(2, 2, 2, 2))")  # per side: any amount


def test_attribute_names_are_torchs():
    assert set(OPS["max_pool3d"].attrs.model_fields) == {
        "kernel", "stride", "padding", "dilation", "ceil_mode"}
    assert set(OPS["avg_pool2d"].attrs.model_fields) == {
        "kernel", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"}
    assert "divisor_override" not in OPS["avg_pool1d"].attrs.model_fields  # as in torch
    assert OPS["lp_pool2d"].positional == ("norm_type", "kernel")


@pytest.mark.parametrize("call", [
    "max_pool2d(3, stride=2, padding=(0, 1, 1, 0), ceil_mode=true)",
    "avg_pool2d(3, stride=2, padding=(2, 0, 0, 1), ceil_mode=true, count_include_pad=false)",
    "max_pool2d(2, stride=3, dilation=2, ceil_mode=true)",
    'avg_pool2d((2, 3), stride=1, padding="same")',
])
def test_symbolic_sizes_with_new_attributes(call):
    """The shape rule's symbolic output size is the kernel's (and torch's) at every size."""
    prog = load(("B", 2, "H", "W"), call)
    for h, w in ((5, 6), (6, 5), (7, 9), (8, 8)):
        np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 1, "H": h, "W": w})
        assert np_out["y"].shape == t_out["y"].shape


def test_huge_kernel_with_padding_far_past_the_input_reduces_by_windows():
    """2**20 taps reach the input across three far-apart windows: reduced window by window
    (ops/pool.py MAX_TAP_VIEWS), not one view per tap."""
    big = 2 ** 20
    x = _input((1, 2, 5), 4)
    got = load((1, 2, 5), f"max_pool1d({big}, stride={big // 2}, padding=({big}, {big}))"
               ).run({"x": x})["y"]
    top = x.max(axis=2)
    np.testing.assert_array_equal(got, np.stack([np.full_like(top, -np.inf), top, top], -1))
    got = load((1, 2, 5), f"avg_pool1d({big}, stride={big // 2}, padding=({big}, {big}), "
                          "count_include_pad=false)").run({"x": x})["y"]
    mean = x.mean(axis=2)
    assert_close(got, np.stack([np.zeros_like(mean), mean, mean], -1))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_both_reductions_keep_channels_last_and_agree(nd):
    rng = np.random.default_rng(nd)
    shape = (2,) + (9, 8, 7)[:nd] + (4,)
    x = np.moveaxis(rng.standard_normal(shape).astype(np.float32), -1, 1)  # channels-last
    k, s, d = (3,) * nd, (2,) * nd, (2,) * nd
    pads = ((1, 2),) * nd
    for mode in ("max", "avg"):
        dd = d if mode == "max" else (1,) * nd
        a = pool_nchw(x, k, s, dd, pads, True, True, mode, False, by_windows=False)
        b = pool_nchw(x, k, s, dd, pads, True, True, mode, False, by_windows=True)
        assert_close(a, b, what=mode)
        assert a.strides[1] < a.strides[-1] and b.strides[1] < b.strides[-1]
