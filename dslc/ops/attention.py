"""Attention ops (family "attn"): masks, masked softmax, einsum, scaled dot-product and
multi-head attention, positional encodings, learned tensors and table look-ups; the op records
the registry imports, whose shape rules run in elaboration and kernels/emitters in the back ends.
The mask ops and helpers are in attention_masks.py, the positional encodings and embeddings in
attention_embed.py; this file holds einsum and the attention ops, and lists them all.

Mask convention (as torch.nn.MultiheadAttention and nn.Transformer): a bool mask is True where
attention is NOT allowed. F.scaled_dot_product_attention reads bool masks the other way round,
so its emitter negates them.
"""

from __future__ import annotations

import math

import numpy as np

from dslc import dims as D
from dslc.ops.attention_common import _linear, _mask_kinds, _parse_equation
from dslc.ops.attention_embed import (
    CLASS_TOKEN,
    POSITION_EMBEDDING,
    SHARED_EMBEDDING,
    SINUSOIDAL_ENCODING,
    sinusoid_table,
)
from dslc.ops.attention_grad import attention_vjp, einsum_vjp, mha_vjp
from dslc.ops.attention_masks import (
    BAND_MASK,
    CAUSAL_MASK,
    MASKED_FILL,
    MASKED_SOFTMAX,
    PADDING_MASK,
    _band,
    _broadcast_mask,
    _causal,
    _check_window,
    _mask_parts,
    _same,
    _softmax_last,
)
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    need_float,
)
from dslc.types import TensorType, tensor

# ---- einsum ------------------------------------------------------------------------------


class EinsumAttrs(Attrs):
    equation: str


def _einsum_sizes(a: EinsumAttrs, ins) -> tuple[dict[str, D.Dim], str]:
    terms, out = _parse_equation(a, len(ins))
    sizes: dict[str, D.Dim] = {}
    for i, (term, t) in enumerate(zip(terms, ins)):
        if len(term) != t.rank:
            raise ShapeError(f"einsum term {term!r} has {len(term)} letters but input {i} has "
                             f"rank {t.rank}", expected=f"rank {len(term)}", found=str(t),
                             arg=i)
        for c, d in zip(term, t.shape):
            if c in sizes:
                _same(sizes[c], d, f"einsum letter {c!r} has sizes {D.fmt(sizes[c])} and "
                      f"{D.fmt(d)}", expected=f"{c} = {D.fmt(sizes[c])}", found=str(t), arg=i,
                      code="E0303")
            else:
                sizes[c] = d
    return sizes, out


def _einsum_shape(a: EinsumAttrs, ins):
    for i, t in enumerate(ins):
        need_float(t, i)
        if t.dtype != ins[0].dtype:
            raise ShapeError("einsum operands have different dtypes", expected=ins[0].dtype,
                             found=t.dtype, arg=i, code="E0302")
    sizes, out = _einsum_sizes(a, ins)
    return [TensorType(ins[0].dtype, tuple(sizes[c] for c in out))]


def _einsum_macs(a: EinsumAttrs, ins, outs):
    if len(ins) < 2:
        return D.const(0)
    sizes, _ = _einsum_sizes(a, ins)
    return D.product(sizes.values())


EINSUM = Op(
    name="einsum",
    family="attn",
    doc="Einstein summation (torch.einsum): `einsum(q, k, \"bqd,bkd->bqk\")` for attention "
        "scores; letters only, explicit output. MACs: the product of all letter sizes.",
    attrs=EinsumAttrs,
    positional=("equation",),
    min_inputs=1,
    max_inputs=None,
    shape=_einsum_shape,
    macs=_einsum_macs,
    numpy=lambda a, xs, ctx: [np.einsum(a.equation.replace(" ", ""), *xs, optimize=True)
                              .astype(xs[0].dtype, copy=False)],
    vjp=einsum_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"torch.einsum({a.equation.replace(' ', '')!r}, {', '.join(args)})"),
    label=lambda a: a.equation,
    examples=(
        Example({"equation": "bqd,bkd->bqk"}, (tensor("f32", 2, 3, 4), tensor("f32", 2, 5, 4))),
        Example({"equation": "ij->ji"}, (tensor("f32", 3, 4),)),
    ),
)

