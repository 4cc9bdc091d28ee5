"""Shape ops that move data without arithmetic: flatten, reshape, permute, transpose, squeeze,
unsqueeze, and zeros of a given shape. Their shape rules run in elaboration; kernels and
emitters in the back ends."""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, insert_axis, norm_axis
from dslc.types import TensorType, tensor

# ---- flatten -----------------------------------------------------------------------------


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


def _reshape_back(a, xs, ys, gs, ctx):
    """The VJP of every op that only changes the shape: the cotangent in the input's shape."""
    x = xs[0]
    return [gs[0].reshape(x.shape) if np.issubdtype(x.dtype, np.floating) else None], {}


def _same_type(a: TensorType, b: TensorType) -> bool:
    return a.dtype == b.dtype and a.rank == b.rank and all(
        D.equal(x, y) is True for x, y in zip(a.shape, b.shape))


def same_shape_is_identity(name: str):
    """The `identity_when` trait of an op that only changes the shape: a no-op when the
    output type is provably the input's."""

    def when(a, ins: list[TensorType], outs: list[TensorType]) -> str | None:
        return f"removed {name} to the same shape" if _same_type(ins[0], outs[0]) else None
    return when


FLATTEN = Op(
    name="flatten",
    family="shape",
    identity_when=same_shape_is_identity("flatten"),
    view=True,
    doc="Merges axes start_dim..end_dim into one (torch.flatten; default keeps the batch axis).",
    attrs=FlattenAttrs,
    positional=("start_dim", "end_dim"),
    shape=_flatten_shape,
    numpy=_flatten_kernel,
    vjp=_reshape_back,
    torch_call=lambda a, args, ctx, ins: (f"torch.flatten({args[0]}, {a.start_dim}"
                                          + ("" if a.end_dim == -1 else f", {a.end_dim}") + ")"),
    label=lambda a: "" if (a.start_dim, a.end_dim) == (1, -1) else f"{a.start_dim}..{a.end_dim}",
    examples=(
        Example({}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"start_dim": 0, "end_dim": 1}, (tensor("f32", 2, 3, 4),)),
    ),
)

# ---- reshape -----------------------------------------------------------------------------


class ReshapeAttrs(Attrs):
    # Ints, -1 (at most once), or symbolic dims such as `x.shape[0]`: pydantic cannot type
    # sympy expressions, so the shape rule validates each entry (see _reshape_target).
    shape: tuple[Any, ...]


def _reshape_target(a: ReshapeAttrs) -> tuple[list, int | None]:
    """The target dims as sympy expressions (-1 kept as None) and the position of the -1."""
    dims: list = []
    infer = None
    for i, d in enumerate(a.shape):
        if isinstance(d, sympy.Expr) and d.is_Integer:
            d = int(d)
        if isinstance(d, bool) or not isinstance(d, (int, sympy.Expr)) or (
                isinstance(d, sympy.Expr) and d.is_integer is False):
            raise ShapeError(f"reshape target entry {i} is not a dim",
                             expected="an int, -1, or a dim such as x.shape[0]",
                             found=repr(d), attr="shape")
        if isinstance(d, int) and d == -1:
            if infer is not None:
                raise ShapeError("reshape target may contain -1 only once",
                                 expected="at most one -1", found=_fmt_target(a.shape),
                                 attr="shape")
            infer = i
            dims.append(None)
            continue
        if (isinstance(d, int) and d < 1) or (isinstance(d, sympy.Expr)
                                             and d.is_positive is False):
            raise ShapeError(f"reshape target entry {i} must be positive (or -1)",
                             expected=">= 1 or -1", found=_fmt_target(a.shape), attr="shape")
        dims.append(D.as_dim(d))
    return dims, infer


def _fmt_target(shape) -> str:
    return "[" + ", ".join(D.fmt(D.as_dim(d)) if isinstance(d, (int, sympy.Expr))
                           and not isinstance(d, bool) else repr(d) for d in shape) + "]"


