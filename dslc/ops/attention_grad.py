"""Vector-Jacobian products of the attention family (the `vjp` of the op records in
ops/attention.py, attention_masks.py and attention_embed.py), run by the interpreter's
backward walk. Masks and integer ids get no cotangent (None).

Attention and multi-head attention recompute their scores and weights from the inputs
(memory: the [..., Tq, Tk] weights once, as torch's math backend keeps them); multi-head
attention's dropout reuses the forward's mask (ctx.saved["dropout"]).
"""

from __future__ import annotations

import math

import numpy as np

from dslc.ops.attention_common import (
    _band,
    _causal,
    _linear,
    _mask_kinds,
    _parse_equation,
    _softmax_last,
)


def softmax_grad(w: np.ndarray, gw: np.ndarray) -> np.ndarray:
    """The cotangent of softmax scores (last axis) from that of its weights w: w (gw - <gw, w>).
    Blocked scores have w = 0, so they get none."""
    return w * (gw - np.sum(gw * w, axis=-1, keepdims=True))


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g summed over the axes it was broadcast along to reach shape."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g


def _blocked(a, tq: int, tk: int, masks):
    blocked = None
    for m in masks:
        blocked = m if blocked is None else blocked | m
    if a.causal:
        c = _causal(tq, tk)
        blocked = c if blocked is None else blocked | c
    if a.window is not None:
        c = _band(tq, tk, a.window)
        blocked = c if blocked is None else blocked | c
    return blocked


def attention_vjp(a, ins, outs, gouts, ctx):
    """softmax(q kᵀ·scale) v: cotangents of q, k, v (None for the mask)."""
    q, k, v = ins[:3]
    g = gouts[0]
    scale = a.scale if a.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    blocked = _blocked(a, q.shape[-2], k.shape[-2], ins[3:])
    if blocked is not None:
        s = np.where(blocked, -np.inf, s)
    with np.errstate(invalid="ignore"):
        w = _softmax_last(s, overwrite=True)
    w = np.nan_to_num(w, nan=0.0)  # a fully blocked row: zero weights, as the forward
    gv = np.matmul(np.swapaxes(w, -1, -2), g)
    ds = softmax_grad(w, np.matmul(g, np.swapaxes(v, -1, -2))) * scale
    gq = np.matmul(ds, k)
    gk = np.matmul(np.swapaxes(ds, -1, -2), q)
    return [gq, gk, gv] + [None] * (len(ins) - 3), {}


def mha_vjp(a, ins, outs, gouts, ctx, tuned: bool = True):
    """nn.MultiheadAttention: cotangents of the query, key and value inputs (summed where
    one tensor plays several roles) and of the four projection parameters. Tuned: the
    forward's projections (ctx.saved["qkv"]) are reused, and self-attention's input
    projection is differentiated as one GEMM; tuned=False is the plain form (projections
    computed again, one product per role), which tests/ops/test_attention_grad.py holds it
    equal to."""
    fl = [i for i, x in enumerate(ins) if x.dtype != np.bool_]
    masks = [x for x in ins if x.dtype == np.bool_]
    p = ctx.params
    w, bias = p["in_proj_weight"], p.get("in_proj_bias")
    roles = [fl[0], fl[1] if len(fl) > 1 else fl[0], fl[-1]]  # which input is q, k and v
    q_in, k_in, v_in = (ins[i] for i in roles)
    d = q_in.shape[-1]
    h = a.num_heads
    dh = d // h
    bsz, tq = q_in.shape[:2]
    tk = k_in.shape[1]
    bs = [None] * 3 if bias is None else [bias[:d], bias[d:2 * d], bias[2 * d:]]
    lin = ctx.saved.get("qkv") if tuned else None  # the forward's projections
    if lin is None:  # the plain form: projected again
        lin = [_linear(x, w[j * d:(j + 1) * d], bs[j]) for j, x in enumerate((q_in, k_in,
                                                                               v_in))]
    heads = [y.reshape(y.shape[0], y.shape[1], h, dh).transpose(0, 2, 1, 3) for y in lin]
    q, k, v = heads  # [B, h, T, dh]
    c = 1.0 / math.sqrt(dh)
    s = np.matmul(q * c, np.swapaxes(k, -1, -2))
    kinds = _mask_kinds(a, len(masks))
    blocked = _blocked(a, tq, tk, [m if kind == "attn" else m[:, None, None, :]
                                   for m, kind in zip(masks, kinds)])
    if blocked is not None:
        s = np.where(blocked, -np.inf, s)
    wts = _softmax_last(s, overwrite=True)
    drop = ctx.saved.get("dropout")
    wd = wts if drop is None else wts * drop
    o = np.matmul(wd, v).transpose(0, 2, 1, 3).reshape(bsz, tq, d)
    g = gouts[0]
    wo = p["out_proj.weight"]
    grads = {"out_proj.weight": g.reshape(-1, d).T @ o.reshape(-1, d)}
    if "out_proj.bias" in p:
        grads["out_proj.bias"] = g.reshape(-1, d).sum(axis=0)
    go = (g @ wo).reshape(bsz, tq, h, dh).transpose(0, 2, 1, 3)  # [B, h, Tq, dh]
    gv = np.matmul(np.swapaxes(wd, -1, -2), go)
    gw = np.matmul(go, np.swapaxes(v, -1, -2))
    if drop is not None:
        gw = gw * drop
    ds = softmax_grad(wts, gw) * c
    gq = np.matmul(ds, k)
    gk = np.matmul(np.swapaxes(ds, -1, -2), q)
    if tuned and roles[0] == roles[1] == roles[2]:
        # Self-attention: the three projections' cotangents side by side [B*T, 3d] (the
        # in_proj_weight's row order), so that its gradient and the input's are one GEMM
        # each, the three roles summed by the product.
        gall = np.empty((bsz, tq, 3, h, dh), gq.dtype)
        for j, gx in enumerate((gq, gk, gv)):
            gall[:, :, j] = gx.transpose(0, 2, 1, 3)
        gall = gall.reshape(-1, 3 * d)
        grads["in_proj_weight"] = gall.T @ q_in.reshape(-1, d)
        if bias is not None:
            grads["in_proj_bias"] = gall.sum(axis=0)
        gins: list[np.ndarray | None] = [None] * len(ins)
        gins[roles[0]] = (gall @ w).reshape(q_in.shape)
        return gins, grads
    gw_in, gb_in = [], []
    gins = [None] * len(ins)
    for j, (gx, x) in enumerate(zip((gq, gk, gv), (q_in, k_in, v_in))):
        gx = gx.transpose(0, 2, 1, 3).reshape(x.shape)  # [B, T, d]
        gw_in.append(gx.reshape(-1, d).T @ x.reshape(-1, d))
        gb_in.append(gx.reshape(-1, d).sum(axis=0))
        back = gx @ w[j * d:(j + 1) * d]
        i = roles[j]
        gins[i] = back if gins[i] is None else gins[i] + back
    grads["in_proj_weight"] = np.concatenate(gw_in)
    if bias is not None:
        grads["in_proj_bias"] = np.concatenate(gb_in)
    return gins, grads