# ---- scaled dot-product attention ----------------------------------------------------------


class AttentionAttrs(Attrs):
    scale: float | None = None  # default 1/sqrt(E)
    causal: bool = False
    window: int | None = None


def _attention_shape(a: AttentionAttrs, ins):
    _check_window(a.window)
    q, k, v = ins[:3]
    for i, t in enumerate((q, k, v)):
        need_float(t, i)
        if t.rank < 2:
            raise ShapeError("attention needs [..., T, E] tensors", expected="rank >= 2",
                             found=str(t), arg=i)
        if t.dtype != q.dtype:
            raise ShapeError("q, k and v have different dtypes", expected=q.dtype,
                             found=t.dtype, arg=i, code="E0302")
    _same(q.shape[-1], k.shape[-1], "queries and keys have different feature sizes",
          expected=f"k of shape [..., Tk, {D.fmt(q.shape[-1])}]", found=f"q {q}, k {k}",
          arg=1, code="E0303")
    _same(k.shape[-2], v.shape[-2], "keys and values have different lengths",
          expected=f"v of shape [..., {D.fmt(k.shape[-2])}, Ev]", found=f"k {k}, v {v}",
          arg=2, code="E0303")
    if q.rank != k.rank or k.rank != v.rank:
        raise ShapeError("q, k and v must have the same rank", expected=f"rank {q.rank}",
                         found=f"q {q}, k {k}, v {v}", arg=1)
    for i in range(q.rank - 2):
        for t, arg in ((k, 1), (v, 2)):
            _same(q.shape[i], t.shape[i], f"batch axis {i} differs between q and its keys",
                  expected=str(q.shape[i]), found=str(t), arg=arg, code="E0303")
    if len(ins) == 4:
        scores = q.with_shape(q.shape[:-1] + (k.shape[-2],))
        _broadcast_mask(scores, ins[3], arg=3)
    return [q.with_shape(q.shape[:-1] + (v.shape[-1],))]


def _attention_macs(a: AttentionAttrs, ins, outs):
    q, k, v = ins[:3]
    rows = D.product(q.shape[:-1]) * k.shape[-2]
    return rows * q.shape[-1] + rows * v.shape[-1]


def _attention_kernel(a: AttentionAttrs, xs, ctx):
    q, k, v = xs[:3]
    scale = a.scale if a.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)
    blocked = None
    tq, tk = q.shape[-2], k.shape[-2]
    if len(xs) == 4:
        blocked = xs[3]
    if a.causal:
        blocked = _causal(tq, tk) if blocked is None else blocked | _causal(tq, tk)
    if a.window is not None:
        band = _band(tq, tk, a.window)
        blocked = band if blocked is None else blocked | band
    if blocked is not None:
        s = np.where(blocked, np.asarray(-np.inf, q.dtype), s)
    w = _softmax_last(s, overwrite=True)
    if blocked is not None:
        # F.scaled_dot_product_attention gives a fully masked row zero weight, not NaN.
        w = np.nan_to_num(w, nan=0.0)
    return [np.matmul(w, v).astype(q.dtype, copy=False)]


def _attention_call(a: AttentionAttrs, args, ctx, ins):
    q, k, v = args[:3]
    extra = [args[3]] if len(args) == 4 else []
    dev = f"{q}.device"
    tq, tk = f"{q}.shape[-2]", f"{k}.shape[-2]"
    kw = []
    if a.causal and not extra and a.window is None:
        kw.append("is_causal=True")  # SDPA's own causal mask is the same top-left triangle
        mask = None
    else:
        mask = _mask_parts(extra, a.causal, a.window, tq, tk, dev)
    if mask is not None:
        kw.insert(0, f"attn_mask=~({mask})" if " " in mask else f"attn_mask=~{mask}")
    if a.scale is not None:
        kw.append(f"scale={a.scale!r}")
    return f"F.scaled_dot_product_attention({', '.join([q, k, v] + kw)})"


