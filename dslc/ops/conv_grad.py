"""Vector-Jacobian products of conv1d/2d/3d and conv_transpose1d/2d/3d (the `vjp` of their op
records in ops/conv.py and ops/conv_transpose.py), run by the interpreter's backward walk.

Both work tap by tap: kernel tap t of a conv reads the padded input's rows t*d + o*s, so the
weight's cotangent at t is the output cotangent times those rows (one matmul per group), and
the input's cotangent gets the output cotangent times the weight at t added back onto the same
rows. A transposed conv is the adjoint: tap t writes to rows t*d + l*s of the uncropped
output, and its cotangent reads them. Memory: the padded input (and its cotangent) once; no
patch matrix, so nothing beyond the forward's inputs is kept between forward and backward.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from dslc.ops.padding import pad_input, resolve_padding, tap_slices, transposed_pads
from dslc.ops.window import reach
from dslc.ops.window_grad import NP_PAD_MODES, framed, pad_vjp, tap_slice, unframed


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _weights(ins, ctx):
    """(weight, bias, functional): from tensor inputs (F.convNd) or the node's parameters."""
    if len(ins) >= 2:
        return ins[1], (ins[2] if len(ins) == 3 else None), True
    return ctx.params["weight"], ctx.params.get("bias"), False


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """[N, C, *S] -> [G, C/G, N * prod(S)]: a group's channels against every position."""
    n, c = a.shape[:2]
    p = math.prod(a.shape[2:])
    return a.reshape(n, groups, c // groups, p).transpose(1, 2, 0, 3).reshape(
        groups, c // groups, n * p)


def _ungrouped(a: np.ndarray, n: int, spatial: tuple[int, ...]) -> np.ndarray:
    """[G, C/G, N * prod(S)] -> [N, C, *S] (the inverse of _grouped)."""
    g, cg = a.shape[:2]
    return a.reshape(g, cg, n, *spatial).swapaxes(0, 2).swapaxes(1, 2).reshape(
        (n, g * cg) + spatial)


def _result(a, ins, functional, gx, gw, gb, batched):
    gx = gx if batched else gx[0]
    if functional:
        return [gx, gw] + ([gb] if len(ins) == 3 else []), {}
    return [gx], ({"weight": gw} | ({} if gb is None else {"bias": gb}))


def conv_vjp(nd: int):
    """The vjp of conv{nd}d: cotangents of the input, weight and bias."""

    def vjp(a, ins, outs, gouts, ctx):
        x, w, b, functional = *ins[:1], *_weights(ins, ctx)
        g = gouts[0]
        batched = x.ndim == nd + 2
        if not batched:
            x, g = x[None], g[None]
        s, d = _tup(a.stride, nd), _tup(a.dilation, nd)
        pads = resolve_padding(a.padding, w.shape[2:], s, d, nd, f"conv{nd}d")
        groups = a.groups
        n, out, k = x.shape[0], g.shape[2:], w.shape[2:]
        o, cg = w.shape[:2]
        gw = np.zeros_like(w, dtype=g.dtype)
        moded = a.padding_mode != "zeros" and any(lo or hi for lo, hi in pads)
        if moded:  # padded in full first, as the forward does
            xp = pad_input(x, pads, a.padding_mode)
            taps, origin = [range(kk) for kk in k], (0,) * nd
        else:
            # Zero padding: only the taps that reach the input, on the rows they read (a
            # padding of 2**30 costs nothing, as in the forward)
            reaches = tuple(reach(sz, kk, ss, dd, lo, oo) for sz, kk, ss, dd, (lo, _), oo
                            in zip(x.shape[2:], k, s, d, pads, out))
            if any(r.empty for r in reaches):
                xp, taps = None, []
            else:
                xp = framed(x, reaches, 0.0)
                taps = [range(r.t0, r.t1) for r in reaches]
                origin = tuple(r.lo for r in reaches)
        go = _grouped(g, groups)  # [G, O/G, N*P]
        gxp = None if xp is None else np.zeros_like(xp, dtype=g.dtype)
        for tap in itertools.product(*taps):
            sl = tap_slice(tap, s, d, out, origin=origin)
            xs = _grouped(xp[sl], groups)  # [G, Cg, N*P]
            gw[(slice(None), slice(None)) + tap] = (go @ xs.transpose(0, 2, 1)).reshape(o, cg)
            wt = w[(slice(None), slice(None)) + tap].reshape(groups, o // groups, cg)
            gxp[sl] += _ungrouped(wt.transpose(0, 2, 1) @ go, n, out)
        if moded:
            gx = pad_vjp(gxp, pads, NP_PAD_MODES[a.padding_mode])
        elif gxp is None:
            gx = np.zeros(x.shape, g.dtype)
        else:
            gx = unframed(gxp, x.shape, reaches)
        gb = g.sum(axis=(0,) + tuple(range(2, g.ndim))) if b is not None else None
        return _result(a, ins, functional, gx, gw, gb, batched)
    return vjp


def conv_transpose_vjp(nd: int):
    """The vjp of conv_transpose{nd}d: cotangents of the input, weight and bias."""

    def vjp(a, ins, outs, gouts, ctx):
        x, w, b, functional = *ins[:1], *_weights(ins, ctx)
        g = gouts[0]
        batched = x.ndim == nd + 2
        if not batched:
            x, g = x[None], g[None]
        s, d = _tup(a.stride, nd), _tup(a.dilation, nd)
        k = w.shape[2:]
        pads = transposed_pads(a.padding, k, s, d, nd, f"conv_transpose{nd}d")
        n, size, out = x.shape[0], x.shape[2:], g.shape[2:]
        # per axis, per tap: which inputs land on which (kept) outputs, as the forward
        per_axis = [[tap_slices(t, sz, ss, dd, lo, ot) for t in range(kk)]
                    for kk, sz, ss, dd, (lo, _), ot in zip(k, size, s, d, pads, out)]
        groups = a.groups
        cin, og = w.shape[:2]
        gw = np.zeros_like(w, dtype=g.dtype)
        gx = np.zeros(x.shape, g.dtype)
        for tap in itertools.product(*(range(kk) for kk in k)):
            sl = [per_axis[ax][t] for ax, t in enumerate(tap)]
            if any(v is None for v in sl):
                continue  # the tap lands in the crop only
            src = (slice(None), slice(None)) + tuple(v[0] for v in sl)
            dst = (slice(None), slice(None)) + tuple(v[1] for v in sl)
            xs = x[src]
            gs = _grouped(g[dst], groups)  # [G, Og, N*M]
            gw[(slice(None), slice(None)) + tap] = (
                _grouped(xs, groups) @ gs.transpose(0, 2, 1)).reshape(cin, og)
            wt = w[(slice(None), slice(None)) + tap].reshape(groups, cin // groups, og)
            gx[src] += _ungrouped(wt @ gs, n, xs.shape[2:])
        gb = g.sum(axis=(0,) + tuple(range(2, g.ndim))) if b is not None else None
        return _result(a, ins, functional, gx, gw, gb, batched)
    return vjp
