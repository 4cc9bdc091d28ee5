"""Pooling ops (max/avg 1-D and 2-D, global and adaptive average, k-max): op records for the
registry, used by elaboration (shape rules), the interpreter (NumPy kernels) and the PyTorch
back end (F.max_pool2d and friends; no parameters).

The window kernels take kh*kw strided views and reduce them with in-place ufuncs; they never
copy the input unless it needs padding, and they keep its memory layout (the conv kernels
return channels-last views, and a pool between two convs stays channels-last).
"""

from __future__ import annotations

import numpy as np
import sympy

from dslc import dims as D
from dslc.ops.base import Attrs, Example, NoAttrs, Op, ShapeError, need_float, norm_axis
from dslc.ops.window import reach, window
from dslc.types import tensor


class Pool1dAttrs(Attrs):
    kernel: int | tuple[int]
    stride: int | tuple[int] | None = None  # None: the kernel size, as in torch
    padding: int | tuple[int] = 0
    ceil_mode: bool = False


class Pool2dAttrs(Attrs):
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False


class AvgPool1dAttrs(Pool1dAttrs):
    count_include_pad: bool = True


class AvgPool2dAttrs(Pool2dAttrs):
    count_include_pad: bool = True


class AdaptiveAttrs(Attrs):
    output_size: int | tuple[int, int]


class KMaxAttrs(Attrs):
    k: int
    dim: int = -1


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _need_spatial(x, nd: int, name: str) -> None:
    need_float(x)
    if x.rank not in (nd + 1, nd + 2):
        raise ShapeError(f"{name} needs an input of rank {nd + 2} (batched) or {nd + 1}",
                         expected=f"[B, C, {', '.join('HW'[2 - nd:]) if nd == 2 else 'L'}]",
                         found=f"{x} (rank {x.rank})", arg=0)


class _Window:
    """Per spatial axis: kernel, stride, padding, output size (symbolic)."""

    def __init__(self, a, x, nd: int, name: str):
        _need_spatial(x, nd, name)
        self.k = _tup(a.kernel, nd)
        self.s = self.k if a.stride is None else _tup(a.stride, nd)
        self.p = _tup(a.padding, nd)
        for what, val, lo in (("kernel", self.k, 1), ("stride", self.s, 1),
                              ("padding", self.p, 0)):
            if len(val) != nd or min(val) < lo:
                raise ShapeError(f"{what} must be {nd} number(s) >= {lo}",
                                 expected=f"{nd} value(s) >= {lo}", found=str(val), attr=what)
        for k, p in zip(self.k, self.p):
            if p > k // 2:  # torch refuses it too: a window could then see only padding
                raise ShapeError("padding must be at most half the kernel size",
                                 expected=f"padding <= {k // 2}", found=str(p), attr="padding")
        self.out = []
        for ax, (size, k, s, p) in enumerate(zip(x.shape[-nd:], self.k, self.s, self.p)):
            v = D.value(D.as_dim(size))
            if v is not None and v + 2 * p < k:
                raise ShapeError(f"kernel larger than the (padded) input on spatial axis {ax}",
                                 expected=f"padded size >= {k}",
                                 found=f"size {v} + padding {2 * p} = {v + 2 * p}",
                                 attr="kernel", code="E0305")
            o = D.conv_out(size, k, s, p, 1)
            if a.ceil_mode:
                # torch: round up, but drop a last window that would start in the right padding
                o = sympy.Min(D.pool_out_ceil(size, k, s, p, 1),
                              sympy.ceiling((size + p) / sympy.Integer(s)))
            self.out.append(o)


def _pool_shape(nd, name):
    def shape(a, ins):
        x = ins[0]
        win = _Window(a, x, nd, name)
        return [x.with_shape(x.shape[:-nd] + tuple(win.out))]
    return shape


def _alloc_like(x: np.ndarray, shape) -> np.ndarray:
    """An empty [N, C, H, W] array in the memory order of x (channels-last stays so)."""
    if x.ndim == 4 and x.strides[1] < x.strides[3]:
        n, c, h, w = shape
        return np.empty((n, h, w, c), x.dtype).transpose(0, 3, 1, 2)
    return np.empty(shape, x.dtype)