ATTENTION = Op(
    name="attention",
    family="attn",
    doc="Scaled dot-product attention (F.scaled_dot_product_attention): `attention(q, k, v, "
        "[mask], scale=1/sqrt(E), causal=false, window=None)` = softmax(q kᵀ·scale) v over "
        "[..., T, E] tensors; `mask` (bool, True = blocked) broadcasts to [..., Tq, Tk]; "
        "`causal` blocks the future, `window=w` everything beyond ±w. A fully blocked row "
        "gives zeros, as torch's SDPA. MACs: the q kᵀ and weights·v products (O(T²·E)).",
    attrs=AttentionAttrs,
    positional=(),
    min_inputs=3,
    max_inputs=4,
    shape=_attention_shape,
    macs=_attention_macs,
    numpy=_attention_kernel,
    vjp=attention_vjp,
    torch_call=_attention_call,
    label=lambda a: ", ".join(x for x in ("causal" if a.causal else "",
                                          "" if a.window is None else f"±{a.window}") if x),
    examples=(
        Example({}, (tensor("f32", 2, 4, 8), tensor("f32", 2, 5, 8), tensor("f32", 2, 5, 3))),
        Example({"causal": True}, (tensor("f32", 2, 2, 5, 4),) * 3),
        Example({"window": 1, "scale": 0.3}, (tensor("f32", 2, 6, 4),) * 3),
        Example({"causal": True}, (tensor("f32", 2, 4, 4),) * 3 + (tensor("bool", 4, 4),)),
    ),
)

# ---- multi-head attention ----------------------------------------------------------------


class MHAAttrs(Attrs):
    num_heads: int
    embed_dim: int | None = None  # defaults to the query's last axis
    dropout: float = 0.0
    bias: bool = True
    causal: bool = False
    window: int | None = None
    # With a single mask input: True means it is a key padding mask [B, Tk], not [Tq, Tk].
    padding: bool = False


def _mha_split(ins) -> tuple[list[TensorType], list[TensorType]]:
    """Float inputs (q; q and kv; or q, k, v) then bool masks."""
    n = 0
    while n < len(ins) and ins[n].dtype != "bool":
        n += 1
    return list(ins[:n]), list(ins[n:])


def _mha_kept(ins) -> D.Dim:
    """The q, k and v projections the kernel keeps for its vjp (ctx.saved["qkv"])."""
    q, k, _ = _mha_qkv(ins)
    d = q.shape[-1]
    return D.product(q.shape) + 2 * D.product(k.shape[:-1]) * d


def _mha_qkv(ins) -> tuple[TensorType, TensorType, TensorType]:
    fl, _ = _mha_split(ins)
    if len(fl) == 1:
        return fl[0], fl[0], fl[0]
    if len(fl) == 2:
        return fl[0], fl[1], fl[1]
    return fl[0], fl[1], fl[2]


