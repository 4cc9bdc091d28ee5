"""Resampling and padding ops (pad, interpolate/upsample, pixel_shuffle, pixel_unshuffle,
channel_shuffle): op records for the registry, used by elaboration (shape rules), the
interpreter (vectorised NumPy kernels) and the PyTorch back end (torch.nn.functional calls).

Each follows torch.nn.functional to the index: the interpolation kernels rebuild torch's
per-axis source indices and weights (aten/src/ATen/native/UpSample.h) in torch's own precision
(float32 for float32 and half inputs, float64 for float64), so `nearest` and `nearest-exact`
pick the same pixels even where an index lands within rounding of a pixel edge, and apply them
one axis at a time (gathers and weighted sums; no per-pixel loops).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from dslc import dims as D
from dslc.limits import MAX_DIM
from dslc.ops.base import Attrs, Example, Op, ShapeError, fmt_value, need_float
from dslc.types import TensorType, numpy_dtype, tensor

B = D.symbol("B")  # a runtime batch size in the Examples

# ---- pad ---------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "replicate", "circular")


class PadAttrs(Attrs):
    pad: tuple[int, ...]  # F.pad order: (last_left, last_right, prev_left, prev_right, ...)
    mode: str = "constant"
    value: float | None = None  # constant mode only (torch refuses others but 0)


def _pad_pairs(a: PadAttrs, rank: int) -> list[tuple[int, int, int]]:
    """(axis, left, right) per padded axis, checking what F.pad checks before it looks at
    sizes. Pairs run from the last axis backwards, as F.pad reads them."""
    if a.mode not in PAD_MODES:
        raise ShapeError("mode must be one of " + ", ".join(PAD_MODES),
                         expected=" or ".join(repr(m) for m in PAD_MODES), found=repr(a.mode),
                         attr="mode", code="E0360")
    if a.value and a.mode != "constant":  # torch lets value=0 through, and ignores it
        raise ShapeError(f"mode {a.mode!r} takes no fill value (only 'constant' fills one)",
                         expected="no value, or mode='constant'", found=f"value={a.value!r}",
                         attr="value", code="E0360")
    n = len(a.pad)
    if n % 2:
        raise ShapeError("needs a (left, right) pair per padded axis",
                         expected="an even number of values", found=f"{n} values {a.pad}",
                         attr="pad", code="E0360")
    k = n // 2
    if a.mode == "constant":
        if k > rank:
            raise ShapeError(f"{k} (left, right) pairs for a rank-{rank} input",
                             expected=f"at most {rank} pairs ({2 * rank} values)",
                             found=f"{n} values {a.pad}", attr="pad", code="E0360")
    elif not (1 <= k <= 3 and rank in (k + 1, k + 2)):
        # torch's reflect/replicate/circular kernels pad the last 1, 2 or 3 axes of a
        # batched or unbatched [N, C, ...] tensor, nothing else.
        want = ("rank 2 or 3 for 1 pair, 3 or 4 for 2 pairs, 4 or 5 for 3 pairs")
        raise ShapeError(f"{a.mode} padding of {k} axes does not fit a rank-{rank} input",
                         expected=want, found=f"{n} values {a.pad} on a rank-{rank} input",
                         attr="pad", code="E0360")
    return [(rank - 1 - i, a.pad[2 * i], a.pad[2 * i + 1]) for i in range(k)]


def _pad_limits(a: PadAttrs, axis: int, n: int, left: int, right: int) -> None:
    """The size checks, on a known axis size n (shape rule for fixed dims, kernel for runtime
    ones)."""
    where = f"axis {axis} (size {n}) padded by ({left}, {right})"
    if a.mode == "reflect" and (left >= n or right >= n):
        raise ShapeError("reflect padding must be smaller than the axis it reflects",
                         expected=f"each pad < {n}", found=where, attr="pad", code="E0361")
    core = n + min(left, 0) + min(right, 0)  # what is left of the axis after cropping
    if a.mode == "constant" and core < 0:
        # torch crops before it pads and refuses to crop more than there is
        raise ShapeError("negative padding crops more than the axis holds",
                         expected=f"crops summing to at most {n}", found=where, attr="pad",
                         code="E0361")
    if a.mode == "circular":
        if max(left, 0) > core or max(right, 0) > core:
            # torch wraps a pad at most once around what is left after cropping; beyond
            # that it reads memory it has not written yet.
            raise ShapeError("circular padding may wrap around the axis at most once",
                             expected=f"each pad <= {max(core, 0)} (the size after cropping)",
                             found=where, attr="pad", code="E0361")
    if n + left + right < 1:
        raise ShapeError("negative padding crops the whole axis away",
                         expected="an output size >= 1",
                         found=f"{where} gives size {n + left + right}", attr="pad",
                         code="E0361")


def _pad_shape(a: PadAttrs, ins):
    x = ins[0]
    pairs = _pad_pairs(a, x.rank)
    if a.mode in ("reflect", "replicate") and x.dtype == "bool":
        raise ShapeError(f"{a.mode} padding does not take bool tensors (torch has no such "
                         "kernel)", expected="a numeric tensor", found=str(x), arg=0,
                         code="E0302")
    if a.value is not None and not x.is_float:
        info = np.iinfo(numpy_dtype(x.dtype)) if x.dtype != "bool" else None
        if not math.isfinite(a.value) or (info and not info.min <= a.value <= info.max):
            raise ShapeError(f"the fill value does not fit the input's dtype ({x.dtype})",
                             expected=f"a finite value in the range of {x.dtype}",
                             found=f"value={a.value!r}", attr="value", code="E0360")
    shape = list(x.shape)
    for axis, left, right in pairs:
        n = D.value(D.as_dim(shape[axis]))
        if n is not None:
            _pad_limits(a, axis, n, left, right)
        shape[axis] = shape[axis] + left + right
    return [x.with_shape(tuple(shape))]


def pad_source_index(mode: str, n: int, left: int, right: int) -> np.ndarray:
    """Source index of each output position along one axis (non-constant modes)."""
    if mode == "circular":
        # torch crops first, then wraps around what is left.
        start = max(-left, 0)
        core = n + min(left, 0) + min(right, 0)
        j = np.arange(core + max(left, 0) + max(right, 0))
        return start + (j - max(left, 0)) % core
    i = np.arange(n + left + right) - left
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    # reflect about the edge elements (torch's ReflectionPad: no edge repeated)
    i = np.abs(i)
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


def pad_array(x: np.ndarray, pad: tuple[int, ...], mode: str = "constant",
              value: float | None = None) -> np.ndarray:
    """F.pad on a NumPy array: `pad` in F.pad order (last axis first), negative pads crop."""
    a = PadAttrs(pad=tuple(pad), mode=mode, value=value)
    pairs = _pad_pairs(a, x.ndim)
    for axis, left, right in pairs:
        _pad_limits(a, axis, x.shape[axis], left, right)
    if mode == "constant":
        out_shape = list(x.shape)
        src: list[slice] = [slice(None)] * x.ndim
        dst: list[slice] = [slice(None)] * x.ndim
        for axis, left, right in pairs:
            n = x.shape[axis]
            out_shape[axis] = n + left + right
            src[axis] = slice(max(-left, 0), n - max(-right, 0))
            dst[axis] = slice(max(left, 0), max(left, 0) + n + min(left, 0) + min(right, 0))
        # The fill value converts as torch's fill does (truncation for integer tensors).
        out = np.full(out_shape, np.array(0.0 if value is None else value).astype(x.dtype),
                      dtype=x.dtype)
        out[tuple(dst)] = x[tuple(src)]
        return out
    for axis, left, right in pairs:
        idx = pad_source_index(mode, x.shape[axis], left, right)
        lo = max(left, 0)
        hi = lo + x.shape[axis] + min(left, 0) + min(right, 0)
        if hi <= lo:  # cropped past the far edge: every position is a gathered one
            x = np.take(x, idx, axis=axis)
            continue
        # The run that is copied unchanged is sliced, only the borders gathered: np.take over
        # the whole axis costs a gather per element (10x torch on a 1-pixel reflect).
        out = np.empty(x.shape[:axis] + (len(idx),) + x.shape[axis + 1:], x.dtype)
        at = (slice(None),) * axis
        out[at + (slice(lo, hi),)] = x[at + (slice(max(-left, 0), max(-left, 0) + hi - lo),)]
        out[at + (slice(0, lo),)] = np.take(x, idx[:lo], axis=axis)
        out[at + (slice(hi, None),)] = np.take(x, idx[hi:], axis=axis)
        x = out
    return x


def _take_vjp(g: np.ndarray, axis: int, idx: np.ndarray, n: int) -> np.ndarray:
    """The cotangent of y along `axis` (size n) from that of np.take(y, idx, axis): each
    output's cotangent added back to its source (np.add.at: sources taken twice add up)."""
    moved = np.moveaxis(g, axis, 0)
    out = np.zeros((n,) + moved.shape[1:], g.dtype)
    np.add.at(out, idx, moved)
    return np.moveaxis(out, 0, axis)