def einsum_vjp(a, ins, outs, gouts, ctx):
    """Each input's cotangent is an einsum of the output's cotangent with the other inputs.
    A letter repeated in an input (a diagonal) is renamed and tied back by an identity; a
    letter of one input alone (summed out) is broadcast back."""
    terms, out = _parse_equation(a, len(ins))
    free = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                if c not in "".join(terms))
    gins = []
    for i, x in enumerate(ins):
        target, eyes = "", []
        for pos, c in enumerate(terms[i]):
            if c in target:
                new = next(free)
                eyes.append((c + new, np.eye(x.shape[pos])))
                target += new
            else:
                target += c
        operands = [(out, gouts[0])] + [(t, y) for j, (t, y) in enumerate(zip(terms, ins))
                                        if j != i] + eyes
        known = set("".join(t for t, _ in operands))
        reduced = "".join(c for c in target if c in known)
        eq = ",".join(t for t, _ in operands) + "->" + reduced
        g = np.einsum(eq, *(y for _, y in operands), optimize=True)
        # letters only this input has: the forward summed them, so each element gets it all
        g = g.reshape(tuple(x.shape[p] if c in known else 1 for p, c in enumerate(target)))
        gins.append(np.broadcast_to(g, x.shape).astype(x.dtype))
    return gins, {}


def masked_fill_vjp(a, ins, outs, gouts, ctx):
    return [np.where(ins[1], 0.0, gouts[0]).astype(gouts[0].dtype), None], {}


def masked_softmax_vjp(a, ins, outs, gouts, ctx):
    """The weights y are the forward's output: dx = scale · y (g - <g, y>) along dim."""
    y = np.moveaxis(np.nan_to_num(outs[0]), a.dim, -1)
    g = np.moveaxis(gouts[0], a.dim, -1)
    gx = np.moveaxis(softmax_grad(y, g), -1, a.dim) * a.scale
    return [gx] + [None] * (len(ins) - 1), {}


def position_embedding_vjp(a, ins, outs, gouts, ctx):
    gw = np.zeros_like(ctx.params["weight"], dtype=gouts[0].dtype)
    gw[:gouts[0].shape[0]] = gouts[0]
    return [None], {"weight": gw}


def shared_embedding_vjp(a, ins, outs, gouts, ctx):
    """Rows of the table looked up get their cotangents added (np.add.at: repeated ids add);
    the returned table's cotangent adds on whole."""
    w = ctx.params["weight"]
    g_rows, g_table = gouts
    dt = next(g.dtype for g in gouts if g is not None)
    gw = np.zeros(w.shape, dt) if g_table is None else np.array(g_table, dtype=dt)
    if g_rows is not None:
        np.add.at(gw, ins[0].reshape(-1), g_rows.reshape(-1, w.shape[1]))
    return [None], {"weight": gw}


def class_token_vjp(a, ins, outs, gouts, ctx):
    g = gouts[0]
    return [g[:, 1:]], {"weight": g[:, :1].sum(axis=0)}


def no_input_vjp(a, ins, outs, gouts, ctx):
    """The output depends on the input's shape only (a fixed table): no cotangent."""
    return [None] * len(ins), {}
