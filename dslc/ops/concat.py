"""Ops that join or cut tensors along an axis: concat, stack, split (multi-output). Shape rules
run in elaboration; kernels and emitters in the back ends."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, insert_axis, norm_axis
from dslc.types import TensorType, tensor


def _same_dtype(ins) -> None:
    for i, t in enumerate(ins[1:], 1):
        if t.dtype != ins[0].dtype:
            raise ShapeError(f"input {i} has dtype {t.dtype} but input 0 has {ins[0].dtype}",
                             expected=ins[0].dtype, found=f"{t}", arg=i, code="E0302")


def _same_rank(ins) -> None:
    for i, t in enumerate(ins[1:], 1):
        if t.rank != ins[0].rank:
            raise ShapeError(f"input {i} has rank {t.rank} but input 0 has rank {ins[0].rank}",
                             expected=f"rank {ins[0].rank} like {ins[0]}",
                             found=f"{t} (rank {t.rank})", arg=i)


def _match_axes(ins, skip: int | None, what: str) -> None:
    """Every axis but `skip` of every input must provably equal input 0's."""
    ref = ins[0]
    for i, t in enumerate(ins[1:], 1):
        for ax, (x, y) in enumerate(zip(ref.shape, t.shape)):
            if ax == skip:
                continue
            eq = D.equal(x, y)
            if eq is not True:
                why = "" if eq is False else " (cannot be shown equal)"
                raise ShapeError(
                    f"input {i} axis {ax} has size {D.fmt(y)} but input 0 has {D.fmt(x)}{why}; "
                    f"{what}",
                    expected=f"{D.fmt(x)} at axis {ax} (input 0 is {ref})",
                    found=f"{D.fmt(y)} (input {i} is {t})", arg=i)


# ---- concat ------------------------------------------------------------------------------


class ConcatAttrs(Attrs):
    dim: int = 1


def _concat_shape(a: ConcatAttrs, ins):
    _same_dtype(ins)
    _same_rank(ins)
    ref = ins[0]
    if ref.rank == 0:
        raise ShapeError("cannot concatenate scalars", expected="rank >= 1", found=str(ref),
                         arg=0)
    d = norm_axis(a.dim, ref.rank)
    _match_axes(ins, d, f"concat joins along axis {d} only")
    total = D.const(0)
    for t in ins:
        total = total + t.shape[d]
    return [ref.with_shape(ref.shape[:d] + (total,) + ref.shape[d + 1:])]


def _concat_vjp(a: ConcatAttrs, xs, ys, gs, ctx):
    cuts = np.cumsum([x.shape[a.dim] for x in xs])[:-1]
    return [g if np.issubdtype(x.dtype, np.floating) else None
            for x, g in zip(xs, np.split(gs[0], cuts, axis=a.dim))], {}


CONCAT = Op(
    name="concat",
    family="shape",
    doc="Joins tensors along an existing axis (torch.cat): `concat(a, b, c, dim=1)`; every "
        "other axis must match.",
    attrs=ConcatAttrs,
    positional=("dim",),
    min_inputs=2,
    max_inputs=None,
    shape=_concat_shape,
    numpy=lambda a, xs, ctx: [np.concatenate(xs, axis=a.dim)],
    vjp=_concat_vjp,
    torch_call=lambda a, args, ctx, ins: f"torch.cat([{', '.join(args)}], dim={a.dim})",
    label=lambda a: f"dim {a.dim}",
    examples=(
        Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 2, 5, 4))),
        Example({"dim": -1}, (tensor("f32", 2, 3), tensor("f32", 2, 1), tensor("f32", 2, 4))),
        Example({"dim": 0}, (tensor("i64", 1, 3), tensor("i64", 2, 3))),
    ),
)

# ---- stack -------------------------------------------------------------------------------


class StackAttrs(Attrs):
    dim: int = 0


def _stack_axis(dim: int, rank: int) -> int:
    return insert_axis(dim, rank, "stacking")


def _stack_shape(a: StackAttrs, ins):
    _same_dtype(ins)
    _same_rank(ins)
    _match_axes(ins, None, "stack needs tensors of one shape")
    ref = ins[0]
    d = _stack_axis(a.dim, ref.rank)
    return [ref.with_shape(ref.shape[:d] + (D.const(len(ins)),) + ref.shape[d:])]


def _stack_vjp(a: StackAttrs, xs, ys, gs, ctx):
    axis = _stack_axis(a.dim, xs[0].ndim)
    return [np.take(gs[0], i, axis=axis) if np.issubdtype(x.dtype, np.floating) else None
            for i, x in enumerate(xs)], {}


STACK = Op(
    name="stack",
    family="shape",
    doc="Stacks tensors of one shape along a new axis (torch.stack): `stack(a, b, dim=0)`.",
    attrs=StackAttrs,
    positional=("dim",),
    min_inputs=2,
    max_inputs=None,
    shape=_stack_shape,
    numpy=lambda a, xs, ctx: [np.stack(xs, axis=_stack_axis(a.dim, xs[0].ndim))],
    vjp=_stack_vjp,
    torch_call=lambda a, args, ctx, ins: f"torch.stack([{', '.join(args)}], dim={a.dim})",
    label=lambda a: f"dim {a.dim}",
    examples=(
        Example({}, (tensor("f32", 2, 3), tensor("f32", 2, 3))),
        Example({"dim": -1}, (tensor("f32", 4), tensor("f32", 4), tensor("f32", 4))),
        Example({"dim": 1}, (tensor("f32", 2, 3, 2), tensor("f32", 2, 3, 2))),
    ),
)

