"""ONNX lowerings of the attention ops: masks from Range comparisons, masked softmax and
attention from MatMul, Where and Softmax, multi-head attention with its projections, einsum,
positional encodings and learned tokens."""

from __future__ import annotations

import math

import numpy as np

from dslc.backends.onnx_builder import Lower
from dslc.backends.onnx_lower_core import linear
from dslc.ops.attention import _mask_kinds, _mha_split


def _range(lw: Lower, d) -> str:
    """int64 [d]: 0, 1, ..., d-1, as an exclusive CumSum of ones: ONNX shape inference then
    knows the length (it does not for a Range)."""
    from onnx import TensorProto, helper

    ones = lw.op("ConstantOfShape", [lw.dim(d)],
                 value=helper.make_tensor("value", TensorProto.INT64, [1], [1]))
    return lw.op("CumSum", [ones, lw.const(np.asarray(0, np.int64), "zero")], exclusive=1)


def _positions(lw: Lower, tq, tk) -> tuple[str, str]:
    """Query positions as a column [Tq, 1] and key positions as a row [1, Tk]."""
    return lw.unsqueeze(_range(lw, tq), [1]), lw.unsqueeze(_range(lw, tk), [0])


def causal(lw: Lower, tq, tk) -> str:
    """bool [Tq, Tk], True above the diagonal (j > i)."""
    i, j = _positions(lw, tq, tk)
    return lw.op("Greater", [j, i])


def band(lw: Lower, tq, tk, window: int) -> str:
    """bool [Tq, Tk], True where |i - j| > window."""
    i, j = _positions(lw, tq, tk)
    dist = lw.op("Abs", [lw.op("Sub", [i, j])])
    return lw.op("Greater", [dist, lw.const(np.asarray(window, np.int64), "window")])


def _mask_len(lw: Lower, arg: int, dim: int):
    t = lw.in_types[arg]
    return t.shape[dim % t.rank]


def _causal_mask(lw: Lower, node, ins):
    return [causal(lw, _mask_len(lw, 0, lw.attrs.dim), _mask_len(lw, -1, lw.attrs.dim))]


def _band_mask(lw: Lower, node, ins):
    return [band(lw, _mask_len(lw, 0, lw.attrs.dim), _mask_len(lw, -1, lw.attrs.dim),
                 lw.attrs.window)]


def _padding_mask(lw: Lower, node, ins):
    pos = lw.unsqueeze(_range(lw, _mask_len(lw, 1, lw.attrs.dim)), [0])
    lengths = lw.unsqueeze(lw.cast(ins[0], "i64"), [1])
    return [lw.op("GreaterOrEqual", [pos, lengths])]


def _masked_fill(lw: Lower, node, ins):
    return [lw.op("Where", [ins[1], lw.fscalar(lw.attrs.value), ins[0]])]


def _blocked_softmax(lw: Lower, s: str, blocked: str | None, dtype: str, axis: int = -1) -> str:
    if blocked is not None:
        s = lw.op("Where", [blocked, lw.scalar(-np.inf, dtype), s])
    return lw.op("Softmax", [s], axis=axis)


def _masked_softmax(lw: Lower, node, ins):
    a = lw.attrs
    x = ins[0]
    if a.scale != 1.0:
        x = lw.op("Mul", [x, lw.fscalar(a.scale)])
    return [_blocked_softmax(lw, x, ins[1] if len(ins) == 2 else None, lw.in_types[0].dtype,
                             a.dim)]


def _or(lw: Lower, a: str | None, b: str) -> str:
    return b if a is None else lw.op("Or", [a, b])


def _last_two_swapped(lw: Lower, x: str, rank: int) -> str:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return lw.op("Transpose", [x], perm=perm)


def _attention(lw: Lower, node, ins):
    """softmax(q kᵀ · scale, masked) v; a fully masked row gets zero weights (as
    F.scaled_dot_product_attention), by a Where on IsNaN."""
    a = lw.attrs
    q, k, v = ins[:3]
    qt, kt = lw.in_types[0], lw.in_types[1]
    dtype = qt.dtype
    scale = a.scale if a.scale is not None else 1.0 / math.sqrt(int(qt.shape[-1]))
    s = lw.op("MatMul", [q, _last_two_swapped(lw, k, kt.rank)])
    s = lw.op("Mul", [s, lw.scalar(scale, dtype)])
    tq, tk = qt.shape[-2], kt.shape[-2]
    blocked = ins[3] if len(ins) == 4 else None
    if a.causal:
        blocked = _or(lw, blocked, causal(lw, tq, tk))
    if a.window is not None:
        blocked = _or(lw, blocked, band(lw, tq, tk, a.window))
    w = _blocked_softmax(lw, s, blocked, dtype)
    if blocked is not None:
        w = lw.op("Where", [lw.op("IsNaN", [w]), lw.scalar(0.0, dtype), w])
    return [lw.op("MatMul", [w, v])]