def pool2d_nchw(x: np.ndarray, k, s, p, ceil_mode: bool, mode: str,
                count_include_pad: bool = True) -> np.ndarray:
    """x [N, C, H, W] -> [N, C, Ho, Wo]; mode 'max' or 'avg' (torch's semantics)."""
    sizes = x.shape[2:]
    outs = []
    for size, kk, ss, pp in zip(sizes, k, s, p):
        span = size + 2 * pp - kk
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        if ceil_mode and (o - 1) * ss >= size + pp:
            o -= 1
        outs.append(o)
    (ho, wo), (sh, sw) = outs, s
    # Only the taps that reach the input, on the rows they read (ops/window.py): padding adds
    # -inf to a max and 0 to an average's sum (whose divisor comes from the full window).
    # The buffer also holds ceil mode's extra far-side padding for its last partial window.
    rh, rw = (reach(size, kk, ss, 1, pp, oo) for size, kk, ss, pp, oo in zip(sizes, k, s, p, outs))
    fill = -np.inf if mode == "max" else 0.0
    res = _alloc_like(x, x.shape[:2] + (ho, wo))
    if rh.empty or rw.empty:
        res[...] = fill
        return res
    xp = window(x, (2, 3), (rh, rw), fill, lambda shape: _alloc_like(x, shape))
    reduce = np.maximum if mode == "max" else np.add
    # each tap is one strided view of the input, reduced into res in place
    for i in range(rh.t1 - rh.t0):
        for j in range(rw.t1 - rw.t0):
            win = xp[:, :, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw]
            if i == j == 0:
                res[...] = win
            else:
                reduce(res, win, out=res)
    if mode == "avg":
        div = [_counts(size, o, kk, ss, pp, count_include_pad)
               for size, o, kk, ss, pp in zip(sizes, outs, k, s, p)]
        res *= (1.0 / np.outer(div[0], div[1])).astype(res.dtype)
    return res


def _counts(size, o, k, s, p, include_pad) -> np.ndarray:
    """Elements each window averages along one axis, as torch counts them."""
    start = np.arange(o) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def _pool_kernel(nd, mode):
    def kernel(a, xs, ctx):
        x = xs[0]
        batched = x.ndim == nd + 2
        if not batched:
            x = x[None]
        k = _tup(a.kernel, nd)
        s = k if a.stride is None else _tup(a.stride, nd)
        p = _tup(a.padding, nd)
        if nd == 1:
            x, k, s, p = x[:, :, None, :], (1,) + k, (1,) + s, (0,) + p
        y = pool2d_nchw(x, k, s, p, a.ceil_mode, mode, getattr(a, "count_include_pad", True))
        if nd == 1:
            y = y[:, :, 0, :]
        return [y if batched else y[0]]
    return kernel


def _pool_call(nd, mode):
    def call(a, args, ctx, ins):
        parts = [args[0], f"kernel_size={_val(a.kernel)}"]
        if a.stride is not None:
            parts.append(f"stride={_val(a.stride)}")
        if _tup(a.padding, nd) != (0,) * nd:
            parts.append(f"padding={_val(a.padding)}")
        if a.ceil_mode:
            parts.append("ceil_mode=True")
        if mode == "avg" and not a.count_include_pad:
            parts.append("count_include_pad=False")
        return f"F.{mode}_pool{nd}d({', '.join(parts)})"
    return call


def _val(v) -> str:
    """Python literal of an int or a tuple of ints."""
    if isinstance(v, int):
        return str(v)
    return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"


def _fmt(v, nd) -> str:
    return "x".join(str(x) for x in _tup(v, nd))


def _pool_label(nd):
    def label(a) -> str:
        parts = [_fmt(a.kernel, nd)]
        k = _tup(a.kernel, nd)
        if a.stride is not None and _tup(a.stride, nd) != k:
            parts.append("s" + _fmt(a.stride, 1 if isinstance(a.stride, int) else nd))
        if _tup(a.padding, nd) != (0,) * nd:
            parts.append("p" + _fmt(a.padding, 1 if isinstance(a.padding, int) else nd))
        if a.ceil_mode:
            parts.append("ceil")
        return ", ".join(parts)
    return label


