"""Windowed pooling ops (max, average and power-average over 1-D, 2-D and 3-D windows): op
records for the registry, used by elaboration (shape rules), the interpreter (NumPy kernels)
and the PyTorch back end (F.max_pool2d and friends; no parameters). Pools to a fixed output
size (adaptive, global average, k-max) are in ops/pool_adaptive.py.

The window kernels take one strided view of the input per kernel tap and reduce them with
in-place ufuncs (or, for kernels with very many taps, reduce window by window along one axis at
a time); they never copy the input unless it needs padding (ops/window.py), and they keep its
memory layout (the conv kernels return channels-last views, and a pool between two
convs stays channels-last).

Padding (ops/padding.py resolves the attribute): an int or a per-axis tuple is torch's own
symmetric `padding=` (at most half the kernel, as torch requires). A per-side tuple (F.pad
order) or "same" pads the input first, as `F.pad` would (-inf for max pools, zeros for average
pools), then pools it unpadded; with ceil_mode the last window may then start in the right
padding, which is part of the input. Average pools divide by the window clipped to the padded
input (count_include_pad=true) or by the input elements in the window (false; a window of
padding only averages to 0).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import sympy

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, need_float
from dslc.ops.padding import Pads, fpad_order, padding_label, resolve_padding, torch_padding
from dslc.ops.pool_grad import lp_pool_vjp, pool_vjp
from dslc.ops.window import out_size, reach, window, window_counts
from dslc.types import tensor

# ---- attributes ----------------------------------------------------------------------------
# `padding`: int, per axis (nd ints), per side (2*nd ints, F.pad order), "same" or "valid".


class MaxPool1dAttrs(Attrs):
    kernel: int | tuple[int]
    stride: int | tuple[int] | None = None  # None: the kernel size, as in torch
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int] = 1
    ceil_mode: bool = False


class MaxPool2dAttrs(Attrs):
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, int] = 1
    ceil_mode: bool = False


class MaxPool3dAttrs(Attrs):
    kernel: int | tuple[int, int, int]
    stride: int | tuple[int, int, int] | None = None
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, int, int] = 1
    ceil_mode: bool = False


class AvgPool1dAttrs(Attrs):  # F.avg_pool1d has no divisor_override
    kernel: int | tuple[int]
    stride: int | tuple[int] | None = None
    padding: int | tuple[int, ...] | str = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


class AvgPool2dAttrs(Attrs):
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, ...] | str = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None


class AvgPool3dAttrs(Attrs):
    kernel: int | tuple[int, int, int]
    stride: int | tuple[int, int, int] | None = None
    padding: int | tuple[int, ...] | str = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None


class LpPool1dAttrs(Attrs):  # F.lp_pool*d: no padding
    norm_type: float
    kernel: int | tuple[int]
    stride: int | tuple[int] | None = None
    ceil_mode: bool = False


class LpPool2dAttrs(Attrs):
    norm_type: float
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    ceil_mode: bool = False


class LpPool3dAttrs(Attrs):
    norm_type: float
    kernel: int | tuple[int, int, int]
    stride: int | tuple[int, int, int] | None = None
    ceil_mode: bool = False


# ---- shared helpers (ops/pool_adaptive.py uses them too) -----------------------------------

SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


def per_axis(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def need_spatial(x, nd: int, name: str) -> None:
    """A float input of rank nd + 2 ([B, C, spatial...]) or nd + 1 (unbatched)."""
    need_float(x)
    if x.rank not in (nd + 1, nd + 2):
        raise ShapeError(f"{name} needs an input of rank {nd + 2} (batched) or {nd + 1}",
                         expected=f"[B, C, {SPATIAL_NAMES[nd]}]",
                         found=f"{x} (rank {x.rank})", arg=0)


def literal(v) -> str:
    """Python literal of an int or a tuple of ints."""
    if isinstance(v, int):
        return str(v)
    return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"


def fmt_size(v, nd) -> str:
    return "x".join(str(x) for x in per_axis(v, nd))


def alloc_like(x: np.ndarray, shape) -> np.ndarray:
    """An empty array of x's rank in x's memory order (a channels-last input stays so)."""
    return np.empty_like(x, shape=tuple(shape))


# ---- window geometry -----------------------------------------------------------------------


def _out_dim(size: D.Dim, k: int, s: int, d: int, before: int, after: int, ceil_mode: bool,
             pre_padded: bool) -> D.Dim:
    """out_size for a symbolic size (dims.conv_out is the one floor formula)."""
    padded = size + before + after
    if not ceil_mode:
        return D.conv_out(padded, k, s, 0, d)
    # the largest o with (o - 1)*s < limit is ceil(limit/s); torch drops at most one window
    limit = size + before + (after if pre_padded else 0)
    return sympy.Min(D.pool_out_ceil(padded, k, s, 0, d), sympy.ceiling(limit / sympy.Integer(s)))


def pre_padded(padding, nd: int) -> bool:
    """Per-side or "same"/"valid" padding: the input is padded first, as by F.pad."""
    return isinstance(padding, str) or len(per_axis(padding, nd)) == 2 * nd


# torch's average pooling in 3-D (and lp_pool3d, which uses it) also refuses an input smaller
# than the kernel on some axis, counting its own `padding=` out (pool3d_shape_check)
SEES_WHOLE_KERNEL = ("avg_pool3d", "lp_pool3d")


class Window:
    """One windowed pool call resolved per spatial axis from its attributes: kernel k, stride
    s, dilation d, (before, after) pads. `pre_padded`: the padding was written per side or
    "same" (the input is padded as by F.pad first); `direct`: torch's own `padding=` says it
    exactly (symmetric, at most half the kernel, and no ceil-mode window that could start in
    the right padding), else the torch code pads with F.pad first."""

    def __init__(self, a, nd: int, name: str):
        self.nd = nd
        self.name = name
        self.ceil_mode = a.ceil_mode
        self.k = per_axis(a.kernel, nd)
        self.s = self.k if a.stride is None else per_axis(a.stride, nd)
        self.d = per_axis(getattr(a, "dilation", 1), nd)
        for what, val in (("kernel", self.k), ("stride", self.s), ("dilation", self.d)):
            if len(val) != nd or min(val) < 1:
                raise ShapeError(f"{what} must be {nd} number(s) >= 1",
                                 expected=f"{nd} value(s) >= 1", found=literal(val), attr=what)
        padding = getattr(a, "padding", 0)
        self.pads: Pads = resolve_padding(padding, self.k, self.s, self.d, nd, name)
        self.pre_padded = pre_padded(padding, nd)
        fits = all(lo == hi <= k // 2 for (lo, hi), k in zip(self.pads, self.k))
        if not self.pre_padded and not fits:
            # torch refuses it too: a window could then see only padding
            worst = max(range(nd), key=lambda i: self.pads[i][0] - self.k[i] // 2)
            raise ShapeError("padding must be at most half the kernel size (per-side padding, "
                             "e.g. (2, 2) for 1-D, pads any amount)",
                             expected=f"padding <= {self.k[worst] // 2}",
                             found=str(self.pads[worst][0]), attr="padding")
        self.direct = fits and (not a.ceil_mode or not self.pre_padded
                                or all(s == 1 for s in self.s))
        if name in SEES_WHOLE_KERNEL and self.pre_padded:
            # F.pad first, so that torch checks the padded size against the kernel
            self.direct = all(lo == hi == 0 for lo, hi in self.pads)

    def check_sizes(self, sizes) -> None:
        """E0305 where a (known) size leaves no window, or torch's op would refuse it."""
        for ax, v in enumerate(sizes):
            if v is None:
                continue
            k, s, d, (lo, hi) = self.k[ax], self.s[ax], self.d[ax], self.pads[ax]
            if out_size(v, k, s, d, lo, hi, self.ceil_mode, self.pre_padded) < 1:
                raise ShapeError(f"kernel larger than the (padded) input on spatial axis {ax}",
                                 expected=f"padded size >= {d * (k - 1) + 1}",
                                 found=f"size {v} + padding {lo + hi} = {v + lo + hi}",
                                 attr="kernel", code="E0305")
            seen = v if self.direct else v + lo + hi
            if self.name in SEES_WHOLE_KERNEL and seen < k:
                raise ShapeError(f"the input is smaller than the kernel on spatial "
                                 f"axis {ax} (torch's {self.name} refuses it, even with "
                                 "padding=; per-side padding pads first)",
                                 expected=f"size >= {k}",
                                 found=f"size {v}" + ("" if self.direct else
                                                      f" + padding {lo + hi} = {seen}"),
                                 attr="kernel", code="E0305")

    def out_dims(self, x) -> tuple[D.Dim, ...]:
        """The output's spatial dims for input type x (checked where they are known)."""
        need_spatial(x, self.nd, self.name)
        sizes = [D.as_dim(v) for v in x.shape[-self.nd:]]
        self.check_sizes([D.value(v) for v in sizes])
        return tuple(_out_dim(v, k, s, d, lo, hi, self.ceil_mode, self.pre_padded)
                     for v, k, s, d, (lo, hi) in zip(sizes, self.k, self.s, self.d, self.pads))