def _mha_dim(a: MHAAttrs, ins) -> int:
    fl, masks = _mha_split(ins)
    if not 1 <= len(fl) <= 3:
        raise ShapeError("multihead_attention takes q (self-attention), q and kv, or q, k "
                         "and v, then up to two bool masks", expected="1 to 3 float tensors",
                         found=", ".join(str(t) for t in ins))
    if any(t.dtype != "bool" for t in masks):
        raise ShapeError("masks come after q, k and v", expected="bool masks last",
                         found=", ".join(str(t) for t in ins), arg=len(fl), code="E0302")
    q = fl[0]
    if q.rank != 3:
        raise ShapeError("multihead_attention takes batch-first sequences",
                         expected="[B, T, embed_dim]", found=str(q), arg=0)
    d = concrete(q.shape[-1], "multihead_attention's embed_dim (the query's last axis)")
    if a.embed_dim is not None and a.embed_dim != d:
        raise ShapeError(f"embed_dim={a.embed_dim} but the query has {d} features",
                         expected=f"q of shape [B, T, {a.embed_dim}]", found=str(q),
                         attr="embed_dim")
    if a.num_heads < 1:
        raise ShapeError("num_heads must be positive", expected=">= 1", found=str(a.num_heads),
                         attr="num_heads")
    # d % heads == 0, decided on the dims (d may be an expression of hyperparameters).
    rem = D.as_dim(d) % a.num_heads
    if D.equal(rem, D.const(0)) is not True:
        origin = (f"embed_dim={a.embed_dim}" if a.embed_dim is not None
                  else f"embed_dim {d} is the last axis of the query {q} (input 0)")
        raise ShapeError(
            f"num_heads {a.num_heads} does not divide embed_dim {d}: each head gets "
            f"embed_dim / num_heads features", expected=f"embed_dim % num_heads == 0 "
            f"(heads dividing {d}: {_divisors(d)})",
            found=f"{d} % {a.num_heads} = {d % a.num_heads} ({origin}; num_heads="
                  f"{a.num_heads})", attr="num_heads")
    return d


