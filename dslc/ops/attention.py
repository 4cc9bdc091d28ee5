"""Attention ops (family "attn"): masks, masked softmax, einsum, scaled dot-product and
multi-head attention, positional encodings, learned tensors and table look-ups; the op records
the registry imports, whose shape rules run in elaboration and kernels/emitters in the back ends.

Mask convention (as torch.nn.MultiheadAttention and nn.Transformer): a bool mask is True where
attention is NOT allowed. F.scaled_dot_product_attention reads bool masks the other way round,
so its emitter negates them.
"""

from __future__ import annotations

import math
import re

import numpy as np

from dslc import dims as D
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    need_float,
    norm_axis,
)
from dslc.types import TensorType, tensor

# ---- helpers -----------------------------------------------------------------------------


def _same(a: D.Dim, b: D.Dim, message: str, expected: str, found: str, arg: int,
          attr: str | None = None, code: str = "E0301") -> None:
    """Raise unless two dims are provably equal (a dim that may differ is an error too: the
    checker cannot promise the program runs)."""
    eq = D.equal(a, b)
    if eq is not True:
        why = "" if eq is False else " (they cannot be shown equal)"
        raise ShapeError(message + why, expected=expected, found=found, arg=arg, attr=attr,
                         code=code)


def _need_bool(t: TensorType, arg: int, what: str = "mask") -> None:
    if t.dtype != "bool":
        raise ShapeError(f"{what} must be a bool tensor (True = not allowed)",
                         expected=f"bool[...] {what}", found=str(t), arg=arg, code="E0302")


