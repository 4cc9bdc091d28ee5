"""Pointwise activations, one table: relu, sigmoid, tanh, softmax, gelu, and the rest of
torch.nn.functional's (relu6, selu, softplus, mish, hardswish, glu, ...)."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from dslc import dims as D
from dslc.ops.arith import need_fits, need_numeric, py_number, scalar_array, scalar_result_dtype
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
from dslc.types import TensorType, dtype_of_array, numpy_dtype, tensor

# SELU's constants as torch writes them (ATen/native/Activation.cpp), to full precision.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class LeakyAttrs(Attrs):
    negative_slope: float = 0.01


class EluAttrs(Attrs):
    alpha: float = 1.0


class DimAttrs(Attrs):
    dim: int = -1


class GeluAttrs(Attrs):
    approximate: str = "none"


class CeluAttrs(Attrs):
    alpha: float = 1.0


class HardtanhAttrs(Attrs):
    min_val: float = -1.0
    max_val: float = 1.0


class SoftplusAttrs(Attrs):
    beta: float = 1.0
    threshold: float = 20.0


class ClampAttrs(Attrs):
    min: float | int | None = None
    max: float | int | None = None


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
    # exp(x) - 1: np.expm1 is 5x slower than np.exp on float32 (12.6 against 2.2 ns an
    # element here, GAT's first layer: 2 ms). torch's result is expm1's near 0: this one is
    # within 1.2e-7 of it absolutely, but not relatively for |x| < 1e-4 (elu(-1e-8) is 0 here,
    # -1e-8 in torch; tests/ops/test_activation.py). selu and celu use expm1 (_scaled_elu).
    # The exp only ever sees x <= 0, so it cannot overflow.
    neg = np.minimum(x, 0)
    np.exp(neg, out=neg)
    neg -= 1
    neg *= alpha
    return np.where(x > 0, x, neg)


def _scaled_elu(x: np.ndarray, alpha: float, scale: float, input_scale: float) -> np.ndarray:
    """ATen's elu with its scale (both sides) and input_scale (inside the exp), which selu and
    celu are: scale·x above 0, alpha·scale·(e^(x·input_scale) − 1) below. expm1, as torch:
    e^x − 1 loses every digit for |x| < 1e-8, where torch gives x·alpha·scale."""
    neg = np.minimum(x, 0) * input_scale
    return np.where(x > 0, x * scale, np.expm1(neg) * (alpha * scale))


def _celu_shape(a, ins):
    if a.alpha == 0:
        raise ShapeError("alpha cannot be 0 (the input is divided by it)", expected="alpha != 0",
                         found=repr(a.alpha), attr="alpha", code="E0341")
    return _same(a, ins)


def _hardtanh_shape(a, ins):
    if a.min_val > a.max_val:
        raise ShapeError("min_val is greater than max_val",
                         expected=f"min_val <= {a.max_val!r}", found=repr(a.min_val),
                         attr="min_val", code="E0340")
    return _same(a, ins)


def _hard(x, lo, hi, out=None):
    # min(max(x, lo), hi) as torch's clamp: a NaN stays NaN. np.clip is the same where
    # lo <= hi and one pass over the data, not two and a temporary (MobileNetV2's relu6 at
    # batch 16: 45 -> 15 ms a layer); where lo > hi, torch's order of the bounds decides.
    # `out` (x itself, in place: the epilogue form) saves the result's allocation.
    if lo <= hi:
        return np.clip(x, lo, hi, out=out)
    return np.minimum(np.maximum(x, lo, out=out), hi, out=out)


def _in_place(fn):
    """The `epilogue` of a table row (ops/base.py): fn(attrs, block, out=block) applied in
    place, for any float dtype (these rows only compare and select, so computing in the
    input's dtype gives the bits of the upcast kernel)."""
    def factory(a, ctx, dtype):
        return lambda block: fn(a, block, out=block)
    return factory


def _softplus(x, beta, threshold):
    # torch: x where x·beta > threshold, else log1p(exp(x·beta)) / beta. The exp may overflow
    # on the side that is not taken, or to inf where a large threshold asks for it, as torch.
    z = x * beta
    return np.where(z > threshold, x, np.log1p(np.exp(z)) / beta)


def _logsigmoid(x):
    # torch's stable form: min(x, 0) - log1p(exp(-|x|)); exp never sees a positive number.
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _glu_shape(a, ins):
    need_float(ins[0])
    x = ins[0]
    axis = norm_axis(a.dim, x.rank)
    n = concrete(x.shape[axis], "glu's split axis")
    if n % 2:
        raise ShapeError(f"halves axis {a.dim}, whose size {n} is odd",
                         expected="an even size", found=str(x), code="E0344")
    return [x.with_shape(x.shape[:axis] + (D.const(n // 2),) + x.shape[axis + 1:])]


def _glu(x, dim):
    first, second = np.split(x, 2, axis=dim)
    return first * _sigmoid(second)


def _clamp_dtype(dtype: str, a: ClampAttrs) -> str:
    # torch promotes with both bounds: a float bound makes an integer tensor f32.
    for bound in (a.min, a.max):
        if bound is not None:
            dtype = scalar_result_dtype(dtype, bound)
    return dtype


def _clamp_shape(a: ClampAttrs, ins):
    x = ins[0]
    need_numeric(x)
    if a.min is None and a.max is None:
        raise ShapeError("needs a bound", expected="min=..., max=... or both",
                         found="neither", code="E0340")
    need_fits(x, a.min, "min")
    need_fits(x, a.max, "max")
    return [TensorType(_clamp_dtype(x.dtype, a), x.shape)]


def _clamp_kernel(a: ClampAttrs, xs, ctx):
    x = xs[0]
    dt = numpy_dtype(_clamp_dtype(dtype_of_array(x) or "f32", a))
    # torch compares in the result dtype: the bounds are rounded to it first. min then max,
    # so that min > max gives max everywhere, as torch documents.
    y = x.astype(dt, copy=False)
    if a.min is not None:
        y = np.maximum(y, scalar_array(a.min, dt))
    if a.max is not None:
        y = np.minimum(y, scalar_array(a.max, dt))
    return [np.asarray(y, dt)]


def _clamp_call(a: ClampAttrs, args, ctx, ins) -> str:
    bounds = [f"{k}={py_number(v)}" for k, v in (("min", a.min), ("max", a.max))
              if v is not None]
    return f"torch.clamp({args[0]}, {', '.join(bounds)})"


def _clamp_label(a: ClampAttrs) -> str:
    lo = "-inf" if a.min is None else f"{a.min:g}"
    hi = "inf" if a.max is None else f"{a.max:g}"
    return f"[{lo}, {hi}]"


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
    # In the input's precision with torch's constants and order (ATen GeluKernel): erf of a
    # float32 rounds to -1 below -4, where torch's result is -0.0.
    if approximate == "tanh":
        inner = 0.7978845608028654 * (x + 0.044715 * (x * x * x))  # sqrt(2 / pi)
        return 0.5 * x * (1 + np.tanh(inner))
    return x * 0.5 * (1 + erf(x * 0.7071067811865476))


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


def _pointwise(fn, upcast: bool = True, quiet: bool = False):
    """The kernel of a table row: `fn(attrs, x)` in torch's precision, rounded to x's dtype.

    float16 is computed in float32 and rounded once at the end, as torch's CPU kernels do (a
    formula of several steps rounded after each would drift from them); `upcast=False` for
    the few that torch writes as several tensor ops, each rounded (softsign). With `quiet`,
    overflow and invalid values give inf and NaN as in torch (exp of a large input in
    softplus, mish, silu; -inf · 0 in hardswish) without NumPy's warnings. Only those rows ask:
    np.errstate costs 3 us a call, which a scan's per-step tanh on tiny tensors would feel.
    """

    def kernel(a, xs, ctx):
        x = xs[0]
        wide = x.astype(np.float32) if upcast and x.dtype == np.float16 else x
        if not quiet:
            return [np.asarray(fn(a, wide), dtype=x.dtype)]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [np.asarray(fn(a, wide), dtype=x.dtype)]

    return kernel


def _call(fn: str, *names: str):
    """Emitter of `fn(x, name=value, ...)` naming only the attributes that differ from their
    defaults, as a person writes `F.softplus(x)` rather than every keyword."""

    def emit(a, x: str) -> str:
        fields = type(a).model_fields
        kws = [f", {n}={py_number(getattr(a, n))}" for n in names
               if getattr(a, n) != fields[n].default]
        return f"{fn}({x}{''.join(kws)})"

    return emit


def _act(name, doc, fn, torch_fmt, attrs=NoAttrs, shape=_same, positional=(), label=None,
         examples=None, upcast=True, quiet=False, in_place=None, inplace=None,
         identity_when=None):
    """`in_place`: the NumPy function writing into x (the fused epilogue after a conv);
    `inplace`: the format of the PyTorch form that overwrites x (see Op.torch_inplace)."""
    return Op(
        name=name,
        family="act",
        doc=doc,
        attrs=attrs,
        positional=positional,
        shape=shape,
        numpy=_pointwise(fn, upcast, quiet),
        torch_call=(lambda a, args, ctx, ins: torch_fmt(a, args[0])) if callable(torch_fmt)
        else (lambda a, args, ctx, ins: torch_fmt.format(x=args[0], a=a)),
        label=label or (lambda a: ""),
        examples=examples or (Example({}, (tensor("f32", 2, 3, 4),)),),
        vjp=_pointwise_vjp(name),
        # in_place(attrs, x, out=x): the row's function writing into x (fused after a conv)
        epilogue=None if in_place is None else _in_place(in_place),
        torch_inplace=None if inplace is None
        else (lambda a, args, ctx, ins: inplace.format(x=args[0], a=a)),
        identity_when=identity_when,
    )


# ---- vector-Jacobian products: (attrs, x, y, g) -> dL/dx, torch's derivative at every bend --


def _softmax_grad(y, g, axis):
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


def _gelu_grad(a, x, y, g):
    if a.approximate == "tanh":
        k, c = 0.7978845608028654, 0.044715
        t = np.tanh(k * (x + c * x * x * x))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x))
    cdf = 0.5 * (1 + erf(x * 0.7071067811865476))
    pdf = np.exp(-0.5 * x * x) * 0.3989422804014327  # 1 / sqrt(2 pi)
    return g * (cdf + x * pdf)


def _glu_grad(a, x, y, g):
    first, second = np.split(x, 2, axis=a.dim)
    s = _sigmoid(second)
    return np.concatenate([g * s, g * first * s * (1 - s)], axis=a.dim)


def _inside(x, lo, hi):
    # hardtanh_backward: no gradient at or beyond either bound.
    return (x > lo) & (x < hi)


GRADS = {
    "identity": lambda a, x, y, g: g,
    "relu": lambda a, x, y, g: g * (x > 0),
    "leaky_relu": lambda a, x, y, g: np.where(x > 0, g, g * a.negative_slope),
    "sigmoid": lambda a, x, y, g: g * y * (1 - y),
    "hard_sigmoid": lambda a, x, y, g: g * _inside(x, -3, 3) / 6,
    "hardsigmoid": lambda a, x, y, g: g * _inside(x, -3, 3) / 6,
    "tanh": lambda a, x, y, g: g * (1 - y * y),
    "softmax": lambda a, x, y, g: _softmax_grad(y, g, a.dim),
    "log_softmax": lambda a, x, y, g: g - np.exp(y) * g.sum(axis=a.dim, keepdims=True),
    "softmin": lambda a, x, y, g: -_softmax_grad(y, g, a.dim),
    "gelu": _gelu_grad,
    "elu": lambda a, x, y, g: np.where(x > 0, g, g * a.alpha * np.exp(np.minimum(x, 0))),
    "relu6": lambda a, x, y, g: g * _inside(x, 0, 6),
    "hardtanh": lambda a, x, y, g: g * _inside(x, a.min_val, a.max_val),
    "hardswish": lambda a, x, y, g: np.where(x < -3, 0.0, np.where(x <= 3, g * (x / 3 + 0.5),
                                                                      g)),
    "silu": lambda a, x, y, g: g * _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    "mish": lambda a, x, y, g: g * (np.tanh(_softplus(x, 1.0, 20.0))
                                    + x * _sigmoid(x) * (1 - np.tanh(_softplus(x, 1.0, 20.0))
                                                         ** 2)),
    "selu": lambda a, x, y, g: np.where(x > 0, g * SELU_SCALE,
                                        g * SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0))),
    "celu": lambda a, x, y, g: np.where(x > 0, g, g * np.exp(np.minimum(x, 0) / a.alpha)),
    "softplus": lambda a, x, y, g: np.where(x * a.beta > a.threshold, g,
                                            g * _sigmoid(x * a.beta)),
    "softsign": lambda a, x, y, g: g / (1 + np.abs(x)) ** 2,
    "logsigmoid": lambda a, x, y, g: g * _sigmoid(-x),
    "glu": _glu_grad,
}


def _pointwise_vjp(name):
    fn = GRADS[name]

    def vjp(a, xs, ys, gs, ctx):
        x = xs[0]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [np.asarray(fn(a, x, ys[0], gs[0]), dtype=x.dtype)], {}

    return vjp


def _prelu_vjp(a, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    w = ctx.params["weight"]
    wb = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if w.size > 1 else w
    gx = np.where(x > 0, g, wb * g)
    gw = np.where(x > 0, 0, g * x)
    if w.size > 1:
        gw = gw.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
    else:
        gw = gw.sum().reshape(w.shape)
    return [gx.astype(x.dtype)], {"weight": gw.astype(w.dtype)}


def _clamp_vjp(a: ClampAttrs, xs, ys, gs, ctx):
    x, g = xs[0], gs[0]
    if not np.issubdtype(x.dtype, np.floating):
        return [None], {}
    keep = np.ones(x.shape, bool)
    if a.min is not None:
        keep &= x >= a.min
    if a.max is not None:
        keep &= x <= a.max
    return [(g * keep).astype(x.dtype)], {}


X24 = (tensor("f32", 4, 6),)
# Inputs that reach both bends of relu6 / hardswish / hardsigmoid (at -3, 0, 3 and 6).
X6 = Example({}, X24, float_range=(-8.0, 8.0))
X3 = Example({}, X24, float_range=(-5.0, 5.0))

ACTIVATIONS = (
    _act("identity", "Returns its input unchanged.", lambda a, x: x, "{x}",
         identity_when=lambda a, ins, outs: "removed identity"),
    _act("relu", "max(0, x).", lambda a, x: np.maximum(x, 0), "torch.relu({x})",
         in_place=lambda a, x, out: np.maximum(x, 0, out=out),
         inplace="F.relu({x}, inplace=True)"),
    _act("leaky_relu", "x if x > 0 else negative_slope·x.",
         lambda a, x: np.where(x >= 0, x, x * a.negative_slope),
         "F.leaky_relu({x}, {a.negative_slope!r})", attrs=LeakyAttrs,
         positional=("negative_slope",), label=lambda a: f"slope {a.negative_slope:g}",
         examples=(Example({"negative_slope": 0.2}, X24),)),
    _act("sigmoid", "1 / (1 + e^-x).", lambda a, x: _sigmoid(x), "torch.sigmoid({x})"),
    _act("hard_sigmoid", "The notes' name of `hardsigmoid`: relu6(x + 3) / 6.",
         lambda a, x: _hard(x + 3, 0, 6) / 6, "F.hardsigmoid({x})"),
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
         examples=(Example({}, X24), Example({"approximate": "tanh"}, X24)), quiet=True),
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
        vjp=_prelu_vjp,
        torch_module=lambda a, ins: (f"nn.PReLU({a.num_parameters}"
                                     + ("" if a.init == 0.25 else f", init={a.init!r}") + ")"),
        torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]})",
        module_prefix="prelu",
        label=lambda a: f"{a.num_parameters} slope" + ("s" if a.num_parameters > 1 else ""),
        examples=(Example({}, X24), Example({"num_parameters": 3}, (tensor("f32", 2, 3, 4),))),
    ),

    # torch.nn.functional's other activations.
    _act("hardsigmoid", "Piecewise-linear sigmoid as torch defines it: relu6(x + 3) / 6.",
         lambda a, x: _hard(x + 3, 0, 6) / 6, "F.hardsigmoid({x})", examples=(X3,)),
    _act("relu6", "min(max(0, x), 6) (MobileNet's activation).", lambda a, x: _hard(x, 0, 6),
         "F.relu6({x})", examples=(X6,), in_place=lambda a, x, out: _hard(x, 0, 6, out),
         inplace="F.relu6({x}, inplace=True)"),
    _act("hardtanh", "x clipped to [min_val, max_val] (default [-1, 1]).",
         lambda a, x: _hard(x, a.min_val, a.max_val),
         _call("F.hardtanh", "min_val", "max_val"), attrs=HardtanhAttrs,
         shape=_hardtanh_shape, positional=("min_val", "max_val"),
         label=lambda a: f"[{a.min_val:g}, {a.max_val:g}]",
         examples=(Example({}, X24), Example({"min_val": -0.5, "max_val": 2.0}, X24)),
         in_place=lambda a, x, out: _hard(x, a.min_val, a.max_val, out)),
    _act("hardswish", "x · relu6(x + 3) / 6 (MobileNetV3's activation).",
         lambda a, x: x * _hard(x + 3, 0, 6) / 6, "F.hardswish({x})", examples=(X3,), quiet=True),
    _act("silu", "x · sigmoid(x) (swish).", lambda a, x: x / (1 + np.exp(-x)), "F.silu({x})",
         quiet=True),
    _act("mish", "x · tanh(softplus(x)).", lambda a, x: x * np.tanh(np.log1p(np.exp(x))),
         "F.mish({x})", quiet=True),
    _act("selu", "scale · elu(x, alpha) with torch's fixed alpha and scale (self-normalising).",
         lambda a, x: _scaled_elu(x, SELU_ALPHA, SELU_SCALE, 1.0), "F.selu({x})",
         quiet=True),
    _act("celu", "max(0, x) + min(0, alpha · (e^(x/alpha) − 1)).",
         lambda a, x: _scaled_elu(x, a.alpha, 1.0, 1.0 / a.alpha), _call("F.celu", "alpha"),
         attrs=CeluAttrs, shape=_celu_shape, positional=("alpha",),
         label=lambda a: f"α {a.alpha:g}",
         examples=(Example({}, X24), Example({"alpha": 0.5}, X24)), quiet=True),
    _act("softplus", "log(1 + e^(beta·x)) / beta; x itself where beta·x > threshold.",
         lambda a, x: _softplus(x, a.beta, a.threshold),
         _call("F.softplus", "beta", "threshold"), attrs=SoftplusAttrs,
         positional=("beta", "threshold"), label=lambda a: f"β {a.beta:g}",
         examples=(Example({}, X24), Example({"beta": 2.0, "threshold": 1.0}, X24)),
         quiet=True),
    _act("softsign", "x / (1 + |x|).", lambda a, x: x / (np.abs(x) + 1), "F.softsign({x})",
         upcast=False, quiet=True),
    _act("logsigmoid", "log(sigmoid(x)), computed stably.", lambda a, x: _logsigmoid(x),
         "F.logsigmoid({x})"),
    _act("softmin", "softmax(-x) along `dim`.", lambda a, x: _softmax(-x, a.dim),
         "F.softmin({x}, dim={a.dim})", attrs=DimAttrs, shape=_same_dim, positional=("dim",),
         label=lambda a: f"dim {a.dim}",
         examples=(Example({"dim": -1}, X24), Example({"dim": 1}, (tensor("f32", 2, 3, 4),)))),
    _act("glu", "Gated linear unit: the first half of `dim` times sigmoid of the second half.",
         lambda a, x: _glu(x, a.dim), "F.glu({x}, dim={a.dim})", attrs=DimAttrs,
         shape=_glu_shape, positional=("dim",), label=lambda a: f"dim {a.dim}",
         examples=(Example({}, X24), Example({"dim": 1}, (tensor("f32", 2, 4, 3),))),
         quiet=True),
    Op(
        name="clamp",
        family="act",
        doc="x limited to [min, max]; either bound may be left out (torch.clamp). Integer "
            "tensors stay integer unless a bound is a float.",
        attrs=ClampAttrs,
        positional=("min", "max"),
        shape=_clamp_shape,
        numpy=_clamp_kernel,
        vjp=_clamp_vjp,
        torch_call=_clamp_call,
        label=_clamp_label,
        examples=(Example({"min": 0.0}, X24), Example({"max": 0.5}, X24),
                  Example({"min": -0.5, "max": 0.25}, X24),
                  Example({"min": 2, "max": 7}, (tensor("i64", 3, 4),)),
                  Example({"min": 2.5}, (tensor("i32", 3, 4),))),
    ),
)
