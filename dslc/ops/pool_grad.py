"""Vector-Jacobian products of the windowed pools (max, avg and lp pools in 1-3 D: the `vjp`
of their op records in ops/pool.py), run by the interpreter's backward walk.

Each works tap by tap on the input framed by its padding (and ceil mode's partial windows):
an average sends each output's cotangent, divided as the forward divided, to every element
of its window; a max sends it to the window's first maximum in kernel order (torch's
tie rule: a later element must be strictly greater, or NaN, to take over). The argmax is
recomputed from the forward's input, which the backward walk holds anyway, so the forward
kernel stays the inference kernel and keeps nothing. Only the taps that reach the input are
visited, on the padded rows they read (ops/window.py), so a huge padding costs nothing.
Memory: the framed input and its cotangent, and the argmax tap per output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from dslc.ops.window import out_size, reach, window_counts
from dslc.ops.window_grad import framed, tap_slice, unframed


def _geometry(win, sizes):
    """(outs, reaches) of a pool over `sizes`: the output sizes, and per axis the taps that
    reach the input and the padded rows they read (ops/window.py), as the forward kernel."""
    outs = tuple(out_size(n, k, s, d, lo, hi, win.ceil_mode, win.pre_padded)
                 for n, k, s, d, (lo, hi) in zip(sizes, win.k, win.s, win.d, win.pads))
    reaches = tuple(reach(n, k, s, d, lo, o)
                    for n, k, s, d, (lo, _), o in zip(sizes, win.k, win.s, win.d, win.pads, outs))
    return outs, reaches


def _taps(reaches):
    """The kernel taps that read input rows (the others read padding only), in kernel order,
    with the first padded row of the frame per axis."""
    taps = list(itertools.product(*(range(r.t0, r.t1) for r in reaches)))
    return taps, tuple(r.lo for r in reaches)


def max_pool_grad(x, g, win):
    """x [N, C, *S], g [N, C, *out] -> the cotangent of x under a max pool."""
    outs, reaches = _geometry(win, x.shape[2:])
    if any(r.empty for r in reaches):  # every window is padding only: -inf, no cotangent
        return np.zeros(x.shape, g.dtype)
    xp = framed(x, reaches, -np.inf)
    taps, origin = _taps(reaches)
    best = np.full(g.shape, -np.inf, x.dtype)
    arg = np.zeros(g.shape, np.int64)
    for i, tap in enumerate(taps):
        v = xp[tap_slice(tap, win.s, win.d, outs, origin=origin)]
        take = (v > best) | (np.isnan(v) & ~np.isnan(best))
        best = np.where(take, v, best)
        arg[take] = i
    gxp = np.zeros(xp.shape, g.dtype)
    for i, tap in enumerate(taps):
        gxp[tap_slice(tap, win.s, win.d, outs, origin=origin)] += np.where(arg == i, g, 0)
    return unframed(gxp, x.shape, reaches)


def avg_pool_grad(x_shape, g, win, count_include_pad=True, divisor_override=None):
    """The cotangent of an input of shape x_shape [N, C, *S] under an average pool."""
    sizes = x_shape[2:]
    outs, reaches = _geometry(win, sizes)
    if any(r.empty for r in reaches):  # windows of padding only: constant zeros
        return np.zeros(x_shape, g.dtype)
    if divisor_override is not None:
        gd = g / g.dtype.type(divisor_override)
    else:
        div = np.ones((), np.float64)
        for n, o, k, s, (lo, hi) in zip(sizes, outs, win.k, win.s, win.pads):
            div = np.multiply.outer(div, window_counts(n, o, k, s, lo, hi, count_include_pad))
        gd = g * (1.0 / np.maximum(div, 1.0)).astype(g.dtype)
    gxp = np.zeros(tuple(x_shape[:2]) + tuple(r.hi - r.lo for r in reaches), g.dtype)
    taps, origin = _taps(reaches)
    for tap in taps:
        gxp[tap_slice(tap, win.s, win.d, outs, origin=origin)] += gd
    return unframed(gxp, x_shape, reaches)


def _batched(nd, x, g, run):
    if x.ndim == nd + 2:
        return run(x, g)
    return run(x[None], g[None])[0]


def pool_vjp(nd: int, mode: str, make_window: Callable):
    """The vjp of {mode}_pool{nd}d; `make_window` is ops/pool.py's Window (that module imports
    this one, so it hands the class in)."""
    def vjp(a, ins, outs, gouts, ctx):
        win = make_window(a, nd, f"{mode}_pool{nd}d")
        if mode == "max":
            gx = _batched(nd, ins[0], gouts[0], lambda x, g: max_pool_grad(x, g, win))
        else:
            gx = _batched(nd, ins[0], gouts[0], lambda x, g: avg_pool_grad(
                x.shape, g, win, a.count_include_pad, getattr(a, "divisor_override", None)))
        return [gx], {}
    return vjp


def lp_pool_vjp(nd: int, make_window: Callable):
    """The vjp of lp_pool{nd}d: y = (K * avg(x^p))^(1/p), so dy/dx = y^(1-p) K/count x^(p-1)
    per window; p = +-inf is a max of +-|x|. `make_window` as for pool_vjp."""
    def vjp(a, ins, outs, gouts, ctx):
        win = make_window(a, nd, f"lp_pool{nd}d")
        p = a.norm_type
        x, y, g = ins[0], outs[0], gouts[0]
        if math.isinf(p):
            sign = 1.0 if p > 0 else -1.0
            gx = _batched(nd, x, g, lambda xb, gb: max_pool_grad(sign * np.abs(xb), gb, win))
            return [gx * sign * np.sign(x)], {}
        kvol = math.prod(win.k)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # y = u^(1/p), u = K * avg(x^p): du = g * u^(1/p - 1) / p
            gu = g * np.power(y, 1.0 - p) / p
            gv = _batched(nd, x, gu * kvol, lambda xb, gb: avg_pool_grad(xb.shape, gb, win))
            gx = gv * p * np.power(x, p - 1.0)
        return [gx], {}
    return vjp
