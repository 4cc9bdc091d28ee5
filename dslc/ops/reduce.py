"""Reductions over axes: mean, sum, max, min (torch.mean / sum / amax / amin)."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, norm_axis
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
        torch_call=emit,
        label=lambda a: f"dim {a.dim}" + (", keep" if a.keepdim else ""),
        examples=(
            Example({"dim": 1}, (tensor("f32", 2, 3, 4),)),
            Example({"dim": (0, 2), "keepdim": True}, (tensor("f32", 2, 3, 4),)),
        ),
    )


REDUCE_OPS = (
    _reduce("mean", "Mean over `dim` (an axis or a tuple of axes): `x -> mean(dim=1)`."),
    _reduce("sum", "Sum over `dim`: `x -> sum(dim=1)`."),
    _reduce("max", "Largest value over `dim` (values only, like torch.amax)."),
    _reduce("min", "Smallest value over `dim` (values only, like torch.amin)."),
)