def _pad_vjp(a: PadAttrs, ins, outs, gouts, ctx):
    """F.pad's adjoint: constant mode crops the cotangent back (negative pads: cropped rows
    get zeros); the other modes add each output's cotangent to the element it copies."""
    x, g = ins[0], gouts[0]
    pairs = _pad_pairs(a, x.ndim)
    if a.mode == "constant":
        src: list[slice] = [slice(None)] * x.ndim
        dst: list[slice] = [slice(None)] * x.ndim
        for axis, left, right in pairs:
            n = x.shape[axis]
            src[axis] = slice(max(left, 0), max(left, 0) + n + min(left, 0) + min(right, 0))
            dst[axis] = slice(max(-left, 0), n - max(-right, 0))
        gx = np.zeros(x.shape, g.dtype)
        gx[tuple(dst)] = g[tuple(src)]
        return [gx], {}
    for axis, left, right in reversed(pairs):
        n = x.shape[axis]
        g = _take_vjp(g, axis, pad_source_index(a.mode, n, left, right), n)
    return [g], {}


def _pad_call(a: PadAttrs, args, ctx, ins) -> str:
    extra = ""
    if a.mode != "constant":
        extra = f", mode={a.mode!r}"
    elif a.value is not None:
        extra = f", value={a.value!r}"
    return f"F.pad({args[0]}, {fmt_value(a.pad)}{extra})"


