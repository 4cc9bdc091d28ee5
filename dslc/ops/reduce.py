"""Reductions over axes: mean, sum, max, min (torch.mean / sum / amax / amin), and the scans
and selections along one axis: cumsum, topk."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.arith import need_numeric
from dslc.ops.base import Attrs, Example, Op, ShapeError, concrete, norm_axis
from dslc.ops.grad import is_float
from dslc.types import TensorType, tensor


class ReduceAttrs(Attrs):
    dim: int | tuple[int, ...] = -1
    keepdim: bool = False


def _axes(a: ReduceAttrs, rank: int) -> tuple[int, ...]:
    dims = (a.dim,) if isinstance(a.dim, int) else a.dim
    if not dims:
        raise ShapeError("needs at least one axis to reduce", expected="dim=int or (ints)",
                         found="()", attr="dim")
    axes = tuple(sorted({norm_axis(d, rank) for d in dims}))
    if len(axes) != len(dims):
        raise ShapeError("an axis is named twice", found=str(a.dim), attr="dim")
    return axes


def _shape(a: ReduceAttrs, ins):
    x = ins[0]
    if x.rank == 0:
        raise ShapeError("cannot reduce a scalar", expected="rank >= 1", found=str(x))
    axes = _axes(a, x.rank)
    if a.keepdim:
        shape = tuple(D.const(1) if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [TensorType(x.dtype, shape)]


def _macs(a: ReduceAttrs, ins, outs):
    return D.const(0)


NUMPY = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}
TORCH = {"mean": "torch.mean", "sum": "torch.sum", "max": "torch.amax", "min": "torch.amin"}


def _reduce(name: str, doc: str) -> Op:
    fn = NUMPY[name]

    def kernel(a: ReduceAttrs, xs, ctx):
        x = xs[0]
        out = fn(x, axis=_axes(a, x.ndim), keepdims=a.keepdim)
        return [np.asarray(out, dtype=x.dtype)]

    def vjp(a: ReduceAttrs, xs, ys, gs, ctx):
        x = xs[0]
        if not is_float(x):
            return [None], {}
        axes = _axes(a, x.ndim)
        g = gs[0] if a.keepdim else np.expand_dims(gs[0], axes)
        if name == "sum":
            gx = np.broadcast_to(g, x.shape)
        elif name == "mean":
            gx = np.broadcast_to(g / np.prod([x.shape[i] for i in axes]), x.shape)
        else:
            # torch's amax/amin: the gradient is shared evenly among tied extremes.
            y = ys[0] if a.keepdim else np.expand_dims(ys[0], axes)
            hit = x == y
            gx = hit * (g / hit.sum(axis=axes, keepdims=True))
        return [np.ascontiguousarray(gx, dtype=x.dtype)], {}

    def emit(a: ReduceAttrs, args, ctx, ins):
        dim = a.dim if isinstance(a.dim, int) else tuple(a.dim)
        keep = ", keepdim=True" if a.keepdim else ""
        return f"{TORCH[name]}({args[0]}, dim={dim!r}{keep})"

    return Op(
        name=name,
        family="arith",
        doc=doc,
        attrs=ReduceAttrs,
        positional=("dim", "keepdim"),
        shape=_shape,
        macs=_macs,
        numpy=kernel,
        vjp=vjp,
        torch_call=emit,
        label=lambda a: f"dim {a.dim}" + (", keep" if a.keepdim else ""),
        examples=(
            Example({"dim": 1}, (tensor("f32", 2, 3, 4),)),
            Example({"dim": (0, 2), "keepdim": True}, (tensor("f32", 2, 3, 4),)),
        ),
    )


# ---- cumsum ------------------------------------------------------------------------------


class CumsumAttrs(Attrs):
    dim: int


def _cumsum_shape(a: CumsumAttrs, ins):
    x = ins[0]
    if x.rank == 0:
        raise ShapeError("needs an axis", expected="rank >= 1", found=str(x))
    norm_axis(a.dim, x.rank)
    # torch sums integers and bools in int64 (an i32 running sum would overflow).
    return [TensorType(x.dtype if x.is_float else "i64", x.shape)]


# The accumulator torch's CPU cumsum keeps (at::acc_type): float32 sums run in float64 and
# float16 in float32, each partial sum rounded once; NumPy's own float32 running sum drifts
# from it by 1e-4 over 5000 terms.
_ACC = {np.dtype(np.float16): np.float32, np.dtype(np.float32): np.float64,
        np.dtype(np.float64): np.float64}


def _cumsum_kernel(a: CumsumAttrs, xs, ctx):
    x = xs[0]
    out = x.dtype if x.dtype.kind == "f" else np.dtype(np.int64)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN from there on, as in torch
        acc = np.cumsum(x, axis=a.dim, dtype=_ACC.get(x.dtype, np.int64))
    return [acc.astype(out, copy=False)]


def _cumsum_vjp(a: CumsumAttrs, xs, ys, gs, ctx):
    x = xs[0]
    if not is_float(x):
        return [None], {}
    # Each input element feeds every later running sum: the reversed running sum of g.
    g = np.flip(np.cumsum(np.flip(gs[0], axis=a.dim), axis=a.dim), axis=a.dim)
    return [np.ascontiguousarray(g, dtype=x.dtype)], {}


CUMSUM = Op(
    name="cumsum",
    family="arith",
    doc="Running sum along `dim`: `x -> cumsum(1)`. Integer and bool tensors sum in i64, "
        "as torch.",
    attrs=CumsumAttrs,
    positional=("dim",),
    shape=_cumsum_shape,
    numpy=_cumsum_kernel,
    vjp=_cumsum_vjp,
    torch_call=lambda a, args, ctx, ins: f"{args[0]}.cumsum({a.dim})",
    label=lambda a: f"dim {a.dim}",
    examples=(
        Example({"dim": 1}, (tensor("f32", 2, 5, 3),)),
        Example({"dim": -1}, (tensor("f32", 4, 6),)),
        Example({"dim": 0}, (tensor("i32", 6, 2),)),
        Example({"dim": 1}, (tensor("bool", 3, 4),)),
    ),
)

# ---- topk ----------------------------------------------------------------------------------


class TopkAttrs(Attrs):
    k: int
    dim: int = -1
    largest: bool = True
    sorted: bool = True


def _topk_shape(a: TopkAttrs, ins):
    x = ins[0]
    need_numeric(x)
    if x.rank == 0:
        raise ShapeError("needs an axis", expected="rank >= 1", found=str(x))
    axis = norm_axis(a.dim, x.rank)
    n = concrete(x.shape[axis], "topk's axis")
    if not 0 <= a.k <= n:
        raise ShapeError(f"k={a.k} is out of range for an axis of size {n}",
                         expected=f"0 <= k <= {n}", found=str(a.k), attr="k", code="E0343")
    return [x.with_shape(x.shape[:axis] + (D.const(a.k),) + x.shape[axis + 1:])]


def _topk_kernel(a: TopkAttrs, xs, ctx):
    """The k largest (or smallest) values along `dim`, largest first (smallest first).

    NumPy sorts NaN after every number, and torch ranks NaN above every number: the same
    order, so NaNs come first among the largest and never among the smallest finite ones.
    With sorted=False torch leaves the order unspecified; these are sorted all the same."""
    x = xs[0]
    axis = a.dim % x.ndim
    n = x.shape[axis]
    ordered = np.sort(x, axis=axis)
    if a.largest:
        picked = np.flip(np.take(ordered, np.arange(n - a.k, n), axis=axis), axis=axis)
    else:
        picked = np.take(ordered, np.arange(a.k), axis=axis)
    return [np.ascontiguousarray(picked)]


def _topk_vjp(a: TopkAttrs, xs, ys, gs, ctx):
    """Each picked value's cotangent goes back to where it was picked from (the kernel's
    order: a stable sort, so among ties the same positions)."""
    x = xs[0]
    if not is_float(x):
        return [None], {}
    axis = a.dim % x.ndim
    n = x.shape[axis]
    order = np.argsort(x, axis=axis, kind="stable")
    if a.largest:
        picked = np.flip(np.take(order, np.arange(n - a.k, n), axis=axis), axis=axis)
    else:
        picked = np.take(order, np.arange(a.k), axis=axis)
    gx = np.zeros_like(x)
    np.put_along_axis(gx, picked, gs[0].astype(x.dtype), axis=axis)
    return [gx], {}


def _topk_call(a: TopkAttrs, args, ctx, ins) -> str:
    extra = "" if a.dim == -1 else f", dim={a.dim}"
    extra += "" if a.largest else ", largest=False"
    extra += "" if a.sorted else ", sorted=False"
    return f"torch.topk({args[0]}, {a.k}{extra}).values"


TOPK = Op(
    name="topk",
    family="arith",
    doc="The k largest values along `dim` (values only; `largest=false` for the smallest), "
        "sorted. With `sorted=false` torch's order is unspecified; the interpreter's is sorted.",
    attrs=TopkAttrs,
    positional=("k", "dim", "largest", "sorted"),
    shape=_topk_shape,
    numpy=_topk_kernel,
    vjp=_topk_vjp,
    torch_call=_topk_call,
    label=lambda a: f"{'top' if a.largest else 'bottom'} {a.k}, dim {a.dim}",
    examples=(
        Example({"k": 3, "dim": 1}, (tensor("f32", 2, 7, 3),)),
        Example({"k": 2}, (tensor("f32", D.symbol("B"), 5),)),
        Example({"k": 4, "largest": False}, (tensor("f32", 3, 6),)),
        Example({"k": 5, "dim": 0}, (tensor("i64", 5, 3),), int_high=100),
        Example({"k": 0}, (tensor("f32", 3, 4),)),
    ),
)


REDUCE_OPS = (
    _reduce("mean", "Mean over `dim` (an axis or a tuple of axes): `x -> mean(dim=1)`."),
    _reduce("sum", "Sum over `dim`: `x -> sum(dim=1)`."),
    _reduce("max", "Largest value over `dim` (values only, like torch.amax)."),
    _reduce("min", "Smallest value over `dim` (values only, like torch.amin)."),
    CUMSUM,
    TOPK,
)
