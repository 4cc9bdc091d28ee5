"""Normalisation ops (batch_norm, layer_norm, local_response_norm): op records for the
registry, used by elaboration (shape rules), the interpreter (kernels) and the PyTorch back end.

MACs convention for this family: a normalisation with per-channel (or per-feature) constants is
counted as one multiply-add per output element, the eval form `y = x·s + t` into which the
statistics and the affine weight fold. Local response norm has no learned weights and counts
0 (its window sum of squares is not a weight multiply-accumulate, like pooling).
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    fmt_value,
    need_float,
    need_rank,
)
from dslc.types import tensor


def _work_dtype(x: np.ndarray) -> np.dtype:
    # Statistics of f16 inputs are accumulated in f32, as torch does on CPU and GPU.
    return np.promote_types(x.dtype, np.float32)


def _kwargs(pairs) -> str:
    """`, name=value` for each attribute that differs from torch's default."""
    return "".join(f", {k}={fmt_value(v)}" for k, v, default in pairs if v != default)


# ---- batch_norm --------------------------------------------------------------------------


class BatchNormAttrs(Attrs):
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True
    track_running_stats: bool = True


def _bn_channels(ins) -> int:
    x = ins[0]
    need_rank(x, (2, 3, 4, 5), what="batch_norm input ([B, C], [B, C, L], [B, C, H, W] or "
                                     "[B, C, D, H, W])")
    return concrete(x.shape[1], "batch_norm's channel count (axis 1)")


def _bn_shape(a: BatchNormAttrs, ins):
    need_float(ins[0])
    _bn_channels(ins)
    if a.eps <= 0:
        raise ShapeError("eps must be positive", expected="> 0", found=repr(a.eps), attr="eps")
    if not 0.0 <= a.momentum <= 1.0:
        raise ShapeError("momentum must lie in [0, 1]", expected="0 <= momentum <= 1",
                         found=repr(a.momentum), attr="momentum")
    return [ins[0]]


def _bn_params(a: BatchNormAttrs, ins):
    c = (D.const(_bn_channels(ins)),)
    p = {}
    if a.affine:
        p["weight"] = ParamSpec(c, "ones")
        p["bias"] = ParamSpec(c, "zeros")
    if a.track_running_stats:
        p["running_mean"] = ParamSpec(c, "zeros", buffer=True)
        p["running_var"] = ParamSpec(c, "ones", buffer=True)
        p["num_batches_tracked"] = ParamSpec((), "zeros", buffer=True, dtype="i64")
    return p


def _bn_kernel(a: BatchNormAttrs, xs, ctx):
    x = xs[0]
    wt = _work_dtype(x)
    xf = x.astype(wt, copy=False)
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    use_batch = ctx.train or not a.track_running_stats
    if use_batch:
        n = x.size // x.shape[1]
        if n <= 1:
            raise ShapeError("batch_norm in training needs more than one value per channel",
                             expected="B * (spatial size) > 1", found=f"shape {list(x.shape)}")
        mean = xf.mean(axis=axes)
        centred = xf - mean.reshape(bshape)
        var = np.mean(centred * centred, axis=axes)  # biased: used to normalise
        if ctx.train and a.track_running_stats:
            m = a.momentum
            rm, rv = ctx.params["running_mean"], ctx.params["running_var"]
            unbiased = var * (n / (n - 1))
            ctx.params["running_mean"] = ((1 - m) * rm + m * mean).astype(rm.dtype)
            ctx.params["running_var"] = ((1 - m) * rv + m * unbiased).astype(rv.dtype)
            nbt = ctx.params["num_batches_tracked"]
            ctx.params["num_batches_tracked"] = np.asarray(nbt + 1, dtype=nbt.dtype)
    else:
        # Inference: one scale and one shift per channel, two passes over the data
        # (y = x*s + t), which keeps ResNet's many batch norms cheap.
        mean = ctx.params["running_mean"].astype(wt)
        var = ctx.params["running_var"].astype(wt)
        scale = 1.0 / np.sqrt(var + a.eps)
        shift = -mean * scale
        if a.affine:
            scale = scale * ctx.params["weight"].astype(wt)
            shift = shift * ctx.params["weight"].astype(wt) + ctx.params["bias"].astype(wt)
        y = xf * scale.astype(wt).reshape(bshape)
        y += shift.astype(wt).reshape(bshape)
        return [y if y.dtype == x.dtype else y.astype(x.dtype)]
    y = centred * (1.0 / np.sqrt(var + a.eps)).reshape(bshape)
    if a.affine:
        y = y * ctx.params["weight"].astype(wt).reshape(bshape) \
            + ctx.params["bias"].astype(wt).reshape(bshape)
    return [y.astype(x.dtype)]


