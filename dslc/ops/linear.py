"""Op `linear`: y = x Wᵀ + b over the last axis (torch.nn.Linear)."""

from __future__ import annotations

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ParamSpec, ShapeError, concrete, need_float
from dslc.types import tensor


class LinearAttrs(Attrs):
    out_features: int
    bias: bool = True


def _in_features(ins) -> int:
    x = ins[0]
    if x.rank < 1:
        raise ShapeError("linear needs at least one axis", expected="rank >= 1",
                         found=str(x), arg=0)
    return concrete(x.shape[-1], "linear's input features (last axis)")


def shape(a: LinearAttrs, ins):
    need_float(ins[0])
    if a.out_features < 1:
        raise ShapeError("out_features must be positive", expected=">= 1",
                         found=str(a.out_features), attr="out_features")
    _in_features(ins)
    return [ins[0].with_shape(ins[0].shape[:-1] + (D.const(a.out_features),))]


def params(a: LinearAttrs, ins):
    n = _in_features(ins)
    p = {"weight": ParamSpec((D.const(a.out_features), D.const(n)), "uniform_fan_in", n)}
    if a.bias:
        p["bias"] = ParamSpec((D.const(a.out_features),), "uniform_fan_in", n)
    return p


def macs(a: LinearAttrs, ins, outs):
    return D.product(outs[0].shape) * ins[0].shape[-1]


def kernel(a: LinearAttrs, xs, ctx):
    x = xs[0]
    w = ctx.params["weight"]
    # One [B*T, F] x [F, O] product: np.matmul on a 3-d x would run one product per batch row.
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    y = x2 @ w.T
    if a.bias:
        y += ctx.params["bias"]
    return [y.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim != 2 else y]


def vjp(a: LinearAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    w = ctx.params["weight"]
    g2 = g.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, x.shape[-1])
    grads = {"weight": g2.T @ x2}
    if a.bias:
        grads["bias"] = g2.sum(axis=0)
    return [(g2 @ w).reshape(x.shape)], grads


LINEAR = Op(
    name="linear",
    family="dense",
    doc="Fully connected layer over the last axis: `x -> linear(out_features, bias=true)`.",
    attrs=LinearAttrs,
    positional=("out_features",),
    shape=shape,
    params=params,
    macs=macs,
    numpy=kernel,
    vjp=vjp,
    torch_module=lambda a, ins: (f"nn.Linear({_in_features(ins)}, {a.out_features}"
                                 + ("" if a.bias else ", bias=False") + ")"),
    torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]})",
    result_overwritable=True,  # a new tensor; the backward reads input and weight
    label=lambda a: f"{a.out_features}" + ("" if a.bias else ", no bias"),
    # A batch norm after it folds into it for [B, C] only: over [B, C, L] the norm's axis 1
    # is not linear's features.
    absorbs_norm=lambda a, outs: outs[0].rank == 2,
    module_prefix="fc",
    examples=(
        Example({"out_features": 7}, (tensor("f32", 3, 5),)),
        Example({"out_features": 4, "bias": False}, (tensor("f32", 2, 3, 6),)),
    ),
)