def _reshape_shape(a: ReshapeAttrs, ins):
    x = ins[0]
    dims, infer = _reshape_target(a)
    total = x.numel()
    known = D.product(d for d in dims if d is not None)
    if infer is not None:
        q = total / known
        if q.is_integer is not True:
            q = sympy.simplify(q)
        if q.is_integer is not True:
            why = ("does not divide" if q.is_number else "cannot be shown to divide")
            raise ShapeError(
                f"cannot solve the -1: {D.fmt(known)} {why} the "
                f"{D.fmt(total)} elements of the input",
                expected=f"a shape whose fixed entries divide {D.fmt(total)} elements "
                         f"(input {x})",
                found=f"{_fmt_target(a.shape)} ({D.fmt(known)} x ? elements)", attr="shape")
        dims[infer] = q
    else:
        eq = D.equal(total, known)
        if eq is not True:
            why = "" if eq is False else " (they cannot be shown equal)"
            raise ShapeError(
                f"the target shape has {D.fmt(known)} elements but the input has "
                f"{D.fmt(total)}{why}",
                expected=f"{D.fmt(total)} elements (input {x})",
                found=f"{D.fmt(known)} elements (target {_fmt_target(a.shape)})", attr="shape")
    return [x.with_shape(dims)]


def _reshape_kernel(a: ReshapeAttrs, xs, ctx):
    dims, _ = _reshape_target(a)
    return [xs[0].reshape(tuple(-1 if d is None else ctx.dim(d) for d in dims))]


def _reshape_call(a: ReshapeAttrs, args, ctx, ins):
    # Keep the -1 as written: torch solves it the same way, and the line reads like the spec.
    dims = ["-1" if d is None else ctx.dim(d) for d in _reshape_target(a)[0]]
    return f"{args[0]}.reshape({', '.join(dims)})"


RESHAPE = Op(
    name="reshape",
    family="shape",
    identity_when=same_shape_is_identity("reshape"),
    view=True,
    absorbs_view=True,
    doc="Views the elements in a new shape (torch.reshape): `x -> reshape([x.shape[0], -1])`. "
        "Entries are ints, runtime dims, or one -1 solved from the element count, which must "
        "match provably.",
    attrs=ReshapeAttrs,
    positional=("shape",),
    shape=_reshape_shape,
    numpy=_reshape_kernel,
    vjp=_reshape_back,
    torch_call=_reshape_call,
    label=lambda a: _fmt_target(a.shape),
    examples=(
        Example({"shape": (6, 4)}, (tensor("f32", 2, 3, 4),)),
        Example({"shape": (2, -1)}, (tensor("f32", 2, 3, 4),)),
        Example({"shape": (-1,)}, (tensor("f32", 2, 3),)),
        Example({"shape": (3, 2, 2, 2)}, (tensor("i64", 4, 6),), int_high=5),
    ),
)

# ---- permute / transpose ----------------------------------------------------------------


class PermuteAttrs(Attrs):
    dims: tuple[int, ...]


def _permutation(a: PermuteAttrs, rank: int) -> list[int]:
    if len(a.dims) != rank:
        raise ShapeError(f"permute needs one entry per axis of the rank-{rank} input",
                         expected=f"{rank} axes", found=f"{len(a.dims)}: {list(a.dims)}",
                         attr="dims")
    perm = [norm_axis(d, rank, "dims") for d in a.dims]
    if sorted(perm) != list(range(rank)):
        raise ShapeError("permute dims must name every axis exactly once",
                         expected=f"a permutation of {list(range(rank))}",
                         found=str(list(a.dims)), attr="dims")
    return perm


def _permute_shape(a: PermuteAttrs, ins):
    x = ins[0]
    perm = _permutation(a, x.rank)
    return [x.with_shape([x.shape[p] for p in perm])]


