"""Tests of dslc/ops/resample.py: pad, interpolate/upsample, pixel_shuffle, pixel_unshuffle and
channel_shuffle against torch.nn.functional, kernel by kernel and through the language."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.base import RunCtx, ShapeError
from dslc.ops.registry import OPS
from dslc.ops.resample import (
    InterpolateAttrs,
    axis_taps,
    channel_shuffle_array,
    gather,
    interpolate_array,
    pad_array,
    pad_source_index,
    pixel_shuffle_array,
    pixel_unshuffle_array,
    scaled_size,
)
from dslc.types import tensor
from tests.helpers import assert_close, compare_numpy_torch

RNG = np.random.default_rng(0)


def load(body: str):
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


def run_error(prog, inputs):
    with pytest.raises(DslcError) as exc:
        prog.run(inputs, {})
    return exc.value.diagnostics[0]


def randn(*shape, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# ---- pad ---------------------------------------------------------------------------------

PAD_CASES = [
    # (mode, input shape, pad)
    ("constant", (5,), (2, 3)),
    ("constant", (2, 3, 4), (1, 1, 0, 2, 3, 1)),
    ("constant", (2, 3, 4, 5), (1, 0, 2, 1, 0, 1, 1, 2)),
    ("constant", (2, 3, 6), (-2, 3, 1, -1)),
    ("constant", (3, 4), (-4, 2)),  # crops the whole axis and pads it again
    ("constant", (2, 3), ()),
    ("reflect", (2, 3, 5), (4, 4)),
    ("reflect", (3, 5), (1, 2)),
    ("reflect", (2, 3, 4, 5), (4, 0, 3, 2)),
    ("reflect", (2, 3, 4, 5), (-2, 3, 1, -3)),
    ("reflect", (1, 5), (-6, 3)),  # crop past the left edge: torch reflects the index
    ("reflect", (2, 2, 3, 4, 5), (1, 2, 2, 0, 1, 1)),
    ("reflect", (2, 3, 4, 5), (1, 1, 0, 0)),
    ("replicate", (2, 3, 4), (7, 1)),
    ("replicate", (3, 1, 1), (2, 3, 1, 0)),
    ("replicate", (2, 3, 4, 5), (-3, 2, 4, -1)),
    ("replicate", (1, 2, 2, 3, 4), (1, 2, 0, 3, 2, 2)),
    ("circular", (2, 3, 5), (5, 5)),
    ("circular", (2, 3, 4, 5), (2, 1, 4, 3)),
    ("circular", (3, 4, 5), (-2, 3, 1, -1)),  # wraps around what the crop leaves
    ("circular", (2, 5), (3, -2)),
    ("circular", (1, 2, 3, 4, 5), (1, 0, 2, 3, 3, 1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,shape,pad", PAD_CASES)
def test_pad_kernel_matches_torch(mode, shape, pad, dtype):
    x = randn(*shape, dtype=dtype)
    got = pad_array(x, pad, mode)
    ref = F.pad(torch.from_numpy(x), pad, mode=mode).numpy()
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("mode,shape,pad", [c for c in PAD_CASES if c[0] != "constant"])
def test_pad_kernel_equals_its_plain_gather(mode, shape, pad):
    """The kernel slices the unchanged run and gathers only the borders; the plain version
    gathers every output position through pad_source_index."""
    x = randn(*shape)
    want = x
    for i in range(len(pad) // 2):
        axis = x.ndim - 1 - i
        want = np.take(want, pad_source_index(mode, want.shape[axis], pad[2 * i], pad[2 * i + 1]),
                       axis=axis)
    np.testing.assert_array_equal(pad_array(x, pad, mode), want)


@pytest.mark.parametrize("value", [1.5, -2.0, 0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.bool_])
def test_pad_constant_value_converts_as_torch_does(value, dtype):
    x = RNG.integers(-5, 5, (2, 3, 4)).astype(dtype)
    got = pad_array(x, (1, 2, 0, 1), "constant", value)
    ref = F.pad(torch.from_numpy(x), (1, 2, 0, 1), value=value).numpy()
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("value", ["1e30", "1e400", "-3e9"])
def test_pad_fill_value_must_fit_an_integer_tensor(value):
    with pytest.raises(RuntimeError):
        F.pad(torch.zeros(2, 4, dtype=torch.int32), (1, 1), value=float(value))
    d = diag(f"input i: i32[B, 4]\noutput y = i -> pad((1, 1), value={value})")
    assert d.code == "E0360" and "i32" in d.message


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_integer_tensors(mode):
    x = RNG.integers(0, 100, (2, 3, 5)).astype(np.int64)
    np.testing.assert_array_equal(pad_array(x, (2, 1), mode),
                                  F.pad(torch.from_numpy(x), (2, 1), mode=mode).numpy())


# Calls torch refuses, and the rule that refuses them here.
PAD_REFUSED = [
    ("constant", (2, 3, 5), (1,), "E0360"),
    ("constant", (3, 5), (1, 1, 1, 1, 1, 1), "E0360"),
    ("reflect", (5,), (1, 1), "E0360"),
    ("reflect", (2, 3, 4, 5), (1, 1), "E0360"),
    ("replicate", (3, 4, 5), (1, 1, 1, 1, 1, 1), "E0360"),
    ("circular", (2, 2, 2, 2, 3, 4), (1, 1, 1, 1, 1, 1), "E0360"),
    ("reflect", (2, 3, 5), (5, 0), "E0361"),
    ("reflect", (2, 3, 4, 5), (0, 0, 1, 4), "E0361"),
    ("reflect", (2, 3, 5), (-3, -2), "E0361"),
    ("replicate", (2, 3, 5), (-5, 0), "E0361"),
    ("circular", (2, 3, 5), (6, 0), "E0361"),
    ("circular", (1, 1, 5), (-4, 3), "E0361"),
    ("constant", (2, 3, 5), (-6, 2), "E0361"),
]


@pytest.mark.parametrize("mode,shape,pad,code", PAD_REFUSED)
def test_pad_refuses_what_torch_refuses(mode, shape, pad, code):
    x = randn(*shape)
    with pytest.raises((RuntimeError, NotImplementedError)):
        F.pad(torch.from_numpy(x), pad, mode=mode)
    with pytest.raises(ShapeError) as exc:
        pad_array(x, pad, mode)
    assert exc.value.code == code
    # The shape rule says the same before anything runs.
    with pytest.raises(ShapeError) as exc:
        OPS["pad"].shape(OPS["pad"].attrs(pad=pad, mode=mode), [tensor("f32", *shape)])
    assert exc.value.code == code


def test_pad_value_only_with_constant():
    """torch refuses a fill value with the other modes, except 0, which it ignores."""
    x = randn(1, 2, 3)
    with pytest.raises(RuntimeError, match="doesn't take in value"):
        F.pad(torch.from_numpy(x), (1, 1), mode="reflect", value=2.0)
    d = diag("input x: f32[B, 2, 3]\noutput y = x -> pad((1, 1), \"reflect\", 2.0)")
    assert d.code == "E0360" and "value" in d.message
    np.testing.assert_array_equal(
        pad_array(x, (1, 1), "reflect", 0.0),
        F.pad(torch.from_numpy(x), (1, 1), mode="reflect", value=0.0).numpy())


def test_pad_in_the_language_with_runtime_dims():
    prog = load("input x: f32[B, 3, H, W]\n"
                "a = x -> pad((1, 2, 3, 0), mode=\"reflect\")\n"
                "b = x -> pad((-1, 1), value=2.5)\n"
                "c = pad(a, (2, 2, 1, 1), \"circular\")\n"
                "output b, c")
    types = [str(prog.graph.type_of(ref)) for _, ref in prog.graph.outputs]
    assert types == ["f32[B, 3, H, W]", "f32[B, 3, H+5, W+7]"]
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2, "H": 6, "W": 5})
    assert np_out["c"].shape == (2, 3, 11, 12) and np_out["b"].shape == (2, 3, 6, 5)
    src = prog.to_torch_source()
    assert "F.pad(x, (1, 2, 3, 0), mode='reflect')" in src
    assert "F.pad(x, (-1, 1), value=2.5)" in src


def test_pad_checks_runtime_sizes_when_it_runs():
    prog = load("input x: f32[B, 3, W]\noutput y = x -> pad((4, 4), mode=\"reflect\")")
    assert prog.run({"x": randn(2, 3, 5)}, {})["y"].shape == (2, 3, 13)
    d = run_error(prog, {"x": randn(2, 3, 4)})
    assert d.code == "E0507" and "reflect" in d.message


# ---- interpolate: the index rules ----------------------------------------------------------

MODE_RANKS = {"nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "linear": (3,),
              "bilinear": (4,), "bicubic": (4,), "trilinear": (5,), "area": (3, 4, 5)}


def interp_kernel(x: np.ndarray, **attrs) -> np.ndarray:
    """The registered kernel, attrs in, array out (the size rule and the index rule)."""
    op = OPS["interpolate"]
    a = InterpolateAttrs(**attrs)
    out_t = op.shape(a, [tensor({np.float32: "f32", np.float64: "f64"}[x.dtype.type],
                                *x.shape)])[0]
    y = op.numpy(a, [x], RunCtx(train=False, rng=np.random.default_rng(0)))[0]
    assert y.shape == tuple(int(d) for d in out_t.shape), (y.shape, out_t)
    assert y.dtype == x.dtype
    return y


def torch_interp(x: np.ndarray, **attrs) -> np.ndarray:
    return F.interpolate(torch.from_numpy(x), **attrs).numpy()


def _sweep():
    """Every mode at every rank it takes, align_corners both ways, sizes and scale factors up
    and down (odd sizes, non-integer scales, size-1 axes, recompute_scale_factor)."""
    cases = []
    rng = np.random.default_rng(7)
    scales = [0.3, 0.45, 0.5, 0.55, 0.6, 0.75, 1.1, 1.3, 1.5, 1.7, 2.0, 2.1, 2.5, 3.0, 1 / 3]
    for mode, ranks in MODE_RANKS.items():
        for rank in ranks:
            nd = rank - 2
            aligns = [None] if mode.startswith("nearest") or mode == "area" else [False, True]
            for align in aligns:
                for i in range(8):
                    ins = tuple(int(v) for v in rng.integers(1, 10, nd))
                    if i % 3 == 0:
                        attrs = {"size": tuple(int(v) for v in rng.integers(1, 13, nd))}
                    else:
                        s = tuple(float(rng.choice(scales)) for _ in range(nd))
                        if min(scaled_size(n, f) for n, f in zip(ins, s)) < 1:
                            s = tuple(max(f, 1.0) for f in s)
                        attrs = {"scale_factor": s if i % 2 else s[0]}
                        if not i % 2:
                            ins = (ins[0],) * nd
                        if i % 3 == 2:
                            attrs["recompute_scale_factor"] = True
                    attrs["mode"] = mode
                    if align is not None:
                        attrs["align_corners"] = align
                    cases.append(pytest.param((2, 3) + ins, attrs,
                                              id=f"{mode}-{rank}d-{align}-{i}"))
    return cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,attrs", _sweep())
def test_interpolate_matches_torch(shape, attrs, dtype):
    x = randn(*shape, dtype=dtype)
    got = interp_kernel(x, **attrs)
    ref = torch_interp(x, **attrs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
@pytest.mark.parametrize("rank", [3, 4, 5])
def test_nearest_picks_torch_pixels_for_every_size_pair(mode, rank):
    """Exact equality of the pixel picked, for every input size 1..16 and output size 1..40
    (and the scale factors that give them), in each of torch's code paths: 1-D and 3-D
    generic; 2-D vectorised (out_h + out_w <= 128) and generic (wider)."""
    others = {3: [()], 4: [(1,), (100,)], 5: [(1, 1)]}[rank]
    for other in others:
        for n_in in range(1, 17):
            x = np.broadcast_to(np.arange(1, n_in + 1, dtype=np.float32),
                                (1, 1) + other + (n_in,)).copy()
            for n_out in range(1, 41):
                attrs = {"size": other + (n_out,), "mode": mode}
                np.testing.assert_array_equal(interp_kernel(x, **attrs),
                                              torch_interp(x, **attrs),
                                              err_msg=f"{n_in} -> {n_out}, {other}")
            for s in (0.45, 0.6, 1.1, 1.3, 1.7, 2.1, 2.6):
                if scaled_size(n_in, s) < 1:
                    continue
                attrs = {"scale_factor": (1.0,) * len(other) + (s,), "mode": mode}
                np.testing.assert_array_equal(interp_kernel(x, **attrs),
                                              torch_interp(x, **attrs),
                                              err_msg=f"{n_in} x {s}, {other}")


@pytest.mark.parametrize("mode,rank", [("linear", 3), ("bilinear", 4), ("bicubic", 4),
                                       ("trilinear", 5)])
@pytest.mark.parametrize("align", [False, True])
def test_linear_modes_for_every_size_pair(mode, rank, align):
    for n_in in range(1, 13):
        x = randn(1, 2, *((1,) * (rank - 3)), n_in)
        for n_out in range(1, 30):
            attrs = {"size": (1,) * (rank - 3) + (n_out,), "mode": mode, "align_corners": align}
            np.testing.assert_allclose(interp_kernel(x, **attrs), torch_interp(x, **attrs),
                                       rtol=1e-5, atol=1e-5, err_msg=f"{n_in} -> {n_out}")


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_area_for_every_size_pair(rank):
    """Area is adaptive average pooling: windows [floor(o·n/m), ceil((o+1)·n/m))."""
    for n_in in range(1, 14):
        x = randn(2, 3, *((2,) * (rank - 3)), n_in)
        for n_out in range(1, 20):
            attrs = {"size": (2,) * (rank - 3) + (n_out,), "mode": "area"}
            np.testing.assert_allclose(interp_kernel(x, **attrs), torch_interp(x, **attrs),
                                       rtol=1e-5, atol=1e-6, err_msg=f"{n_in} -> {n_out}")


def test_area_keeps_an_infinite_value_in_its_own_window():
    x = np.zeros((1, 1, 7), np.float32)
    x[0, 0, 3] = np.inf
    got = interp_kernel(x, size=3, mode="area")
    np.testing.assert_array_equal(got, torch_interp(x, size=3, mode="area"))
    assert np.isinf(got[0, 0, 1]) and np.isfinite(got[0, 0, [0, 2]]).all()


@pytest.mark.parametrize("n_in,n_out", [(4, 8), (5, 15), (3, 3), (6, 4), (4, 9), (1, 5)])
@pytest.mark.parametrize("mode", ["nearest", "linear", "bicubic"])
def test_gather_equals_np_take(n_in, n_out, mode):
    """The run-copying gather the kernels use is np.take, on every tap of every mode."""
    x = randn(2, 3, n_in)
    for idx, _w in axis_taps(mode, n_in, n_out, False, None, np.float32):
        np.testing.assert_array_equal(gather(x, idx, 2), np.take(x, idx, axis=2))
        np.testing.assert_array_equal(gather(x[:, :, None], idx, 3),
                                      np.take(x[:, :, None], idx, axis=3))


def test_nearest_edge_cases_of_torch():
    # 2-D, small output: torch copies when a size is kept and halves when it doubles, even
    # though scale_factor 1.1 / 2.1 would map other pixels ...
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    y = interp_kernel(x, scale_factor=(1.1, 2.1))
    np.testing.assert_array_equal(y[0, 0, :, 0], [0, 5, 10, 15, 20])
    np.testing.assert_array_equal(y[0, 0, 0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_array_equal(y, torch_interp(x, scale_factor=(1.1, 2.1)))
    # ... while 1-D maps by 1 / 1.1: floor(dst / 1.1) = 0, 0, 1, 2, 3.
    x1 = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    np.testing.assert_array_equal(interp_kernel(x1, scale_factor=1.1)[0, 0], [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(interp_kernel(x1, scale_factor=1.1),
                                  torch_interp(x1, scale_factor=1.1))
    # nearest-exact, size 2 -> 55: output 27 sits on the pixel edge; torch's fused
    # multiply-add puts it on pixel 1.
    x2 = np.array([[[10.0, 20.0]]], np.float32).reshape(1, 1, 1, 2, 1)
    y2 = interp_kernel(x2, size=(1, 55, 1), mode="nearest-exact")
    assert y2[0, 0, 0, 27, 0] == torch_interp(x2, size=(1, 55, 1),
                                              mode="nearest-exact")[0, 0, 0, 27, 0]
    # nearest and nearest-exact differ: floor(dst * scale) against round.
    x3 = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    np.testing.assert_array_equal(interp_kernel(x3, size=3)[0, 0], [0, 1, 2])
    np.testing.assert_array_equal(interp_kernel(x3, size=3, mode="nearest-exact")[0, 0],
                                  [0, 2, 3])


@pytest.mark.parametrize("recompute", [None, True])
def test_scale_factor_maps_coordinates_by_its_inverse(recompute):
    """scale 1.7 on size 5 gives 8 pixels; torch maps them by 1/1.7, or by 5/8 when it
    recomputes the scale: the two results differ, and each equals torch."""
    x = randn(1, 2, 5)
    kw = {"scale_factor": 1.7, "mode": "linear", "recompute_scale_factor": recompute}
    np.testing.assert_allclose(interp_kernel(x, **kw), torch_interp(x, **kw), rtol=1e-6,
                               atol=1e-6)
    other = interp_kernel(x, **{**kw, "recompute_scale_factor": not recompute})
    assert not np.allclose(interp_kernel(x, **kw), other)


def test_output_size_is_torch_float64_product():
    for n in range(1, 60):
        for s in (0.57, 0.6, 0.7, 1.1, 1.7, 2.3, 1 / 3, 2 / 3, 0.1):
            want = F.interpolate(torch.zeros(1, 1, n), scale_factor=s).shape[-1] \
                if int(n * s) >= 1 else 0
            assert scaled_size(n, s) == want, (n, s)
    # 5 * 0.6 is 3.0 in float64 (3 exactly would give 2.999...), 100 * 0.57 is 56.999...
    assert scaled_size(5, 0.6) == 3 and scaled_size(100, 0.57) == 56


def test_interpolate_half_precision_is_close():
    x = randn(1, 2, 4, 5).astype(np.float16)
    y = interpolate_array(x, [7, 3], "bicubic", False, [None, None])
    ref = F.interpolate(torch.from_numpy(x), size=(7, 3), mode="bicubic").numpy()
    assert y.dtype == np.float16
    assert_close(y, ref, rtol=2e-3, atol=2e-3)


# ---- interpolate: the language ----------------------------------------------------------


def test_interpolate_with_runtime_dims():
    prog = load("input x: f32[B, 4, H, W]\ninput skip: f32[B, 2, H2, W2]\n"
                "a = x -> upsample(scale_factor=2, mode=\"bilinear\", align_corners=true)\n"
                "b = x -> interpolate(size=(skip.shape[2], skip.shape[3]), mode=\"bicubic\")\n"
                "c = x -> interpolate(scale_factor=(1.5, 0.5), mode=\"nearest-exact\")\n"
                "output a, b, c")
    types = [str(prog.graph.type_of(ref)) for _, ref in prog.graph.outputs]
    assert types == ["f32[B, 4, 2*H, 2*W]", "f32[B, 4, H2, W2]",
                     "f32[B, 4, floor(3*H/2), floor(W/2)]"]
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2, "H": 5, "W": 7, "H2": 9, "W2": 4})
    assert np_out["c"].shape == (2, 4, 7, 3)
    src = prog.to_torch_source()
    assert "F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=True)" in src
    assert "F.interpolate(x, size=(skip.shape[2], skip.shape[3]), mode='bicubic')" in src


def test_interpolate_checks_runtime_sizes_when_it_runs():
    prog = load("input x: f32[B, 2, H, 4]\n"
                "a = x -> interpolate(scale_factor=0.5)\n"
                "b = x -> interpolate(size=(H - 2, 3), mode=\"bilinear\")\n"
                "output a, b")
    out = prog.run({"x": randn(1, 2, 5, 4)}, {})
    assert out["a"].shape == (1, 2, 2, 2) and out["b"].shape == (1, 2, 3, 3)
    d = run_error(prog, {"x": randn(1, 2, 1, 4)})
    assert d.code == "E0507" and "empty" in d.message


def test_upsample_equals_nn_upsample():
    prog = load("input x: f32[2, 3, 5, 4]\n"
                "output y = x -> upsample(scale_factor=1.5, mode=\"bicubic\")")
    x = randn(2, 3, 5, 4)
    y = prog.run({"x": x}, {})["y"]
    ref = torch.nn.Upsample(scale_factor=1.5, mode="bicubic")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_interpolate_macs():
    prog = load("input x: f32[B, 3, 4, 5]\n"
                "a = x -> interpolate(size=(8, 10), mode=\"bilinear\")\n"
                "b = x -> interpolate(size=(8, 10), mode=\"bicubic\")\n"
                "c = x -> interpolate(size=(8, 10))\n"
                "output a, b, c")
    b = D.symbol("B")
    macs = {n.name: D.as_dim(OPS[n.op].macs(n.attrs, [prog.graph.type_of(r) for r in n.inputs],
                                            n.types))
            for n in prog.graph.order() if n.op == "interpolate"}
    assert macs == {"a": 3 * 80 * 4 * b, "b": 3 * 80 * 16 * b, "c": 0}


def test_interpolate_errors():
    base = "input x: f32[B, 3, 8, 8]\noutput y = x -> "
    d = diag(base + "interpolate(scale_factor=2, mode=\"cubic\")")
    assert d.code == "E0363" and d.found == "'cubic'"
    d = diag(base + "interpolate(scale_factor=0.5, mode=\"area\", align_corners=false)")
    assert d.code == "E0363"
    d = diag(base + "interpolate(scale_factor=2, mode=\"linear\")")
    assert d.code == "E0363" and "nearest" in d.expected and "bilinear" in d.expected
    d = diag(base + "interpolate(scale_factor=2, align_corners=false)")
    assert d.code == "E0363" and "align_corners" in d.message
    d = diag(base + "interpolate()")
    assert d.code == "E0362" and d.found == "neither"
    d = diag(base + "interpolate(size=4, scale_factor=2)")
    assert d.code == "E0362" and d.found == "both"
    d = diag(base + "interpolate(size=(4, 4, 4))")
    assert d.code == "E0362" and "3 value(s)" in d.found
    d = diag(base + "interpolate(scale_factor=(2, 2, 2))")
    assert d.code == "E0362"
    d = diag(base + "interpolate(size=(0, 4))")
    assert d.code == "E0362" and "positive" in d.message
    d = diag(base + "interpolate(scale_factor=0.1)")
    assert d.code == "E0362" and "floor(8 * 0.1) = 0" in d.found
    d = diag(base + "interpolate(scale_factor=-2)")
    assert d.code == "E0362"
    d = diag(base + "interpolate(scale_factor=1e400)")
    assert d.code == "E0362" and "finite" in d.message
    d = diag(base + "interpolate(scale_factor=1e300)")
    assert d.code == "E0362" and "too large" in d.message
    d = diag(base + "interpolate(size=4, recompute_scale_factor=true)")
    assert d.code == "E0362"
    d = diag("input x: i64[B, 3, 8, 8]\noutput y = x -> interpolate(scale_factor=2)")
    assert d.code == "E0302"
    d = diag("input x: f32[B, 8]\noutput y = x -> interpolate(scale_factor=2)")
    assert d.code == "E0301"
    d = diag("input x: f32[B, 3, H, 8]\noutput y = x -> interpolate(scale_factor=1.7)")
    assert d.code == "E0364" and "H" in d.message
    # torch refuses the same calls
    x = torch.zeros(1, 3, 8, 8)
    for kw in ({"scale_factor": 2, "mode": "cubic"},
               {"scale_factor": 0.5, "mode": "area", "align_corners": False},
               {"scale_factor": 2, "mode": "linear"}, {"scale_factor": 2, "align_corners": False},
               {}, {"size": 4, "scale_factor": 2}, {"size": (4, 4, 4)}, {"size": (0, 4)},
               {"scale_factor": 0.1}, {"size": 4, "recompute_scale_factor": True}):
        with pytest.raises((ValueError, RuntimeError, NotImplementedError)):
            F.interpolate(x, **kw)


# ---- pixel_shuffle / pixel_unshuffle / channel_shuffle ------------------------------------


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 5), 2), ((18, 2, 1), 3), ((2, 1, 4, 2, 3), 2),
                                     ((1, 3, 2, 2), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_pixel_shuffle_matches_torch(shape, r, dtype):
    x = (randn(*shape) * 10).astype(dtype)
    np.testing.assert_array_equal(pixel_shuffle_array(x, r),
                                  F.pixel_shuffle(torch.from_numpy(x), r).numpy())


@pytest.mark.parametrize("shape,r", [((2, 3, 4, 6), 2), ((2, 3, 6), 3), ((2, 1, 2, 2, 4), 2),
                                     ((1, 2, 3, 3), 1)])
def test_pixel_unshuffle_matches_torch_and_inverts(shape, r):
    x = randn(*shape)
    y = pixel_unshuffle_array(x, r)
    np.testing.assert_array_equal(y, F.pixel_unshuffle(torch.from_numpy(x), r).numpy())
    np.testing.assert_array_equal(pixel_shuffle_array(y, r), x)


@pytest.mark.parametrize("shape,g", [((2, 6, 4, 5), 3), ((2, 8, 3), 2), ((1, 8, 2, 2, 2), 4),
                                     ((2, 3, 2), 1), ((2, 6, 1), 6)])
def test_channel_shuffle_matches_torch(shape, g):
    x = randn(*shape)
    np.testing.assert_array_equal(channel_shuffle_array(x, g),
                                  F.channel_shuffle(torch.from_numpy(x), g).numpy())
    np.testing.assert_array_equal(channel_shuffle_array(x, g),
                                  torch.nn.ChannelShuffle(g)(torch.from_numpy(x)).numpy())


def test_shuffles_in_the_language():
    prog = load("input x: f32[B, 12, H, W]\n"
                "a = x -> pixel_shuffle(2)\nb = x -> pixel_unshuffle(2)\n"
                "c = x -> channel_shuffle(3)\noutput a, b, c")
    types = [str(prog.graph.type_of(ref)) for _, ref in prog.graph.outputs]
    assert types == ["f32[B, 3, 2*H, 2*W]", "f32[B, 48, H/2, W/2]", "f32[B, 12, H, W]"]
    compare_numpy_torch(prog, bind={"B": 2, "H": 4, "W": 6})
    # H odd: torch refuses it at run time, and so does the interpreter, at the op.
    d = run_error(prog, {"x": randn(2, 12, 5, 6)})
    assert d.code == "E0507" and "divisible by 2" in d.message


def test_shuffle_errors():
    d = diag("input x: f32[B, 6, 4, 4]\noutput y = x -> pixel_shuffle(2)")
    assert d.code == "E0365" and "6" in d.found
    d = diag("input x: f32[B, 6, 5, 4]\noutput y = x -> pixel_unshuffle(2)")
    assert d.code == "E0365" and "height" in d.message
    d = diag("input x: f32[B, 7, 4]\noutput y = x -> channel_shuffle(2)")
    assert d.code == "E0365"
    d = diag("input x: f32[B, 8, 4]\noutput y = x -> channel_shuffle(0)")
    assert d.code == "E0365" and "positive" in d.message
    d = diag("input x: f32[8, 4]\noutput y = x -> pixel_shuffle(2)")
    assert d.code == "E0301"
    for call in (lambda: F.pixel_shuffle(torch.zeros(1, 6, 4, 4), 2),
                 lambda: F.pixel_unshuffle(torch.zeros(1, 6, 5, 4), 2),
                 lambda: F.channel_shuffle(torch.zeros(1, 7, 4), 2),
                 lambda: F.channel_shuffle(torch.zeros(1, 8, 4), 0),
                 lambda: F.pixel_shuffle(torch.zeros(8, 4), 2)):
        with pytest.raises(RuntimeError):
            call()
