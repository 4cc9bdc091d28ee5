"""Adaptive pooling ops (average and max to a fixed output size, 1-D, 2-D and 3-D): op records
for the registry, used by elaboration (shape rules), the interpreter (NumPy kernels) and the
PyTorch back end (F.adaptive_avg_pool2d and friends; no parameters).

Bins are torch's: output i of an axis of size n covers floor(i*n/o) .. ceil((i+1)*n/o), so
neighbouring bins overlap when o does not divide n. A box's mean and maximum are separable, so
the kernels reduce one axis at a time: differences of a running sum (mean), or a gather of
each bin's elements, padded to the longest bin by repeating its last element, and a max over
them (max).
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError
from dslc.ops.pool import SPATIAL_NAMES, fmt_size, literal, need_spatial, per_axis
from dslc.types import tensor


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
        torch_call=lambda a, args, ctx, ins: f"F.{name}({args[0]}, {literal(a.output_size)})",
        label=lambda a: fmt_size(a.output_size, nd),
        examples=examples,
    )


ADAPTIVE_POOL_OPS: tuple = (
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
)