# ---- NumPy kernels -------------------------------------------------------------------------


# More kernel taps than this reach the input: reduce window by window, one axis at a time,
# instead of one strided view per tap (a huge kernel with per-side padding far past the input
# would otherwise loop over millions of taps).
MAX_TAP_VIEWS = 256


def pool_nchw(x: np.ndarray, k, s, d, pads: Pads, ceil_mode: bool, pre_padded: bool,
              mode: str, count_include_pad: bool = True, divisor_override: int | None = None,
              by_windows: bool | None = None) -> np.ndarray:
    """x [N, C, *spatial] -> [N, C, *out]; mode 'max' or 'avg' (torch's semantics; the module
    docstring says what per-side padding means). `by_windows` picks the reduction (None: by
    the number of taps; the tests force each)."""
    sizes = x.shape[2:]
    outs = [out_size(n, kk, ss, dd, lo, hi, ceil_mode, pre_padded)
            for n, kk, ss, dd, (lo, hi) in zip(sizes, k, s, d, pads)]
    # Only the taps that reach the input, on the rows they read (ops/window.py): padding adds
    # -inf to a max and 0 to an average's sum (whose divisor is counted apart). The buffer
    # also holds ceil mode's extra far-side padding for its last partial window.
    reaches = tuple(reach(n, kk, ss, dd, lo, o)
                    for n, kk, ss, dd, (lo, _), o in zip(sizes, k, s, d, pads, outs))
    fill = -np.inf if mode == "max" else 0.0
    if any(r.empty for r in reaches):
        res = alloc_like(x, x.shape[:2] + tuple(outs))
        res[...] = fill
        return res
    if by_windows is None:
        by_windows = math.prod(r.t1 - r.t0 for r in reaches) > MAX_TAP_VIEWS
    if by_windows:
        res = x
        for i, (kk, ss, dd, (lo, _), o) in enumerate(zip(k, s, d, pads, outs)):
            res = _reduce_axis(res, 2 + i, o, kk, ss, dd, lo, mode)
    else:
        res = _reduce_taps(x, s, d, outs, reaches, mode)
    if mode == "avg":
        if divisor_override is not None:
            res /= res.dtype.type(divisor_override)
            return res
        div = np.ones((), np.float64)
        for n, o, kk, ss, (lo, hi) in zip(sizes, outs, k, s, pads):
            div = np.multiply.outer(div, window_counts(n, o, kk, ss, lo, hi, count_include_pad))
        res *= (1.0 / np.maximum(div, 1.0)).astype(res.dtype)
    return res


