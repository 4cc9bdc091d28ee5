"""Pooling to a fixed output size: adaptive average and max pooling (1-D, 2-D, 3-D), global
average pooling (adaptive to 1) and k-max pooling (the k largest along an axis). Op records for
the registry, used by elaboration (shape rules), the interpreter (NumPy kernels) and the
PyTorch back end (F.adaptive_avg_pool2d and friends; no parameters). Windowed pools are in
ops/pool.py.

Bins are torch's: output i of an axis of size n covers floor(i*n/o) .. ceil((i+1)*n/o), so
neighbouring bins overlap when o does not divide n. A box's mean and maximum are separable, so
the kernels reduce one axis at a time: differences of a running sum (mean), or a gather of
each bin's elements, padded to the longest bin by repeating its last element, and a max over
them (max).
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, NoAttrs, Op, ShapeError, need_float, norm_axis
from dslc.ops.pool import SPATIAL_NAMES, fmt_size, literal, need_spatial, per_axis
from dslc.types import tensor


class KMaxAttrs(Attrs):
    k: int
    dim: int = -1


class Adaptive1dAttrs(Attrs):
    output_size: int | tuple[int]


class Adaptive2dAttrs(Attrs):
    output_size: int | tuple[int, int]


class Adaptive3dAttrs(Attrs):
    output_size: int | tuple[int, int, int]


def _bins(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's bins along one axis: starts floor(i*n/o), ends ceil((i+1)*n/o)."""
    i = np.arange(o)
    return (i * n) // o, -(-((i + 1) * n) // o)