PAD = Op(
    name="pad",
    family="spatial",
    doc="Pads (or, with negative values, crops) the last axes (torch.nn.functional.pad): "
        "`x -> pad((1, 1, 2, 2), mode=\"reflect\")` pads the last axis by 1 on each side and "
        "the one before it by 2. `pad` holds (left, right) pairs from the last axis "
        "backwards. mode: constant (fills `value`, default 0; any rank), reflect (mirrors "
        "about the edge element; each pad smaller than its axis), replicate (repeats the "
        "edge), circular (wraps around, at most once); the last three pad 1, 2 or 3 axes of "
        "an [N, C, ...] or [C, ...] input, as torch does. An axis padded to size 0 is an "
        "error (torch returns an empty tensor for constant and circular). MACs 0.",
    attrs=PadAttrs,
    positional=("pad", "mode", "value"),
    shape=_pad_shape,
    numpy=lambda a, xs, ctx: [pad_array(xs[0], a.pad, a.mode, a.value)],
    vjp=_pad_vjp,
    torch_call=_pad_call,
    label=lambda a: f"{a.mode} {fmt_value(a.pad)}"
                    + (f" = {a.value:g}" if a.value and a.mode == "constant" else ""),
    examples=(
        Example({"pad": (1, 2)}, (tensor("f32", 2, 3, 5),)),
        Example({"pad": (1, 0, 2, 3), "value": 1.5}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"pad": (-1, 2, 0, 1, 1, 1)}, (tensor("f32", 2, 3, 4),)),
        Example({"pad": (1, 2, 3, 3, 1, 0, 1, 1)}, (tensor("f32", 3, 2, 4, 5),)),
        Example({"pad": (2, 1), "value": -2.0}, (tensor("i64", B, 4),), int_high=9),
        Example({"pad": (4, 4), "mode": "reflect"}, (tensor("f32", 2, 3, 5),)),
        Example({"pad": (1, 2, 3, 0), "mode": "reflect"}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"pad": (-1, 2, 1, -2), "mode": "reflect"}, (tensor("f32", 3, 4, 5),)),
        Example({"pad": (1, 1, 2, 0, 0, 1), "mode": "reflect"},
                (tensor("f32", 1, 2, 3, 4, 5),)),
        Example({"pad": (6, 1), "mode": "replicate"}, (tensor("f32", 2, 3, 4),)),
        Example({"pad": (2, -1, 1, 3), "mode": "replicate"}, (tensor("f32", B, 2, 3, 4),)),
        Example({"pad": (1, 2, 0, 1, 2, 2), "mode": "replicate"},
                (tensor("f32", 2, 2, 3, 4, 5),)),
        Example({"pad": (5, 5), "mode": "circular"}, (tensor("f32", 2, 3, 5),)),
        Example({"pad": (2, 1, 1, 3), "mode": "circular"}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"pad": (-2, 3, 1, -1), "mode": "circular"}, (tensor("f32", 3, 4, 5),)),
        Example({"pad": (1, 0, 2, 1, 1, 1), "mode": "circular"},
                (tensor("f32", 2, 2, 3, 4, 5),)),
        Example({"pad": (1, 1), "mode": "reflect"}, (tensor("i64", 2, 5),), int_high=9),
    ),
)

# ---- interpolate / upsample --------------------------------------------------------------

# Modes and the input rank each takes (torch raises NotImplementedError for the others).
INTERP_MODES: dict[str, tuple[int, ...]] = {
    "nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "linear": (3,), "bilinear": (4,),
    "bicubic": (4,), "trilinear": (5,), "area": (3, 4, 5),
}
LINEAR_MODES = ("linear", "bilinear", "bicubic", "trilinear")
# Bits of a scale factor's binary numerator for which `size * scale` is exact in float64 for
# any size up to 2**31 (31 + 22 = 53 significand bits): only then can the floor(size * scale)
# torch computes in float64 be written as a symbolic dim.
EXACT_SCALE_BITS = 22


class InterpolateAttrs(Attrs):
    # Ints or dims such as `skip.shape[2]`, one for every spatial axis or one for all of
    # them: pydantic cannot type sympy expressions, so the shape rule checks each entry.
    size: Any = None
    scale_factor: float | tuple[float, ...] | None = None
    mode: str = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None


def _spatial_list(v, nd: int, name: str, x: TensorType) -> list:
    if not isinstance(v, tuple):
        return [v] * nd
    if len(v) != nd:
        raise ShapeError(f"{name} needs one value per spatial axis of the input",
                         expected=f"{nd} value(s) for input {x} ([N, C, {nd} spatial axes])",
                         found=f"{len(v)} value(s) {fmt_value(v)}", attr=name, code="E0362")
    return list(v)


def _size_dims(a: InterpolateAttrs, nd: int, x: TensorType) -> list:
    dims = []
    for i, d in enumerate(_spatial_list(a.size, nd, "size", x)):
        if isinstance(d, sympy.Expr) and d.is_Integer:
            d = int(d)
        if isinstance(d, bool) or not isinstance(d, (int, sympy.Expr)) or (
                isinstance(d, sympy.Expr) and d.is_integer is False):
            raise ShapeError(f"size entry {i} is not a dim",
                             expected="an int or a dim such as skip.shape[2]", found=repr(d),
                             attr="size", code="E0362")
        if (isinstance(d, int) and d < 1) or (isinstance(d, sympy.Expr)
                                             and d.is_positive is False):
            raise ShapeError(f"size entry {i} must be positive", expected=">= 1",
                             found=str(d), attr="size", code="E0362")
        dims.append(D.as_dim(d))
    return dims


def scaled_size(n: int, scale: float) -> int:
    """torch's output size for a scale factor: the float64 product, truncated."""
    return int(float(n) * scale)


def _scaled_dim(size: D.Dim, scale: float, axis: int) -> D.Dim:
    n = D.value(size)
    if n is not None:
        return D.const(scaled_size(n, scale))
    frac = Fraction(scale)  # a float is a binary fraction: exact
    if frac.numerator.bit_length() > EXACT_SCALE_BITS:
        raise ShapeError(
            f"the output size of axis {axis} (runtime size {D.fmt(size)}) times "
            f"scale_factor {scale!r} depends on float64 rounding and cannot be written as a "
            "dim", expected="a fixed size on that axis, `size=`, or a scale factor exact in "
            "binary (2, 0.5, 1.5, 0.75, ...)", found=f"scale_factor={scale!r}",
            attr="scale_factor", code="E0364")
    return sympy.floor(size * sympy.Rational(frac.numerator, frac.denominator))