def _reduce_taps(x: np.ndarray, s, d, outs, reaches, mode: str) -> np.ndarray:
    """Max or sum over the taps that reach the input: each tap is one strided view of the
    (framed) input, reduced into the result in place."""
    nd = len(outs)
    fill = -np.inf if mode == "max" else 0.0
    xp = window(x, tuple(range(2, 2 + nd)), reaches, fill, lambda shape: alloc_like(x, shape))
    reduce = np.maximum if mode == "max" else np.add
    res = alloc_like(x, x.shape[:2] + tuple(outs))
    taps = itertools.product(*(range(r.t1 - r.t0) for r in reaches))
    for n_tap, tap in enumerate(taps):
        view = (slice(None), slice(None)) + tuple(
            slice(t * dd, t * dd + (o - 1) * ss + 1, ss) for t, dd, ss, o in zip(tap, d, s, outs))
        if n_tap == 0:
            res[...] = xp[view]
        else:
            reduce(res, xp[view], out=res)
    return res


def _reduce_axis(x: np.ndarray, axis: int, o: int, k: int, s: int, d: int, before: int,
                 mode: str) -> np.ndarray:
    """Max or sum of each window along one axis (a box's max and sum are separable). Window j
    reads input rows j*s - before + t*d; those inside the input are contiguous in x[r::d] for
    r its first row's residue mod d, so one ufunc.reduceat per residue class (at most
    min(d, n, o) of them) reduces all its windows. Windows of padding only are -inf or 0."""
    n = x.shape[axis]
    fill = -np.inf if mode == "max" else 0.0
    ufunc = np.maximum if mode == "max" else np.add
    start = np.arange(o, dtype=np.int64) * s - before
    t_lo = np.clip(-(start // d), 0, k)  # the first tap with start + t*d >= 0
    t_hi = np.clip(-((start - n) // d), 0, k)  # past the last tap with start + t*d < n
    count = t_hi - t_lo
    first = start + t_lo * d
    live = count > 0
    shape = list(x.shape)
    shape[axis] = o
    res = alloc_like(x, shape)
    res[...] = fill
    before_axis = (slice(None),) * axis
    for r in np.unique(first[live] % d):
        sel = np.nonzero(live & (first % d == r))[0]
        rows = x[before_axis + (slice(int(r), None, d),)]
        # one row of fill after the input: reduceat needs every range end to be an index
        end = list(rows.shape)
        end[axis] = 1
        rows = np.concatenate([rows, np.full(end, fill, x.dtype)], axis=axis)
        lo = (first[sel] - r) // d
        bounds = np.stack([lo, lo + count[sel]], axis=1).ravel()
        reduced = ufunc.reduceat(rows, bounds, axis=axis)
        res[before_axis + (sel,)] = reduced[before_axis + (slice(0, None, 2),)]
    return res


def _batched(nd, x: np.ndarray, run) -> np.ndarray:
    """run(x) on [N, C, *spatial]; an unbatched [C, *spatial] input gets a batch of one."""
    if x.ndim == nd + 2:
        return run(x)
    return run(x[None])[0]


def _pool_kernel(nd, mode):
    def kernel(a, xs, ctx):
        x = xs[0]
        win = Window(a, nd, f"{mode}_pool{nd}d")
        win.check_sizes(x.shape[-nd:])  # runtime sizes the shape rule could not know
        return [_batched(nd, x, lambda xb: pool_nchw(
            xb, win.k, win.s, win.d, win.pads, a.ceil_mode, win.pre_padded, mode,
            getattr(a, "count_include_pad", True), getattr(a, "divisor_override", None)))]
    return kernel


def _lp_kernel(nd):
    def kernel(a, xs, ctx):
        win = Window(a, nd, f"lp_pool{nd}d")
        win.check_sizes(xs[0].shape[-nd:])
        k, s = win.k, win.s
        ones = (1,) * nd
        nopad = ((0, 0),) * nd
        p = a.norm_type

        def run(x):
            if math.isinf(p):  # torch: the max of |x| (the min of |x| for -inf)
                sign = 1.0 if p > 0 else -1.0
                m = pool_nchw(sign * np.abs(x), k, s, ones, nopad, a.ceil_mode, False, "max")
                return sign * m
            # F.lp_pool2d: avg_pool(x^p) * kernel size, its sign kept, to the power 1/p
            # (NaN where x^p or the sum's root is not real, as in torch)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                out = pool_nchw(np.power(x, x.dtype.type(p)), k, s, ones, nopad, a.ceil_mode,
                                False, "avg")
                out = np.sign(out) * np.maximum(np.abs(out), 0)
                return np.power(out * x.dtype.type(math.prod(k)), x.dtype.type(1.0 / p))
        return [_batched(nd, xs[0], run)]
    return kernel


# ---- shape rules, PyTorch emitters, labels -------------------------------------------------


def _pool_shape(nd, name):
    def shape(a, ins):
        x = ins[0]
        if getattr(a, "divisor_override", None) == 0:
            raise ShapeError("divisor_override must not be 0 (torch refuses it too)",
                             expected="a nonzero divisor", found="0",
                             attr="divisor_override", code="E0331")
        if hasattr(a, "norm_type") and (a.norm_type == 0 or math.isnan(a.norm_type)):
            raise ShapeError(f"norm_type must not be {a.norm_type} (the result is a "
                             f"power 1/norm_type of the windows' sums)",
                             expected="a nonzero norm_type (1, 2, 3, ...)",
                             found=str(a.norm_type), attr="norm_type", code="E0330")
        return [x.with_shape(x.shape[:-nd] + Window(a, nd, name).out_dims(x))]
    return shape


def _window_call(nd, mode):
    """F.max_pool2d(x, ...) etc.; per-side or "same" padding that torch's `padding=` cannot
    say is an F.pad first (-inf for max pools, zeros for average pools)."""
    def call(a, args, ctx, ins):
        win = Window(a, nd, f"{mode}_pool{nd}d")
        x = args[0]
        parts = [f"kernel_size={literal(a.kernel)}"]
        if a.stride is not None:
            parts.append(f"stride={literal(a.stride)}")
        pre_pad = None
        if win.direct:
            arg = torch_padding(a.padding, win.pads, accepts_strings=False).arg
            if arg is not None:
                parts.append(f"padding={literal(arg)}")
        elif any(lo or hi for lo, hi in win.pads):
            pre_pad = literal(fpad_order(win.pads))
        if win.d != (1,) * nd:
            parts.append(f"dilation={literal(a.dilation)}")
        if a.ceil_mode:
            parts.append("ceil_mode=True")
        fn = f"F.{mode}_pool{nd}d"
        if mode == "max":
            src = x if pre_pad is None else f'F.pad({x}, {pre_pad}, value=float("-inf"))'
            return f"{fn}({', '.join([src] + parts)})"
        divisor = getattr(a, "divisor_override", None)
        if divisor is not None:
            parts.append(f"divisor_override={divisor}")
        if pre_pad is None:
            if not a.count_include_pad:
                parts.append("count_include_pad=False")
            return f"{fn}({', '.join([x] + parts)})"
        summed = f"{fn}({', '.join([f'F.pad({x}, {pre_pad})'] + parts)})"
        if a.count_include_pad or divisor is not None:
            return summed
        # Divide by the input elements of each window: the same average over a padded
        # [1, spatial] tensor of ones counts them (the divisors cancel). A window of padding
        # only counts 0: its sum is 0 too, and the clamp makes the result 0, not NaN.
        ones = f"F.pad({x}.new_ones(1, *{x}.shape[-{nd}:]), {pre_pad})"
        counted = f"{fn}({', '.join([ones] + parts)})"
        return f"({summed} / {counted}.clamp(min=1.0 / {math.prod(win.k)}))"
    return call


def _lp_call(nd):
    def call(a, args, ctx, ins):
        p = a.norm_type
        norm = f'float("{p}")' if math.isinf(p) else repr(p)
        # F.lp_pool1d multiplies by kernel_size itself: it must be an int there
        kernel = literal(a.kernel if nd > 1 else per_axis(a.kernel, 1)[0])
        parts = [args[0], norm, f"kernel_size={kernel}"]
        if a.stride is not None:
            parts.append(f"stride={literal(a.stride)}")
        if a.ceil_mode:
            parts.append("ceil_mode=True")
        return f"F.lp_pool{nd}d({', '.join(parts)})"
    return call


def _pool_label(nd):
    def label(a) -> str:
        parts = [fmt_size(a.kernel, nd)]
        if hasattr(a, "norm_type"):
            parts.insert(0, f"p={a.norm_type:g}")
        k = per_axis(a.kernel, nd)
        if a.stride is not None and per_axis(a.stride, nd) != k:
            parts.append("s" + fmt_size(a.stride, 1 if isinstance(a.stride, int) else nd))
        pad = padding_label(getattr(a, "padding", 0), nd)
        if pad:
            parts.append(pad)
        dil = getattr(a, "dilation", 1)
        if per_axis(dil, nd) != (1,) * nd:
            parts.append("d" + fmt_size(dil, 1 if isinstance(dil, int) else nd))
        if a.ceil_mode:
            parts.append("ceil")
        if getattr(a, "divisor_override", None) is not None:
            parts.append(f"/{a.divisor_override}")
        return ", ".join(parts)
    return label


_PADDING_DOC = (" `padding`: an int or one per axis (torch's, at most half the kernel), per "
                "side in F.pad order (last axis first), 'same' (stride 1) or 'valid'; per-side "
                "and 'same' pad the input first, as F.pad does, so a ceil-mode window may start "
                "in the right padding.")


def _pool_op(nd, mode, attrs, examples) -> Op:
    name = f"{mode}_pool{nd}d"
    axes = SPATIAL_NAMES[nd]
    if mode == "max":
        what = ("maximum", ", dilation=1")
        extra = " Padding is -inf (never the maximum; a window of padding only gives -inf)."
    else:
        what = ("mean", "")
        extra = (" count_include_pad=true divides by the window clipped to the padded input, "
                 "false by its input elements (a window of padding only gives 0)"
                 + (", divisor_override by that number." if nd > 1 else "."))
    return Op(
        name=name,
        family="pool",
        doc=(f"{nd}-D {mode} pooling (F.{name}): the {what[0]} of each window, "
             f"`x -> {name}(kernel, stride=kernel, padding=0{what[1]}, ceil_mode=false)` over "
             f"[B, C, {axes}]; output size floor((W + P - D(F-1) - 1)/S) + 1 with P the "
             "padding of both sides (ceil with ceil_mode, dropping a last window that would "
             "start in the right padding)." + _PADDING_DOC + extra),
        attrs=attrs,
        positional=("kernel",),
        shape=_pool_shape(nd, name),
        numpy=_pool_kernel(nd, mode),
        vjp=pool_vjp(nd, mode, Window),
        torch_call=_window_call(nd, mode),
        label=_pool_label(nd),
        examples=examples,
    )


def _lp_op(nd, attrs, examples) -> Op:
    name = f"lp_pool{nd}d"
    return Op(
        name=name,
        family="pool",
        doc=(f"{nd}-D power-average pooling (F.{name}), "
             f"`x -> {name}(norm_type, kernel, stride=kernel, ceil_mode=false)` over "
             f"[B, C, {SPATIAL_NAMES[nd]}]: (sum of x^p over the window)^(1/p), computed as "
             "torch does: avg_pool(x^p) times the kernel size, sign(.)*relu(|.|), to the power "
             "1/p (so a ceil-mode window clipped by the input is scaled up to the full kernel, "
             "and a negative x^p sum gives NaN for p not an odd integer root). norm_type inf "
             "is the max of |x|. No padding, as in torch."),
        attrs=attrs,
        positional=("norm_type", "kernel"),
        shape=_pool_shape(nd, name),
        numpy=_lp_kernel(nd),
        vjp=lp_pool_vjp(nd, Window),
        torch_call=_lp_call(nd),
        label=_pool_label(nd),
        examples=examples,
    )


# ---- the ops and their Examples ------------------------------------------------------------

X1 = (tensor("f32", 2, 3, 11),)
X2 = (tensor("f32", 2, 3, 9, 11),)
X3 = (tensor("f32", 2, 3, 7, 9, 8),)
POSITIVE = (0.1, 2.0)  # lp pools with an odd norm_type: real roots only

POOL_OPS: tuple = (
    _pool_op(1, "max", MaxPool1dAttrs, (
        Example({"kernel": 2}, X1),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, X1),
        Example({"kernel": 3, "stride": 2, "dilation": 2, "ceil_mode": True}, X1),
        Example({"kernel": 2, "stride": 3, "padding": (1, 0), "ceil_mode": True}, X1),
        Example({"kernel": 4, "dilation": 2, "stride": 1, "padding": "same"}, X1),
        Example({"kernel": 3, "padding": "valid"}, (tensor("f32", 4, 3),)),
        Example({"kernel": 1, "dilation": 3}, (tensor("f32", 2, 1, 1),)))),
    _pool_op(2, "max", MaxPool2dAttrs, (
        Example({"kernel": 2}, (tensor("f32", D.symbol("B"), 3, 8, 8),)),
        Example({"kernel": 3, "stride": 2, "padding": 1}, X2),
        Example({"kernel": (3, 2), "stride": (2, 1), "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "ceil_mode": True}, (tensor("f32", 3, 8, 8),)),
        Example({"kernel": (3, 2), "stride": (2, 3), "padding": (1, 0),
                 "dilation": (2, 3), "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "padding": (0, 1, 1, 1)}, X2),
        Example({"kernel": (3, 4), "stride": 1, "padding": "same", "dilation": (1, 2)}, X2),
        Example({"kernel": 2, "stride": 2, "padding": (1, 1, 0, 1), "ceil_mode": True},
                (tensor("f32", 2, 1, 5, 6),)))),
    _pool_op(3, "max", MaxPool3dAttrs, (
        Example({"kernel": 2}, (tensor("f32", D.symbol("B"), 2, 4, 6, 5),)),
        Example({"kernel": (3, 2, 3), "stride": (2, 1, 2), "padding": (1, 0, 1),
                 "ceil_mode": True}, X3),
        Example({"kernel": 2, "stride": (1, 2, 2), "dilation": (2, 1, 3)}, X3),
        Example({"kernel": 3, "stride": 1, "padding": "same"}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"kernel": 2, "stride": 2, "padding": (1, 0, 1, 0, 0, 1), "ceil_mode": True},
                X3))),
    _pool_op(1, "avg", AvgPool1dAttrs, (
        Example({"kernel": 3}, X1),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                 "count_include_pad": False}, X1),
        Example({"kernel": 3, "stride": 2, "padding": (2, 1), "ceil_mode": True,
                 "count_include_pad": False}, X1),
        Example({"kernel": 2, "stride": 1, "padding": "same"}, X1),
        Example({"kernel": 2, "stride": 2, "padding": (3, 0)}, X1))),
    _pool_op(2, "avg", AvgPool2dAttrs, (
        Example({"kernel": 2, "stride": 2}, X2),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, X2),
        Example({"kernel": (3, 2), "padding": (1, 0), "divisor_override": 4,
                 "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "padding": (0, 1, 2, 0), "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "padding": (0, 1, 2, 0), "ceil_mode": True,
                 "count_include_pad": False}, X2),
        Example({"kernel": (2, 3), "stride": 1, "padding": "same",
                 "count_include_pad": False}, X2),
        Example({"kernel": 2, "stride": 2, "padding": (1, 1, 3, 0), "divisor_override": 3},
                (tensor("f32", 3, 5, 6),)))),
    _pool_op(3, "avg", AvgPool3dAttrs, (
        Example({"kernel": 2}, (tensor("f32", D.symbol("B"), 2, 4, 6, 5),)),
        Example({"kernel": (3, 2, 3), "stride": 2, "padding": (1, 1, 0), "ceil_mode": True,
                 "count_include_pad": False}, X3),
        Example({"kernel": 3, "stride": (2, 1, 3), "padding": 1, "divisor_override": 5}, X3),
        Example({"kernel": 2, "stride": 2, "padding": (1, 0, 0, 1, 2, 1), "ceil_mode": True,
                 "count_include_pad": False}, X3),
        Example({"kernel": 3, "stride": 1, "padding": "same"}, (tensor("f32", 2, 3, 4, 5),)))),
    _lp_op(1, LpPool1dAttrs, (
        Example({"norm_type": 2.0, "kernel": 3}, X1),
        Example({"norm_type": 3.0, "kernel": 3, "stride": 2, "ceil_mode": True}, X1,
                float_range=POSITIVE))),
    _lp_op(2, LpPool2dAttrs, (
        Example({"norm_type": 2.0, "kernel": 2}, X2),
        Example({"norm_type": 1.5, "kernel": (3, 2), "stride": (2, 3), "ceil_mode": True},
                X2, float_range=POSITIVE),
        Example({"norm_type": 4.0, "kernel": 3, "stride": 1}, (tensor("f32", 3, 5, 4),)))),
    _lp_op(3, LpPool3dAttrs, (
        Example({"norm_type": 2.0, "kernel": 2}, X3),
        Example({"norm_type": 1.0, "kernel": (2, 3, 2), "stride": (1, 2, 3),
                 "ceil_mode": True}, X3, float_range=POSITIVE))),
)