PERMUTE = Op(
    name="permute",
    family="shape",
    axis_permutation=lambda a, rank: _permutation(a, rank),
    doc="Reorders the axes (torch.permute): `x -> permute((0, 2, 1))`; negative axes allowed.",
    attrs=PermuteAttrs,
    positional=("dims",),
    shape=_permute_shape,
    numpy=lambda a, xs, ctx: [np.transpose(xs[0], _permutation(a, xs[0].ndim))],
    vjp=lambda a, xs, ys, gs, ctx: (
        [np.transpose(gs[0], np.argsort(_permutation(a, xs[0].ndim)))], {}),
    torch_call=lambda a, args, ctx, ins: (
        f"{args[0]}.permute({', '.join(str(d) for d in a.dims)})"),
    label=lambda a: "(" + ", ".join(str(d) for d in a.dims) + ")",
    examples=(
        Example({"dims": (0, 2, 1)}, (tensor("f32", 2, 3, 4),)),
        Example({"dims": (3, 0, -3, 2)}, (tensor("f32", 2, 3, 4, 5),)),
        Example({"dims": (0,)}, (tensor("f32", 5),)),
    ),
)


class TransposeAttrs(Attrs):
    dim0: int
    dim1: int


def _transpose_shape(a: TransposeAttrs, ins):
    x = ins[0]
    d0 = norm_axis(a.dim0, x.rank, "dim0")
    d1 = norm_axis(a.dim1, x.rank, "dim1")
    shape = list(x.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return [x.with_shape(shape)]


def _swap(a: TransposeAttrs, rank: int) -> list[int]:
    p = list(range(rank))
    i, j = a.dim0 % rank, a.dim1 % rank
    p[i], p[j] = p[j], p[i]
    return p


TRANSPOSE = Op(
    name="transpose",
    family="shape",
    axis_permutation=lambda a, rank: _swap(a, rank),
    doc="Swaps two axes (torch.transpose): `x -> transpose(1, 2)`.",
    attrs=TransposeAttrs,
    positional=("dim0", "dim1"),
    shape=_transpose_shape,
    numpy=lambda a, xs, ctx: [np.swapaxes(xs[0], a.dim0, a.dim1)],
    vjp=lambda a, xs, ys, gs, ctx: ([np.swapaxes(gs[0], a.dim0, a.dim1)], {}),
    torch_call=lambda a, args, ctx, ins: f"{args[0]}.transpose({a.dim0}, {a.dim1})",
    label=lambda a: f"{a.dim0} <-> {a.dim1}",
    examples=(
        Example({"dim0": 1, "dim1": 2}, (tensor("f32", 2, 3, 4),)),
        Example({"dim0": -1, "dim1": 0}, (tensor("f32", 3, 5),)),
        Example({"dim0": 1, "dim1": 1}, (tensor("f32", 2, 3),)),
    ),
)

# ---- squeeze / unsqueeze ----------------------------------------------------------------


class AxisAttrs(Attrs):
    dim: int


def _squeeze_shape(a: AxisAttrs, ins):
    x = ins[0]
    d = norm_axis(a.dim, x.rank)
    size = x.shape[d]
    # torch.squeeze leaves an axis of size != 1 alone, so a runtime dim would make the output
    # rank depend on the data; only axes that are provably 1 may be squeezed.
    if size != 1:
        why = "" if size.is_Integer else " (a runtime dim, which may not be 1)"
        raise ShapeError(f"squeeze needs axis {a.dim} to have size 1{why}",
                         expected=f"size 1 at axis {a.dim}", found=f"{x}", attr="dim")
    return [x.with_shape(x.shape[:d] + x.shape[d + 1:])]


SQUEEZE = Op(
    name="squeeze",
    family="shape",
    identity_when=same_shape_is_identity("squeeze"),
    doc="Removes an axis of size 1 (torch.squeeze with a dim): `x -> squeeze(1)`.",
    attrs=AxisAttrs,
    positional=("dim",),
    shape=_squeeze_shape,
    numpy=lambda a, xs, ctx: [np.squeeze(xs[0], axis=a.dim)],
    vjp=_reshape_back,
    torch_call=lambda a, args, ctx, ins: f"{args[0]}.squeeze({a.dim})",
    label=lambda a: f"dim {a.dim}",
    examples=(
        Example({"dim": 1}, (tensor("f32", 2, 1, 4),)),
        Example({"dim": -1}, (tensor("f32", 3, 1),)),
        Example({"dim": 0}, (tensor("f32", 1),)),
    ),
)


def _unsqueeze_axis(dim: int, rank: int) -> int:
    return insert_axis(dim, rank, "unsqueeze of")


def _unsqueeze_shape(a: AxisAttrs, ins):
    x = ins[0]
    d = _unsqueeze_axis(a.dim, x.rank)
    return [x.with_shape(x.shape[:d] + (D.const(1),) + x.shape[d:])]


UNSQUEEZE = Op(
    name="unsqueeze",
    family="shape",
    identity_when=same_shape_is_identity("unsqueeze"),
    doc="Inserts an axis of size 1 at `dim` (torch.unsqueeze): `x -> unsqueeze(1)`; "
        "dim -1 appends.",
    attrs=AxisAttrs,
    positional=("dim",),
    shape=_unsqueeze_shape,
    numpy=lambda a, xs, ctx: [np.expand_dims(xs[0], _unsqueeze_axis(a.dim, xs[0].ndim))],
    vjp=_reshape_back,
    torch_call=lambda a, args, ctx, ins: f"{args[0]}.unsqueeze({a.dim})",
    label=lambda a: f"dim {a.dim}",
    examples=(
        Example({"dim": 1}, (tensor("f32", 2, 4),)),
        Example({"dim": -1}, (tensor("f32", 2, 3),)),
        Example({"dim": 0}, (tensor("f32", 3),)),
        Example({"dim": -3}, (tensor("f32", 2, 3),)),
    ),
)

# ---- zeros -------------------------------------------------------------------------------


class ZerosAttrs(Attrs):
    shape: tuple[Any, ...]  # ints or dims such as B


def _zeros_dims(a: ZerosAttrs) -> list:
    dims = []
    for i, d in enumerate(a.shape):
        if isinstance(d, bool) or not isinstance(d, (int, sympy.Expr)) or (
                isinstance(d, sympy.Expr) and d.is_integer is False):
            raise ShapeError(f"zeros shape entry {i} is not a dim",
                             expected="an int or a dim such as B", found=repr(d), attr="shape")
        d = D.as_dim(d)
        if d.is_Integer and int(d) < 1:
            raise ShapeError(f"zeros shape entry {i} must be positive", expected=">= 1",
                             found=str(d), attr="shape")
        dims.append(d)
    return dims


ZEROS = Op(
    name="zeros",
    family="shape",
    doc="A tensor of zeros of `shape` with the dtype (and, in PyTorch, the device) of `x`: "
        "an initial state, `h0 = x -> zeros([B, 256])`.",
    attrs=ZerosAttrs,
    positional=("shape",),
    shape=lambda a, ins: [ins[0].with_shape(_zeros_dims(a))],
    numpy=lambda a, xs, ctx: [np.zeros(tuple(ctx.dim(d) for d in _zeros_dims(a)),
                                       dtype=xs[0].dtype)],
    # Its value does not depend on the input's values (only on its dtype): no cotangent flows
    # back, as with torch's new_zeros, but a model differentiates through it.
    vjp=lambda a, xs, outs, gouts, ctx: ([None], {}),
    torch_call=lambda a, args, ctx, ins: (
        f"{args[0]}.new_zeros({', '.join(ctx.dim(d) for d in _zeros_dims(a))})"),
    label=lambda a: _fmt_target(a.shape),
    examples=(Example({"shape": (2, 5)}, (tensor("f32", 2, 3),)),
              Example({"shape": (4,)}, (tensor("f64", 3),))),
)

SHAPE_OPS = (FLATTEN, RESHAPE, PERMUTE, TRANSPOSE, SQUEEZE, UNSQUEEZE, ZEROS)