def _interp_plan(a: InterpolateAttrs, x: TensorType) -> list[D.Dim]:
    """Check the call as F.interpolate does and give the output's spatial dims."""
    if a.mode not in INTERP_MODES:
        raise ShapeError("mode must be one of " + ", ".join(INTERP_MODES),
                         expected=" or ".join(repr(m) for m in INTERP_MODES),
                         found=repr(a.mode), attr="mode", code="E0363")
    need_float(x)
    if x.rank not in (3, 4, 5):
        raise ShapeError("needs an [N, C, ...] input with 1 to 3 spatial axes",
                         expected="rank 3, 4 or 5", found=f"{x} (rank {x.rank})", arg=0)
    ranks = INTERP_MODES[a.mode]
    if x.rank not in ranks:
        raise ShapeError(f"mode {a.mode!r} needs a rank-{ranks[0]} input "
                         f"({ranks[0] - 2} spatial axes)",
                         expected=f"rank {ranks[0]} with mode {a.mode!r}, or a mode for rank "
                                  f"{x.rank}: " + ", ".join(
                                      m for m, r in INTERP_MODES.items() if x.rank in r),
                         found=f"{x} (rank {x.rank})", attr="mode", code="E0363")
    if a.align_corners is not None and a.mode not in LINEAR_MODES:
        raise ShapeError("align_corners applies only to the interpolating modes",
                         expected="no align_corners, or mode linear, bilinear, bicubic or "
                                  "trilinear", found=f"align_corners with mode {a.mode!r}",
                         attr="align_corners", code="E0363")
    if (a.size is None) == (a.scale_factor is None):
        raise ShapeError("needs exactly one of size and scale_factor",
                         expected="size=... or scale_factor=...",
                         found="both" if a.size is not None else "neither",
                         attr="size" if a.size is not None else None, code="E0362")
    if a.recompute_scale_factor and a.size is not None:
        raise ShapeError("recompute_scale_factor has no meaning with an explicit size",
                         expected="scale_factor=..., or no recompute_scale_factor",
                         found="size and recompute_scale_factor=true",
                         attr="recompute_scale_factor", code="E0362")
    nd = x.rank - 2
    spatial = x.shape[2:]
    if a.size is not None:
        return _size_dims(a, nd, x)
    scales = _spatial_list(a.scale_factor, nd, "scale_factor", x)
    out = []
    for axis, (n, s) in enumerate(zip(spatial, scales)):
        if not (s > 0 and math.isfinite(s)):
            raise ShapeError("scale_factor must be positive and finite", expected="> 0",
                             found=fmt_value(a.scale_factor), attr="scale_factor",
                             code="E0362")
        d = _scaled_dim(D.as_dim(n), s, axis + 2)
        if d.is_Integer and int(d) > MAX_DIM:
            raise ShapeError(f"scale_factor {s!r} makes axis {axis + 2} too large",
                             expected=f"an output size <= {MAX_DIM}",
                             found=f"floor({D.fmt(n)} * {s!r}) = {int(d)}",
                             attr="scale_factor", code="E0362")
        if d.is_Integer and int(d) < 1:
            raise ShapeError(f"scale_factor {s!r} leaves axis {axis + 2} empty",
                             expected="an output size >= 1 (floor(size * scale_factor))",
                             found=f"floor({D.fmt(n)} * {s!r}) = {int(d)}",
                             attr="scale_factor", code="E0362")
        out.append(d)
    return out


def _interp_shape(a: InterpolateAttrs, ins):
    x = ins[0]
    return [x.with_shape(tuple(x.shape[:2]) + tuple(_interp_plan(a, x)))]


# The index rules below are torch's (UpSample.h: area_pixel_compute_scale,
# area_pixel_compute_source_index, guard_index_and_lambda), computed in its opmath type `ft`.
# torch floors with floorf, which first rounds a float64 index to float32: kept as such.


def _coord_scale(n_in: int, n_out: int, align: bool, scale: float | None, ft) -> Any:
    if align:
        return ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
    if scale is not None and scale > 0:
        return ft(1.0 / scale)  # the division in float64, then rounded to ft
    return ft(n_in) / ft(n_out)


def _source(sc, n_out: int, align: bool, ft) -> np.ndarray:
    dst = np.arange(n_out).astype(ft)
    if align:
        return sc * dst
    if ft is np.float32:
        # torch's AVX2/AVX512 builds contract `scale * (dst + 0.5) - 0.5` into one fused
        # multiply-add: one rounding, which float64 reproduces exactly (a 24-bit by 24-bit
        # product). It decides indices that land on a pixel edge (size 2 -> 55,
        # nearest-exact, output 27). torch's baseline build (no FMA) rounds twice.
        return (np.float64(sc) * (dst.astype(np.float64) + 0.5) - 0.5).astype(np.float32)
    return sc * (dst + ft(0.5)) - ft(0.5)


def _floorf(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float32)).astype(np.int64)


