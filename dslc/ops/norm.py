"""Normalisation ops over a channel axis (batch_norm, instance_norm1d/2d/3d,
local_response_norm): op records for the registry, used by elaboration (shape rules), the
interpreter (kernels) and the PyTorch back end. Per-sample norms over feature axes (layer_norm,
rms_norm, group_norm) and layer_scale are in norm_layer.py.

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


def work_dtype(x: np.ndarray) -> np.dtype:
    # Statistics of f16 inputs are accumulated in f32, as torch does on CPU and GPU.
    return np.promote_types(x.dtype, np.float32)


def torch_kwargs(pairs) -> str:
    """`, name=value` for each attribute that differs from torch's default."""
    return "".join(f", {k}={fmt_value(v)}" for k, v, default in pairs if v != default)


# ---- shared by batch_norm and instance_norm ----------------------------------------------


def _check_eps_momentum(a) -> None:
    if a.eps <= 0:
        raise ShapeError("eps must be positive", expected="> 0", found=repr(a.eps), attr="eps")
    if not 0.0 <= a.momentum <= 1.0:
        raise ShapeError("momentum must lie in [0, 1]", expected="0 <= momentum <= 1",
                         found=repr(a.momentum), attr="momentum")


def _running_stat_params(c: tuple[D.Dim, ...]) -> dict[str, ParamSpec]:
    """The buffers of a torch norm with track_running_stats=True, in its state_dict order."""
    return {"running_mean": ParamSpec(c, "zeros", buffer=True),
            "running_var": ParamSpec(c, "ones", buffer=True),
            "num_batches_tracked": ParamSpec((), "zeros", buffer=True, dtype="i64")}


def _update_running(a, ctx, mean: np.ndarray, unbiased_var: np.ndarray) -> None:
    """running = (1 - momentum)·running + momentum·statistic, per channel, as torch does."""
    m = a.momentum
    rm, rv = ctx.params["running_mean"], ctx.params["running_var"]
    ctx.params["running_mean"] = ((1 - m) * rm + m * mean).astype(rm.dtype)
    ctx.params["running_var"] = ((1 - m) * rv + m * unbiased_var).astype(rv.dtype)


def _running_scale_shift(a, ctx, wt) -> tuple[np.ndarray, np.ndarray]:
    """Eval with running statistics is one scale and one shift per channel (y = x·s + t):
    two passes over the data, which keeps ResNet's many batch norms cheap."""
    mean = ctx.params["running_mean"].astype(wt)
    var = ctx.params["running_var"].astype(wt)
    scale = 1.0 / np.sqrt(var + a.eps)
    shift = -mean * scale
    if "weight" in ctx.params:
        scale = scale * ctx.params["weight"].astype(wt)
        shift = shift * ctx.params["weight"].astype(wt)
    if "bias" in ctx.params:
        shift = shift + ctx.params["bias"].astype(wt)
    return scale.astype(wt), shift.astype(wt)


def _affine(y: np.ndarray, ctx, cshape) -> np.ndarray:
    """The learned per-channel weight and bias, when the op has them."""
    if "weight" in ctx.params:
        y = y * ctx.params["weight"].astype(y.dtype).reshape(cshape)
    if "bias" in ctx.params:
        y = y + ctx.params["bias"].astype(y.dtype).reshape(cshape)
    return y


# ---- vector-Jacobian products --------------------------------------------------------------


