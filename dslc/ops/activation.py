"""Pointwise activations of the notes, one table: relu, sigmoid, tanh, softmax, gelu, ..."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from dslc import dims as D
from dslc.ops.base import (
    Attrs,
    Example,
    NoAttrs,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    need_float,
    norm_axis,
)
from dslc.types import tensor


class LeakyAttrs(Attrs):
    negative_slope: float = 0.01


class EluAttrs(Attrs):
    alpha: float = 1.0


class DimAttrs(Attrs):
    dim: int = -1


class GeluAttrs(Attrs):
    approximate: str = "none"


class PreluAttrs(Attrs):
    num_parameters: int = 1
    init: float = 0.25


def _same(a, ins):
    need_float(ins[0])
    return [ins[0]]


def _same_dim(a, ins):
    need_float(ins[0])
    norm_axis(a.dim, ins[0].rank)
    return [ins[0]]


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    # exp(x) - 1 as torch's CPU kernel writes it: np.expm1 is 5x slower than np.exp on float32
    # (12.6 against 2.2 ns an element here, GAT's first layer: 2 ms) and no closer to torch.
    # The exp only ever sees x <= 0, so it cannot overflow.
    neg = np.minimum(x, 0)
    np.exp(neg, out=neg)
    neg -= 1
    neg *= alpha
    return np.where(x > 0, x, neg)


def _gelu_shape(a, ins):
    if a.approximate not in ("none", "tanh"):
        raise ShapeError("gelu approximate must be 'none' or 'tanh'", expected="'none' or 'tanh'",
                         found=repr(a.approximate), attr="approximate")
    return _same(a, ins)


def _sigmoid(x):
    # Stable for |x| up to 1e4: exp only ever sees non-positive numbers.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _gelu(x, approximate):
    if approximate == "tanh":
        c = np.sqrt(2.0 / np.pi).astype(x.dtype)
        return (0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(x.dtype)


def _prelu_shape(a, ins):
    need_float(ins[0])
    if a.num_parameters != 1:
        x = ins[0]
        if x.rank < 2:
            raise ShapeError("prelu with one slope per channel needs a channel axis (axis 1)",
                             expected="rank >= 2", found=str(x))
        c = concrete(x.shape[1], "prelu channels")
        if c != a.num_parameters:
            raise ShapeError("prelu num_parameters must equal the channel count (axis 1)",
                             expected=str(c), found=str(a.num_parameters), attr="num_parameters")
    return [ins[0]]


def _prelu_kernel(a, xs, ctx):
    x = xs[0]
    w = ctx.params["weight"]
    if w.size > 1:
        w = w.reshape((1, -1) + (1,) * (x.ndim - 2))
    return [np.where(x >= 0, x, w * x).astype(x.dtype)]


def _act(name, doc, fn, torch_fmt, attrs=NoAttrs, shape=_same, positional=(), label=None,
         examples=None):
    return Op(
        name=name,
        family="act",
        doc=doc,
        attrs=attrs,
        positional=positional,
        shape=shape,
        numpy=lambda a, xs, ctx: [np.asarray(fn(a, xs[0]), dtype=xs[0].dtype)],
        torch_call=lambda a, args, ctx, ins: torch_fmt.format(x=args[0], a=a),
        label=label or (lambda a: ""),
        examples=examples or (Example({}, (tensor("f32", 2, 3, 4),)),),
    )


X24 = (tensor("f32", 4, 6),)

ACTIVATIONS = (
    _act("identity", "Returns its input unchanged.", lambda a, x: x, "{x}"),
    _act("relu", "max(0, x).", lambda a, x: np.maximum(x, 0), "torch.relu({x})"),
    _act("leaky_relu", "x if x > 0 else negative_slope·x.",
         lambda a, x: np.where(x >= 0, x, x * a.negative_slope),
         "F.leaky_relu({x}, {a.negative_slope!r})", attrs=LeakyAttrs,
         positional=("negative_slope",), label=lambda a: f"slope {a.negative_slope:g}",
         examples=(Example({"negative_slope": 0.2}, X24),)),
    _act("sigmoid", "1 / (1 + e^-x).", lambda a, x: _sigmoid(x), "torch.sigmoid({x})"),
    _act("hard_sigmoid", "Piecewise-linear sigmoid: relu6(x + 3) / 6 (torch's hardsigmoid).",
         lambda a, x: np.clip(x / 6.0 + 0.5, 0.0, 1.0), "F.hardsigmoid({x})"),
    _act("tanh", "Hyperbolic tangent.", lambda a, x: np.tanh(x), "torch.tanh({x})"),
    _act("softmax", "exp(x) / sum(exp(x)) along `dim` (default the last).",
         lambda a, x: _softmax(x, a.dim), "torch.softmax({x}, dim={a.dim})", attrs=DimAttrs,
         shape=_same_dim, positional=("dim",), label=lambda a: f"dim {a.dim}",
         examples=(Example({"dim": -1}, X24), Example({"dim": 1}, (tensor("f32", 2, 3, 4),)))),
    _act("log_softmax", "log(softmax(x)) along `dim`, computed stably.",
         lambda a, x: _log_softmax(x, a.dim), "torch.log_softmax({x}, dim={a.dim})",
         attrs=DimAttrs, shape=_same_dim, positional=("dim",), label=lambda a: f"dim {a.dim}",
         examples=(Example({"dim": -1}, X24),)),
    _act("gelu", "x·Φ(x) (exact, or the tanh approximation).",
         lambda a, x: _gelu(x, a.approximate),
         "F.gelu({x}, approximate={a.approximate!r})", attrs=GeluAttrs, shape=_gelu_shape,
         examples=(Example({}, X24), Example({"approximate": "tanh"}, X24))),
    _act("elu", "x if x > 0 else alpha·(e^x − 1).",
         lambda a, x: _elu(x, a.alpha),
         "F.elu({x}, alpha={a.alpha!r})", attrs=EluAttrs, positional=("alpha",),
         label=lambda a: f"α {a.alpha:g}", examples=(Example({"alpha": 0.5}, X24),)),
    Op(
        name="prelu",
        family="act",
        doc="Leaky ReLU with a learned slope (one, or one per channel on axis 1).",
        attrs=PreluAttrs,
        positional=("num_parameters",),
        shape=_prelu_shape,
        params=lambda a, ins: {"weight": ParamSpec((D.const(a.num_parameters),),
                                                   f"constant:{a.init}")},
        numpy=_prelu_kernel,
        torch_module=lambda a, ins: (f"nn.PReLU({a.num_parameters}"
                                     + ("" if a.init == 0.25 else f", init={a.init!r}") + ")"),
        torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]})",
        module_prefix="prelu",
        label=lambda a: f"{a.num_parameters} slope" + ("s" if a.num_parameters > 1 else ""),
        examples=(Example({}, X24), Example({"num_parameters": 3}, (tensor("f32", 2, 3, 4),))),
    ),
)