def axis_taps(mode: str, n_in: int, n_out: int, align: bool, scale: float | None, ft,
              legacy: bool = False) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(source index, weight) per tap for one spatial axis; weight None for nearest modes.
    `legacy`: the nearest modes take torch's vectorised 2-D kernel's rule (see
    legacy_nearest)."""
    sc = _coord_scale(n_in, n_out, align, scale, ft)
    last = n_in - 1
    if mode.startswith("nearest") and legacy:
        # torch's nearest_idx / nearest_exact_idx (its vectorised 2-D kernel): the scale is
        # float32 whatever the input's dtype.
        sc32 = _coord_scale(n_in, n_out, False, scale, np.float32)
        dst = np.arange(n_out)
        if mode == "nearest-exact":
            # floor((dst + 0.5) * scale), the product in float64 (dst + 0.5 is a C++ double)
            idx = _floorf((dst + 0.5) * np.float64(sc32))
        elif n_out == n_in:
            idx = dst  # a copy, whatever the scale factor (1.1 on size 5, say)
        elif n_out == 2 * n_in:
            idx = dst >> 1
        else:
            idx = _floorf(dst.astype(np.float32) * sc32)
        return [(np.minimum(idx, last), None)]
    if mode == "nearest":
        # floor(dst * scale): torch's legacy rule (OpenCV INTER_NEAREST), in torch's opmath
        idx = _floorf(sc * np.arange(n_out).astype(ft))
        return [(np.minimum(idx, last), None)]
    if mode == "nearest-exact":
        # round((dst + 0.5) * scale - 0.5) half up, the source index clamped at 0 first
        src = np.maximum(_source(sc, n_out, False, ft), ft(0))
        idx = _floorf(src.astype(np.float64) + 0.5)
        return [(np.minimum(idx, last), None)]
    if mode == "bicubic":
        src = _source(sc, n_out, align, ft)  # not clamped at 0: the taps reach below it
        i0 = np.minimum(_floorf(src), last)
        t = np.clip(src - i0.astype(ft), ft(0), ft(1))
        A = ft(-0.75)

        def near(v):  # |v| <= 1
            return ((A + 2) * v - (A + 3)) * v * v + 1

        def far(v):  # 1 < |v| < 2
            return ((A * v - 5 * A) * v + 8 * A) * v - 4 * A

        weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
        return [(np.clip(i0 + k - 1, 0, last), w.astype(ft)) for k, w in enumerate(weights)]
    # linear, bilinear, trilinear: two taps per axis
    if n_in == n_out:  # torch copies; the scale factor (say 1.1 on size 5) is not used
        idx = np.arange(n_out)
        return [(idx, np.ones(n_out, ft)), (idx, np.zeros(n_out, ft))]
    src = np.maximum(_source(sc, n_out, align, ft), ft(0))
    i0 = np.minimum(_floorf(src), last)
    lam1 = np.clip(src - i0.astype(ft), ft(0), ft(1))
    i1 = i0 + (i0 < last)
    return [(i0, ft(1) - lam1), (i1, lam1)]


def legacy_nearest(rank: int, out_sizes: list[int]) -> bool:
    """Whether torch's CPU kernel takes its vectorised nearest path for this call: a 4-D
    input (contiguous, as NumPy hands it over) with out_h + out_w <= 128
    (_use_vectorized_kernel_cond_2d). That path copies when a size is kept and halves the
    index when it doubles, whatever the scale factor; the generic one always maps by it.
    torch also takes it for a channels-last input with more than 3 channels, whatever the
    size: a generated module fed such a tensor (a permuted NHWC one) can then pick other
    pixels than the NumPy run when out_h + out_w > 128 and a scale factor keeps or doubles a
    size (1.1 on 5, say)."""
    return rank == 4 and sum(out_sizes) <= 128


def area_axis(y: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Mode 'area' on one axis: torch's adaptive average pooling, output o the mean of input
    [floor(o·n/n_out), ceil((o+1)·n/n_out)), summed then divided as torch does. Gathered a
    window offset at a time; an offset past a window's end adds nothing (np.where, not a
    zero weight: 0 · inf would be nan)."""
    n = y.shape[axis]
    o = np.arange(n_out)
    start = o * n // n_out
    end = -(-(o + 1) * n // n_out)
    shape = [1] * y.ndim
    shape[axis] = n_out
    acc = np.take(y, start, axis=axis)
    for k in range(1, int((end - start).max())):
        inside = (start + k < end).reshape(shape)
        acc += np.where(inside, np.take(y, np.minimum(start + k, end - 1), axis=axis), 0)
    acc /= (end - start).astype(y.dtype).reshape(shape)
    return acc


def gather(y: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """np.take(y, idx, axis), with runs of consecutive indices copied as slices when there
    are few: an integer upscale (size 2 -> 4: 0 0 1 1 ...) is k strided runs, copied 2x faster
    than np.take's gather per element along the last axis."""
    n_out = len(idx)
    k = max(1, n_out // y.shape[axis])
    if y.ndim - 1 != axis or n_out % y.shape[axis]:
        return np.take(y, idx, axis=axis)
    phases = [idx[r::k] for r in range(k)]
    cuts = [np.flatnonzero(np.diff(ph) != 1) + 1 for ph in phases]
    if sum(len(c) + 1 for c in cuts) > 4 * k:
        return np.take(y, idx, axis=axis)
    out = np.empty(y.shape[:axis] + (n_out,), y.dtype)
    for r, (ph, cut) in enumerate(zip(phases, cuts)):
        bounds = [0, *cut.tolist(), len(ph)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            out[..., r + a * k:r + (b - 1) * k + 1:k] = y[..., ph[a]:ph[a] + b - a]
    return out


def interpolate_array(x: np.ndarray, out_sizes: list[int], mode: str, align: bool,
                      scales: list[float | None]) -> np.ndarray:
    """x [N, C, *in] -> [N, C, *out_sizes], torch's rule on each spatial axis in turn."""
    ft = np.promote_types(x.dtype, np.float32).type
    y = x if mode.startswith("nearest") else x.astype(ft, copy=False)
    legacy = legacy_nearest(x.ndim, out_sizes)
    order = list(range(len(out_sizes)))
    if out_sizes[-1] >= x.shape[-1]:
        # The last axis first while the others still have their input sizes: its gather is
        # the costly one (the others copy whole rows). Only rounding depends on the order.
        order = order[-1:] + order[:-1]
    for k in order:
        n_out, s = out_sizes[k], scales[k]
        axis = 2 + k
        if mode == "area":
            y = area_axis(y, axis, n_out)
            continue
        shape = [1] * y.ndim
        shape[axis] = n_out
        taps = axis_taps(mode, y.shape[axis], n_out, align, s, ft, legacy)
        if taps[0][1] is None:
            y = gather(y, taps[0][0], axis)
            continue
        acc = None
        for idx, w in taps:
            term = gather(y, idx, axis)  # a new array: scaled and summed in place
            term *= w.reshape(shape)
            if acc is None:
                acc = term
            else:
                acc += term
        y = acc
    return y.astype(x.dtype, copy=False)


def _interp_kernel(a: InterpolateAttrs, xs, ctx):
    x = xs[0]
    nd = x.ndim - 2
    if a.size is not None:
        sizes = [ctx.dim(D.as_dim(d)) for d in _spatial_list(a.size, nd, "size", None)]
        scales: list[float | None] = [None] * nd
    else:
        factors = list(a.scale_factor) if isinstance(a.scale_factor, tuple) else \
            [a.scale_factor] * nd
        sizes = [scaled_size(n, s) for n, s in zip(x.shape[2:], factors)]
        # recompute_scale_factor: torch forgets the factor and maps coordinates by in/out
        # (area pools, and uses no scale at all)
        scales = [None] * nd if a.recompute_scale_factor else factors
    if min(sizes) < 1:  # a runtime dim can make it so (size=H - 4, scale 0.5 on H = 1)
        raise ShapeError("the output would have an empty spatial axis",
                         expected="output sizes >= 1", found=f"{sizes} from input "
                         f"{list(x.shape)}", code="E0362")
    align = bool(a.align_corners)
    return [interpolate_array(x, sizes, a.mode, align, scales)]


def _interp_vjp(a: InterpolateAttrs, ins, outs, gouts, ctx):
    """Each axis's resampling is linear (a gather, weighted taps, or area's bin means):
    its adjoint on each axis, in the reverse of the forward's order. Memory: none kept."""
    from dslc.ops.pool_adaptive import _mean_axis_grad
    x, g = ins[0], gouts[0]
    nd = x.ndim - 2
    sizes = list(outs[0].shape[2:])
    if a.size is not None or a.recompute_scale_factor:
        scales: list[float | None] = [None] * nd
    else:
        scales = list(a.scale_factor) if isinstance(a.scale_factor, tuple) else \
            [a.scale_factor] * nd
    ft = np.promote_types(x.dtype, np.float32).type
    legacy = legacy_nearest(x.ndim, sizes)
    order = list(range(nd))
    if sizes[-1] >= x.shape[-1]:
        order = order[-1:] + order[:-1]
    for k in reversed(order):
        axis, n_in = 2 + k, x.shape[2 + k]
        if a.mode == "area":
            g = _mean_axis_grad(g, axis, n_in)
            continue
        taps = axis_taps(a.mode, n_in, sizes[k], bool(a.align_corners), scales[k], ft, legacy)
        shape = [1] * g.ndim
        shape[axis] = sizes[k]
        g = sum(_take_vjp(g if w is None else g * w.reshape(shape), axis, idx, n_in)
                for idx, w in taps)
    return [g.astype(gouts[0].dtype, copy=False)], {}


def _interp_call(a: InterpolateAttrs, args, ctx, ins) -> str:
    parts = [args[0]]
    if a.size is not None:
        if isinstance(a.size, tuple):
            parts.append("size=(" + ", ".join(ctx.dim(D.as_dim(d)) for d in a.size)
                         + ("," if len(a.size) == 1 else "") + ")")
        else:
            parts.append(f"size={ctx.dim(D.as_dim(a.size))}")
    else:
        parts.append(f"scale_factor={fmt_value(a.scale_factor)}")
    parts.append(f"mode={a.mode!r}")
    if a.align_corners is not None:
        parts.append(f"align_corners={a.align_corners!r}")
    if a.recompute_scale_factor is not None:
        parts.append(f"recompute_scale_factor={a.recompute_scale_factor!r}")
    return "F.interpolate(" + ", ".join(parts) + ")"


# MACs: one multiply-add per tap of each output element, as torch's kernel gathers them:
# 2 per spatial axis for the linear modes (4 bilinear, 8 trilinear), 16 for bicubic; nearest
# modes only copy (0); area (average pooling) adds each input element about once.
def _interp_macs(a: InterpolateAttrs, ins, outs):
    if a.mode.startswith("nearest"):
        return D.const(0)
    if a.mode == "area":  # adaptive average pooling: about one add per input element
        return ins[0].numel()
    nd = ins[0].rank - 2
    taps = 16 if a.mode == "bicubic" else 2 ** nd
    return outs[0].numel() * taps


def _interp_label(a: InterpolateAttrs) -> str:
    if a.size is not None:
        what = "size " + (D.fmt_shape([D.as_dim(d) for d in a.size])
                          if isinstance(a.size, tuple) else D.fmt(D.as_dim(a.size)))
    else:
        what = "×" + fmt_value(a.scale_factor)
    return f"{a.mode} {what}" + (", align corners" if a.align_corners else "")


INTERP_EXAMPLES = (
    Example({"scale_factor": 2.0}, (tensor("f32", 2, 3, 5),)),
    Example({"scale_factor": 1.7}, (tensor("f32", 2, 3, 4, 5),)),
    Example({"scale_factor": (0.6, 2.5), "mode": "nearest"}, (tensor("f32", 1, 2, 5, 3),)),
    Example({"size": (7, 4, 3)}, (tensor("f32", 1, 2, 3, 5, 6),)),
    Example({"size": 3, "mode": "nearest"}, (tensor("f32", 2, 2, 7, 1),)),
    Example({"scale_factor": 1.5, "mode": "nearest-exact"}, (tensor("f32", B, 2, 3, 5),)),
    Example({"scale_factor": (0.4, 1.3, 2.0), "mode": "nearest-exact"},
            (tensor("f32", 1, 2, 5, 4, 3),)),
    Example({"size": 9, "mode": "linear"}, (tensor("f32", 2, 3, 4),)),
    Example({"scale_factor": 0.45, "mode": "linear", "align_corners": True},
            (tensor("f32", 2, 3, 11),)),
    Example({"scale_factor": 2.0, "mode": "bilinear"}, (tensor("f32", B, 3, 4, 5),)),
    Example({"scale_factor": (1.3, 0.7), "mode": "bilinear", "align_corners": True},
            (tensor("f32", 2, 3, 5, 7),)),
    Example({"size": (1, 6), "mode": "bilinear"}, (tensor("f32", 1, 2, 4, 3),)),
    Example({"scale_factor": 1.1, "mode": "bilinear"}, (tensor("f32", 1, 2, 5, 1),)),
    Example({"scale_factor": 1.6, "mode": "bicubic"}, (tensor("f32", 2, 3, 5, 4),)),
    Example({"size": (3, 8), "mode": "bicubic", "align_corners": True},
            (tensor("f32", 1, 2, 6, 5),)),
    Example({"scale_factor": 0.55, "mode": "bicubic", "recompute_scale_factor": True},
            (tensor("f32", 1, 2, 9, 7),)),
    Example({"scale_factor": (1.5, 2.0, 0.5), "mode": "trilinear"},
            (tensor("f32", 1, 2, 3, 4, 6),)),
    Example({"size": (2, 5, 1), "mode": "trilinear", "align_corners": True},
            (tensor("f32", 2, 1, 3, 4, 3),)),
    Example({"size": 3, "mode": "area"}, (tensor("f32", 2, 3, 8),)),
    Example({"scale_factor": (0.6, 1.5), "mode": "area"}, (tensor("f32", B, 2, 7, 5),)),
    Example({"size": (2, 3, 4), "mode": "area"}, (tensor("f64", 1, 2, 5, 3, 9),)),
)


def _interp_op(name: str, doc: str, examples: tuple[Example, ...]) -> Op:
    return Op(
        name=name,
        family="spatial",
        doc=doc,
        attrs=InterpolateAttrs,
        positional=("size", "scale_factor", "mode"),
        shape=_interp_shape,
        numpy=_interp_kernel,
        vjp=_interp_vjp,
        torch_call=_interp_call,
        macs=_interp_macs,
        label=_interp_label,
        examples=examples,
    )


_INTERP_DOC = (
    "Resizes the spatial axes of an [N, C, ...] input (torch.nn.functional.interpolate): "
    "`x -> interpolate(scale_factor=2, mode=\"bilinear\")` or "
    "`x -> interpolate(size=(skip.shape[2], skip.shape[3]))`. Exactly one of `size` (ints "
    "or dims, one per spatial axis or one for all) and `scale_factor` (one or one per "
    "axis); with a scale factor the output size is floor(size · scale_factor) and the "
    "coordinates map by 1/scale_factor, unless recompute_scale_factor=true (then by "
    "in/out, as with `size`). mode: nearest (torch's floor(dst · scale) rule), "
    "nearest-exact (rounds to the nearest source pixel), linear (rank 3), bilinear and "
    "bicubic (A = -0.75; rank 4), trilinear (rank 5), area (adaptive average pooling, as "
    "torch sends it); align_corners only with linear, bilinear, bicubic and trilinear "
    "(default false). No antialias. Pixels and weights are those of torch's CPU kernels "
    "(its AVX2/AVX512 builds, which fuse a multiply-add in the source index; the baseline "
    "build can pick another pixel where an index lands on a pixel edge). "
    "MACs: 2 per spatial axis (bicubic 16) per output "
    "element; area one per input element; nearest modes 0."
)

INTERPOLATE = _interp_op("interpolate", _INTERP_DOC, INTERP_EXAMPLES)

# nn.Upsample is a module without parameters whose forward is F.interpolate with its stored
# arguments, so `upsample` is the same op under the name U-Net code uses, and emits the same
# F.interpolate call (no module attribute that would only hold constants).
UPSAMPLE = _interp_op(
    "upsample",
    "torch.nn.Upsample: the same op as interpolate (same arguments, same rules), under the "
    "name decoder code uses: `x -> upsample(scale_factor=2, mode=\"nearest\")`. The "
    "generated code calls F.interpolate, which is what nn.Upsample's forward does.",
    (
        Example({"scale_factor": 2.0}, (tensor("f32", B, 3, 4, 5),)),
        Example({"scale_factor": 2.0, "mode": "bilinear", "align_corners": True},
                (tensor("f32", 2, 3, 4, 5),)),
        Example({"size": (6, 9), "mode": "bicubic"}, (tensor("f64", 1, 2, 4, 5),)),
        Example({"scale_factor": 0.75, "mode": "trilinear"}, (tensor("f32", 1, 2, 4, 5, 3),)),
    ),
)

# ---- pixel_shuffle / pixel_unshuffle / channel_shuffle ------------------------------------


class PixelShuffleAttrs(Attrs):
    upscale_factor: int


class PixelUnshuffleAttrs(Attrs):
    downscale_factor: int


class ChannelShuffleAttrs(Attrs):
    groups: int


def _positive(v: int, attr: str) -> None:
    if v < 1:
        raise ShapeError(f"{attr} must be positive", expected=">= 1", found=str(v), attr=attr,
                         code="E0365")


def _divided(d: D.Dim, k: int, what: str, x: TensorType, attr: str) -> D.Dim:
    """d / k, refused when d is provably not a multiple of k. A runtime dim that may or may
    not be one is checked again by the kernel, on the actual size."""
    d = D.as_dim(d)
    if D.equal(sympy.Mod(d, k), D.const(0)) is False:
        raise ShapeError(f"{what} must be divisible by {k}", expected=f"a multiple of {k}",
                         found=f"{D.fmt(d)} ({what} of {x})", attr=attr, code="E0365")
    return d / k


def _need_rank3(x: TensorType, form: str) -> None:
    if x.rank < 3:
        raise ShapeError("needs an input of rank 3 or more", expected=f"rank >= 3 ({form})",
                         found=f"{x} (rank {x.rank})", arg=0)


def _kernel_divides(n: int, k: int, what: str) -> None:
    if n % k:
        raise ShapeError(f"{what} must be divisible by {k}", expected=f"a multiple of {k}",
                         found=str(n), code="E0365")


def _ps_shape(a: PixelShuffleAttrs, ins):
    x = ins[0]
    r = a.upscale_factor
    _positive(r, "upscale_factor")
    _need_rank3(x, "[..., C·r², H, W]")
    c, h, w = x.shape[-3:]
    c = _divided(c, r * r, "the channel axis (-3)", x, "upscale_factor")
    return [x.with_shape(tuple(x.shape[:-3]) + (c, h * r, w * r))]


def pixel_shuffle_array(x: np.ndarray, r: int) -> np.ndarray:
    *lead, c, h, w = x.shape
    _kernel_divides(c, r * r, "the channel axis (-3)")
    n = len(lead)
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    # [..., C, r_h, r_w, H, W] -> [..., C, H, r_h, W, r_w]
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def _pu_shape(a: PixelUnshuffleAttrs, ins):
    x = ins[0]
    r = a.downscale_factor
    _positive(r, "downscale_factor")
    _need_rank3(x, "[..., C, H·r, W·r]")
    c, h, w = x.shape[-3:]
    h = _divided(h, r, "the height axis (-2)", x, "downscale_factor")
    w = _divided(w, r, "the width axis (-1)", x, "downscale_factor")
    return [x.with_shape(tuple(x.shape[:-3]) + (c * r * r, h, w))]


def pixel_unshuffle_array(x: np.ndarray, r: int) -> np.ndarray:
    *lead, c, h, w = x.shape
    _kernel_divides(h, r, "the height axis (-2)")
    _kernel_divides(w, r, "the width axis (-1)")
    n = len(lead)
    y = x.reshape(*lead, c, h // r, r, w // r, r)
    # [..., C, H, r_h, W, r_w] -> [..., C, r_h, r_w, H, W]
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)


def _cs_shape(a: ChannelShuffleAttrs, ins):
    x = ins[0]
    _positive(a.groups, "groups")
    _need_rank3(x, "[N, C, ...]")
    _divided(x.shape[1], a.groups, "the channel axis (1)", x, "groups")
    return [x]


def channel_shuffle_array(x: np.ndarray, groups: int) -> np.ndarray:
    n, c, *rest = x.shape
    _kernel_divides(c, groups, "the channel axis (1)")
    y = x.reshape(n, groups, c // groups, *rest).swapaxes(1, 2)
    return y.reshape(x.shape)


PIXEL_SHUFFLE = Op(
    name="pixel_shuffle",
    family="spatial",
    doc="Moves channel blocks into space (torch.nn.functional.pixel_shuffle, ESPCN "
        "sub-pixel upsampling): [..., C·r², H, W] -> [..., C, H·r, W·r] for "
        "`x -> pixel_shuffle(r)`. MACs 0 (data movement).",
    attrs=PixelShuffleAttrs,
    positional=("upscale_factor",),
    shape=_ps_shape,
    numpy=lambda a, xs, ctx: [pixel_shuffle_array(xs[0], a.upscale_factor)],
    vjp=lambda a, ins, outs, gouts, ctx: ([pixel_unshuffle_array(gouts[0], a.upscale_factor)],
                                          {}),
    torch_call=lambda a, args, ctx, ins: f"F.pixel_shuffle({args[0]}, {a.upscale_factor})",
    label=lambda a: f"×{a.upscale_factor}",
    examples=(
        Example({"upscale_factor": 2}, (tensor("f32", B, 8, 3, 5),)),
        Example({"upscale_factor": 3}, (tensor("f32", 18, 2, 1),)),
        Example({"upscale_factor": 2}, (tensor("i64", 2, 1, 4, 2, 3),)),
        Example({"upscale_factor": 1}, (tensor("f32", 2, 3, 4, 4),)),
    ),
)

PIXEL_UNSHUFFLE = Op(
    name="pixel_unshuffle",
    family="spatial",
    doc="The inverse of pixel_shuffle (torch.nn.functional.pixel_unshuffle): "
        "[..., C, H·r, W·r] -> [..., C·r², H, W] for `x -> pixel_unshuffle(r)`; H and W "
        "must be multiples of r. MACs 0 (data movement).",
    attrs=PixelUnshuffleAttrs,
    positional=("downscale_factor",),
    shape=_pu_shape,
    numpy=lambda a, xs, ctx: [pixel_unshuffle_array(xs[0], a.downscale_factor)],
    vjp=lambda a, ins, outs, gouts, ctx: ([pixel_shuffle_array(gouts[0], a.downscale_factor)],
                                          {}),
    torch_call=lambda a, args, ctx, ins: f"F.pixel_unshuffle({args[0]}, {a.downscale_factor})",
    label=lambda a: f"÷{a.downscale_factor}",
    examples=(
        Example({"downscale_factor": 2}, (tensor("f32", B, 3, 4, 6),)),
        Example({"downscale_factor": 3}, (tensor("f32", 2, 3, 6),)),
        Example({"downscale_factor": 2}, (tensor("f64", 2, 1, 2, 2, 4),)),
    ),
)

CHANNEL_SHUFFLE = Op(
    name="channel_shuffle",
    family="spatial",
    doc="Interleaves the channels of `groups` groups (torch.nn.functional.channel_shuffle, "
        "ShuffleNet): [N, C, ...] with C = g·k, channel i·k + j goes to j·g + i for "
        "`x -> channel_shuffle(g)`. MACs 0 (data movement).",
    attrs=ChannelShuffleAttrs,
    positional=("groups",),
    shape=_cs_shape,
    numpy=lambda a, xs, ctx: [channel_shuffle_array(xs[0], a.groups)],
    # a permutation: its inverse shuffles with the other factor of the channels
    vjp=lambda a, ins, outs, gouts, ctx: (
        [channel_shuffle_array(gouts[0], gouts[0].shape[1] // a.groups)], {}),
    torch_call=lambda a, args, ctx, ins: f"F.channel_shuffle({args[0]}, {a.groups})",
    label=lambda a: f"{a.groups} groups",
    examples=(
        Example({"groups": 3}, (tensor("f32", B, 6, 4, 5),)),
        Example({"groups": 2}, (tensor("f32", 2, 8, 3),)),
        Example({"groups": 4}, (tensor("i64", 1, 8, 2, 2, 2),)),
        Example({"groups": 1}, (tensor("f32", 2, 3, 2),)),
    ),
)

RESAMPLE_OPS = (PAD, INTERPOLATE, UPSAMPLE, PIXEL_SHUFFLE, PIXEL_UNSHUFFLE, CHANNEL_SHUFFLE)
