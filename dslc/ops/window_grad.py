"""Helpers of the window ops' vector-Jacobian products (conv, conv_transpose, pool, pad): the
adjoint of padding, and the strided slice one kernel tap reads, used by the backward walk of
the interpreter through each op's `vjp`."""

from __future__ import annotations

import numpy as np

# torch's padding_mode / F.pad mode -> np.pad's mode
NP_PAD_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect",
                "replicate": "edge", "circular": "wrap"}


def pad_vjp(g: np.ndarray, pads: tuple[tuple[int, int], ...], mode: str,
            first_axis: int = 2) -> np.ndarray:
    """The cotangent of x from that of np.pad(x, pads on axes first_axis.., mode): a padded
    row's cotangent goes back to the input row it copies (np.add.at sums rows copied several
    times, as reflect and circular do near the edges); constant padding just crops. `mode`
    is np.pad's (constant, reflect, edge, wrap). Negative pads (a crop) give zeros back."""
    for ax, (lo, hi) in enumerate(pads):
        axis = first_axis + ax
        n = g.shape[axis] - lo - hi
        if mode == "constant" or (lo <= 0 and hi <= 0):
            # rows cropped away (negative pads) get a zero cotangent back
            shape = list(g.shape)
            shape[axis] = n
            out = np.zeros(shape, g.dtype)
            src = [slice(None)] * g.ndim
            dst = [slice(None)] * g.ndim
            src[axis] = slice(max(lo, 0), g.shape[axis] - max(hi, 0))
            dst[axis] = slice(max(-lo, 0), n - max(-hi, 0))
            out[tuple(dst)] = g[tuple(src)]
            g = out
            continue
        idx = np.pad(np.arange(n), (lo, hi), mode=mode)
        moved = np.moveaxis(g, axis, 0)
        out = np.zeros((n,) + moved.shape[1:], g.dtype)
        np.add.at(out, idx, moved)
        g = np.moveaxis(out, 0, axis)
    return g


def tap_slice(tap: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
              out: tuple[int, ...], lead: int = 2,
              origin: tuple[int, ...] | None = None) -> tuple[slice, ...]:
    """The rows of a padded input that kernel tap `tap` reads for every output (lead axes
    whole): t*d, t*d + s, ..., t*d + (out-1)*s on each spatial axis, less `origin` (the
    first padded row a buffer holds, ops/window.py's Reach.lo)."""
    origin = origin or (0,) * len(tap)
    return (slice(None),) * lead + tuple(
        slice(t * d - z, t * d - z + (o - 1) * s + 1, s)
        for t, s, d, o, z in zip(tap, stride, dilation, out, origin))


def framed(x: np.ndarray, reaches: tuple, fill: float) -> np.ndarray:
    """x [N, C, *S] in a frame of `fill`: the padded rows its kernel taps read (a copy; see
    ops/window.py: padding no tap reads is left out, so a huge padding costs nothing)."""
    from dslc.ops.window import window
    return window(x, tuple(range(2, x.ndim)), reaches, fill,
                  lambda shape: np.empty(shape, x.dtype), copy=True)


def unframed(g: np.ndarray, shape: tuple[int, ...], reaches: tuple) -> np.ndarray:
    """The cotangent of x (of `shape`) from that of framed(x): rows no tap read get 0."""
    gx = np.zeros(shape, g.dtype)
    src = (slice(None),) * 2 + tuple(slice(r.a, r.b) for r in reaches)
    dst = (slice(None),) * 2 + tuple(slice(r.r0, r.r1) for r in reaches)
    gx[dst] = g[src]
    return gx
