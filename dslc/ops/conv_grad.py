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
from dslc.ops.window import reach, window
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
    gx = gx if batched or gx is None else gx[0]
    if functional:
        return [gx, gw] + ([gb] if len(ins) == 3 else []), {}
    return [gx], ({"weight": gw} | ({} if gb is None else {"bias": gb}))


def conv_vjp(nd: int, tuned: bool = True):
    """The vjp of conv{nd}d: cotangents of the input, weight and bias. `tuned` takes
    _im2col_grads where it applies (one group, zero padding); tuned=False is the plain tap
    by tap form (_tap_grads), which tests/ops/test_conv_grad.py holds it equal to."""

    def vjp(a, ins, outs, gouts, ctx):
        x, w, b, functional = *ins[:1], *_weights(ins, ctx)
        g = gouts[0]
        batched = x.ndim == nd + 2
        if not batched:
            x, g = x[None], g[None]
        s, d = _tup(a.stride, nd), _tup(a.dilation, nd)
        pads = resolve_padding(a.padding, w.shape[2:], s, d, nd, f"conv{nd}d")
        fast = None
        if tuned and a.groups == 1 and (a.padding_mode == "zeros"
                                        or not any(lo or hi for lo, hi in pads)):
            # a first layer's input (the model's) needs no cotangent: skip dL/dx's two passes
            want_x = ctx is None or ctx.input_grads is None or ctx.input_grads[0]
            fast = _im2col_grads(x, w, g, s, d, pads, want_x)
        gx, gw = fast if fast is not None else _tap_grads(a, x, w, g, s, d, pads)
        gb = g.sum(axis=(0,) + tuple(range(2, g.ndim))) if b is not None else None
        return _result(a, ins, functional, gx, gw, gb, batched)
    return vjp


def _tap_grads(a, x, w, g, s, d, pads) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dw), the plain form: one pair of small matmuls per kernel tap."""
    nd = x.ndim - 2
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
    return gx, gw


# Patch elements per block of images in _im2col_grads (as the forward's conv.py _BLOCK): big
# enough for BLAS to run at full speed, small enough that the patches of a 224x224 ResNet at
# batch 16 (~120 MB at once) are never held whole.
_BLOCK = 1 << 22


def _im2col_grads(x, w, g, s, d, pads,
                  want_x: bool = True) -> tuple[np.ndarray | None, np.ndarray] | None:
    """(dL/dx, dL/dw) of a one-group zero-padded conv, channels last: per block of images,
    the patch matrix P [positions, taps*C] is gathered once (as the forward gathers it), then
    dL/dw = G^T P and dL/dP = G W are two large matmuls (G: the output cotangent [positions,
    O]), and dL/dP is added back tap by tap onto the padded input's rows. The tap-by-tap
    form did 2 small matmuls and 2 transposing copies per tap: ResNet-18's backward took 10x
    its forward. None when no tap reaches the input (the plain form handles it). Without
    `want_x`, dL/dx is not computed (None): a first layer's input needs none."""
    nd = x.ndim - 2
    n, c = x.shape[:2]
    o, k = w.shape[0], w.shape[2:]
    out = g.shape[2:]
    reaches = tuple(reach(sz, kk, ss, dd, lo, oo) for sz, kk, ss, dd, (lo, _), oo
                    in zip(x.shape[2:], k, s, d, pads, out))
    if any(r.empty for r in reaches):
        return None
    dt = g.dtype  # as the plain form
    spatial = tuple(range(1, nd + 1))
    xl = np.moveaxis(x, 1, -1)  # [N, *S, C]: a conv's output is this in memory already
    xp = window(xl, spatial, reaches, 0.0, lambda shape: np.empty(shape, x.dtype),
                copy=not xl.flags.c_contiguous)
    taps = list(itertools.product(*(range(r.t0, r.t1) for r in reaches)))
    counts = tuple(r.t1 - r.t0 for r in reaches)
    origin = tuple(r.lo for r in reaches)
    slices = [tap_slice(t, s, d, out, lead=1, origin=origin) for t in taps]
    # The weight's reached taps as [O, taps*C], in the patches' order
    sub = w[(slice(None), slice(None)) + tuple(slice(r.t0, r.t1) for r in reaches)]
    wm = np.moveaxis(sub, 1, -1).reshape(o, len(taps) * c).astype(dt, copy=False)
    gl = np.moveaxis(g, 1, -1)  # [N, *O, O]
    per_image = math.prod(out) * len(taps) * c
    imgs = max(1, min(n, _BLOCK // max(1, per_image)))
    patches = np.empty((imgs,) + out + (len(taps), c), dt)
    gwm = np.zeros((o, len(taps) * c), dt)
    gxp = np.zeros(xp.shape, dt) if want_x else None
    for n0 in range(0, n, imgs):
        m = min(imgs, n - n0)
        pb = patches[:m]
        xb = xp[n0:n0 + m]
        for j, sl in enumerate(slices):
            pb[..., j, :] = xb[sl]
        gm = gl[n0:n0 + m].reshape(-1, o)  # a copy unless g is channels-last in memory
        pm = pb.reshape(-1, len(taps) * c)
        gwm += gm.T @ pm
        if not want_x:
            continue
        gp = (gm @ wm).reshape(pb.shape)
        gb = gxp[n0:n0 + m]
        for j, sl in enumerate(slices):
            gb[sl] += gp[..., j, :]
    gw = np.zeros(w.shape, dt)
    gw[(slice(None), slice(None)) + tuple(slice(r.t0, r.t1) for r in reaches)] = np.moveaxis(
        gwm.reshape((o,) + counts + (c,)), -1, 1)
    if not want_x:
        return None, gw
    # Back from the frame to x's rows; channels-last memory, x's [N, C, *S] shape
    gx = np.zeros((n,) + x.shape[2:] + (c,), dt)
    gx[(slice(None),) + tuple(slice(r.r0, r.r1) for r in reaches)] = gxp[
        (slice(None),) + tuple(slice(r.a, r.b) for r in reaches)]
    return np.moveaxis(gx, -1, 1), gw


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