def _mha(lw: Lower, node, ins):
    """torch.nn.MultiheadAttention (batch-first): q, k, v projections from in_proj_weight's
    row blocks (Slice), heads by Reshape/Transpose, q scaled by 1/√dh, masks combined with Or,
    softmax, weights·v, heads merged, out_proj. Dropout is off at inference."""
    a = lw.attrs
    fl_types, _ = _mha_split(lw.in_types)
    n_fl = len(fl_types)
    fl, masks = ins[:n_fl], ins[n_fl:]
    qt = fl_types[0]
    kt = fl_types[1] if n_fl > 1 else qt
    dtype = qt.dtype
    d = int(qt.shape[-1])
    h = a.num_heads
    dh = d // h
    w = lw.param("in_proj_weight")
    bias = lw.param("in_proj_bias") if lw.has_param("in_proj_bias") else None

    def rows(x: str, lo: int, hi: int) -> str:
        return lw.op("Slice", [x, lw.ints([lo]), lw.ints([hi]), lw.ints([0])])

    def project(x: str, lo: int, hi: int) -> str:
        return linear(lw, x, rows(w, lo, hi), rows(bias, lo, hi) if bias else None, 3)

    q_in = fl[0]
    k_in = fl[1] if n_fl > 1 else q_in
    v_in = fl[2] if n_fl == 3 else k_in
    q = project(q_in, 0, d)
    k = project(k_in, d, 2 * d)
    v = project(v_in, 2 * d, 3 * d)
    b_dim, tq, tk = qt.shape[0], qt.shape[1], kt.shape[1]

    def heads(x: str, t, perm) -> str:
        return lw.op("Transpose", [lw.reshape(x, [b_dim, t, h, dh])], perm=perm)

    qh = lw.op("Mul", [heads(q, tq, [0, 2, 1, 3]), lw.scalar(1.0 / math.sqrt(dh), dtype)])
    kh = heads(k, tk, [0, 2, 3, 1])
    vh = heads(v, tk, [0, 2, 1, 3])
    s = lw.op("MatMul", [qh, kh])  # [B, h, Tq, Tk]
    blocked = None
    for m, kind in zip(masks, _mask_kinds(a, len(masks))):
        blocked = _or(lw, blocked, m if kind == "attn" else lw.unsqueeze(m, [1, 2]))
    if a.causal:
        blocked = _or(lw, blocked, causal(lw, tq, tk))
    if a.window is not None:
        blocked = _or(lw, blocked, band(lw, tq, tk, a.window))
    wts = _blocked_softmax(lw, s, blocked, dtype)
    o = lw.op("MatMul", [wts, vh])  # [B, h, Tq, dh]
    o = lw.reshape(lw.op("Transpose", [o], perm=[0, 2, 1, 3]), [b_dim, tq, d])
    ob = lw.param("out_proj.bias") if lw.has_param("out_proj.bias") else None
    return [linear(lw, o, lw.param("out_proj.weight"), ob, 3)]


def _einsum(lw: Lower, node, ins):
    return [lw.op("Einsum", ins, equation=lw.attrs.equation.replace(" ", ""))]


def _sinusoidal(lw: Lower, node, ins):
    """The table in float64 (as the NumPy kernel): angles p·freq from a Range, sin and cos
    interleaved by stacking on a last axis and reshaping [T, d/2, 2] -> [T, d]."""
    out = lw.out_types[0]
    t, d = out.shape[0], int(out.shape[1])
    pos = lw.unsqueeze(lw.op("Cast", [_range(lw, t)], to=11), [1])  # float64 [T, 1]
    freq = np.exp(np.arange(0, d, 2, dtype=np.float64) * (-math.log(10000.0) / d))
    ang = lw.op("Mul", [pos, lw.const(freq, f"{lw.label}.freq")])
    pair = lw.op("Concat", [lw.unsqueeze(lw.op("Sin", [ang]), [2]),
                            lw.unsqueeze(lw.op("Cos", [ang]), [2])], axis=2)
    return [lw.cast(lw.reshape(pair, [t, d]), out.dtype)]


def _position_embedding(lw: Lower, node, ins):
    # A Gather of rows 0..T-1 rather than a Slice: ONNX shape inference keeps the width.
    t = lw.out_types[0].shape[0]
    return [lw.op("Gather", [lw.param("weight"), _range(lw, t)], axis=0)]


def _shared_embedding(lw: Lower, node, ins):
    w = lw.param("weight")
    return [lw.op("Gather", [w, ins[0]], axis=0), w]


def _class_token(lw: Lower, node, ins):
    xt = lw.in_types[0]
    tok = lw.param("weight")  # [1, d], in x's precision
    tok = lw.op("Expand", [lw.unsqueeze(tok, [0]), lw.dims([xt.shape[0], 1, xt.shape[2]])])
    return [lw.op("Concat", [tok, ins[0]], axis=1)]


LOWERINGS = {
    "causal_mask": _causal_mask,
    "band_mask": _band_mask,
    "padding_mask": _padding_mask,
    "masked_fill": _masked_fill,
    "masked_softmax": _masked_softmax,
    "attention": _attention,
    "multihead_attention": _mha,
    "einsum": _einsum,
    "sinusoidal_encoding": _sinusoidal,
    "position_embedding": _position_embedding,
    "shared_embedding": _shared_embedding,
    "class_token": _class_token,
}
