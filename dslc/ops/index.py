"""Op `index`: `x[i, a:b, ...]` in the language (made by the elaborator's eval_index), with
Python's indexing semantics on NumPy and PyTorch alike."""

from __future__ import annotations

from typing import Literal

import numpy as np
import sympy

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError
from dslc.types import tensor

Item = tuple[Literal["index", "slice"], int | None, int | None]


class IndexAttrs(Attrs):
    # One entry per leading axis: ("index", i, None) removes the axis, ("slice", start, stop)
    # keeps it (None = open end). Axes past the last entry are kept whole.
    items: tuple[Item, ...]


def _slice_len(size: D.Dim, start: int | None, stop: int | None) -> D.Dim:
    """len(range(size)[start:stop]) as a dim: Python's clamping, written with Min/Max so that
    runtime sizes stay symbolic (sympy simplifies Min(1, T) to 1 since T >= 1)."""

    def bound(b: int | None, default: D.Dim) -> D.Dim:
        if b is None:
            return default
        if b < 0:
            # max(size + b, 0), written so that `x[-2:]` cancels to Min(2, T) rather than
            # leaving nested Max terms sympy cannot simplify.
            return size - sympy.Min(-b, size)
        return sympy.Min(b, size)

    lo = bound(start, D.const(0))
    hi = bound(stop, size)
    return sympy.simplify(sympy.Max(hi - lo, 0))


def _index_shape(a: IndexAttrs, ins):
    x = ins[0]
    if len(a.items) > x.rank:
        raise ShapeError(f"too many indices for a rank-{x.rank} tensor",
                         expected=f"at most {x.rank} indices", found=f"{len(a.items)} on {x}",
                         arg=0)
    out = []
    for ax, (kind, p, q) in enumerate(a.items):
        size = x.shape[ax]
        if kind == "index":
            ok = sympy.Lt(p, size) if p >= 0 else sympy.Ge(p, -size)
            if ok != sympy.true:
                fixed = ok == sympy.false
                raise ShapeError(
                    f"index {p} is out of range for axis {ax} of size {D.fmt(size)}"
                    if fixed else
                    f"index {p} on axis {ax} of runtime size {D.fmt(size)} may be out of range",
                    expected=f"{D.fmt(-size)} <= index < {D.fmt(size)}"
                    if fixed else "index 0 or -1, or an axis of fixed size",
                    found=f"{p} (input {x})", arg=0, code="E0301" if fixed else "E0304")
            continue
        n = _slice_len(size, p, q)
        if n == 0:
            raise ShapeError(f"slice {_fmt_item(('slice', p, q))} of axis {ax} "
                             f"(size {D.fmt(size)}) is empty",
                             expected="a slice with at least one element",
                             found=f"0 elements (input {x})", arg=0)
        out.append(n)
    return [x.with_shape(tuple(out) + x.shape[len(a.items):])]


def _key(a: IndexAttrs) -> tuple:
    return tuple(p if kind == "index" else slice(p, q) for kind, p, q in a.items)


def _fmt_item(item) -> str:
    kind, p, q = item
    if kind == "index":
        return str(p)
    return f"{'' if p is None else p}:{'' if q is None else q}"


def _fmt_items(a: IndexAttrs) -> str:
    return "[" + ", ".join(_fmt_item(it) for it in a.items) + "]"


def _index_vjp(a: IndexAttrs, xs, ys, gs, ctx):
    x = xs[0]
    if not np.issubdtype(x.dtype, np.floating):
        return [None], {}
    gx = np.zeros_like(x)
    gx[_key(a)] = gs[0]  # basic indexing picks each element at most once
    return [gx], {}


INDEX = Op(
    name="index",
    family="shape",
    doc="Indexing and slicing, `x[:, 0]`, `x[:, 1:3]`, `x[-1]`: an integer removes its axis, a "
        "slice keeps it (clamped as in Python); negative positions count from the end.",
    attrs=IndexAttrs,
    shape=_index_shape,
    numpy=lambda a, xs, ctx: [xs[0][_key(a)]],
    vjp=_index_vjp,
    torch_call=lambda a, args, ctx, ins: f"{args[0]}{_fmt_items(a)}",
    label=_fmt_items,
    examples=(
        Example({"items": (("slice", None, None), ("index", 0, None))},
                (tensor("f32", 2, 3, 4),)),
        Example({"items": (("slice", None, None), ("slice", 1, 3))}, (tensor("f32", 2, 5),)),
        Example({"items": (("index", -1, None),)}, (tensor("f32", 3, 4),)),
        Example({"items": (("slice", -2, None), ("slice", None, -1), ("index", 2, None))},
                (tensor("f32", 4, 5, 3),)),
        Example({"items": (("slice", 1, 100),)}, (tensor("i64", 3, 2),)),
    ),
)

INDEX_OPS = (INDEX,)
