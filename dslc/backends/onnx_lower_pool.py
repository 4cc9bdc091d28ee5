"""ONNX lowerings of the pools: max/avg pools 1-3d (dilation, ceil_mode, per-side and "same"
padding, divisor_override), lp pools as torch computes them, adaptive avg/max pools 1-3d."""

from __future__ import annotations

import math

import numpy as np

from dslc import dims as D
from dslc.backends.onnx_builder import Lower
from dslc.backends.onnx_lower_conv import batched, onnx_pads
from dslc.backends.onnx_lower_core import reduce
from dslc.ops.pool import Window, per_axis
from dslc.types import numpy_dtype


def _window(lw: Lower, nd: int, mode: str) -> Window:
    return Window(lw.attrs, nd, f"{mode}_pool{nd}d")


def _geometry(win: Window, pads, ceil_mode: bool) -> dict:
    return dict(kernel_shape=list(win.k), strides=list(win.s), pads=onnx_pads(pads),
                ceil_mode=int(ceil_mode))


def _known(lw: Lower, nd: int) -> tuple[list[int], list[int]] | None:
    """The spatial sizes of the input and the output, when all are fixed numbers."""
    ins = [D.value(D.as_dim(d)) for d in lw.in_types[0].shape[-nd:]]
    outs = [D.value(D.as_dim(d)) for d in lw.out_types[0].shape[-nd:]]
    if any(v is None for v in ins + outs):
        return None
    return ins, outs


def _full_windows(win: Window, sizes: list[int], outs: list[int]) -> tuple:
    """(before, after) pads per axis that make every one of dslc's windows whole: the spec's
    pads, the after pad grown until the last window (ceil mode's clipped one) fits. A pool
    over the padded input without pads or ceil_mode then has exactly dslc's windows (torch
    drops a ceil-mode window that would start past the padding, and so does the count o)."""
    pads = []
    for n, o, k, s, d, (lo, hi) in zip(sizes, outs, win.k, win.s, win.d, win.pads):
        extra = max(0, (o - 1) * s + d * (k - 1) + 1 - (n + lo + hi))
        pads.append((lo, hi + extra))
    return tuple(pads)