# ---- split -------------------------------------------------------------------------------


class SplitAttrs(Attrs):
    # An int: that many equal chunks. A tuple: the size of each piece, summing to the axis.
    sections: int | tuple[int, ...]
    dim: int = -1


def _n_pieces(a: SplitAttrs) -> int:
    return a.sections if isinstance(a.sections, int) else len(a.sections)


def _split_shape(a: SplitAttrs, ins):
    x = ins[0]
    if x.rank == 0:
        raise ShapeError("cannot split a scalar", expected="rank >= 1", found=str(x), arg=0)
    d = norm_axis(a.dim, x.rank)
    size = x.shape[d]
    if isinstance(a.sections, int):
        n = a.sections
        if n < 1:
            raise ShapeError("split needs at least one section", expected=">= 1",
                             found=str(n), attr="sections")
        piece = size / n
        if piece.is_integer is not True:
            if size.is_Integer:
                raise ShapeError(
                    f"axis {d} of size {D.fmt(size)} does not split into {n} equal parts",
                    expected=f"a number of sections dividing {D.fmt(size)}",
                    found=f"{n} (input {x})", attr="sections")
            # A runtime axis must be provably divisible (e.g. 2*T into 2); the shape rule has
            # no place to record a run-time constraint, and torch.chunk would silently give
            # uneven pieces, so refuse rather than guess.
            raise ShapeError(
                f"axis {d} has runtime size {D.fmt(size)}, which cannot be shown to split into "
                f"{n} equal parts",
                expected=f"a fixed axis, or one provably divisible by {n}",
                found=f"{D.fmt(size)} (input {x})", attr="sections", code="E0304")
        sizes = [piece] * n
    else:
        if not a.sections or any(s < 1 for s in a.sections):
            raise ShapeError("split sizes must be positive", expected="sizes >= 1",
                             found=str(list(a.sections)), attr="sections")
        sizes = [D.const(s) for s in a.sections]
        total = sum(a.sections)
        eq = D.equal(D.const(total), size)
        if eq is not True:
            code = "E0301" if eq is False else "E0304"
            raise ShapeError(
                f"split sizes {list(a.sections)} sum to {total}, not to axis {d}'s size "
                f"{D.fmt(size)}",
                expected=f"sizes summing to {D.fmt(size)} (input {x})",
                found=f"{list(a.sections)} (sum {total})", attr="sections", code=code)
    return [TensorType(x.dtype, x.shape[:d] + (s,) + x.shape[d + 1:]) for s in sizes]


def _split_kernel(a: SplitAttrs, xs, ctx):
    x = xs[0]
    if isinstance(a.sections, int):
        return list(np.split(x, a.sections, axis=a.dim))
    cuts = np.cumsum(a.sections)[:-1]
    return list(np.split(x, cuts, axis=a.dim))


def _split_vjp(a: SplitAttrs, xs, ys, gs, ctx):
    x = xs[0]
    if not np.issubdtype(x.dtype, np.floating):
        return [None], {}
    # A piece no gradient reached contributes zeros.
    parts = [np.zeros(y.shape, x.dtype) if g is None else g for y, g in zip(ys, gs)]
    return [np.concatenate(parts, axis=a.dim)], {}


def _split_call(a: SplitAttrs, args, ctx, ins):
    if isinstance(a.sections, int):
        expr = f"torch.chunk({args[0]}, {a.sections}, dim={a.dim})"
    else:
        expr = f"torch.split({args[0]}, {list(a.sections)}, dim={a.dim})"
    # One piece is a single value in the language, so unwrap torch's 1-tuple.
    return expr + "[0]" if _n_pieces(a) == 1 else expr


SPLIT = Op(
    name="split",
    family="shape",
    doc="Cuts a tensor along `dim` into pieces: `a, b = split(x, 2, dim=1)` (int: equal "
        "chunks, which must divide the axis) or `split(x, (3, 5))` (sizes summing to the axis). "
        "A runtime axis must be provably divisible.",
    attrs=SplitAttrs,
    positional=("sections", "dim"),
    shape=_split_shape,
    numpy=_split_kernel,
    vjp=_split_vjp,
    torch_call=_split_call,
    n_outputs=_n_pieces,
    label=lambda a: (f"{a.sections} parts" if isinstance(a.sections, int)
                     else str(list(a.sections))) + f", dim {a.dim}",
    examples=(
        Example({"sections": 2, "dim": 1}, (tensor("f32", 2, 6, 3),)),
        Example({"sections": (1, 3, 2)}, (tensor("f32", 4, 6),)),
        Example({"sections": 3, "dim": 0}, (tensor("i64", 3, 2),)),
        Example({"sections": 1}, (tensor("f32", 2, 4),)),
    ),
)

CONCAT_OPS = (CONCAT, STACK, SPLIT)
