"""ONNX lowerings of the resampling ops: pad (Pad, Slice for crops), interpolate/upsample
(Resize; mode area as adaptive average bins), pixel_shuffle (DepthToSpace CRD), pixel_unshuffle
and channel_shuffle (Reshape, Transpose, Reshape)."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.backends.onnx_builder import Lower
from dslc.backends.onnx_lower_conv import circular_pad, onnx_pads
from dslc.backends.onnx_lower_core import reduce
from dslc.backends.onnx_lower_pool import bin_matrix
from dslc.types import numpy_dtype

_BIG = 2 ** 62

# ---- pad -----------------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


def _pairs(lw: Lower) -> list[tuple[int, int, int]]:
    """(axis, left, right) per padded axis (F.pad's pairs run from the last axis back)."""
    pad = lw.attrs.pad
    rank = lw.in_types[0].rank
    return [(rank - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]


def _crop(lw: Lower, x: str, pairs) -> str:
    """Slice off the negative pads (crops) of each axis."""
    cut = [(ax, max(-lo, 0), max(-hi, 0)) for ax, lo, hi in pairs if lo < 0 or hi < 0]
    if not cut:
        return x
    starts = [lo for _, lo, _ in cut]
    ends = [-hi if hi else _BIG for _, _, hi in cut]
    return lw.op("Slice", [x, lw.ints(starts), lw.ints(ends), lw.ints([ax for ax, _, _ in cut])])


def _pad(lw: Lower, node, ins):
    """Pad of the positive pads (every axis listed; the fill Cast as torch's fill, integer
    tensors truncating it), and a Slice for the crops: after the Pad for constant, reflect
    and replicate (torch reflects about the uncropped edges), before it for circular (torch
    wraps around what the crop leaves). circular below opset 19: Slice + Concat."""
    a = lw.attrs
    t = lw.in_types[0]
    pairs = _pairs(lw)
    grow = [(ax, max(lo, 0), max(hi, 0)) for ax, lo, hi in pairs]
    x = ins[0]
    if a.mode == "circular":
        x = _crop(lw, x, pairs)
    if any(lo or hi for _, lo, hi in grow):
        if a.mode == "circular" and lw.opset < 19:
            x = circular_pad(lw, x, grow)
        else:
            full = [(0, 0)] * t.rank
            for ax, lo, hi in grow:
                full[ax] = (lo, hi)
            inputs = [x, lw.ints(onnx_pads(tuple(full)))]
            if a.mode == "constant" and a.value:
                fill = np.array(a.value).astype(numpy_dtype(t.dtype))
                inputs.append(lw.const(fill, "fill"))
            x = lw.op("Pad", inputs, mode=_PAD_MODES[a.mode])
    if a.mode != "circular":
        x = _crop(lw, x, pairs)
    if x == ins[0]:
        x = lw.op("Identity", [x])
    return [x]


# ---- interpolate / upsample ----------------------------------------------------------------

_RESIZE_MODES = {"nearest": "nearest", "nearest-exact": "nearest", "linear": "linear",
                 "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}


def _area(lw: Lower, x: str, n_outs: list) -> str:
    """Mode area is torch's adaptive average pooling: per axis, ReduceMean for output 1,
    else MatMul with the [n, o] averaging bins (the axis Transposed last)."""
    t = lw.in_types[0]
    rank = t.rank
    for i, out in enumerate(n_outs):
        axis = 2 + i
        if D.equal(D.as_dim(t.shape[axis]), D.as_dim(out)) is True:
            continue  # the same size: each bin one element
        n = D.value(D.as_dim(t.shape[axis]))
        o = D.value(D.as_dim(out))
        if o == 1:
            x = reduce(lw, "ReduceMean", x, [axis], True)
            continue
        if n is None or o is None:
            raise lw.unsupported("mode 'area' over a runtime-sized axis",
                                 "bind the size with --bind")
        m = lw.const(bin_matrix(n, o, numpy_dtype(t.dtype)), f"{lw.label}.bins")
        if axis == rank - 1:
            x = lw.op("MatMul", [x, m])
            continue
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        y = lw.op("MatMul", [lw.op("Transpose", [x], perm=perm), m])
        x = lw.op("Transpose", [y], perm=perm)
    return x


def _factors(a, nd: int) -> list[float | None]:
    """The scale factor torch maps each axis's coordinates by (None: in/out)."""
    if a.scale_factor is None or a.recompute_scale_factor:
        return [None] * nd
    return list(a.scale_factor) if isinstance(a.scale_factor, tuple) else [a.scale_factor] * nd


def _nearest_gather(lw: Lower, x: str, outs: list) -> str | None:
    """Nearest modes over fixed sizes, unless every axis is an integer upscale (where
    Resize's x / scale picks exactly the kernel's pixels): a Gather per axis with the
    kernel's own source indices (dslc.ops.resample.axis_taps), so a pixel edge within float
    rounding of an index is decided as dslc (and torch) decide it. None: Resize is exact."""
    from dslc.ops.resample import axis_taps, legacy_nearest

    a = lw.attrs
    t = lw.in_types[0]
    sizes = [D.value(D.as_dim(d)) for d in t.shape[2:]]
    out_sizes = [D.value(D.as_dim(d)) for d in outs]
    if None in sizes or None in out_sizes:
        return None
    factors = _factors(a, len(sizes))
    if all(o % n == 0 and f in (None, o // n) for n, o, f in zip(sizes, out_sizes, factors)):
        return None
    ft = np.promote_types(numpy_dtype(t.dtype), np.float32).type
    legacy = legacy_nearest(t.rank, out_sizes)
    for i, (n, o, f) in enumerate(zip(sizes, out_sizes, factors)):
        idx = axis_taps(a.mode, n, o, False, f, ft, legacy)[0][0]
        if o == n and np.array_equal(idx, np.arange(n)):
            continue
        x = lw.op("Gather", [x, lw.const(idx.astype(np.int64), f"{lw.label}.index")], axis=2 + i)
    return x


def _interpolate(lw: Lower, node, ins):
    """Resize: nearest with coordinate_transformation_mode asymmetric and nearest_mode floor
    (torch's floor(dst · scale); over fixed sizes only for integer upscales, else a Gather
    of the kernel's indices); nearest-exact half_pixel with round_prefer_ceil; linear
    modes half_pixel or align_corners; bicubic cubic_coeff_a -0.75, exclude_outside 0.
    A scale factor is passed as Resize's scales (ONNX maps by 1/scale, as torch), a size or
    recompute_scale_factor as its sizes (in/out); an axis whose size a linear mode keeps is
    a copy in torch, so its scale is 1."""
    a = lw.attrs
    t = lw.in_types[0]
    nd = t.rank - 2
    outs = list(lw.out_types[0].shape[2:])
    if a.mode == "area":
        return [_area(lw, ins[0], outs)]
    if a.mode.startswith("nearest"):
        picked = _nearest_gather(lw, ins[0], outs)
        if picked is not None:
            return [picked if picked != ins[0] else lw.op("Identity", [picked])]
    align = bool(a.align_corners)
    kw = dict(mode=_RESIZE_MODES[a.mode])
    if a.mode == "nearest":
        kw.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif a.mode == "nearest-exact":
        kw.update(coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
    else:
        kw.update(coordinate_transformation_mode="align_corners" if align else "half_pixel")
        if a.mode == "bicubic":
            kw.update(cubic_coeff_a=-0.75, exclude_outside=0)
    if a.scale_factor is not None and not a.recompute_scale_factor:
        factors = _factors(a, nd)
        for i, (n, o) in enumerate(zip(t.shape[2:], outs)):
            if a.mode in ("linear", "bilinear", "trilinear") and D.equal(
                    D.as_dim(n), D.as_dim(o)) is True:
                factors[i] = 1.0
        scales = lw.const(np.asarray([1.0, 1.0] + factors, np.float32), "scales")
        inputs = [ins[0], "", scales]
    else:
        inputs = [ins[0], "", "", lw.dims(list(t.shape[:2]) + outs)]
    if t.dtype == "f32":
        return [lw.op("Resize", inputs, **kw)]
    inputs[0] = lw.cast(ins[0], "f32")
    return [lw.cast(lw.op("Resize", inputs, **kw), t.dtype)]


# ---- pixel and channel shuffles ------------------------------------------------------------


def _pixel_shuffle(lw: Lower, node, ins):
    """DepthToSpace (mode CRD: torch's channel order) for [N, C·r², H, W]; other ranks:
    Reshape [..., C, r, r, H, W], Transpose to [..., C, H, r, W, r], Reshape."""
    r = lw.attrs.upscale_factor
    t = lw.in_types[0]
    if t.rank == 4 and t.is_float:
        return [lw.op("DepthToSpace", [ins[0]], blocksize=r, mode="CRD")]
    *lead, c, h, w = t.shape
    n = len(lead)
    y = lw.reshape(ins[0], lead + [c // (r * r), r, r, h, w])
    y = lw.op("Transpose", [y], perm=list(range(n)) + [n, n + 3, n + 1, n + 4, n + 2])
    return [lw.reshape(y, lw.out_types[0].shape)]


def _pixel_unshuffle(lw: Lower, node, ins):
    """Reshape [..., C, H/r, r, W/r, r], Transpose to [..., C, r, r, H/r, W/r], Reshape
    (torch's channel order; SpaceToDepth's is block-major)."""
    r = lw.attrs.downscale_factor
    t = lw.in_types[0]
    *lead, c, h, w = t.shape
    n = len(lead)
    y = lw.reshape(ins[0], lead + [c, h // r, r, w // r, r])
    y = lw.op("Transpose", [y], perm=list(range(n)) + [n, n + 2, n + 4, n + 1, n + 3])
    return [lw.reshape(y, lw.out_types[0].shape)]


def _channel_shuffle(lw: Lower, node, ins):
    """Reshape [N, g, C/g, ...], swap axes 1 and 2, Reshape back."""
    g = lw.attrs.groups
    t = lw.in_types[0]
    n, c, *rest = t.shape
    y = lw.reshape(ins[0], [n, g, c // g] + rest)
    perm = list(range(t.rank + 1))
    perm[1], perm[2] = 2, 1
    return [lw.reshape(lw.op("Transpose", [y], perm=perm), t.shape)]


LOWERINGS = {
    "pad": _pad,
    "interpolate": _interpolate,
    "upsample": _interpolate,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    "channel_shuffle": _channel_shuffle,
}