def _softmax_last(s: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis: the max is subtracted first, so scores of ±1e4 stay
    finite. A row whose entries are all -inf gives NaN, as torch.softmax does."""
    m = np.max(s, axis=-1, keepdims=True)
    e = s - m
    np.exp(e, out=e)
    e /= np.sum(e, axis=-1, keepdims=True)
    return e


def _band(tq: int, tk: int, window: int) -> np.ndarray:
    i = np.arange(tq)[:, None]
    j = np.arange(tk)[None, :]
    return np.abs(i - j) > window


def _causal(tq: int, tk: int) -> np.ndarray:
    return np.triu(np.ones((tq, tk), dtype=bool), 1)


def _check_window(window: int | None) -> None:
    if window is not None and window < 0:
        raise ShapeError("window must be >= 0 (positions i attend j with |i - j| <= window)",
                         expected=">= 0", found=str(window), attr="window")


def _torch_band(tq: str, tk: str, window: int, dev: str) -> str:
    return (f"(torch.arange({tq}, device={dev})[:, None] - torch.arange({tk}, device={dev})"
            f").abs() > {window}")


def _torch_causal(tq: str, tk: str, dev: str) -> str:
    return f"torch.ones({tq}, {tk}, dtype=torch.bool, device={dev}).triu(1)"


def _mask_parts(extra: list[str], causal: bool, window: int | None, tq: str, tk: str,
                dev: str) -> str | None:
    """One bool mask expression (True = blocked) from given masks and the causal/window attrs."""
    parts = list(extra)
    if causal:
        parts.append(_torch_causal(tq, tk, dev))
    if window is not None:
        parts.append(f"({_torch_band(tq, tk, window, dev)})")
    if not parts:
        return None
    return " | ".join(parts) if len(parts) > 1 else parts[0]


# ---- masks -------------------------------------------------------------------------------


class CausalMaskAttrs(Attrs):
    dim: int = 1


def _mask_len(t: TensorType, dim: int) -> D.Dim:
    return t.shape[norm_axis(dim, t.rank)]


def _causal_shape(a: CausalMaskAttrs, ins):
    if any(t.rank == 0 for t in ins):
        raise ShapeError("causal_mask reads a sequence axis", expected="rank >= 1",
                         found=", ".join(str(t) for t in ins))
    tq = _mask_len(ins[0], a.dim)
    tk = _mask_len(ins[-1], a.dim)
    return [tensor("bool", tq, tk)]


def _causal_kernel(a: CausalMaskAttrs, xs, ctx):
    return [_causal(xs[0].shape[a.dim], xs[-1].shape[a.dim])]


def _causal_call(a: CausalMaskAttrs, args, ctx, ins):
    return _torch_causal(f"{args[0]}.shape[{a.dim}]", f"{args[-1]}.shape[{a.dim}]",
                         f"{args[0]}.device")


CAUSAL_MASK = Op(
    name="causal_mask",
    family="attn",
    doc="Mask for autoregressive attention: `causal_mask(x, dim=1)` is bool[T, T] with T = "
        "x.shape[dim], True above the diagonal (position i may not look at j > i). With two "
        "tensors `causal_mask(q, k)` it is [Tq, Tk]. True = not allowed, as torch's attn_mask.",
    attrs=CausalMaskAttrs,
    positional=("dim",),
    min_inputs=1,
    max_inputs=2,
    shape=_causal_shape,
    numpy=_causal_kernel,
    torch_call=_causal_call,
    examples=(
        Example({}, (tensor("f32", 2, 5, 4),)),
        Example({"dim": 0}, (tensor("f32", 3, 2), tensor("f32", 5, 2))),
    ),
)


class BandMaskAttrs(Attrs):
    window: int
    dim: int = 1


def _band_shape(a: BandMaskAttrs, ins):
    _check_window(a.window)
    return _causal_shape(CausalMaskAttrs(dim=a.dim), ins)


def _band_kernel(a: BandMaskAttrs, xs, ctx):
    return [_band(xs[0].shape[a.dim], xs[-1].shape[a.dim], a.window)]


BAND_MASK = Op(
    name="band_mask",
    family="attn",
    doc="Mask for truncated (windowed) attention: `band_mask(x, window, dim=1)` is bool[T, T], "
        "True where |i - j| > window, so each position attends its ±window neighbours (the "
        "notes' truncated self-attention for speech). Two tensors give [Tq, Tk].",
    attrs=BandMaskAttrs,
    positional=("window", "dim"),
    min_inputs=1,
    max_inputs=2,
    shape=_band_shape,
    numpy=_band_kernel,
    torch_call=lambda a, args, ctx, ins: _torch_band(
        f"{args[0]}.shape[{a.dim}]", f"{args[-1]}.shape[{a.dim}]", a.window,
        f"{args[0]}.device"),
    label=lambda a: f"±{a.window}",
    examples=(
        Example({"window": 1}, (tensor("f32", 2, 6, 4),)),
        Example({"window": 0, "dim": 0}, (tensor("f32", 4, 2), tensor("f32", 3, 2))),
    ),
)


class PaddingMaskAttrs(Attrs):
    dim: int = 1


def _padding_shape(a: PaddingMaskAttrs, ins):
    lengths, x = ins
    if lengths.dtype not in ("i32", "i64") or lengths.rank != 1:
        raise ShapeError("padding_mask needs lengths as a 1-d integer tensor",
                         expected="i64[B]", found=str(lengths), arg=0, code="E0302")
    if x.rank < 2:
        raise ShapeError("padding_mask reads batch and sequence axes of its second input",
                         expected="[B, T, ...]", found=str(x), arg=1)
    t = _mask_len(x, a.dim)
    _same(lengths.shape[0], x.shape[0], "lengths and the sequence have different batch sizes",
          expected=f"lengths of shape [{D.fmt(x.shape[0])}]", found=str(lengths), arg=0)
    return [tensor("bool", lengths.shape[0], t)]


def _padding_kernel(a: PaddingMaskAttrs, xs, ctx):
    lengths, x = xs
    t = x.shape[a.dim]
    return [np.arange(t)[None, :] >= lengths[:, None]]


PADDING_MASK = Op(
    name="padding_mask",
    family="attn",
    doc="Key padding mask from sequence lengths: `padding_mask(lengths, x, dim=1)` is "
        "bool[B, T], True at positions j >= lengths[b] (padding), as torch's "
        "key_padding_mask. A sequence of length 0 masks every key (attention is then undefined: "
        "multihead_attention gives NaN there, as torch does).",
    attrs=PaddingMaskAttrs,
    positional=("dim",),
    min_inputs=2,
    max_inputs=2,
    shape=_padding_shape,
    numpy=_padding_kernel,
    torch_call=lambda a, args, ctx, ins: (
        f"torch.arange({args[1]}.shape[{a.dim}], device={args[0]}.device) "
        f">= {args[0]}[:, None]"),
    examples=(
        Example({}, (tensor("i64", 3), tensor("f32", 3, 5, 2)), int_high=6),
    ),
)

# ---- masked_fill / masked_softmax --------------------------------------------------------


def _broadcast_mask(x: TensorType, m: TensorType, arg: int = 1) -> None:
    _need_bool(m, arg)
    if m.rank > x.rank:
        raise ShapeError("the mask has more axes than the tensor it masks",
                         expected=f"a mask broadcastable to {x}", found=str(m), arg=arg,
                         code="E0303")
    for i in range(1, m.rank + 1):
        dm, dx = m.shape[-i], x.shape[-i]
        if dm == 1:
            continue
        _same(dm, dx, f"the mask does not broadcast to the tensor: axis {-i} sizes "
              f"{D.fmt(dm)} and {D.fmt(dx)}", expected=f"a mask broadcastable to {x}",
              found=str(m), arg=arg, code="E0303")


class MaskedFillAttrs(Attrs):
    value: float | int


def _masked_fill_shape(a: MaskedFillAttrs, ins):
    _broadcast_mask(ins[0], ins[1])
    return [ins[0]]


MASKED_FILL = Op(
    name="masked_fill",
    family="attn",
    doc="Replaces the entries where a bool mask is True: `masked_fill(x, mask, value)` "
        "(torch.Tensor.masked_fill; the mask broadcasts to x).",
    attrs=MaskedFillAttrs,
    positional=("value",),
    min_inputs=2,
    max_inputs=2,
    shape=_masked_fill_shape,
    numpy=lambda a, xs, ctx: [np.where(xs[1], np.asarray(a.value, xs[0].dtype), xs[0])],
    torch_call=lambda a, args, ctx, ins: f"{args[0]}.masked_fill({args[1]}, {a.value!r})",
    label=lambda a: f"{a.value:g}",
    examples=(Example({"value": -1e4}, (tensor("f32", 2, 3, 4), tensor("bool", 3, 4))),),
)


class MaskedSoftmaxAttrs(Attrs):
    scale: float = 1.0
    dim: int = -1


def _msm_shape(a: MaskedSoftmaxAttrs, ins):
    need_float(ins[0])
    norm_axis(a.dim, ins[0].rank)
    if len(ins) == 2:
        _broadcast_mask(ins[0], ins[1])
    return [ins[0]]


def _msm_kernel(a: MaskedSoftmaxAttrs, xs, ctx):
    x = xs[0]
    s = x * np.asarray(a.scale, x.dtype) if a.scale != 1.0 else x
    if len(xs) == 2:
        s = np.where(xs[1], np.asarray(-np.inf, x.dtype), s)
    s = np.moveaxis(s, a.dim, -1)
    return [np.moveaxis(_softmax_last(s), -1, a.dim).astype(x.dtype, copy=False)]


def _msm_call(a: MaskedSoftmaxAttrs, args, ctx, ins):
    s = args[0] if a.scale == 1.0 else f"{args[0]} * {a.scale!r}"
    if len(args) == 2:
        s = f"({s}).masked_fill({args[1]}, float('-inf'))"
    return f"torch.softmax({s}, dim={a.dim})"


MASKED_SOFTMAX = Op(
    name="masked_softmax",
    family="attn",
    doc="Softmax of scaled scores with an optional bool mask: `masked_softmax(s, [mask], "
        "scale=1.0, dim=-1)` = softmax(s·scale) with masked entries (True) set to -inf first, "
        "so they get zero weight. Stable for large scores (±1e4). A fully masked row is NaN, "
        "as torch.softmax gives.",
    attrs=MaskedSoftmaxAttrs,
    positional=("scale", "dim"),
    min_inputs=1,
    max_inputs=2,
    shape=_msm_shape,
    macs=lambda a, ins, outs: D.product(outs[0].shape),
    numpy=_msm_kernel,
    torch_call=_msm_call,
    label=lambda a: "" if a.scale == 1.0 else f"×{a.scale:g}",
    examples=(
        Example({"scale": 0.5}, (tensor("f32", 2, 3, 4),)),
        Example({}, (tensor("f32", 2, 4, 4), tensor("bool", 4, 4))),
        Example({"dim": 1}, (tensor("f32", 2, 3, 4),)),
    ),
)

# ---- einsum ------------------------------------------------------------------------------


class EinsumAttrs(Attrs):
    equation: str


def _parse_equation(a: EinsumAttrs, n: int) -> tuple[list[str], str]:
    eq = a.equation.replace(" ", "")
    m = re.fullmatch(r"([a-zA-Z]+(?:,[a-zA-Z]+)*)->([a-zA-Z]*)", eq)
    if not m:
        raise ShapeError("einsum equation must be 'ab,bc->ac': letters per input, then the "
                         "output's letters (no '...')", expected="e.g. 'bqd,bkd->bqk'",
                         found=repr(a.equation), attr="equation")
    terms = m.group(1).split(",")
    out = m.group(2)
    if len(terms) != n:
        raise ShapeError(f"einsum equation names {len(terms)} inputs but {n} were given",
                         expected=f"{n} comma-separated terms", found=repr(a.equation),
                         attr="equation")
    letters = set("".join(terms))
    if any(c not in letters for c in out) or len(set(out)) != len(out):
        raise ShapeError("each output letter must appear once and in some input",
                         expected=f"letters from {''.join(sorted(letters))}",
                         found=repr(out), attr="equation")
    return terms, out


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
    w = _softmax_last(s)
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


def _mask_kinds(a: MHAAttrs, n: int) -> list[str]:
    if n == 2:
        return ["attn", "padding"]
    if n == 1:
        return ["padding" if a.padding else "attn"]
    return []


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


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    # One [B*T, in] x [in, out] product: NumPy runs a 3-d @ 2-d matmul as B separate
    # products, which is 2-3x slower for these sizes.
    y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    if b is not None:
        y += b
    return y


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
    wts = _softmax_last(s)
    if ctx.train and a.dropout > 0:
        keep = ctx.rng.random(wts.shape) >= a.dropout
        wts = wts * keep / np.asarray(1.0 - a.dropout, wts.dtype)
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

# ---- positional encodings ----------------------------------------------------------------


class SinusoidalAttrs(Attrs):
    dim: int = 1


def _sin_shape(a: SinusoidalAttrs, ins):
    x = ins[0]
    need_float(x)
    if x.rank < 2:
        raise ShapeError("sinusoidal_encoding reads [.., T, .., d]", expected="rank >= 2",
                         found=str(x))
    t = x.shape[norm_axis(a.dim, x.rank)]
    d = concrete(x.shape[-1], "sinusoidal_encoding's size d (the last axis)")
    if d % 2:
        raise ShapeError("sinusoidal_encoding needs an even size (sin and cos pairs)",
                         expected="even last axis", found=str(x), arg=0)
    return [x.with_shape((t, d))]


def sinusoid_table(t: int, d: int) -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    pos = np.arange(t, dtype=np.float64)[:, None]
    freq = np.exp(np.arange(0, d, 2, dtype=np.float64) * (-math.log(10000.0) / d))
    ang = pos * freq
    out = np.empty((t, d))
    out[:, 0::2] = np.sin(ang)
    out[:, 1::2] = np.cos(ang)
    return out


def _sin_call(a: SinusoidalAttrs, args, ctx, ins):
    x = args[0]
    d = concrete(ins[0].shape[-1], "d")
    kw = f"device={x}.device, dtype={x}.dtype"
    # cos(a) = sin(a + π/2): the interleaved sin/cos table as one expression.
    return (f"torch.sin(torch.arange({x}.shape[{a.dim}], {kw})[:, None, None] "
            f"* torch.exp(torch.arange(0, {d}, 2, {kw}) * {-math.log(10000.0) / d!r})"
            f"[:, None] + torch.tensor([0.0, {math.pi / 2!r}], {kw})).flatten(1)")


SINUSOIDAL_ENCODING = Op(
    name="sinusoidal_encoding",
    family="attn",
    doc="The fixed sinusoidal position table of 'Attention is all you need' for a sequence "
        "x [B, T, d]: `x + sinusoidal_encoding(x)`; gives [T, d] with PE[p, 2i] = "
        "sin(p/10000^(2i/d)) and PE[p, 2i+1] = cos(...). `dim` is the time axis (default 1). "
        "No parameters: computed from the shape, on x's device.",
    attrs=SinusoidalAttrs,
    positional=("dim",),
    shape=_sin_shape,
    numpy=lambda a, xs, ctx: [sinusoid_table(xs[0].shape[a.dim], xs[0].shape[-1])
                              .astype(xs[0].dtype)],
    torch_call=_sin_call,
    examples=(Example({}, (tensor("f32", 2, 7, 6),)),),
)


class PositionEmbeddingAttrs(Attrs):
    max_len: int
    embedding_dim: int | None = None  # default: the input's last axis (float input)
    dim: int = 1


def _pe_dims(a: PositionEmbeddingAttrs, ins) -> tuple[D.Dim, int]:
    x = ins[0]
    if a.max_len < 1:
        raise ShapeError("max_len must be positive", expected=">= 1", found=str(a.max_len),
                         attr="max_len")
    if x.rank < 1:
        raise ShapeError("position_embedding reads a sequence axis", expected="rank >= 1",
                         found=str(x))
    t = x.shape[norm_axis(a.dim, x.rank)]
    if a.embedding_dim is not None:
        d = a.embedding_dim
    elif x.is_float:
        d = concrete(x.shape[-1], "position_embedding's size (the input's last axis)")
    else:
        raise ShapeError("give embedding_dim for integer (token id) input",
                         expected="embedding_dim=...", found=str(x), attr="embedding_dim")
    if D.value(t) is not None and D.value(t) > a.max_len:
        raise ShapeError(f"the sequence has {D.value(t)} positions but max_len is {a.max_len}",
                         expected=f"T <= {a.max_len}", found=str(x), attr="max_len")
    return t, d


def _pe_kernel(a: PositionEmbeddingAttrs, xs, ctx):
    t = xs[0].shape[a.dim]
    if t > a.max_len:
        raise ShapeError(f"the sequence has {t} positions but max_len is {a.max_len}",
                         expected=f"T <= {a.max_len}", found=str(t))
    return [ctx.params["weight"][:t]]


POSITION_EMBEDDING = Op(
    name="position_embedding",
    family="attn",
    doc="Learned positions: `position_embedding(x, max_len, embedding_dim=None, dim=1)` gives "
        "the first T rows [T, d] of a learned [max_len, d] table (nn.Embedding's layout and "
        "init; key `<name>.weight`, as BERT's position_embeddings / GPT-2's wpe); add it to "
        "the token embeddings. T > max_len is an error.",
    attrs=PositionEmbeddingAttrs,
    positional=("max_len", "embedding_dim"),
    shape=lambda a, ins: [tensor("f32", *_pe_dims(a, ins))],
    params=lambda a, ins: {"weight": ParamSpec((D.const(a.max_len), D.const(_pe_dims(a, ins)[1])),
                                               "normal")},
    numpy=_pe_kernel,
    torch_module=lambda a, ins: f"nn.Embedding({a.max_len}, {_pe_dims(a, ins)[1]})",
    torch_call=lambda a, args, ctx, ins: (
        f"{ctx.module}(torch.arange({args[0]}.shape[{a.dim}], device={args[0]}.device))"),
    module_prefix="pos",
    label=lambda a: f"max {a.max_len}",
    examples=(
        Example({"max_len": 9}, (tensor("f32", 2, 5, 4),)),
        Example({"max_len": 6, "embedding_dim": 3}, (tensor("i64", 2, 6),)),
    ),
)

# ---- shared (tied) embeddings and class tokens ---------------------------------------------


class SharedEmbeddingAttrs(Attrs):
    num_embeddings: int
    embedding_dim: int


def _shared_shape(a: SharedEmbeddingAttrs, ins):
    ids = ins[0]
    if ids.dtype not in ("i32", "i64"):
        raise ShapeError("embedding indices must be integers", expected="i64 or i32",
                         found=str(ids), arg=0, code="E0302")
    for name in ("num_embeddings", "embedding_dim"):
        if getattr(a, name) < 1:
            raise ShapeError(f"{name} must be positive", expected=">= 1",
                             found=str(getattr(a, name)), attr=name)
    return [tensor("f32", *ids.shape, a.embedding_dim),
            tensor("f32", a.num_embeddings, a.embedding_dim)]


def _shared_kernel(a: SharedEmbeddingAttrs, xs, ctx):
    ids = xs[0]
    w = ctx.params["weight"]
    if ids.size and (ids.min() < 0 or ids.max() >= a.num_embeddings):
        bad = int(ids.max() if ids.max() >= a.num_embeddings else ids.min())
        raise ShapeError("index out of range for the embedding table",
                         expected=f"0 <= index < {a.num_embeddings}", found=str(bad))
    return [w[ids], w]


SHARED_EMBEDDING = Op(
    name="shared_embedding",
    family="attn",
    doc="An embedding whose table is also returned, for weight tying: "
        "`e, table = ids -> shared_embedding(vocab, d) as wte` gives the looked-up vectors "
        "[..., d] and the table [vocab, d]; `h @ transpose(table, 0, 1)` then reuses the table "
        "as the output projection (GPT's tied embeddings). The table is one parameter, "
        "`<name>.weight` (nn.Embedding's layout and init), counted once.",
    attrs=SharedEmbeddingAttrs,
    positional=("num_embeddings", "embedding_dim"),
    shape=_shared_shape,
    params=lambda a, ins: {"weight": ParamSpec((D.const(a.num_embeddings),
                                                D.const(a.embedding_dim)), "normal")},
    numpy=_shared_kernel,
    torch_module=lambda a, ins: f"nn.Embedding({a.num_embeddings}, {a.embedding_dim})",
    torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]}), {ctx.module}.weight",
    n_outputs=lambda a: 2,
    module_prefix="emb",
    label=lambda a: f"{a.num_embeddings}×{a.embedding_dim}, shared",
    examples=(Example({"num_embeddings": 7, "embedding_dim": 3}, (tensor("i64", 2, 5),),
                      int_high=7),),
)


class ClassTokenAttrs(Attrs):
    pass


def _cls_dim(ins) -> int:
    x = ins[0]
    if x.rank != 3:
        raise ShapeError("class_token takes a batch of sequences", expected="[B, N, d]",
                         found=str(x), arg=0)
    need_float(x)
    return concrete(x.shape[2], "class_token's size (the last axis)")


def _cls_shape(a, ins):
    x = ins[0]
    d = _cls_dim(ins)
    return [x.with_shape((x.shape[0], x.shape[1] + 1, d))]


def _cls_kernel(a, xs, ctx):
    x = xs[0]
    tok = ctx.params["weight"].astype(x.dtype, copy=False)
    return [np.concatenate([np.broadcast_to(tok, (x.shape[0], 1, x.shape[2])), x], axis=1)]


CLASS_TOKEN = Op(
    name="class_token",
    family="attn",
    doc="Puts a learned token before each sequence of a batch: `patches -> class_token as "
        "cls_token` gives [B, N + 1, d] (ViT's and BERT's [CLS]); the token is one [1, d] "
        "parameter `<name>.weight` (nn.Embedding(1, d)'s layout and init), broadcast over "
        "the batch.",
    attrs=ClassTokenAttrs,
    shape=_cls_shape,
    params=lambda a, ins: {"weight": ParamSpec((D.const(1), D.const(_cls_dim(ins))), "normal")},
    numpy=_cls_kernel,
    torch_module=lambda a, ins: f"nn.Embedding(1, {_cls_dim(ins)})",
    torch_call=lambda a, args, ctx, ins: (
        f"torch.cat(({ctx.module}.weight.expand({args[0]}.shape[0], 1, -1), {args[0]}), "
        "dim=1)"),
    module_prefix="cls",
    examples=(Example({}, (tensor("f32", 2, 4, 3),)),),
)


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
