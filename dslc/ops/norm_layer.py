"""Per-sample normalisations over feature axes (layer_norm, rms_norm, group_norm) and the
learned per-channel layer_scale: op records for the registry, used by elaboration (shape rules),
the interpreter (kernels) and the PyTorch back end.

Their statistics belong to one sample, so training and eval compute the same thing. MACs follow
norm.py's convention: one multiply-add per output element.
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
)
from dslc.ops.norm import affine_vjp, normalize_vjp, torch_kwargs, work_dtype
from dslc.types import TensorType, tensor


def _one_per_element(a, ins, outs) -> D.Dim:
    return D.product(outs[0].shape)


def _check_eps(eps: float | None) -> None:
    if eps is not None and eps <= 0:
        raise ShapeError("eps must be positive", expected="> 0", found=repr(eps), attr="eps")


def _trailing_shape(name: str, normalized_shape, x: TensorType) -> tuple[int, ...]:
    """The sizes of the trailing axes a layer or RMS norm normalises (torch's
    normalized_shape): given as an int or a tuple, else the last axis."""
    if normalized_shape is None:
        if x.rank < 1:
            raise ShapeError(f"{name} needs at least one axis", expected="rank >= 1",
                             found=str(x), arg=0)
        return (concrete(x.shape[-1], f"{name}'s normalised size (last axis)"),)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or any(d < 1 for d in ns):
        raise ShapeError("normalized_shape must be one or more positive sizes",
                         expected="positive ints", found=str(normalized_shape),
                         attr="normalized_shape")
    want = "[..., " + ", ".join(str(d) for d in ns) + "]"
    if x.rank < len(ns):
        raise ShapeError(f"{name} over {len(ns)} trailing axes needs rank >= {len(ns)}",
                         expected=want, found=str(x), arg=0)
    tail = x.shape[x.rank - len(ns):]
    for d, n in zip(tail, ns, strict=True):
        same = D.equal(d, D.const(n))
        if same is False:
            raise ShapeError("normalized_shape does not match the input's trailing axes",
                             expected=want, found=str(x), attr="normalized_shape")
        if same is None:
            raise ShapeError(f"{name}'s normalised axes must be fixed numbers",
                             expected=want, found=str(x), arg=0, code="E0304")
    return ns


def _need_min_rank(x: TensorType, n: int, what: str) -> None:
    if x.rank < n:
        raise ShapeError(f"{what} needs rank >= {n}", expected=f"rank >= {n}",
                         found=f"{x} (rank {x.rank})", arg=0)


def _shape_literal(ns: tuple[int, ...]) -> str:
    """normalized_shape as a torch module's first argument: `8` or `(5, 8)`."""
    return str(ns[0]) if len(ns) == 1 else fmt_value(ns)


def _flat_sum_of_squares(y: np.ndarray, k: int) -> np.ndarray:
    """Σ y² over the last k axes, one value per leading index (einsum: no y² temporary)."""
    flat = y.reshape(y.shape[:y.ndim - k] + (-1,))
    return np.einsum("...i,...i->...", flat, flat)


# ---- layer_norm --------------------------------------------------------------------------


class LayerNormAttrs(Attrs):
    normalized_shape: int | tuple[int, ...] | None = None
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    # Normalise axis 1 of [B, C, ...] (ConvNeXt on NCHW), not the trailing axes.
    channels_first: bool = False


def _ln_norm_shape(a: LayerNormAttrs, ins) -> tuple[int, ...]:
    x = ins[0]
    if not a.channels_first:
        return _trailing_shape("layer_norm", a.normalized_shape, x)
    _need_min_rank(x, 2, "layer_norm(channels_first=true) over [B, C, ...]")
    c = concrete(x.shape[1], "layer_norm's channel count (axis 1)")
    if a.normalized_shape not in (None, c, (c,)):
        raise ShapeError("with channels_first=true, normalized_shape is the channel count "
                         "(axis 1)", expected=str(c), found=str(a.normalized_shape),
                         attr="normalized_shape")
    return (c,)


def _ln_shape(a: LayerNormAttrs, ins):
    need_float(ins[0])
    _check_eps(a.eps)
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