def _divisors(d: int, most: int = 12) -> str:
    """The smallest divisors of d, found up to sqrt(d) (d can be 2**31 in a hostile spec)."""
    small, large = [], []
    i = 1
    while i * i <= d and len(small) < most:
        if d % i == 0:
            small.append(i)
            if i != d // i:
                large.append(d // i)
        i += 1
    found = sorted(set(small + large))
    return ", ".join(str(x) for x in found[:most]) + (", ..." if len(found) > most else "")


def _mha_shape(a: MHAAttrs, ins):
    _check_window(a.window)
    if not 0.0 <= a.dropout < 1.0:
        raise ShapeError("dropout must be in [0, 1)", expected="0 <= p < 1",
                         found=repr(a.dropout), attr="dropout")
    d = _mha_dim(a, ins)
    fl, masks = _mha_split(ins)
    q, k, v = _mha_qkv(ins)
    for i, t in enumerate(fl):
        need_float(t, i)
        if t.dtype != q.dtype:
            raise ShapeError("q, k and v have different dtypes", expected=q.dtype,
                             found=t.dtype, arg=i, code="E0302")
        if t.rank != 3:
            raise ShapeError("keys and values must be batch-first sequences",
                             expected=f"[B, Tk, {d}]", found=str(t), arg=i)
        _same(t.shape[0], q.shape[0], "batch sizes differ", expected=str(q.shape[0]),
              found=str(t), arg=i, code="E0303")
        _same(t.shape[2], D.const(d), "keys and values must have embed_dim features",
              expected=f"[B, Tk, {d}]", found=str(t), arg=i, code="E0303")
    _same(k.shape[1], v.shape[1], "keys and values have different lengths",
          expected=f"[B, {D.fmt(k.shape[1])}, {d}]", found=str(v), arg=len(fl) - 1,
          code="E0303")
    if len(masks) > 2:
        raise ShapeError("at most two masks: attn_mask then key_padding_mask",
                         expected="<= 2 bool masks", found=f"{len(masks)} masks",
                         arg=len(fl) + 2)
    kinds = _mask_kinds(a, len(masks))
    for j, (m, kind) in enumerate(zip(masks, kinds)):
        arg = len(fl) + j
        if kind == "attn":
            want = (q.shape[1], k.shape[1])
            what = "attn_mask [Tq, Tk]"
        else:
            want = (q.shape[0], k.shape[1])
            what = "key padding mask [B, Tk]"
        if m.rank != 2:
            raise ShapeError(f"the {what} must have rank 2", expected=what, found=str(m),
                             arg=arg)
        for dm, dw in zip(m.shape, want):
            _same(dm, dw, f"the {what} does not match q and k",
                  expected=f"bool{D.fmt_shape(want)}", found=str(m), arg=arg, code="E0303")
    return [q]


def _mha_params(a: MHAAttrs, ins):
    d = _mha_dim(a, ins)
    dd = D.const(d)
    p = {"in_proj_weight": ParamSpec((D.const(3 * d), dd), "xavier_uniform", d)}
    if a.bias:
        p["in_proj_bias"] = ParamSpec((D.const(3 * d),), "zeros")
    p["out_proj.weight"] = ParamSpec((dd, dd), "uniform_fan_in", d)
    if a.bias:
        p["out_proj.bias"] = ParamSpec((dd,), "zeros")
    return p


def _mha_macs(a: MHAAttrs, ins, outs):
    q, k, v = _mha_qkv(ins)
    d = q.shape[-1]
    b, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    proj = b * (2 * tq + 2 * tk) * d * d  # q, k, v in; output out
    return proj + 2 * b * tq * tk * d  # q kᵀ and weights·v over all heads


def _mha_kernel(a: MHAAttrs, xs, ctx):
    fl = [x for x in xs if x.dtype != np.bool_]
    masks = [x for x in xs if x.dtype == np.bool_]
    p = ctx.params
    w = p["in_proj_weight"]
    bias = p.get("in_proj_bias")
    q_in = fl[0]
    d = q_in.shape[-1]
    h = a.num_heads
    dh = d // h
    bsz, tq = q_in.shape[:2]
    bs = [None] * 3 if bias is None else [bias[:d], bias[d:2 * d], bias[2 * d:]]
    if len(fl) == 1:  # self-attention: one [d -> 3d] product for q, k and v
        qkv = _linear(q_in, w, bias)
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    else:
        k_in = fl[1]
        v_in = fl[2] if len(fl) == 3 else fl[1]
        q = _linear(q_in, w[:d], bs[0])
        if v_in is k_in:
            kv = _linear(k_in, w[d:], None if bias is None else bias[d:])
            k, v = kv[..., :d], kv[..., d:]
        else:
            k = _linear(k_in, w[d:2 * d], bs[1])
            v = _linear(v_in, w[2 * d:], bs[2])
    tk = k.shape[1]
    # The projections, for the vjp (ops/attention_grad.py: it would compute them again
    # otherwise, the bulk of its work). Views of this run's arrays: nothing is copied, and
    # a run without gradients drops them with the context.
    ctx.saved["qkv"] = (q, k, v)
    q = q.reshape(bsz, tq, h, dh).transpose(0, 2, 1, 3)
    k = k.reshape(bsz, tk, h, dh).transpose(0, 2, 3, 1)
    v = v.reshape(bsz, tk, h, dh).transpose(0, 2, 1, 3)
    # Scale q before the product, as torch does (the rounding then matches more closely).
    s = np.matmul(q * np.asarray(1.0 / math.sqrt(dh), q.dtype), k)  # [B, h, Tq, Tk]
    blocked = None
    for m, kind in zip(masks, _mask_kinds(a, len(masks))):
        m = m if kind == "attn" else m[:, None, None, :]
        blocked = m if blocked is None else blocked | m
    if a.causal:
        c = _causal(tq, tk)
        blocked = c if blocked is None else blocked | c
    if a.window is not None:
        c = _band(tq, tk, a.window)
        blocked = c if blocked is None else blocked | c
    if blocked is not None:
        s = np.where(blocked, np.asarray(-np.inf, s.dtype), s)
    wts = _softmax_last(s, overwrite=True)
    if ctx.train and a.dropout > 0:
        keep = ctx.rng.random(wts.shape) >= a.dropout
        wts = wts * keep / np.asarray(1.0 - a.dropout, wts.dtype)
        ctx.saved["dropout"] = (keep / (1.0 - a.dropout)).astype(wts.dtype)  # the vjp's mask
    o = np.matmul(wts.astype(v.dtype, copy=False), v)  # [B, h, Tq, dh]
    o = o.transpose(0, 2, 1, 3).reshape(bsz, tq, d)
    out = _linear(o, p["out_proj.weight"], p.get("out_proj.bias"))
    return [out.astype(q_in.dtype, copy=False)]


def _mha_module(a: MHAAttrs, ins):
    d = _mha_dim(a, ins)
    extra = ""
    if a.dropout:
        extra += f", dropout={a.dropout!r}"
    if not a.bias:
        extra += ", bias=False"
    return f"nn.MultiheadAttention({d}, {a.num_heads}{extra}, batch_first=True)"


def _mha_call(a: MHAAttrs, args, ctx, ins):
    fl, masks = _mha_split(ins)
    nf = len(fl)
    q = args[0]
    k = args[1] if nf > 1 else q
    v = args[2] if nf > 2 else k
    kw = ["need_weights=False"]
    attn = []
    for name, kind in zip(args[nf:], _mask_kinds(a, len(masks))):
        if kind == "attn":
            attn.append(name)
        else:
            kw.append(f"key_padding_mask={name}")
    mask = _mask_parts(attn, a.causal, a.window, f"{q}.shape[1]", f"{k}.shape[1]",
                       f"{q}.device")
    if mask is not None:
        kw.insert(1, f"attn_mask={mask}")
    return f"{ctx.module}({q}, {k}, {v}, {', '.join(kw)})[0]"


MULTI_HEAD_ATTENTION = Op(
    name="multihead_attention",
    family="attn",
    doc="Multi-head attention as torch.nn.MultiheadAttention(batch_first=True): "
        "`x -> multihead_attention(num_heads)` (self-attention), `multihead_attention(q, kv, "
        "heads)` (cross-attention) or `(q, k, v, ...)`, then up to two bool masks (True = "
        "blocked): attn_mask [Tq, Tk] then key_padding_mask [B, Tk]; a single mask is a key "
        "padding mask with `padding=true`. `causal=true` and `window=w` add the causal and "
        "±w band masks. embed_dim is the query's last axis and must be divisible by "
        "num_heads. Params in_proj_weight [3d, d], in_proj_bias [3d], out_proj.weight, "
        "out_proj.bias, as torch's. A query whose keys are all masked gives NaN, as torch. "
        "MACs: the four projections plus q kᵀ and weights·v (O(T²·d)).",
    attrs=MHAAttrs,
    positional=("num_heads",),
    min_inputs=1,
    max_inputs=5,
    shape=_mha_shape,
    params=_mha_params,
    macs=_mha_macs,
    numpy=_mha_kernel,
    vjp=mha_vjp,
    vjp_keeps=lambda a, ins, outs: _mha_kept(ins),
    torch_module=_mha_module,
    torch_call=_mha_call,
    module_prefix="attn",
    random=True,
    label=lambda a: f"{a.num_heads} heads" + (", causal" if a.causal else "")
    + ("" if a.window is None else f", ±{a.window}"),
    examples=(
        Example({"num_heads": 2}, (tensor("f32", 2, 5, 8),)),
        Example({"num_heads": 4, "causal": True, "bias": False}, (tensor("f32", 2, 5, 8),)),
        Example({"num_heads": 2}, (tensor("f32", 2, 3, 8), tensor("f32", 2, 6, 8))),
        Example({"num_heads": 1, "window": 1},
                (tensor("f32", 2, 4, 6), tensor("f32", 2, 4, 6), tensor("f32", 2, 4, 6))),
        Example({"num_heads": 2, "dropout": 0.5}, (tensor("f32", 2, 4, 8),), train=True),
    ),
)

# The registry imports ATTENTION_OPS; sinusoid_table is re-exported for callers of this module.
__all__ = ["ATTENTION_OPS", "sinusoid_table"]

ATTENTION_OPS = (
    CAUSAL_MASK,
    BAND_MASK,
    PADDING_MASK,
    MASKED_FILL,
    MASKED_SOFTMAX,
    EINSUM,
    ATTENTION,
    MULTI_HEAD_ATTENTION,
    SINUSOIDAL_ENCODING,
    POSITION_EMBEDDING,
    SHARED_EMBEDDING,
    CLASS_TOKEN,
)
