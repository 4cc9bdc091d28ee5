"""Attention masks (causal, band, padding), masked_fill/softmax, mask helpers; for attention.py."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.attention_common import _band, _causal, _softmax_last
from dslc.ops.attention_grad import masked_fill_vjp, masked_softmax_vjp
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ShapeError,
    need_float,
    norm_axis,
)
from dslc.types import TensorType, tensor

# ---- helpers -----------------------------------------------------------------------------


# The mask ops make bool tensors: nothing to differentiate.
MASK_NO_GRAD = "a bool mask has no derivative"


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
    no_grad=MASK_NO_GRAD,
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
    no_grad=MASK_NO_GRAD,
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
    no_grad=MASK_NO_GRAD,
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
    vjp=masked_fill_vjp,
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
    vjp=masked_softmax_vjp,
    torch_call=_msm_call,
    label=lambda a: "" if a.scale == 1.0 else f"×{a.scale:g}",
    examples=(
        Example({"scale": 0.5}, (tensor("f32", 2, 3, 4),)),
        Example({}, (tensor("f32", 2, 4, 4), tensor("bool", 4, 4))),
        Example({"dim": 1}, (tensor("f32", 2, 3, 4),)),
    ),
)
