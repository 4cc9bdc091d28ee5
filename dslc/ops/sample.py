"""Sampling ops (reparameterize, randn_like): op records for the registry, used by elaboration
(shape rules), the interpreter (kernels drawing from the run's generator) and the PyTorch back
end.

NumPy draws from `ctx.rng` and torch from its own generator, so in training (or for randn_like
at any time) the two back ends agree in distribution, not element by element.
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Example, NoAttrs, Op, ShapeError, need_float
from dslc.types import tensor


def _rep_shape(a, ins):
    mu, logvar = ins
    need_float(mu, 0)
    need_float(logvar, 1)
    if logvar.dtype != mu.dtype:
        raise ShapeError("reparameterize needs mu and logvar of the same dtype",
                         expected=mu.dtype, found=str(logvar), arg=1, code="E0302")
    same = mu.rank == logvar.rank and all(
        D.equal(p, q) is not False for p, q in zip(mu.shape, logvar.shape, strict=True))
    if not same:
        raise ShapeError("reparameterize needs mu and logvar of the same shape",
                         expected=str(mu), found=str(logvar), arg=1)
    return [mu]


def _rep_kernel(a, xs, ctx):
    mu, logvar = xs
    if mu.shape != logvar.shape:
        raise ShapeError("mu and logvar differ in shape", expected=str(list(mu.shape)),
                         found=str(list(logvar.shape)))
    if not ctx.train:
        return [mu]
    wt = np.promote_types(mu.dtype, np.float32)
    eps = ctx.rng.standard_normal(mu.shape).astype(wt)
    ctx.saved["eps"] = eps  # the vjp's noise
    std = np.exp(0.5 * logvar.astype(wt, copy=False))
    return [(mu + eps * std).astype(mu.dtype)]


def _rep_vjp(a, ins, outs, gouts, ctx):
    """dz/dmu = 1; dz/dlogvar = eps · exp(logvar / 2) / 2 with the forward's eps (training;
    in eval z = mu)."""
    g = gouts[0]
    eps = ctx.saved.get("eps")
    if eps is None:
        return [g, None], {}
    return [g, g * eps * 0.5 * np.exp(0.5 * ins[1])], {}


REPARAMETERIZE = Op(
    name="reparameterize",
    family="sample",
    doc="The VAE reparameterisation trick: `z = reparameterize(mu, logvar)`. In training "
        "z = mu + eps · exp(logvar / 2) with eps ~ N(0, 1) of mu's shape; in eval z = mu, so "
        "an eval run is deterministic and the NumPy and PyTorch results are equal.",
    attrs=NoAttrs,
    min_inputs=2,
    max_inputs=2,
    shape=_rep_shape,
    numpy=_rep_kernel,
    vjp=_rep_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"({args[0]} + torch.randn_like({args[0]}) * torch.exp(0.5 * {args[1]})) "
        f"if self.training else {args[0]}"),
    random=True,
    train_only=True,  # eval returns mu, its first input
    examples=(
        Example({}, (tensor("f32", 4, 8), tensor("f32", 4, 8))),
    ),
)


def _randn_shape(a, ins):
    need_float(ins[0])
    return [ins[0]]


RANDN_LIKE = Op(
    name="randn_like",
    family="sample",
    doc="Standard normal noise with x's shape and dtype (torch.randn_like), in training and "
        "in eval alike: `z = randn_like(x)` (GAN noise). Only the shape of x is used.",
    attrs=NoAttrs,
    shape=_randn_shape,
    numpy=lambda a, xs, ctx: [ctx.rng.standard_normal(xs[0].shape).astype(xs[0].dtype)],
    vjp=lambda a, ins, outs, gouts, ctx: ([None], {}),  # only x's shape is read
    torch_call=lambda a, args, ctx, ins: f"torch.randn_like({args[0]})",
    random=True,
    examples=(Example({}, (tensor("f32", 3, 16),)),),
)

SAMPLE_OPS = (REPARAMETERIZE, RANDN_LIKE)