def _pool_op(nd, mode, attrs, examples) -> Op:
    name = f"{mode}_pool{nd}d"
    what = "maximum" if mode == "max" else "mean"
    extra = (" Padding is -inf (never the maximum)." if mode == "max" else
             " count_include_pad=true divides by the window size including zero padding.")
    return Op(
        name=name,
        family="pool",
        doc=(f"{nd}-D {mode} pooling (F.{name}): the {what} of each window, "
             f"`x -> {name}(kernel, stride=kernel, padding=0, ceil_mode=false)` over "
             f"[B, C, {'H, W' if nd == 2 else 'L'}]; output size floor((W + 2P - F)/S) + 1 "
             "(ceil with ceil_mode)." + extra),
        attrs=attrs,
        positional=("kernel",),
        shape=_pool_shape(nd, name),
        numpy=_pool_kernel(nd, mode),
        torch_call=_pool_call(nd, mode),
        label=_pool_label(nd),
        examples=examples,
    )


# ---- global / adaptive / k-max -------------------------------------------------------------


def _global_shape(a, ins):
    x = ins[0]
    need_float(x)
    if x.rank < 3:
        raise ShapeError("global_avg_pool needs [B, C, spatial...] (rank >= 3)",
                         expected="rank >= 3", found=f"{x} (rank {x.rank})", arg=0)
    return [x.with_shape(x.shape[:2] + (D.const(1),) * (x.rank - 2))]


def _global_call(a, args, ctx, ins):
    dims = tuple(range(2, ins[0].rank))
    return f"{args[0]}.mean(dim={_val(dims)}, keepdim=True)"


def _adaptive_shape(a, ins):
    x = ins[0]
    _need_spatial(x, 2, "adaptive_avg_pool2d")
    o = _tup(a.output_size, 2)
    if len(o) != 2 or min(o) < 1:
        raise ShapeError("output_size must be 1 or 2 numbers >= 1", expected=">= 1",
                         found=str(a.output_size), attr="output_size")
    return [x.with_shape(x.shape[:-2] + tuple(D.const(v) for v in o))]