def _mean_axis(x: np.ndarray, axis: int, o: int) -> np.ndarray:
    """Mean of each bin along `axis`: differences of a float64 running sum (O(n), where an
    [o, n] averaging matrix would grow with o*n), rounded to x's dtype once."""
    n = x.shape[axis]
    lo, hi = _bins(n, o)
    sums = np.cumsum(x, axis=axis, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
    count = (hi - lo).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    means = (np.take(sums, hi, axis=axis) - np.take(sums, lo, axis=axis)) / count
    return means.astype(x.dtype, copy=False)


def _max_axis(x: np.ndarray, axis: int, o: int) -> np.ndarray:
    """Max of each bin along `axis`: each bin's elements gathered (the last one repeated up to
    the longest bin, which leaves the max unchanged) and reduced."""
    lo, hi = _bins(x.shape[axis], o)
    longest = int((hi - lo).max())
    idx = np.minimum(lo[:, None] + np.arange(longest), hi[:, None] - 1)  # [o, longest]
    return np.take(x, idx, axis=axis).max(axis=axis + 1)


def _mean_axis_grad(g: np.ndarray, axis: int, n: int) -> np.ndarray:
    """The cotangent of _mean_axis's input (size n along `axis`): each bin's cotangent over
    its count, to every element of the bin (overlapping bins add up)."""
    o = g.shape[axis]
    lo, hi = _bins(n, o)
    j = np.arange(n)
    spread = ((j >= lo[:, None]) & (j < hi[:, None])) / (hi - lo)[:, None]  # [o, n]
    return np.moveaxis(np.moveaxis(g, axis, -1) @ spread.astype(g.dtype), -1, axis)


def _max_axis_grad(x: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """The cotangent of _max_axis's input x: each bin's cotangent to its first maximum."""
    o = g.shape[axis]
    lo, hi = _bins(x.shape[axis], o)
    longest = int((hi - lo).max())
    idx = np.minimum(lo[:, None] + np.arange(longest), hi[:, None] - 1)  # [o, longest]
    xm = np.moveaxis(x, axis, -1)
    pos = idx[np.arange(o), np.take(xm, idx, axis=-1).argmax(axis=-1)]  # [..., o]
    hit = pos[..., None] == np.arange(x.shape[axis])  # [..., o, n]
    gx = (np.moveaxis(g, axis, -1)[..., None] * hit).sum(axis=-2)
    return np.moveaxis(gx, -1, axis)


def _adaptive_vjp(nd: int, mode: str):
    """Backward through the per-axis reductions in reverse order; a max recomputes the
    forward's intermediate results (memory: one intermediate per spatial axis)."""
    def vjp(a, ins, outs, gouts, ctx):
        x = ins[0]
        sizes = per_axis(a.output_size, nd)
        stages = [x]
        if mode == "max":
            for i, o in enumerate(sizes[:-1]):
                stages.append(_max_axis(stages[-1], x.ndim - nd + i, o))
        g = gouts[0]
        for i in reversed(range(nd)):
            axis = x.ndim - nd + i
            if mode == "avg":
                g = _mean_axis_grad(g, axis, x.shape[axis])
            else:
                g = _max_axis_grad(stages[i], g, axis)
        return [g], {}
    return vjp


def _adaptive_shape(nd: int, name: str):
    def shape(a, ins):
        x = ins[0]
        need_spatial(x, nd, name)
        o = per_axis(a.output_size, nd)
        if len(o) != nd or min(o) < 1:
            raise ShapeError(f"output_size must be 1 or {nd} number(s) >= 1", expected=">= 1",
                             found=literal(a.output_size), attr="output_size")
        return [x.with_shape(x.shape[:-nd] + tuple(D.const(v) for v in o))]
    return shape


def _adaptive_kernel(nd: int, mode: str):
    reduce_axis = _mean_axis if mode == "avg" else _max_axis

    def kernel(a, xs, ctx):
        x = xs[0]
        for i, o in enumerate(per_axis(a.output_size, nd)):
            x = reduce_axis(x, x.ndim - nd + i, o)
        return [x]
    return kernel


def _adaptive_op(nd: int, mode: str, attrs, examples) -> Op:
    name = f"adaptive_{mode}_pool{nd}d"
    what = "Average" if mode == "avg" else "Max"
    return Op(
        name=name,
        family="pool",
        doc=(f"{what} pooling of [B, C, {SPATIAL_NAMES[nd]}] to a fixed output size "
             f"(F.{name}), `x -> {name}(output_size)`: bin i of an axis of size n covers "
             "floor(i*n/o) .. ceil((i+1)*n/o) (bins overlap when o does not divide n; o may "
             "exceed n)." + ("" if mode == "avg" else " Values only (no indices).")),
        attrs=attrs,
        positional=("output_size",),
        shape=_adaptive_shape(nd, name),
        numpy=_adaptive_kernel(nd, mode),
        vjp=_adaptive_vjp(nd, mode),
        torch_call=lambda a, args, ctx, ins: f"F.{name}({args[0]}, {literal(a.output_size)})",
        label=lambda a: fmt_size(a.output_size, nd),
        examples=examples,
    )


# ---- global average / k-max ---------------------------------------------------------------


def _global_shape(a, ins):
    x = ins[0]
    need_float(x)
    if x.rank < 3:
        raise ShapeError("global_avg_pool needs [B, C, spatial...] (rank >= 3)",
                         expected="rank >= 3", found=f"{x} (rank {x.rank})", arg=0)
    return [x.with_shape(x.shape[:2] + (D.const(1),) * (x.rank - 2))]


def _global_call(a, args, ctx, ins):
    dims = tuple(range(2, ins[0].rank))
    return f"{args[0]}.mean(dim={literal(dims)}, keepdim=True)"


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


def _kmax_vjp(a, ins, outs, gouts, ctx):
    """Each kept value's cotangent back to where it came from (the indices recomputed as
    the kernel finds them; memory: the k indices)."""
    x = ins[0]
    ax = a.dim % x.ndim
    top = np.argpartition(x, x.shape[ax] - a.k, axis=ax)
    idx = np.take(top, np.arange(x.shape[ax] - a.k, x.shape[ax]), axis=ax)
    idx.sort(axis=ax)
    gx = np.zeros_like(x, dtype=gouts[0].dtype)
    np.put_along_axis(gx, idx, gouts[0], axis=ax)
    return [gx], {}


def _global_vjp(a, ins, outs, gouts, ctx):
    x = ins[0]
    count = int(np.prod(x.shape[2:]))
    return [np.broadcast_to(gouts[0] / count, x.shape).copy()], {}


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
    vjp=_global_vjp,
    torch_call=_global_call,
    examples=(Example({}, (tensor("f32", D.symbol("B"), 4, 5, 6),)),
              Example({}, (tensor("f32", 2, 3, 7),))),
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
    vjp=_kmax_vjp,
    torch_call=_kmax_call,
    label=lambda a: f"k={a.k}" + ("" if a.dim == -1 else f", dim {a.dim}"),
    examples=(Example({"k": 3}, (tensor("f32", 2, 4, 9),)),
              Example({"k": 2, "dim": 1}, (tensor("f32", 2, 5, 3),))),
)

# ---- the ops and their Examples ------------------------------------------------------------

ADAPTIVE_POOL_OPS: tuple = (
    GLOBAL_AVG_POOL,
    _adaptive_op(1, "avg", Adaptive1dAttrs, (
        Example({"output_size": 4}, (tensor("f32", 2, 3, 11),)),
        Example({"output_size": (7,)}, (tensor("f32", 3, 5),)),
        Example({"output_size": 1}, (tensor("f32", D.symbol("B"), 2, 6),)))),
    _adaptive_op(2, "avg", Adaptive2dAttrs, (
        Example({"output_size": 3}, (tensor("f32", 2, 3, 7, 10),)),
        Example({"output_size": (2, 4)}, (tensor("f32", 1, 2, 5, 5),)),
        Example({"output_size": (7, 7)}, (tensor("f32", 3, 9, 9),)))),
    _adaptive_op(3, "avg", Adaptive3dAttrs, (
        Example({"output_size": (2, 3, 4)}, (tensor("f32", 2, 3, 5, 7, 9),)),
        Example({"output_size": 3}, (tensor("f32", 2, 1, 4, 2),)))),
    _adaptive_op(1, "max", Adaptive1dAttrs, (
        Example({"output_size": 4}, (tensor("f32", 2, 3, 11),)),
        Example({"output_size": 6}, (tensor("f32", 3, 4),)))),
    _adaptive_op(2, "max", Adaptive2dAttrs, (
        Example({"output_size": (3, 5)}, (tensor("f32", D.symbol("B"), 3, 7, 10),)),
        Example({"output_size": 7}, (tensor("f32", 1, 2, 14, 14),)),
        Example({"output_size": (4, 1)}, (tensor("f32", 2, 3, 1),)))),
    _adaptive_op(3, "max", Adaptive3dAttrs, (
        Example({"output_size": (2, 3, 4)}, (tensor("f32", 2, 3, 5, 7, 9),)),
        Example({"output_size": (1, 2, 5)}, (tensor("f32", 1, 2, 3, 3, 3),)))),
    K_MAX_POOL,
)