def _ln_channels_first(a: LayerNormAttrs, x: np.ndarray, ctx) -> np.ndarray:
    """Layer norm over axis 1, computed in place (no transposed copy): torchvision's
    LayerNorm2d permutes to channels last, normalises, and permutes back."""
    xf = x.astype(work_dtype(x), copy=False)
    y = xf - xf.mean(axis=1, keepdims=True)
    var = np.mean(y * y, axis=1, keepdims=True)  # biased, as torch
    y *= (1.0 / np.sqrt(var + a.eps)).astype(y.dtype)
    if a.elementwise_affine:
        cshape = (-1,) + (1,) * (x.ndim - 2)
        y *= ctx.params["weight"].reshape(cshape)
        if a.bias:
            y += ctx.params["bias"].reshape(cshape)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def _ln_kernel(a: LayerNormAttrs, xs, ctx):
    x = xs[0]
    if a.channels_first:
        return [_ln_channels_first(a, x, ctx)]
    k = len(_ln_norm_shape(a, [tensor("f32", *x.shape)]))
    axes = tuple(range(x.ndim - k, x.ndim))
    xf = x.astype(work_dtype(x), copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    # In place after the one copy: a Transformer runs two layer norms per layer.
    y = xf - mean
    var = _flat_sum_of_squares(y, k)
    var = (var / np.prod([x.shape[i] for i in axes])).reshape(mean.shape)  # biased, as torch
    y *= (1.0 / np.sqrt(var + a.eps)).astype(y.dtype)
    if a.elementwise_affine:
        y *= ctx.params["weight"]
        if a.bias:
            y += ctx.params["bias"]
    return [y if y.dtype == x.dtype else y.astype(x.dtype)]


def _ln_vjp(a: LayerNormAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    if a.channels_first:
        axes, channel = (1,), 1
    else:
        k = len(_ln_norm_shape(a, [tensor("f32", *x.shape)]))
        axes, channel = tuple(range(x.ndim - k, x.ndim)), None
    dx, grads = normalize_vjp(x, axes, a.eps, g, ctx, channel)
    return [dx], grads


def _ln_module(a: LayerNormAttrs, ins):
    if not a.elementwise_affine:
        return None
    extra = torch_kwargs((("eps", a.eps, 1e-5), ("bias", a.bias, True)))
    return f"nn.LayerNorm({_shape_literal(_ln_norm_shape(a, ins))}{extra})"


def _ln_call(a: LayerNormAttrs, args, ctx, ins):
    x = args[0]
    if a.channels_first:
        # torchvision's LayerNorm2d: channels to the last axis, nn.LayerNorm, and back.
        x = f"{x}.movedim(1, -1)"
    if ctx.module is not None:
        y = f"{ctx.module}({x})"
    else:
        y = f"F.layer_norm({x}, {fmt_value(_ln_norm_shape(a, ins))}, eps={a.eps!r})"
    return f"{y}.movedim(-1, 1)" if a.channels_first else y


def _ln_label(a: LayerNormAttrs) -> str:
    if a.channels_first:
        return "channels first"
    return "" if a.normalized_shape is None else f"{a.normalized_shape}"


LAYER_NORM = Op(
    name="layer_norm",
    family="norm",
    doc="Layer normalisation over the trailing axes (torch.nn.LayerNorm): "
        "`x -> layer_norm(normalized_shape, eps=1e-5, elementwise_affine=true, bias=true)`; "
        "normalized_shape is an int or a tuple and defaults to the last axis's size. "
        "`channels_first=true` normalises axis 1 of [B, C, ...] instead, as ConvNeXt does on "
        "NCHW (torchvision's LayerNorm2d: the generated code moves the channels last, applies "
        "nn.LayerNorm(C) and moves them back); weight and bias then have shape [C]. "
        "MACs: one multiply-add per element.",
    attrs=LayerNormAttrs,
    positional=("normalized_shape",),
    shape=_ln_shape,
    params=_ln_params,
    macs=_one_per_element,
    numpy=_ln_kernel,
    vjp=_ln_vjp,
    torch_module=_ln_module,
    torch_call=_ln_call,
    label=_ln_label,
    module_prefix="ln",
    examples=(
        Example({}, (tensor("f32", 2, 5, 8),)),
        Example({"normalized_shape": (5, 8)}, (tensor("f32", 2, 5, 8),)),
        Example({"normalized_shape": 6, "bias": False, "eps": 1e-6}, (tensor("f32", 3, 6),)),
        Example({"elementwise_affine": False}, (tensor("f32", 2, 3, 4),)),
        Example({"channels_first": True}, (tensor("f32", 2, 6, 3, 4),)),
        Example({"channels_first": True, "elementwise_affine": False, "eps": 1e-6},
                (tensor("f32", D.symbol("B"), 5, 1, 3),)),
        Example({"channels_first": True, "normalized_shape": 4, "bias": False},
                (tensor("f32", 2, 4, 7),)),
    ),
)


# ---- rms_norm ----------------------------------------------------------------------------


class RMSNormAttrs(Attrs):
    normalized_shape: int | tuple[int, ...] | None = None
    eps: float | None = None  # None: the machine epsilon of the computation dtype (torch)
    elementwise_affine: bool = True


def _rms_norm_shape(a: RMSNormAttrs, ins) -> tuple[int, ...]:
    return _trailing_shape("rms_norm", a.normalized_shape, ins[0])


def _rms_shape(a: RMSNormAttrs, ins):
    need_float(ins[0])
    _check_eps(a.eps)
    _rms_norm_shape(a, ins)
    return [ins[0]]


def _rms_params(a: RMSNormAttrs, ins):
    if not a.elementwise_affine:
        return {}
    return {"weight": ParamSpec(tuple(D.const(d) for d in _rms_norm_shape(a, ins)), "ones")}


def _rms_kernel(a: RMSNormAttrs, xs, ctx):
    x = xs[0]
    k = len(_rms_norm_shape(a, [tensor("f32", *x.shape)]))
    wt = work_dtype(x)
    # torch's default eps is that of the type it computes in (f32 for f16 and bf16 inputs).
    eps = np.finfo(wt).eps if a.eps is None else a.eps
    xf = x.astype(wt, copy=False)
    lead = x.shape[:x.ndim - k]
    mean_sq = _flat_sum_of_squares(xf, k) / max(1, int(np.prod(x.shape[x.ndim - k:])))
    y = xf * (1.0 / np.sqrt(mean_sq + eps)).astype(wt).reshape(lead + (1,) * k)
    if a.elementwise_affine:
        y *= ctx.params["weight"].astype(wt)
    return [y if y.dtype == x.dtype else y.astype(x.dtype)]


def _rms_vjp(a: RMSNormAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    k = len(_rms_norm_shape(a, [tensor("f32", *x.shape)]))
    axes = tuple(range(x.ndim - k, x.ndim))
    eps = np.finfo(work_dtype(x)).eps if a.eps is None else a.eps
    xf = x.astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(xf * xf, axis=axes, keepdims=True) + eps)
    dxhat, grads = affine_vjp(g, xf * r, ctx, None)
    dx = r * dxhat - xf * r ** 3 * np.mean(dxhat * xf, axis=axes, keepdims=True)
    return [dx.astype(x.dtype)], grads


def _rms_module(a: RMSNormAttrs, ins):
    if not a.elementwise_affine:
        return None
    extra = torch_kwargs((("eps", a.eps, None),))
    return f"nn.RMSNorm({_shape_literal(_rms_norm_shape(a, ins))}{extra})"


def _rms_call(a: RMSNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    ns = fmt_value(_rms_norm_shape(a, ins))
    return f"F.rms_norm({args[0]}, {ns}{torch_kwargs((('eps', a.eps, None),))})"


RMS_NORM = Op(
    name="rms_norm",
    family="norm",
    doc="Root-mean-square normalisation over the trailing axes (torch.nn.RMSNorm): "
        "`x -> rms_norm(normalized_shape, eps=none, elementwise_affine=true)`; "
        "y = x / sqrt(mean(x²) + eps) · weight, with no centring and no bias. normalized_shape "
        "is an int or a tuple and defaults to the last axis's size; eps defaults to the "
        "machine epsilon of the computation dtype (torch.finfo(dtype).eps, f32's for f16). "
        "MACs: one multiply-add per element.",
    attrs=RMSNormAttrs,
    positional=("normalized_shape",),
    shape=_rms_shape,
    params=_rms_params,
    macs=_one_per_element,
    numpy=_rms_kernel,
    vjp=_rms_vjp,
    torch_module=_rms_module,
    torch_call=_rms_call,
    label=lambda a: "" if a.normalized_shape is None else f"{a.normalized_shape}",
    module_prefix="rms",
    examples=(
        Example({}, (tensor("f32", 2, 5, 8),)),
        Example({"normalized_shape": (5, 8), "eps": 1e-6}, (tensor("f32", 2, 5, 8),)),
        Example({"elementwise_affine": False}, (tensor("f32", D.symbol("B"), 3, 4),)),
        Example({"normalized_shape": 1, "eps": 1e-3}, (tensor("f32", 4, 1),)),
    ),
)


# ---- group_norm --------------------------------------------------------------------------


class GroupNormAttrs(Attrs):
    num_groups: int
    eps: float = 1e-5
    affine: bool = True
    bias: bool = True  # with affine: learn a bias too (torch's keyword-only `bias`)


def _gn_channels(a: GroupNormAttrs, ins) -> int:
    x = ins[0]
    _need_min_rank(x, 2, "group_norm over [B, C, ...]")
    c = concrete(x.shape[1], "group_norm's channel count (axis 1)")
    if a.num_groups < 1:
        raise ShapeError("num_groups must be positive", expected=">= 1",
                         found=str(a.num_groups), attr="num_groups")
    if c % a.num_groups:
        raise ShapeError("num_groups must divide the channel count",
                         expected=f"a divisor of C = {c}", found=f"num_groups={a.num_groups}",
                         attr="num_groups")
    return c


def _gn_shape(a: GroupNormAttrs, ins):
    need_float(ins[0])
    _check_eps(a.eps)
    _gn_channels(a, ins)
    return [ins[0]]


def _gn_params(a: GroupNormAttrs, ins):
    c = (D.const(_gn_channels(a, ins)),)
    if not a.affine:
        return {}
    p = {"weight": ParamSpec(c, "ones")}
    if a.bias:
        p["bias"] = ParamSpec(c, "zeros")
    return p


def _gn_kernel(a: GroupNormAttrs, xs, ctx):
    x = xs[0]
    b, c, g = x.shape[0], x.shape[1], a.num_groups
    xf = x.astype(work_dtype(x), copy=False)
    # Each sample's group of C/G channels (with all their positions) is one row.
    rows = xf.reshape(b, g, (c // g) * int(np.prod(x.shape[2:])))
    y = rows - rows.mean(axis=-1, keepdims=True)
    var = _flat_sum_of_squares(y, 1)[..., None] / max(1, y.shape[-1])  # biased, as torch
    y *= (1.0 / np.sqrt(var + a.eps)).astype(y.dtype)
    y = y.reshape(x.shape)
    if a.affine:
        cshape = (-1,) + (1,) * (x.ndim - 2)
        y *= ctx.params["weight"].astype(y.dtype).reshape(cshape)
        if a.bias:
            y += ctx.params["bias"].astype(y.dtype).reshape(cshape)
    return [y if y.dtype == x.dtype else y.astype(x.dtype)]


def _gn_vjp(a: GroupNormAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    rows = (x.shape[0], a.num_groups, -1)
    dx, grads = normalize_vjp(x, (2,), a.eps, g, ctx, 1, rows)
    return [dx], grads


def _gn_module(a: GroupNormAttrs, ins):
    if not a.affine:
        return None
    extra = torch_kwargs((("eps", a.eps, 1e-5), ("bias", a.bias, True)))
    return f"nn.GroupNorm({a.num_groups}, {_gn_channels(a, ins)}{extra})"


def _gn_call(a: GroupNormAttrs, args, ctx, ins):
    if ctx.module is not None:
        return f"{ctx.module}({args[0]})"
    return (f"F.group_norm({args[0]}, {a.num_groups}"
            f"{torch_kwargs((('eps', a.eps, 1e-5),))})")


GROUP_NORM = Op(
    name="group_norm",
    family="norm",
    doc="Group normalisation (torch.nn.GroupNorm): `x -> group_norm(num_groups, eps=1e-5, "
        "affine=true, bias=true)` on [B, C, ...]. The C channels are split into num_groups "
        "groups (num_groups must divide C); each sample's group is normalised with its own "
        "(biased) mean and variance, the same in training and eval. affine adds a per-channel "
        "weight [C] (ones) and bias [C] (zeros). num_groups=1 normalises each sample over all "
        "of C and its positions; num_groups=C is instance normalisation. "
        "MACs: one multiply-add per element.",
    attrs=GroupNormAttrs,
    positional=("num_groups",),
    shape=_gn_shape,
    params=_gn_params,
    macs=_one_per_element,
    numpy=_gn_kernel,
    vjp=_gn_vjp,
    torch_module=_gn_module,
    torch_call=_gn_call,
    label=lambda a: f"{a.num_groups} groups",
    module_prefix="gn",
    examples=(
        Example({"num_groups": 2}, (tensor("f32", 3, 6, 4, 5),)),
        Example({"num_groups": 1}, (tensor("f32", 2, 4, 7),)),
        Example({"num_groups": 4}, (tensor("f32", 2, 4, 1, 1),)),
        Example({"num_groups": 3, "affine": False, "eps": 1e-3},
                (tensor("f32", D.symbol("B"), 6, 3),)),
        Example({"num_groups": 2, "bias": False}, (tensor("f32", 2, 4, 2, 3, 2),)),
        Example({"num_groups": 2}, (tensor("f32", 5, 8),), train=True),
    ),
)


# ---- layer_scale -------------------------------------------------------------------------


class LayerScaleAttrs(Attrs):
    init: float = 1e-6
    # Scale axis 1 of [B, C, ...] (ConvNeXt on NCHW), not the last axis ([B, T, C]).
    channels_first: bool = False


def _ls_param_shape(a: LayerScaleAttrs, ins) -> tuple[int, ...]:
    """[C] for the last axis; [C, 1, ..., 1] for axis 1, so it broadcasts over positions."""
    x = ins[0]
    if a.channels_first:
        _need_min_rank(x, 2, "layer_scale(channels_first=true) over [B, C, ...]")
        c = concrete(x.shape[1], "layer_scale's channel count (axis 1)")
        return (c,) + (1,) * (x.rank - 2)
    _need_min_rank(x, 1, "layer_scale over [..., C]")
    return (concrete(x.shape[-1], "layer_scale's channel count (last axis)"),)


def _ls_shape(a: LayerScaleAttrs, ins):
    need_float(ins[0])
    _ls_param_shape(a, ins)
    return [ins[0]]


def _ls_params(a: LayerScaleAttrs, ins):
    shape = tuple(D.const(d) for d in _ls_param_shape(a, ins))
    return {"gamma": ParamSpec(shape, f"constant:{a.init!r}")}


def _ls_kernel(a: LayerScaleAttrs, xs, ctx):
    x = xs[0]
    return [(x * ctx.params["gamma"]).astype(x.dtype, copy=False)]


def _ls_vjp(a: LayerScaleAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    gamma = ctx.params["gamma"]
    dgamma = g * x
    lead = dgamma.ndim - gamma.ndim
    dgamma = dgamma.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(gamma.shape) if n == 1 and dgamma.shape[i] != 1)
    dgamma = dgamma.sum(axis=stretched, keepdims=True)
    return [(g * gamma).astype(x.dtype)], {"gamma": dgamma.astype(gamma.dtype)}


def _ls_module(a: LayerScaleAttrs, ins):
    # No torch.nn module holds one bare parameter; a ParameterDict does, and may sit in a
    # ModuleList (a repeated block) where an nn.Parameter may not.
    shape = fmt_value(_ls_param_shape(a, ins))
    return f"nn.ParameterDict({{'gamma': nn.Parameter(torch.full({shape}, {a.init!r}))}})"


LAYER_SCALE = Op(
    name="layer_scale",
    family="norm",
    doc="Layer scale: multiplies each channel by a learned factor initialised to a constant, "
        "`x -> layer_scale(init=1e-6)` (CaiT; timm's LayerScale). The parameter `gamma` has "
        "shape [C] and scales the last axis of [..., C] (a [B, T, C] sequence); with "
        "`channels_first=true` it has shape [C, 1, ..., 1] and scales axis 1 of [B, C, ...], "
        "as torchvision's ConvNeXt block (CNBlock.layer_scale, [C, 1, 1] on NCHW). The "
        "generated module holds it in an nn.ParameterDict: `x * self.ls1['gamma']`. "
        "MACs: one multiply per element.",
    attrs=LayerScaleAttrs,
    positional=("init",),
    shape=_ls_shape,
    params=_ls_params,
    macs=_one_per_element,
    numpy=_ls_kernel,
    vjp=_ls_vjp,
    torch_module=_ls_module,
    torch_call=lambda a, args, ctx, ins: f"{args[0]} * {ctx.module}['gamma']",
    label=lambda a: f"init {a.init:g}" + (", channels first" if a.channels_first else ""),
    module_prefix="ls",
    examples=(
        Example({}, (tensor("f32", 2, 5, 8),)),
        Example({"init": 0.1, "channels_first": True}, (tensor("f32", 2, 6, 3, 4),)),
        Example({"channels_first": True}, (tensor("f32", D.symbol("B"), 4, 5),)),
        Example({"init": 1.0}, (tensor("f32", 3, 1),)),
    ),
)

NORM_LAYER_OPS = (LAYER_NORM, RMS_NORM, GROUP_NORM, LAYER_SCALE)