def _ceil_trim(lw: Lower, nd: int, y: str, win: Window) -> str:
    """Over runtime sizes, ceil_mode is MaxPool's/AveragePool's own: onnxruntime drops a last
    window that would start in the padding (as torch), but ONNX's shape inference does not,
    so a fixed axis where that happens is Sliced to dslc's size (no-op at run time) for the
    inferred shapes to agree."""
    if not win.ceil_mode:
        return y
    sizes = [D.value(D.as_dim(d)) for d in lw.in_types[0].shape[-nd:]]
    outs = [D.value(D.as_dim(d)) for d in lw.out_types[0].shape[-nd:]]
    axes, ends = [], []
    for i, (n, o, k, s, d, (lo, hi)) in enumerate(zip(sizes, outs, win.k, win.s, win.d,
                                                     win.pads)):
        if n is not None and o is not None and -(-(n + lo + hi - d * (k - 1) - 1) // s) + 1 > o:
            axes.append(2 + i)
            ends.append(o)
    if not axes:
        return y
    return lw.op("Slice", [y, lw.ints([0] * len(axes)), lw.ints(ends), lw.ints(axes)])


def _pad(lw: Lower, x: str, pads, value: str | None) -> str:
    if not any(lo or hi for lo, hi in pads):
        return x
    full = ((0, 0), (0, 0)) + tuple(pads)
    return lw.op("Pad", [x, lw.ints(onnx_pads(full))] + ([value] if value else []),
                 mode="constant")


def _max(lw: Lower, nd: int, x: str, win: Window, known) -> str:
    """MaxPool with dslc's windows. Fixed sizes, with ceil_mode or per-side padding (part of
    the input in torch, F.pad with -inf): a -inf Pad that makes every window whole, then
    MaxPool without pads or ceil_mode (ONNX's shape inference and onnxruntime differ from
    torch on a ceil-mode window starting in the padding). Runtime sizes: MaxPool's own pads
    and ceil_mode. A window of padding only is -inf in torch and the lowest float in
    onnxruntime: put back by a Where (_padding_only)."""
    dt = lw.in_types[0].dtype
    dil = list(win.d)
    if known is not None and (win.ceil_mode or win.pre_padded):
        pads = _full_windows(win, *known)
        y = lw.op("MaxPool", [_pad(lw, x, pads, lw.scalar(-np.inf, dt))], dilations=dil,
                  **_geometry(win, ((0, 0),) * nd, False))
    else:
        pads, padded = win.pads, x
        if win.pre_padded:
            padded = _pad(lw, x, pads, lw.scalar(-np.inf, dt))
            pads = ((0, 0),) * nd
        y = lw.op("MaxPool", [padded], dilations=dil, **_geometry(win, pads, win.ceil_mode))
    empty = _padding_only(lw, nd, x, win, known)
    if empty is not None:
        y = lw.op("Where", [empty, lw.scalar(-np.inf, dt), y])
    return y if known is not None else _ceil_trim(lw, nd, y, win)


def _padding_only(lw: Lower, nd: int, x: str, win: Window, known) -> str | None:
    """bool, True at the outputs whose window holds padding only (None: there are none).
    Fixed sizes: a constant from the windows' taps (along any axis a window with no tap in
    the input holds no input element). Runtime sizes, with padding or ceil_mode: the same
    pooling of a tensor of zeros (its padding -1, or MaxPool's own lowest float) below 0."""
    if known is not None:
        sizes, outs = known
        mask = np.zeros((), bool)
        for n, o, k, s, d, (lo, _) in zip(sizes, outs, win.k, win.s, win.d, win.pads):
            taps = (np.arange(o) * s - lo)[:, None] + np.arange(k) * d
            axis_empty = ~((taps >= 0) & (taps < n)).any(axis=1)
            mask = np.logical_or.outer(mask, axis_empty)
        if not mask.any():
            return None
        return lw.const(mask.reshape((1, 1) + mask.shape), f"{lw.label}.padding_only")
    if not (win.ceil_mode or any(lo or hi for lo, hi in win.pads)):
        return None
    from onnx import helper

    from dslc.backends.onnx_builder import ELEM

    dt = lw.in_types[0].dtype
    zeros = lw.op("ConstantOfShape", [lw.op("Shape", [x])],
                  value=helper.make_tensor("value", ELEM[dt], [1], [0]))
    if win.pre_padded:  # as the values: padded first (with -1), pooled without pads
        marks = _pad(lw, zeros, win.pads, lw.scalar(-1, dt))
        pooled = lw.op("MaxPool", [marks], dilations=list(win.d),
                       **_geometry(win, ((0, 0),) * nd, win.ceil_mode))
    else:  # MaxPool's own padding is the lowest float: below 0 too
        pooled = lw.op("MaxPool", [zeros], dilations=list(win.d),
                       **_geometry(win, win.pads, win.ceil_mode))
    return lw.op("Less", [pooled, lw.scalar(0, dt)])


def _counts(n: int, o: int, k: int, s: int, lo: int, hi: int, include: bool) -> np.ndarray:
    """The elements torch's average pool divides each window by along one axis: the window
    clipped to the padded input, or its input elements only (count_include_pad=false)."""
    start = np.arange(o) * s - lo
    end = np.minimum(start + k, n + hi)
    if include:
        return (end - start).astype(np.float64)
    return np.maximum(np.minimum(end, n) - np.maximum(start, 0), 0).astype(np.float64)


def _avg(lw: Lower, nd: int, x: str, win: Window, known, include: bool,
         divisor: int | None) -> str:
    """Average pooling with dslc's windows and divisors. Plain cases: AveragePool. With
    ceil_mode, per-side padding or divisor_override over fixed sizes: a zero Pad that makes
    every window whole, AveragePool (= window sum / kernel size), times a constant kernel
    size / divisor per output position (torch's counts; 0 for a window of padding only).
    Runtime sizes: _avg_runtime."""
    plain = not (win.ceil_mode or win.pre_padded or divisor is not None)
    if plain:
        return lw.op("AveragePool", [x], count_include_pad=int(include),
                     **_geometry(win, win.pads, False))
    if known is None:
        return _ceil_trim(lw, nd, _avg_runtime(lw, nd, x, win, include, divisor), win)
    sizes, outs = known
    y = lw.op("AveragePool", [_pad(lw, x, _full_windows(win, sizes, outs), None)],
              count_include_pad=1, **_geometry(win, ((0, 0),) * nd, False))
    kvol = math.prod(win.k)
    if divisor is not None:
        return lw.op("Mul", [y, lw.fscalar(kvol / divisor)])
    counts = np.ones((), np.float64)
    for n, o, k, s, (lo, hi) in zip(sizes, outs, win.k, win.s, win.pads):
        counts = np.multiply.outer(counts, _counts(n, o, k, s, lo, hi, include))
    scale = np.where(counts > 0, kvol / np.maximum(counts, 1), 0.0)
    scale = scale.reshape((1, 1) + scale.shape).astype(numpy_dtype(lw.in_types[0].dtype))
    return lw.op("Mul", [y, lw.const(scale, f"{lw.label}.counts")])


def _avg_runtime(lw: Lower, nd: int, x: str, win: Window, include: bool,
                 divisor: int | None) -> str:
    """Average pooling over runtime sizes. Symmetric padding: AveragePool's own pads and
    ceil_mode (onnxruntime clips and drops ceil-mode windows as torch). Per-side padding: a
    zero Pad first, then AveragePool without pads (the clipped count of a ceil-mode window is
    then torch's, the padding included); count_include_pad=false divides the window sums by
    the same pool of a padded ones tensor (the input elements each window holds; a window of
    padding only gives 0 / 0.5 = 0). divisor_override: whole windows' sums / divisor (with
    ceil_mode a clipped window has no fixed count: E0804)."""
    kvol = math.prod(win.k)
    nopad = ((0, 0),) * nd
    if divisor is not None:
        if win.ceil_mode:
            raise lw.unsupported("divisor_override with ceil_mode over a runtime-sized image",
                                 "bind the image size with --bind")
        y = lw.op("AveragePool", [_pad(lw, x, win.pads, None)], count_include_pad=1,
                  **_geometry(win, nopad, False))
        return lw.op("Mul", [y, lw.fscalar(kvol / divisor)])
    if not win.pre_padded:
        return lw.op("AveragePool", [x], count_include_pad=int(include),
                     **_geometry(win, win.pads, win.ceil_mode))
    geo = _geometry(win, nopad, win.ceil_mode)
    y = lw.op("AveragePool", [_pad(lw, x, win.pads, None)], count_include_pad=1, **geo)
    if include:
        return y
    from onnx import helper

    from dslc.backends.onnx_builder import ELEM

    dt = lw.in_types[0].dtype
    ones = lw.op("ConstantOfShape", [lw.op("Shape", [x])],
                 value=helper.make_tensor("value", ELEM[dt], [1], [1]))
    share = lw.op("AveragePool", [_pad(lw, ones, win.pads, None)], count_include_pad=1, **geo)
    return lw.op("Div", [y, lw.op("Max", [share, lw.fscalar(0.5 / kvol)])])


def _max_pool(nd: int):
    def lower(lw: Lower, node, ins):
        win = _window(lw, nd, "max")
        known = _known(lw, nd)
        return [batched(lw, nd, ins[0], lambda x: _max(lw, nd, x, win, known))]
    return lower


def _avg_pool(nd: int):
    def lower(lw: Lower, node, ins):
        a = lw.attrs
        win = _window(lw, nd, "avg")
        known = _known(lw, nd)
        divisor = getattr(a, "divisor_override", None)
        return [batched(lw, nd, ins[0], lambda x: _avg(lw, nd, x, win, known,
                                                       a.count_include_pad, divisor))]
    return lower


def _lp_pool(nd: int):
    def lower(lw: Lower, node, ins):
        """torch's F.lp_pool: (avg_pool(x^p) · kernel size)^(1/p) (a ceil-mode window
        clipped by the input is scaled up to the full kernel, as torch); p = ±inf: the max of
        |x| (the min for -inf). Not ONNX LpPool, which sums |x|^p."""
        p = lw.attrs.norm_type
        win = _window(lw, nd, "lp")
        known = _known(lw, nd)

        def make(x: str) -> str:
            if math.isinf(p):
                mag = lw.op("Abs", [x])
                if p > 0:
                    return _max(lw, nd, mag, win, known)
                return lw.op("Neg", [_max(lw, nd, lw.op("Neg", [mag]), win, known)])
            avg = _avg(lw, nd, lw.op("Pow", [x, lw.fscalar(p)]), win, known, True, None)
            total = lw.op("Mul", [avg, lw.fscalar(math.prod(win.k))])
            return lw.op("Pow", [total, lw.fscalar(1.0 / p)])
        return [batched(lw, nd, ins[0], make)]
    return lower


def bins(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins along an axis of size n: output i covers floor(i·n/o) ..
    ceil((i+1)·n/o) (overlapping where o does not divide n)."""
    i = np.arange(o)
    return (i * n) // o, -(-((i + 1) * n) // o)


def bin_matrix(n: int, o: int, dtype) -> np.ndarray:
    """[n, o]: column i averages torch's bin i of an axis of size n."""
    lo, hi = bins(n, o)
    m = np.zeros((n, o), np.float64)
    for i in range(o):
        m[lo[i]:hi[i], i] = 1.0 / (hi[i] - lo[i])
    return m.astype(dtype)


def _along_last(lw: Lower, x: str, axis: int, rank: int, fn) -> str:
    """fn(x with `axis` moved last), moved back (no Transpose when it is last already)."""
    if axis == rank - 1:
        return fn(x)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    return lw.op("Transpose", [fn(lw.op("Transpose", [x], perm=perm))], perm=perm)


def _adaptive(nd: int, mode: str):
    def lower(lw: Lower, node, ins):
        """One spatial axis at a time: output 1 is ReduceMean/ReduceMax (any size); else,
        for a fixed size, torch's bins as constants: the mean a MatMul with the [n, o]
        averaging matrix, the max a Gather of each bin's elements (the last repeated up to
        the longest bin) and a ReduceMax, exact for overlapping bins."""
        t = lw.in_types[0]
        rank = t.rank
        outs = per_axis(lw.attrs.output_size, nd)
        sizes = [D.value(D.as_dim(d)) for d in t.shape[-nd:]]
        x = ins[0]
        for i, (n, o) in enumerate(zip(sizes, outs)):
            axis = rank - nd + i
            if o == 1:
                x = reduce(lw, "ReduceMean" if mode == "avg" else "ReduceMax", x, [axis], True)
                continue
            if n is None:
                raise lw.unsupported(f"adaptive pooling of a runtime-sized axis to {o}",
                                     "bind the size with --bind, or pool to 1")
            if mode == "avg":
                m = lw.const(bin_matrix(n, o, numpy_dtype(t.dtype)), f"{lw.label}.bins")
                x = _along_last(lw, x, axis, rank, lambda v, m=m: lw.op("MatMul", [v, m]))
            else:
                lo, hi = bins(n, o)
                longest = int((hi - lo).max())
                idx = np.minimum(lo[:, None] + np.arange(longest), hi[:, None] - 1)
                taken = lw.op("Gather", [x, lw.const(idx.astype(np.int64), f"{lw.label}.bins")],
                              axis=axis)
                x = reduce(lw, "ReduceMax", taken, [axis + 1], False)
        return [x]
    return lower


LOWERINGS = {
    **{f"max_pool{nd}d": _max_pool(nd) for nd in (1, 2, 3)},
    **{f"avg_pool{nd}d": _avg_pool(nd) for nd in (1, 2, 3)},
    **{f"lp_pool{nd}d": _lp_pool(nd) for nd in (1, 2, 3)},
    **{f"adaptive_avg_pool{nd}d": _adaptive(nd, "avg") for nd in (1, 2, 3)},
    **{f"adaptive_max_pool{nd}d": _adaptive(nd, "max") for nd in (1, 2, 3)},
}
