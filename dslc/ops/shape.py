"""Shape ops that move data without arithmetic: flatten, reshape, permute, transpose."""

from __future__ import annotations

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, norm_axis
from dslc.types import tensor


class FlattenAttrs(Attrs):
    start_dim: int = 1
    end_dim: int = -1


def _flatten_shape(a: FlattenAttrs, ins):
    x = ins[0]
    if x.rank == 0:
        return [x.with_shape((1,))]
    s = norm_axis(a.start_dim, x.rank, "start_dim")
    e = norm_axis(a.end_dim, x.rank, "end_dim")
    if e < s:
        return [x]
    merged = D.product(x.shape[s:e + 1])
    return [x.with_shape(x.shape[:s] + (merged,) + x.shape[e + 1:])]


def _flatten_kernel(a: FlattenAttrs, xs, ctx):
    x = xs[0]
    out = _flatten_shape(a, [tensor("f32", *x.shape)])[0]
    return [x.reshape(tuple(int(d) for d in out.shape))]


FLATTEN = Op(
    name="flatten",
    family="shape",
    doc="Merges axes start_dim..end_dim into one (torch.flatten; default keeps the batch axis).",
    attrs=FlattenAttrs,
    positional=("start_dim", "end_dim"),
    shape=_flatten_shape,
    numpy=_flatten_kernel,
    torch_call=lambda a, args, ctx, ins: (f"torch.flatten({args[0]}, {a.start_dim}"
                                          + ("" if a.end_dim == -1 else f", {a.end_dim}") + ")"),
    label=lambda a: "" if (a.start_dim, a.end_dim) == (1, -1) else f"{a.start_dim}..{a.end_dim}",
    examples=(
        Example({}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"start_dim": 0, "end_dim": 1}, (tensor("f32", 2, 3, 4),)),
    ),
)

SHAPE_OPS = (FLATTEN,)
