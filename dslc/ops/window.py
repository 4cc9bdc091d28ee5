"""Window geometry shared by the NumPy kernels of conv and pool: which kernel taps can reach
the input, and the padded buffer that holds just the rows those taps read.

Why: a kernel that pads its input in full and loops over every tap costs memory and time in
proportion to the padding and the kernel, which the shape rules let grow far past the input
(conv2d(padding=2**30, dilation=2**30) on a 5x5 image: a 2**62-element pad; max_pool1d with a
2**30 kernel: a 2**30-step loop). Taps that read only padding add nothing (zeros to a conv or
an average, -inf to a max), so leaving them out is exact, and the rows the other taps read
are bounded by the input and the output, except where a huge stride samples a few rows far
apart: a buffer that would pass the run limit is refused (E0505) before it is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dslc.limits import MAX_RUN_ELEMENTS
from dslc.ops.base import ShapeError


class Reach(NamedTuple):
    """Along one axis: taps t0 .. t1-1 may read input elements; they read padded rows
    lo .. hi-1; the input's rows r0 .. r1-1 land at buffer rows a .. b-1. When no tap reaches
    the input, t1 == t0 and the rows are empty."""
    t0: int
    t1: int
    lo: int
    hi: int
    a: int
    b: int
    r0: int
    r1: int

    @property
    def empty(self) -> bool:
        """No tap reaches the input: the op's output is its padding value (and bias) alone."""
        return self.t1 <= self.t0

    @property
    def reads_padding(self) -> bool:
        return not (self.a == 0 and self.b == self.hi - self.lo)


def reach(size: int, k: int, s: int, d: int, front: int, out: int) -> Reach:
    """One axis of a window op: kernel k, stride s, dilation d, over `size` input rows padded
    by `front` rows in front, making `out` outputs. Tap t reads padded rows t·d + o·s for
    o < out; it can reach the input rows [front, front + size) only if t·d + (out-1)·s >=
    front and t·d < front + size (a superset when the stride steps over the input: still
    exact)."""
    t0 = max(0, -(-(front - (out - 1) * s) // d))
    t1 = min(k, -(-(front + size) // d))
    if t1 <= t0:
        return Reach(t0, t0, 0, 0, 0, 0, 0, 0)
    lo = t0 * d
    hi = (t1 - 1) * d + (out - 1) * s + 1
    r0 = min(size, max(0, lo - front))
    r1 = max(r0, min(size, hi - front))
    return Reach(t0, t1, lo, hi, front + r0 - lo, front + r1 - lo, r0, r1)


def window(x: np.ndarray, axes: tuple[int, ...], reaches: tuple[Reach, ...], fill: float,
           alloc: Callable[[tuple[int, ...]], np.ndarray], copy: bool = False) -> np.ndarray:
    """The rows the taps read along `axes`: a view of x when no padding is read (and `copy`
    is not asked for), else a buffer from alloc(shape) holding x's rows in a frame of `fill`.
    A buffer over the run's element limit is refused before it is allocated (E0505)."""
    if not copy and not any(r.reads_padding for r in reaches):
        rows = [slice(None)] * x.ndim
        for axis, r in zip(axes, reaches):
            rows[axis] = slice(r.r0, r.r1)
        return x[tuple(rows)]
    shape = list(x.shape)
    for axis, r in zip(axes, reaches):
        shape[axis] = r.hi - r.lo
    n = math.prod(shape)
    if n > MAX_RUN_ELEMENTS:
        raise ShapeError("the padded rows this kernel reads would be too large to run "
                         "(padding, stride and dilation far past the input)",
                         expected=f"at most {MAX_RUN_ELEMENTS} elements",
                         found=f"{n} elements {shape}", code="E0505")
    return _fill_window(x, alloc(tuple(shape)), axes, reaches, fill)


def _fill_window(x: np.ndarray, buf: np.ndarray, axes: tuple[int, ...],
                 reaches: tuple[Reach, ...], fill: float) -> np.ndarray:
    """Copies x's reachable rows into buf (shaped hi - lo along `axes`, x's shape elsewhere,
    any memory order) and writes `fill` in the frame around them only; returns buf."""
    inside = [slice(None)] * buf.ndim
    source = [slice(None)] * x.ndim
    for axis, r in zip(axes, reaches):
        frame = [slice(None)] * buf.ndim
        frame[axis] = slice(0, r.a)
        buf[tuple(frame)] = fill
        frame[axis] = slice(r.b, None)
        buf[tuple(frame)] = fill
        inside[axis] = slice(r.a, r.b)
        source[axis] = slice(r.r0, r.r1)
    buf[tuple(inside)] = x[tuple(source)]
    return buf


# ---- pool windows along one axis (the pool kernels and their vjps) ----


def out_size(n: int, k: int, s: int, d: int, before: int, after: int, ceil_mode: bool,
             pre_padded: bool) -> int:
    """Outputs along one axis, as torch counts them: floor (or ceil) of
    (n + before + after - d(k-1) - 1)/s + 1; in ceil mode the last window must start inside
    the input or the front padding (or anywhere in the padding `pre_padded` by F.pad)."""
    span = n + before + after - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    o = -(-span // s) + 1
    if (o - 1) * s >= n + before + (after if pre_padded else 0):
        o -= 1
    return o


def window_counts(n: int, o: int, k: int, s: int, before: int, after: int,
            include_pad: bool) -> np.ndarray:
    """Elements each window averages along one axis, as torch counts them: the window clipped
    to the padded input, or only its input elements (0 for a window of padding only)."""
    start = np.arange(o) * s - before
    end = np.minimum(start + k, n + after)
    if include_pad:
        return (end - start).astype(np.float64)
    return np.maximum(np.minimum(end, n) - np.maximum(start, 0), 0).astype(np.float64)