def normalize_vjp(x: np.ndarray, axes: tuple[int, ...], eps: float, g: np.ndarray, ctx,
                  channel: int | None, rows: tuple[int, ...] | None = None,
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The VJP of y = xhat·weight + bias, xhat = (x - mean) / sqrt(var + eps) over `axes`
    (biased variance) of x, or of x viewed as `rows` (group norm): (dL/dx, {weight, bias
    gradients}). The statistics are recomputed in float64 rather than kept by the forward."""
    xr = x.astype(np.float64).reshape(rows or x.shape)
    centred = xr - xr.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True) + eps)
    xhat = centred * inv
    dxhat, grads = affine_vjp(g, xhat.reshape(x.shape), ctx, channel)
    dxhat = dxhat.reshape(xr.shape)
    dx = inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                - xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True))
    return dx.reshape(x.shape).astype(x.dtype), grads


def affine_vjp(g: np.ndarray, xhat: np.ndarray, ctx, channel: int | None,
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """dL/dxhat and the weight and bias gradients of y = xhat·weight + bias, the weight on
    axis `channel` (None: on xhat's trailing axes, in the weight's shape)."""
    grads: dict[str, np.ndarray] = {}
    g = g.astype(np.float64)
    w = ctx.params.get("weight")
    if channel is None:
        lead = tuple(range(g.ndim - (w.ndim if w is not None else 0)))
        shape = None
    else:
        lead = tuple(i for i in range(g.ndim) if i != channel)
        shape = [1] * g.ndim
        shape[channel] = -1
    dxhat = g
    if w is not None:
        wb = w.astype(np.float64) if shape is None else w.astype(np.float64).reshape(shape)
        dxhat = g * wb
        grads["weight"] = (g * xhat).sum(axis=lead).reshape(w.shape).astype(w.dtype)
    b = ctx.params.get("bias")
    if b is not None:
        grads["bias"] = g.sum(axis=lead).reshape(b.shape).astype(b.dtype)
    return dxhat, grads


def _running_vjp(a, x, g, ctx):
    """Eval with running statistics: y = (x - running_mean)/sqrt(running_var + eps)·w + b."""
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    rm = ctx.params["running_mean"].astype(np.float64).reshape(cshape)
    inv = 1.0 / np.sqrt(ctx.params["running_var"].astype(np.float64).reshape(cshape) + a.eps)
    dxhat, grads = affine_vjp(g, (x - rm) * inv, ctx, 1)
    return [(dxhat * inv).astype(x.dtype)], grads


def _stats_label(a) -> str:
    parts = []
    if a.momentum != 0.1:
        parts.append(f"momentum {a.momentum:g}")
    if not a.affine:
        parts.append("no affine")
    if not a.track_running_stats:
        parts.append("batch stats")
    return ", ".join(parts)


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
    _check_eps_momentum(a)
    return [ins[0]]


def _bn_params(a: BatchNormAttrs, ins):
    c = (D.const(_bn_channels(ins)),)
    p = {}
    if a.affine:
        p["weight"] = ParamSpec(c, "ones")
        p["bias"] = ParamSpec(c, "zeros")
    if a.track_running_stats:
        p.update(_running_stat_params(c))
    return p


def _channel_operands(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, cshape):
    """Per-channel scale and shift shaped to broadcast against x [N, C, ...]. When x is an
    image whose memory is channels-last (a conv's output, ops/conv.py), they are tiled along
    the width ([W, C] memory seen as [1, C, 1, W]): every operand is then contiguous over a
    whole row and NumPy's inner loop runs W*C elements, not C at a time (MobileNetV2's batch
    norms: up to 2x). The values, and so the result, are the same either way."""
    if x.ndim == 4 and x.shape[1] > 1 and x.transpose(0, 2, 3, 1).flags.c_contiguous:
        w = x.shape[3]
        st = np.empty((w, scale.size), scale.dtype)
        st[...] = scale
        bt = np.empty((w, shift.size), shift.dtype)
        bt[...] = shift
        return st.T[None, :, None, :], bt.T[None, :, None, :]
    return scale.reshape(cshape), shift.reshape(cshape)


def _bn_kernel(a: BatchNormAttrs, xs, ctx):
    x = xs[0]
    wt = work_dtype(x)
    xf = x.astype(wt, copy=False)
    axes = (0,) + tuple(range(2, x.ndim))
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    if not ctx.train and a.track_running_stats:
        scale, shift = _running_scale_shift(a, ctx, wt)
        scale, shift = _channel_operands(xf, scale, shift, cshape)
        y = xf * scale
        y += shift
        return [y if y.dtype == x.dtype else y.astype(x.dtype)]
    n = x.size // x.shape[1]
    if n <= 1:
        raise ShapeError("batch_norm in training needs more than one value per channel",
                         expected="B * (spatial size) > 1", found=f"shape {list(x.shape)}")
    mean = xf.mean(axis=axes)
    centred = xf - mean.reshape(cshape)
    var = np.mean(centred * centred, axis=axes)  # biased: used to normalise
    if ctx.train and a.track_running_stats:
        _update_running(a, ctx, mean, var * (n / (n - 1)))
        nbt = ctx.params["num_batches_tracked"]
        ctx.params["num_batches_tracked"] = np.asarray(nbt + 1, dtype=nbt.dtype)
    y = centred * (1.0 / np.sqrt(var + a.eps)).reshape(cshape)
    return [_affine(y, ctx, cshape).astype(x.dtype)]


def _bn_epilogue(a: BatchNormAttrs, ctx, dtype):
    """Eval with running statistics, in place on a channels-last block [..., W, C] of a conv's
    output (ops/base.py's `epilogue`): the kernel's x·s + t, the same two roundings, with the
    scale and shift tiled along the block's rows as _channel_operands does. None in training,
    without running statistics, or for a dtype the kernel computes in a wider one (f16)."""
    if ctx.train or not a.track_running_stats or np.promote_types(dtype, np.float32) != dtype:
        return None
    scale, shift = _running_scale_shift(a, ctx, dtype)
    tiles: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def apply(block: np.ndarray) -> None:
        width = block.shape[-2] if block.ndim >= 2 else 1
        if width not in tiles:  # every block of one conv has the same width
            st = np.empty((width, scale.size), dtype)
            st[...] = scale
            bt = np.empty((width, shift.size), dtype)
            bt[...] = shift
            tiles[width] = (st, bt) if block.ndim >= 2 else (scale, shift)
        st, bt = tiles[width]
        block *= st
        block += bt
    return apply


def _bn_vjp(a: BatchNormAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    if not ctx.train and a.track_running_stats:
        return _running_vjp(a, x, g, ctx)
    axes = (0,) + tuple(range(2, x.ndim))
    dx, grads = normalize_vjp(x, axes, a.eps, g, ctx, 1)
    return [dx], grads


def _bn_module(a: BatchNormAttrs, ins):
    c = _bn_channels(ins)
    kind = {2: "1d", 3: "1d", 4: "2d", 5: "3d"}[ins[0].rank]
    extra = torch_kwargs((("eps", a.eps, 1e-5), ("momentum", a.momentum, 0.1),
                          ("affine", a.affine, True),
                          ("track_running_stats", a.track_running_stats, True)))
    return f"nn.BatchNorm{kind}({c}{extra})"


def _bn_call(a: BatchNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    # Neither affine weights nor running statistics: no state, so no module. Batch statistics
    # are used in both modes, as an nn.BatchNorm with track_running_stats=False does.
    return f"F.batch_norm({args[0]}, None, None, training=True, eps={a.eps!r})"


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
    vjp=_bn_vjp,
    epilogue=_bn_epilogue,
    torch_module=lambda a, ins: (_bn_module(a, ins)
                                 if a.affine or a.track_running_stats else None),
    torch_call=_bn_call,
    # A new tensor; the backward reads the input and the saved mean and inverse std.
    result_overwritable=True,
    label=_stats_label,
    module_prefix="bn",
    folds_into_layer=lambda a: a.affine and a.track_running_stats,
    examples=(
        Example({}, (tensor("f32", 4, 3, 5, 5),)),
        Example({}, (tensor("f32", 4, 3, 5, 5),), train=True),
        Example({"momentum": 0.3}, (tensor("f32", 6, 5),), train=True),
        Example({"eps": 1e-3}, (tensor("f32", 3, 4, 7),), train=True),
        Example({"affine": False}, (tensor("f32", 2, 3, 2, 3, 2),), train=True),
        Example({"affine": False, "track_running_stats": False}, (tensor("f32", 5, 4),)),
    ),
)


# ---- instance_norm1d / 2d / 3d -----------------------------------------------------------


class InstanceNormAttrs(Attrs):
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = False
    track_running_stats: bool = False
    bias: bool = True  # with affine: learn a bias too (torch's keyword-only `bias`)


_IN_LAYOUT = {1: "[B, C, L]", 2: "[B, C, H, W]", 3: "[B, C, D, H, W]"}


def _in_has_state(a: InstanceNormAttrs) -> bool:
    return a.affine or a.track_running_stats


def _in_channels(a: InstanceNormAttrs, nd: int, ins) -> D.Dim:
    x = ins[0]
    need_rank(x, (nd + 2,), what=f"instance_norm{nd}d input ({_IN_LAYOUT[nd]})")
    if _in_has_state(a):  # without state torch never reads C, so it may be a runtime dim
        concrete(x.shape[1], f"instance_norm{nd}d's channel count (axis 1)")
    return x.shape[1]


def _in_shape(nd: int):
    def rule(a: InstanceNormAttrs, ins):
        x = ins[0]
        need_float(x)
        _in_channels(a, nd, ins)
        _check_eps_momentum(a)
        spatial = D.value(D.product(x.shape[2:]))
        if spatial == 1 and not a.track_running_stats:
            # Instance statistics of a single value normalise it to 0; torch refuses.
            raise ShapeError("instance statistics need more than one spatial element per "
                             "channel (one value would always normalise to 0)",
                             expected="spatial size > 1 (or track_running_stats=true, "
                                      "used in eval)", found=str(x), arg=0)
        return [x]
    return rule


def _in_params(nd: int):
    def params(a: InstanceNormAttrs, ins):
        c = (D.as_dim(_in_channels(a, nd, ins)),)
        p = {}
        if a.affine:
            p["weight"] = ParamSpec(c, "ones")
            if a.bias:
                p["bias"] = ParamSpec(c, "zeros")
        if a.track_running_stats:
            p.update(_running_stat_params(c))
        return p
    return params


def _in_kernel(a: InstanceNormAttrs, xs, ctx):
    x = xs[0]
    wt = work_dtype(x)
    xf = x.astype(wt, copy=False)
    axes = tuple(range(2, x.ndim))
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    if not ctx.train and a.track_running_stats:
        scale, shift = _running_scale_shift(a, ctx, wt)
        scale, shift = _channel_operands(xf, scale, shift, cshape)
        y = xf * scale
        y += shift
        return [y if y.dtype == x.dtype else y.astype(x.dtype)]
    n = int(np.prod(x.shape[2:]))
    if n <= 1:
        raise ShapeError("instance statistics (training) need more than one spatial element "
                         "per channel", expected="spatial size > 1",
                         found=f"shape {list(x.shape)}")
    mean = xf.mean(axis=axes, keepdims=True)  # one per sample and channel
    y = xf - mean
    var = np.mean(y * y, axis=axes, keepdims=True)  # biased: used to normalise
    if ctx.train and a.track_running_stats:
        # torch runs batch norm over the B·C instances and averages the B updated copies of
        # each channel's running statistics; num_batches_tracked stays as it is.
        per_channel = (x.shape[1],)
        _update_running(a, ctx, mean.mean(axis=0).reshape(per_channel),
                        (var * (n / (n - 1))).mean(axis=0).reshape(per_channel))
    y *= 1.0 / np.sqrt(var + a.eps)
    return [_affine(y, ctx, cshape).astype(x.dtype)]


def _in_vjp(a: InstanceNormAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    if not ctx.train and a.track_running_stats:
        return _running_vjp(a, x, g, ctx)
    axes = tuple(range(2, x.ndim))
    dx, grads = normalize_vjp(x, axes, a.eps, g, ctx, 1)
    return [dx], grads


def _in_module(nd: int):
    def module(a: InstanceNormAttrs, ins):
        if not _in_has_state(a):
            return None
        c = D.value(_in_channels(a, nd, ins))
        extra = torch_kwargs((("eps", a.eps, 1e-5), ("momentum", a.momentum, 0.1),
                              ("affine", a.affine, False),
                              ("track_running_stats", a.track_running_stats, False),
                              ("bias", a.bias or not a.affine, True)))
        return f"nn.InstanceNorm{nd}d({c}{extra})"
    return module


def _in_call(a: InstanceNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    # No weights and no running statistics: the functional form, instance statistics always.
    return f"F.instance_norm({args[0]}{torch_kwargs((('eps', a.eps, 1e-5),))})"


def _in_label(a: InstanceNormAttrs) -> str:
    parts = []
    if a.affine:
        parts.append("affine" if a.bias else "affine, no bias")
    if a.track_running_stats:
        parts.append("running stats")
        if a.momentum != 0.1:
            parts.append(f"momentum {a.momentum:g}")
    return ", ".join(parts)


def _instance_norm(nd: int, examples: tuple[Example, ...]) -> Op:
    return Op(
        name=f"instance_norm{nd}d",
        family="norm",
        doc=f"Instance normalisation of a {_IN_LAYOUT[nd]} tensor (torch.nn.InstanceNorm{nd}d): "
            f"`x -> instance_norm{nd}d(eps=1e-5, momentum=0.1, affine=false, "
            "track_running_stats=false, bias=true)`. Each sample's channel is normalised "
            "with its own (biased) mean and variance over the spatial axes. With "
            "track_running_stats, training also updates running_mean / running_var (the "
            "batch average of the instances' mean and unbiased variance; "
            "num_batches_tracked is kept but not counted, as in torch) and eval normalises "
            "with them. affine adds a per-channel weight and bias (bias=false: weight only). "
            "MACs: one multiply-add per element.",
        attrs=InstanceNormAttrs,
        shape=_in_shape(nd),
        params=_in_params(nd),
        macs=lambda a, ins, outs: D.product(outs[0].shape),
        numpy=_in_kernel,
        vjp=_in_vjp,
        torch_module=_in_module(nd),
        torch_call=_in_call,
        label=_in_label,
        module_prefix="inorm",
        examples=examples,
    )


INSTANCE_NORM1D = _instance_norm(1, (
    Example({}, (tensor("f32", 2, 3, 7),)),
    Example({"affine": True, "track_running_stats": True, "momentum": 0.3},
            (tensor("f32", 4, 3, 5),), train=True),
    Example({"eps": 1e-3}, (tensor("f32", D.symbol("B"), 4, 6),)),
))
INSTANCE_NORM2D = _instance_norm(2, (
    Example({}, (tensor("f32", 2, 3, 4, 5),)),
    Example({"affine": True}, (tensor("f32", 2, 4, 1, 6),), train=True),
    Example({"track_running_stats": True}, (tensor("f32", 3, 2, 4, 4),), train=True),
    Example({"affine": True, "track_running_stats": True}, (tensor("f32", 2, 3, 1, 1),)),
    Example({"affine": True, "bias": False}, (tensor("f32", 2, 3, 3, 2),)),
))
INSTANCE_NORM3D = _instance_norm(3, (
    Example({"affine": True, "track_running_stats": True}, (tensor("f32", 2, 3, 2, 3, 2),),
            train=True),
    Example({}, (tensor("f32", 1, 2, 3, 1, 2),)),
))


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
    xf = x.astype(work_dtype(x), copy=False)
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


def _lrn_vjp(a: LRNAttrs, xs, ys, gs, ctx):
    x = xs[0]
    xf = x.astype(np.float64)
    g = gs[0].astype(np.float64)
    c = x.shape[1]
    lo, hi = min(a.size // 2, c - 1), min((a.size - 1) // 2, c - 1)

    def window(v, before, after):
        pad = [(0, 0)] * x.ndim
        pad[1] = (before, after)
        vp = np.pad(v, pad)
        return sum(vp[:, s:s + c] for s in range(before + after + 1))

    base = window(xf * xf, lo, hi) * (a.alpha / a.size) + a.k
    div = base ** a.beta
    # Output c reads the squares of channels c-lo..c+hi; so channel j feeds outputs
    # j-hi..j+lo (the window mirrored).
    t = g * xf / (div * base)
    dx = g / div - (2 * a.alpha * a.beta / a.size) * xf * window(t, hi, lo)
    return [dx.astype(x.dtype)], {}


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
    vjp=_lrn_vjp,
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

NORM_OPS = (BATCH_NORM, INSTANCE_NORM1D, INSTANCE_NORM2D, INSTANCE_NORM3D, LOCAL_RESPONSE_NORM)