def _bn_module(a: BatchNormAttrs, ins):
    c = _bn_channels(ins)
    kind = {2: "1d", 3: "1d", 4: "2d", 5: "3d"}[ins[0].rank]
    extra = _kwargs((("eps", a.eps, 1e-5), ("momentum", a.momentum, 0.1),
                     ("affine", a.affine, True),
                     ("track_running_stats", a.track_running_stats, True)))
    return f"nn.BatchNorm{kind}({c}{extra})"


def _bn_call(a: BatchNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    # Neither affine weights nor running statistics: no state, so no module. Batch statistics
    # are used in both modes, as an nn.BatchNorm with track_running_stats=False does.
    return f"F.batch_norm({args[0]}, None, None, training=True, eps={a.eps!r})"


def _bn_label(a: BatchNormAttrs) -> str:
    parts = []
    if a.momentum != 0.1:
        parts.append(f"momentum {a.momentum:g}")
    if not a.affine:
        parts.append("no affine")
    if not a.track_running_stats:
        parts.append("batch stats")
    return ", ".join(parts)


BATCH_NORM = Op(
    name="batch_norm",
    family="norm",
    doc="Batch normalisation over axis 1 (torch.nn.BatchNorm1d/2d/3d, picked by rank): "
        "`x -> batch_norm(eps=1e-5, momentum=0.1, affine=true, track_running_stats=true)`. "
        "Training normalises with the batch's (biased) statistics and updates running_mean / "
        "running_var (unbiased variance) and num_batches_tracked; eval uses the running "
        "statistics. MACs: one multiply-add per element (the folded eval form x·s + t).",
    attrs=BatchNormAttrs,
    shape=_bn_shape,
    params=_bn_params,
    macs=lambda a, ins, outs: D.product(outs[0].shape),
    numpy=_bn_kernel,
    torch_module=lambda a, ins: (_bn_module(a, ins)
                                 if a.affine or a.track_running_stats else None),
    torch_call=_bn_call,
    label=_bn_label,
    module_prefix="bn",
    examples=(
        Example({}, (tensor("f32", 4, 3, 5, 5),)),
        Example({}, (tensor("f32", 4, 3, 5, 5),), train=True),
        Example({"momentum": 0.3}, (tensor("f32", 6, 5),), train=True),
        Example({"eps": 1e-3}, (tensor("f32", 3, 4, 7),), train=True),
        Example({"affine": False}, (tensor("f32", 2, 3, 2, 3, 2),), train=True),
        Example({"affine": False, "track_running_stats": False}, (tensor("f32", 5, 4),)),
    ),
)


# ---- layer_norm --------------------------------------------------------------------------


class LayerNormAttrs(Attrs):
    normalized_shape: int | tuple[int, ...] | None = None
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True


def _ln_norm_shape(a: LayerNormAttrs, ins) -> tuple[int, ...]:
    x = ins[0]
    if a.normalized_shape is None:
        if x.rank < 1:
            raise ShapeError("layer_norm needs at least one axis", expected="rank >= 1",
                             found=str(x), arg=0)
        return (concrete(x.shape[-1], "layer_norm's normalised size (last axis)"),)
    ns = (a.normalized_shape,) if isinstance(a.normalized_shape, int) \
        else tuple(a.normalized_shape)
    if not ns or any(d < 1 for d in ns):
        raise ShapeError("normalized_shape must be one or more positive sizes",
                         expected="positive ints", found=str(a.normalized_shape),
                         attr="normalized_shape")
    want = "[..., " + ", ".join(str(d) for d in ns) + "]"
    if x.rank < len(ns):
        raise ShapeError(f"layer_norm over {len(ns)} trailing axes needs rank >= {len(ns)}",
                         expected=want, found=str(x), arg=0)
    tail = x.shape[x.rank - len(ns):]
    for d, n in zip(tail, ns, strict=True):
        same = D.equal(d, D.const(n))
        if same is False:
            raise ShapeError("normalized_shape does not match the input's trailing axes",
                             expected=want, found=str(x), attr="normalized_shape")
        if same is None:
            raise ShapeError("layer_norm's normalised axes must be fixed numbers",
                             expected=want, found=str(x), arg=0, code="E0304")
    return ns


def _ln_shape(a: LayerNormAttrs, ins):
    need_float(ins[0])
    if a.eps <= 0:
        raise ShapeError("eps must be positive", expected="> 0", found=repr(a.eps), attr="eps")
    _ln_norm_shape(a, ins)
    return [ins[0]]


def _ln_params(a: LayerNormAttrs, ins):
    ns = tuple(D.const(d) for d in _ln_norm_shape(a, ins))
    if not a.elementwise_affine:
        return {}
    p = {"weight": ParamSpec(ns, "ones")}
    if a.bias:
        p["bias"] = ParamSpec(ns, "zeros")
    return p


def _ln_kernel(a: LayerNormAttrs, xs, ctx):
    x = xs[0]
    k = len(_ln_norm_shape(a, [tensor("f32", *x.shape)]))
    axes = tuple(range(x.ndim - k, x.ndim))
    xf = x.astype(_work_dtype(x), copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    # In place after the one copy: a Transformer runs two layer norms per layer.
    y = xf - mean
    var = np.einsum("...i,...i->...", y.reshape(y.shape[:x.ndim - k] + (-1,)),
                    y.reshape(y.shape[:x.ndim - k] + (-1,)))
    var = (var / np.prod([x.shape[i] for i in axes])).reshape(mean.shape)  # biased, as torch
    y *= (1.0 / np.sqrt(var + a.eps)).astype(y.dtype)
    if a.elementwise_affine:
        y *= ctx.params["weight"]
        if a.bias:
            y += ctx.params["bias"]
    return [y if y.dtype == x.dtype else y.astype(x.dtype)]


def _ln_shape_literal(a: LayerNormAttrs, ins) -> str:
    ns = _ln_norm_shape(a, ins)
    return str(ns[0]) if len(ns) == 1 else fmt_value(ns)


def _ln_module(a: LayerNormAttrs, ins):
    if not a.elementwise_affine:
        return None
    extra = _kwargs((("eps", a.eps, 1e-5), ("bias", a.bias, True)))
    return f"nn.LayerNorm({_ln_shape_literal(a, ins)}{extra})"


def _ln_call(a: LayerNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    ns = fmt_value(_ln_norm_shape(a, ins))
    return f"F.layer_norm({args[0]}, {ns}, eps={a.eps!r})"


LAYER_NORM = Op(
    name="layer_norm",
    family="norm",
    doc="Layer normalisation over the trailing axes (torch.nn.LayerNorm): "
        "`x -> layer_norm(normalized_shape, eps=1e-5, elementwise_affine=true, bias=true)`; "
        "normalized_shape is an int or a tuple and defaults to the last axis's size. "
        "MACs: one multiply-add per element.",
    attrs=LayerNormAttrs,
    positional=("normalized_shape",),
    shape=_ln_shape,
    params=_ln_params,
    macs=lambda a, ins, outs: D.product(outs[0].shape),
    numpy=_ln_kernel,
    torch_module=_ln_module,
    torch_call=_ln_call,
    label=lambda a: "" if a.normalized_shape is None else f"{a.normalized_shape}",
    module_prefix="ln",
    examples=(
        Example({}, (tensor("f32", 2, 5, 8),)),
        Example({"normalized_shape": (5, 8)}, (tensor("f32", 2, 5, 8),)),
        Example({"normalized_shape": 6, "bias": False, "eps": 1e-6}, (tensor("f32", 3, 6),)),
        Example({"elementwise_affine": False}, (tensor("f32", 2, 3, 4),)),
    ),
)


# ---- local_response_norm -----------------------------------------------------------------


class LRNAttrs(Attrs):
    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


def _lrn_shape(a: LRNAttrs, ins):
    x = ins[0]
    need_float(x)
    if x.rank < 3:
        raise ShapeError("local_response_norm needs a batch, a channel and at least one "
                         "spatial axis", expected="rank >= 3 ([B, C, ...])",
                         found=f"{x} (rank {x.rank})", arg=0)
    if a.size < 1:
        raise ShapeError("size must be positive", expected=">= 1", found=str(a.size),
                         attr="size")
    return [x]


def _lrn_kernel(a: LRNAttrs, xs, ctx):
    # torch: avg over channels c - size//2 .. c + (size-1)//2 of x², zero padded, dividing by
    # `size` whatever the padding (count_include_pad), then x / (k + alpha·avg)^beta.
    x = xs[0]
    xf = x.astype(_work_dtype(x), copy=False)
    sq = xf * xf
    c = x.shape[1]
    # Offsets of C or more channels only ever reach the zero padding: a window wider than the
    # channels is cut to them (the divisor stays `size`), so memory and time do not grow with
    # `size` (size=2**31 once made a 96 GiB pad).
    lo, hi = min(a.size // 2, c - 1), min((a.size - 1) // 2, c - 1)
    pad = [(0, 0)] * x.ndim
    pad[1] = (lo, hi)
    sqp = np.pad(sq, pad)
    # A sum of shifted slices: exact (no cumulative-sum cancellation).
    acc = np.zeros_like(sq)
    for s in range(lo + hi + 1):
        acc += sqp[:, s:s + c]
    div = (acc * (a.alpha / a.size) + a.k) ** a.beta
    return [(xf / div).astype(x.dtype)]


LOCAL_RESPONSE_NORM = Op(
    name="local_response_norm",
    family="norm",
    doc="Local response normalisation across channels, as in AlexNet "
        "(torch.nn.LocalResponseNorm): `x -> local_response_norm(size, alpha=1e-4, "
        "beta=0.75, k=1.0)`; x / (k + alpha/size · Σ x²)^beta over `size` neighbouring "
        "channels. No parameters; MACs 0.",
    attrs=LRNAttrs,
    positional=("size",),
    shape=_lrn_shape,
    numpy=_lrn_kernel,
    torch_call=lambda a, args, ctx, ins: (
        f"F.local_response_norm({args[0]}, {a.size}, alpha={a.alpha!r}, beta={a.beta!r}, "
        f"k={a.k!r})"),
    label=lambda a: f"size {a.size}",
    examples=(
        Example({"size": 5, "alpha": 1e-2, "k": 2.0}, (tensor("f32", 2, 7, 4, 4),)),
        Example({"size": 2}, (tensor("f32", 2, 3, 6),)),
        Example({"size": 4, "alpha": 0.5, "beta": 1.5}, (tensor("f32", 1, 6, 2, 3, 2),)),
    ),
)

NORM_OPS = (BATCH_NORM, LAYER_NORM, LOCAL_RESPONSE_NORM)
