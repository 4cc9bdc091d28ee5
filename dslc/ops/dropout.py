"""Dropout ops (dropout, dropout2d, alpha_dropout, drop_path, gaussian_noise): op records for
the registry, used by elaboration (shape rules), the interpreter (kernels) and the PyTorch back
end.

All are identity in eval (`train_only`). They own no state, so the generated code calls the
functional form with `self.training` instead of holding an nn.Dropout module (modules are only
made for layers with parameters). NumPy draws from the run's generator and torch from its own,
so in training the two agree in distribution, not element by element.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dslc.ops.base import Attrs, Example, Op, ShapeError, need_float, need_rank
from dslc.types import tensor


class DropoutAttrs(Attrs):
    p: float = 0.5


def _check_p(a: DropoutAttrs) -> None:
    if not 0.0 <= a.p <= 1.0:
        raise ShapeError("dropout probability must lie in [0, 1]", expected="0 <= p <= 1",
                         found=repr(a.p), attr="p")


def _dropout_shape(a: DropoutAttrs, ins):
    need_float(ins[0])
    _check_p(a)
    return [ins[0]]


def _dropout2d_shape(a: DropoutAttrs, ins):
    need_float(ins[0])
    need_rank(ins[0], (4,), what="dropout2d input ([B, C, H, W])")
    _check_p(a)
    return [ins[0]]


def _apply_mask(a: DropoutAttrs, x: np.ndarray, mask_shape, ctx) -> np.ndarray:
    if not ctx.train or a.p == 0.0:
        return x
    if a.p == 1.0:
        ctx.saved["scale"] = np.zeros((), x.dtype)
        return np.zeros_like(x)  # torch gives zeros rather than 0 · inf
    keep = ctx.rng.random(mask_shape) >= a.p
    # Scaling the kept values by 1/(1-p) keeps the expectation equal to x.
    scale = np.asarray(1.0 / (1.0 - a.p), dtype=x.dtype)
    # The backward walk multiplies by the same mask (this draw, not a new one).
    ctx.saved["scale"] = np.where(keep, scale, np.zeros((), dtype=x.dtype))
    return np.where(keep, x * scale, np.zeros((), dtype=x.dtype)).astype(x.dtype)


def _masked_vjp(a, xs, ys, gs, ctx):
    """Every op here scales its input by what its forward saved (the mask over 1 - p), or
    passes it through where it saved nothing (eval, p = 0, additive noise)."""
    x, g = xs[0], gs[0]
    scale = ctx.saved.get("scale")
    return [g if scale is None else (g * scale).astype(x.dtype)], {}


def _label(a: DropoutAttrs) -> str:
    return f"p {a.p:g}"


DROPOUT = Op(
    name="dropout",
    family="reg",
    doc="Zeroes each element with probability p in training and scales the rest by 1/(1-p) "
        "(torch.nn.functional.dropout): `x -> dropout(p=0.5)`. Identity in eval.",
    attrs=DropoutAttrs,
    positional=("p",),
    shape=_dropout_shape,
    numpy=lambda a, xs, ctx: [_apply_mask(a, xs[0], xs[0].shape, ctx)],
    torch_call=lambda a, args, ctx, ins: (
        f"F.dropout({args[0]}, p={a.p!r}, training=self.training)"),
    label=_label,
    vjp=_masked_vjp,
    random=True,
    train_only=True,
    examples=(
        Example({}, (tensor("f32", 4, 6),)),
        Example({"p": 0.1}, (tensor("f32", 2, 3, 4),)),
    ),
)

DROPOUT2D = Op(
    name="dropout2d",
    family="reg",
    doc="Zeroes whole channels of a [B, C, H, W] tensor with probability p in training and "
        "scales the rest by 1/(1-p) (torch.nn.functional.dropout2d): `x -> dropout2d(p=0.5)`. "
        "Identity in eval.",
    attrs=DropoutAttrs,
    positional=("p",),
    shape=_dropout2d_shape,
    numpy=lambda a, xs, ctx: [_apply_mask(a, xs[0], xs[0].shape[:2] + (1, 1), ctx)],
    torch_call=lambda a, args, ctx, ins: (
        f"F.dropout2d({args[0]}, p={a.p!r}, training=self.training)"),
    label=_label,
    vjp=_masked_vjp,
    random=True,
    train_only=True,
    examples=(Example({"p": 0.2}, (tensor("f32", 2, 3, 4, 4),)),),
)

# ---- alpha_dropout -----------------------------------------------------------------------

# SELU's negative saturation value, -scale·alpha: dropped units are set to it (scaled), so
# that a SELU network's activations keep mean 0 and variance 1 (Klambauer et al., 2017).
SELU_SATURATION = 1.7580993408473766


def _alpha_dropout_kernel(a: DropoutAttrs, xs, ctx):
    x = xs[0]
    if not ctx.train or a.p == 0.0:
        return [x]
    if a.p == 1.0:
        ctx.saved["scale"] = np.zeros((), x.dtype)
        return [x * np.zeros((), dtype=x.dtype)]  # torch: input · 0
    p = a.p
    keep = (ctx.rng.random(x.shape) >= p).astype(x.dtype)
    # torch's form, term by term: y = x·(keep·s) + ((keep − 1)·alpha·s + alpha·s·p), with
    # s = 1 / sqrt((alpha²·p + 1)(1 − p)): kept units become s·(x + alpha·p), dropped ones
    # −alpha·s·(1 − p).
    s = 1.0 / np.sqrt((SELU_SATURATION ** 2 * p + 1) * (1 - p))
    ctx.saved["scale"] = keep * x.dtype.type(s)
    shift = (keep - 1) * x.dtype.type(SELU_SATURATION * s) + x.dtype.type(SELU_SATURATION * s * p)
    return [(x * (keep * x.dtype.type(s)) + shift).astype(x.dtype, copy=False)]


ALPHA_DROPOUT = Op(
    name="alpha_dropout",
    family="reg",
    doc="Alpha dropout for self-normalising (SELU) networks (torch.nn.functional.alpha_dropout): "
        "`x -> alpha_dropout(p=0.5)`. In training each element is dropped with probability p "
        "and set to SELU's negative saturation value, and an affine map a·x + b restores zero "
        "mean and unit variance for standardised inputs. Identity in eval.",
    attrs=DropoutAttrs,
    positional=("p",),
    shape=_dropout_shape,
    numpy=_alpha_dropout_kernel,
    torch_call=lambda a, args, ctx, ins: (
        f"F.alpha_dropout({args[0]}, p={a.p!r}, training=self.training)"),
    label=_label,
    vjp=_masked_vjp,
    random=True,
    train_only=True,
    examples=(
        Example({}, (tensor("f32", 4, 6),)),
        Example({"p": 0.2}, (tensor("f32", 2, 3, 4),), train=True),
    ),
)


# ---- drop_path ---------------------------------------------------------------------------


class DropPathAttrs(Attrs):
    p: float
    mode: Literal["row", "batch"] = "row"


def _drop_path_shape(a: DropPathAttrs, ins):
    need_float(ins[0])
    _check_p(a)
    if ins[0].rank < 1:
        raise ShapeError("drop_path needs a batch axis", expected="rank >= 1 ([B, ...])",
                         found=f"{ins[0]} (rank 0)", arg=0)
    return [ins[0]]


def _draw_shape(a: DropPathAttrs, ndim: int, batch) -> tuple:
    """One draw per sample ("row") or one for the whole batch ("batch")."""
    return ((batch,) if a.mode == "row" else (1,)) + (1,) * (ndim - 1)


def _drop_path_kernel(a: DropPathAttrs, xs, ctx):
    x = xs[0]
    if not ctx.train or a.p == 0.0:
        return [x]
    survival = 1.0 - a.p
    keep = (ctx.rng.random(_draw_shape(a, x.ndim, x.shape[0])) < survival).astype(x.dtype)
    if survival > 0.0:  # torchvision divides only when something can survive
        keep /= x.dtype.type(survival)
    ctx.saved["scale"] = keep
    return [x * keep]


def _drop_path_call(a: DropPathAttrs, args, ctx, ins):
    x = args[0]
    if a.p == 0.0:
        return x
    lead = f"{x}.shape[0]" if a.mode == "row" else "1"
    size = "[" + ", ".join([lead] + ["1"] * (ins[0].rank - 1)) + "]"
    noise = f"{x}.new_empty({size}).bernoulli_({1.0 - a.p!r})"
    if a.p < 1.0:
        noise += f".div_({1.0 - a.p!r})"
    return f"({x} * {noise} if self.training else {x})"


DROP_PATH = Op(
    name="drop_path",
    family="reg",
    doc="Stochastic depth (torchvision.ops.stochastic_depth; timm's DropPath): "
        "`x -> drop_path(p, mode=\"row\")`. In training it zeroes the whole sample (mode "
        "\"row\": one draw per sample along axis 0) or the whole batch (mode \"batch\": one "
        "draw) with probability p, and scales what survives by 1/(1-p); put it on a residual "
        "branch before the addition. Identity in eval.",
    attrs=DropPathAttrs,
    positional=("p",),
    shape=_drop_path_shape,
    numpy=_drop_path_kernel,
    torch_call=_drop_path_call,
    label=lambda a: f"p {a.p:g}" + (", batch" if a.mode == "batch" else ""),
    vjp=_masked_vjp,
    random=True,
    train_only=True,
    examples=(
        Example({"p": 0.2}, (tensor("f32", 4, 3, 2, 2),)),
        Example({"p": 0.5}, (tensor("f32", 6, 5, 3),), train=True),
        # One draw for the whole batch: the registry tests' two seeds draw 0.64 and 0.51, so
        # with p = 0.4 one drops and one keeps, and the tests see that the op is random.
        Example({"p": 0.4, "mode": "batch"}, (tensor("f32", 3, 4),), train=True),
        Example({"p": 1.0}, (tensor("f32", 4, 2),), train=True),
    ),
)


# ---- gaussian_noise ----------------------------------------------------------------------


class NoiseAttrs(Attrs):
    std: float = 0.1


def _noise_shape(a: NoiseAttrs, ins):
    need_float(ins[0])
    if a.std < 0:
        raise ShapeError("std must not be negative", expected=">= 0", found=repr(a.std),
                         attr="std")
    return [ins[0]]


def _noise_kernel(a: NoiseAttrs, xs, ctx):
    x = xs[0]
    if not ctx.train or a.std == 0:
        return [x]
    noise = ctx.rng.standard_normal(size=x.shape).astype(x.dtype)
    return [x + np.asarray(a.std, x.dtype) * noise]


GAUSSIAN_NOISE = Op(
    name="gaussian_noise",
    family="reg",
    doc="Adds N(0, std²) noise in training and nothing at inference (a denoising "
        "autoencoder's corruption): `x -> gaussian_noise(0.1)`.",
    attrs=NoiseAttrs,
    positional=("std",),
    shape=_noise_shape,
    numpy=_noise_kernel,
    torch_call=lambda a, args, ctx, ins: (
        f"({args[0]} + {a.std!r} * torch.randn_like({args[0]}) if self.training "
        f"else {args[0]})"),
    label=lambda a: f"std {a.std:g}",
    vjp=_masked_vjp,
    random=True,
    train_only=True,
    examples=(Example({"std": 0.5}, (tensor("f32", 2, 3),)),),
)

DROPOUT_OPS = (DROPOUT, DROPOUT2D, ALPHA_DROPOUT, DROP_PATH, GAUSSIAN_NOISE)
