"""Dropout ops (dropout, dropout2d): op records for the registry, used by elaboration (shape
rules), the interpreter (kernels) and the PyTorch back end.

Both are identity in eval. They own no state, so the generated code calls the functional form
with `self.training` instead of holding an nn.Dropout module (modules are only made for layers
with parameters).
"""

from __future__ import annotations

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
        return np.zeros_like(x)  # torch gives zeros rather than 0 · inf
    keep = ctx.rng.random(mask_shape) >= a.p
    # Scaling the kept values by 1/(1-p) keeps the expectation equal to x.
    scale = np.asarray(1.0 / (1.0 - a.p), dtype=x.dtype)
    return np.where(keep, x * scale, np.zeros((), dtype=x.dtype)).astype(x.dtype)


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
    random=True,
    train_only=True,
    examples=(Example({"p": 0.2}, (tensor("f32", 2, 3, 4, 4),)),),
)

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
    random=True,
    train_only=True,
    examples=(Example({"std": 0.5}, (tensor("f32", 2, 3),)),),
)

DROPOUT_OPS = (DROPOUT, DROPOUT2D, GAUSSIAN_NOISE)