def _bin_matrix(size: int, o: int, dtype) -> np.ndarray:
    """[o, size] averaging matrix with torch's bins floor(i*size/o) .. ceil((i+1)*size/o)."""
    m = np.zeros((o, size), np.float64)
    for i in range(o):
        lo = (i * size) // o
        hi = -(-((i + 1) * size) // o)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m.astype(dtype)


def _adaptive_kernel(a, xs, ctx):
    x = xs[0]
    oh, ow = _tup(a.output_size, 2)
    h, w = x.shape[-2:]
    mh = _bin_matrix(h, oh, x.dtype)
    mw = _bin_matrix(w, ow, x.dtype)
    return [np.matmul(np.matmul(mh, x), mw.T)]


def _kmax_shape(a, ins):
    x = ins[0]
    if a.k < 1:
        raise ShapeError("k must be positive", expected=">= 1", found=str(a.k), attr="k")
    if x.rank < 1:
        raise ShapeError("k_max_pool needs at least one axis", expected="rank >= 1",
                         found=str(x), arg=0)
    ax = norm_axis(a.dim, x.rank)
    n = D.value(D.as_dim(x.shape[ax]))
    if n is not None and n < a.k:
        raise ShapeError(f"k larger than axis {a.dim}", expected=f"axis size >= {a.k}",
                         found=f"{x} (size {n})", attr="k", code="E0305")
    shape = list(x.shape)
    shape[ax] = D.const(a.k)
    return [x.with_shape(shape)]


def _kmax_kernel(a, xs, ctx):
    x = xs[0]
    ax = a.dim % x.ndim
    if x.shape[ax] < a.k:
        raise ShapeError(f"k larger than axis {a.dim}", expected=f">= {a.k}",
                         found=str(x.shape[ax]), code="E0305")
    top = np.argpartition(x, x.shape[ax] - a.k, axis=ax)
    idx = np.take(top, np.arange(x.shape[ax] - a.k, x.shape[ax]), axis=ax)
    idx.sort(axis=ax)  # keep the original order of the k largest (the notes' k-max pooling)
    return [np.take_along_axis(x, idx, axis=ax)]


def _kmax_call(a, args, ctx, ins):
    x = args[0]
    return (f"torch.gather({x}, {a.dim}, "
            f"torch.topk({x}, {a.k}, dim={a.dim}).indices.sort(dim={a.dim}).values)")


GLOBAL_AVG_POOL = Op(
    name="global_avg_pool",
    family="pool",
    doc=("Mean over every spatial axis, kept as size 1: [B, C, H, W] -> [B, C, 1, 1] "
         "(nn.AdaptiveAvgPool2d(1)); works for [B, C, L] too."),
    attrs=NoAttrs,
    shape=_global_shape,
    numpy=lambda a, xs, ctx: [xs[0].mean(axis=tuple(range(2, xs[0].ndim)), keepdims=True,
                                         dtype=np.float32 if xs[0].dtype == np.float16
                                         else None).astype(xs[0].dtype, copy=False)],
    torch_call=_global_call,
    examples=(Example({}, (tensor("f32", D.symbol("B"), 4, 5, 6),)),
              Example({}, (tensor("f32", 2, 3, 7),))),
)

ADAPTIVE_AVG_POOL2D = Op(
    name="adaptive_avg_pool2d",
    family="pool",
    doc=("Average pooling to a fixed output size (F.adaptive_avg_pool2d): bin i of an axis "
         "of size H covers floor(i*H/o) .. ceil((i+1)*H/o)."),
    attrs=AdaptiveAttrs,
    positional=("output_size",),
    shape=_adaptive_shape,
    numpy=_adaptive_kernel,
    torch_call=lambda a, args, ctx, ins: (f"F.adaptive_avg_pool2d({args[0]}, "
                                          f"{_val(a.output_size)})"),
    label=lambda a: _fmt(a.output_size, 2),
    examples=(Example({"output_size": 3}, (tensor("f32", 2, 3, 7, 10),)),
              Example({"output_size": (2, 4)}, (tensor("f32", 1, 2, 5, 5),)),
              Example({"output_size": (7, 7)}, (tensor("f32", 3, 9, 9),))),
)

K_MAX_POOL = Op(
    name="k_max_pool",
    family="pool",
    doc=("k-max pooling (the notes' sentence CNNs): keeps the k largest values along `dim` "
         "in their original order."),
    attrs=KMaxAttrs,
    positional=("k", "dim"),
    shape=_kmax_shape,
    numpy=_kmax_kernel,
    torch_call=_kmax_call,
    label=lambda a: f"k={a.k}" + ("" if a.dim == -1 else f", dim {a.dim}"),
    examples=(Example({"k": 3}, (tensor("f32", 2, 4, 9),)),
              Example({"k": 2, "dim": 1}, (tensor("f32", 2, 5, 3),))),
)

X1 = (tensor("f32", 2, 3, 11),)
X2 = (tensor("f32", 2, 3, 9, 11),)

POOL_OPS: tuple = (
    _pool_op(1, "max", Pool1dAttrs, (
        Example({"kernel": 2}, X1),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, X1))),
    _pool_op(2, "max", Pool2dAttrs, (
        Example({"kernel": 2}, (tensor("f32", D.symbol("B"), 3, 8, 8),)),
        Example({"kernel": 3, "stride": 2, "padding": 1}, X2),
        Example({"kernel": (3, 2), "stride": (2, 1), "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "ceil_mode": True}, (tensor("f32", 3, 8, 8),)))),
    _pool_op(1, "avg", AvgPool1dAttrs, (
        Example({"kernel": 3}, X1),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                 "count_include_pad": False}, X1))),
    _pool_op(2, "avg", AvgPool2dAttrs, (
        Example({"kernel": 2, "stride": 2}, X2),
        Example({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, X2),
        Example({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, X2))),
    GLOBAL_AVG_POOL,
    ADAPTIVE_AVG_POOL2D,
    K_MAX_POOL,
)
