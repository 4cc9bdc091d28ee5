"""Element-wise math ops (abs, exp, log, sqrt, pow, minimum, where, comparisons, ...): shape
rules with torch's dtype promotion, NumPy kernels matching torch's edge cases, emitters."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dslc.ops.arith import (
    broadcast,
    need_fits,
    need_numeric,
    promote_types,
    py_number,
    scalar_array,
    scalar_result_dtype,
)
from dslc.ops.base import Attrs, Example, NoAttrs, Op, ShapeError, need_float
from dslc.ops.grad import is_float, unbroadcast
from dslc.types import INT_DTYPES, TensorType, dtype_of_array, numpy_dtype, tensor

# ---- unary -------------------------------------------------------------------------------


def _opmath(x: np.ndarray) -> np.ndarray:
    # torch's CPU kernels compute float16 in float32 and round once; so do these.
    return x.astype(np.float32) if x.dtype == np.float16 else x


# d/dx of each unary op as (x, y = op(x), g) -> g · op'(x): torch's derivatives.
UNARY_GRADS: dict[str, Callable[..., np.ndarray]] = {
    "abs": lambda x, y, g: g * np.sign(x),
    "square": lambda x, y, g: g * 2 * x,
    "exp": lambda x, y, g: g * y,
    "log": lambda x, y, g: g / x,
    "log1p": lambda x, y, g: g / (1 + x),
    "sqrt": lambda x, y, g: g / (2 * y),
    "rsqrt": lambda x, y, g: -0.5 * g * y * y * y,
    "reciprocal": lambda x, y, g: -g * y * y,
}


def _unary_vjp(name: str):
    fn = UNARY_GRADS[name]

    def vjp(a, xs, ys, gs, ctx):
        x = xs[0]
        if not is_float(x):
            return [None], {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [np.asarray(fn(x, ys[0], gs[0]), dtype=x.dtype)], {}

    return vjp


def _unary(name: str, doc: str, fn: Callable[[np.ndarray], np.ndarray], floats_only: bool,
           examples: tuple[Example, ...]) -> Op:
    def shape(a, ins):
        if floats_only:
            need_float(ins[0])
        else:
            need_numeric(ins[0])
        return [ins[0]]

    def kernel(a, xs, ctx):
        x = xs[0]
        # log(0) = -inf, sqrt(-1) = NaN, 1/0 = inf, exp(1000) = inf: torch's answers, so
        # NumPy's warnings about them are noise.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [np.asarray(fn(_opmath(x)), dtype=x.dtype)]

    return Op(
        name=name,
        family="arith",
        doc=doc,
        attrs=NoAttrs,
        shape=shape,
        numpy=kernel,
        torch_call=lambda a, args, ctx, ins: f"torch.{name}({args[0]})",
        examples=examples,
        vjp=_unary_vjp(name) if name in UNARY_GRADS else None,
        no_grad="" if name in UNARY_GRADS else
        "piecewise constant: its derivative is zero wherever it exists",
    )


def _sign(x: np.ndarray) -> np.ndarray:
    # torch's (0 < x) - (x < 0): NaN and -0.0 give 0 (np.sign gives NaN and -0.0).
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


X = (tensor("f32", 2, 3, 4),)
POSITIVE = (0.05, 4.0)  # log, sqrt and rsqrt of N(0, 1) draws would be NaN half the time
INTS = (tensor("i64", 3, 5),)
ANY = (Example({}, X), Example({}, INTS), Example({}, (tensor("i32", 4),)))

UNARY_OPS = (
    _unary("abs", "|x|; integer tensors stay integer.", np.abs, False, ANY),
    _unary("sign", "-1, 0 or 1 by the sign of x (0 for NaN, as torch).", _sign, False, ANY),
    _unary("square", "x · x; integer tensors stay integer.", np.square, False, ANY),
    _unary("exp", "e^x.", np.exp, True, (Example({}, X),)),
    _unary("log", "Natural logarithm (log 0 = -inf, NaN below 0).", np.log, True,
           (Example({}, X, float_range=POSITIVE),)),
    _unary("log1p", "log(1 + x), accurate near 0.", np.log1p, True,
           (Example({}, X, float_range=(-0.9, 3.0)),)),
    _unary("sqrt", "Square root (NaN below 0).", np.sqrt, True,
           (Example({}, X, float_range=POSITIVE),)),
    _unary("rsqrt", "1 / sqrt(x).", lambda x: 1 / np.sqrt(x), True,
           (Example({}, X, float_range=POSITIVE),)),
    _unary("reciprocal", "1 / x.", lambda x: 1 / x, True,
           (Example({}, X, float_range=POSITIVE), Example({}, X, float_range=(-4.0, -0.05)))),
)

# ---- binary: minimum, maximum, pow ---------------------------------------------------------


def _promoted_pair(ins: list[TensorType]) -> tuple[str, tuple]:
    x, y = ins
    return promote_types(x.dtype, y.dtype), broadcast(x.shape, y.shape)


def _as(x: np.ndarray, dtype: str) -> np.ndarray:
    # An integer beyond float16's range becomes inf, as torch converts it.
    with np.errstate(over="ignore"):
        return x.astype(numpy_dtype(dtype), copy=False)


def _dtype(x: np.ndarray) -> str:
    return dtype_of_array(x) or "f32"  # bf16 values are float32 arrays


def _extremum(name: str, fn) -> Op:
    def shape(a, ins):
        for i, t in enumerate(ins):
            need_numeric(t, i)
        dtype, out = _promoted_pair(ins)
        return [TensorType(dtype, out)]

    def kernel(a, xs, ctx):
        dtype = promote_types(_dtype(xs[0]), _dtype(xs[1]))
        return [fn(_as(xs[0], dtype), _as(xs[1], dtype))]  # NaN wins, as in torch

    def vjp(a, xs, ys, gs, ctx):
        x, y, g = xs[0], xs[1], gs[0]
        # torch splits the gradient evenly where the two are equal.
        wins = (x < y) if name == "minimum" else (x > y)
        tie = x == y
        gx = np.where(tie, g / 2, np.where(wins, g, 0))
        gy = np.where(tie, g / 2, np.where(wins, 0, g))
        return [unbroadcast(gx, x), unbroadcast(gy, y)], {}

    which = "smaller" if name == "minimum" else "larger"
    return Op(
        name=name,
        family="arith",
        doc=f"The {which} of two tensors, element by element, with broadcasting (NaN if "
            "either is NaN); dtypes promote as in torch.",
        attrs=NoAttrs,
        min_inputs=2,
        max_inputs=2,
        shape=shape,
        numpy=kernel,
        torch_call=lambda a, args, ctx, ins: f"torch.{name}({args[0]}, {args[1]})",
        vjp=vjp,
        examples=(
            Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 3, 1))),
            Example({}, (tensor("i64", 3, 4), tensor("i32", 4))),
            Example({}, (tensor("f32", 3, 4), tensor("i64", 3, 4))),
        ),
    )


class PowAttrs(Attrs):
    # With one tensor input the exponent is this number; with two, the second tensor.
    exponent: float | int | None = None


def _pow_shape(a: PowAttrs, ins):
    for i, t in enumerate(ins):
        need_numeric(t, i)
    if len(ins) == 2:
        if a.exponent is not None:
            raise ShapeError("takes a tensor exponent or a number, not both",
                             expected="pow(x, y) or pow(x, 2.0)", found="both", attr="exponent")
        dtype, out = _promoted_pair(ins)
        if dtype in INT_DTYPES:
            # torch raises at run time on a negative integer exponent; a compiled model
            # cannot know its values, so the spec must say which side is float.
            raise ShapeError("two integer tensors: a negative exponent would fail at run "
                             "time", expected="a float base or exponent",
                             found=f"{ins[0]} ** {ins[1]}", arg=1, code="E0342")
        return [TensorType(dtype, out)]
    x = ins[0]
    if a.exponent is None:
        raise ShapeError("needs an exponent", expected="pow(x, 2.0) or pow(x, y)",
                         found="no exponent", attr="exponent")
    if x.dtype in INT_DTYPES and isinstance(a.exponent, int) and a.exponent < 0:
        raise ShapeError("integers to negative integer powers are not allowed (torch)",
                         expected="an exponent >= 0, or a float exponent",
                         found=f"{x} ** {a.exponent}", attr="exponent", code="E0342")
    need_fits(x, a.exponent, "exponent")
    return [TensorType(scalar_result_dtype(x.dtype, a.exponent), x.shape)]


def _pow_scalar(x: np.ndarray, e: float | int, half: bool) -> np.ndarray:
    """x ** e as ATen's pow_tensor_scalar_kernel computes it. For float32/float64 it takes
    shortcuts that differ from pow() at the edges (sqrt(-inf) is NaN where pow(-inf, 0.5) is
    inf; sqrt(-0.0) is -0.0); for float16 (`half`, x already widened to float32) it calls pow()
    for every exponent."""
    if x.dtype.kind != "f":
        return np.power(x, e)  # integers: exact, wrapping like torch's
    if half:
        if e == 0.5:
            # NumPy's power takes its own sqrt shortcut for 0.5; C's pow gives +0.0 at -0.0
            # (-0.0 + 0.0 is +0.0) and inf at -inf.
            return np.where(np.isneginf(x), np.inf, np.sqrt(x) + 0.0)
        return np.power(x, np.asarray(e, x.dtype))
    if e == 0.5:
        return np.sqrt(x)
    if e == -0.5:
        return 1 / np.sqrt(x)
    if e == -1:
        return 1 / x
    if e == 2:
        return x * x
    if e == 3:
        return x * x * x
    if e == -2:
        return 1 / (x * x)
    return np.power(x, np.asarray(e, x.dtype))


def _pow_kernel(a: PowAttrs, xs, ctx):
    if len(xs) == 2:
        dtype = promote_types(_dtype(xs[0]), _dtype(xs[1]))
        base, exp = _as(xs[0], dtype), _as(xs[1], dtype)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [_as(np.power(_opmath(base), _opmath(exp)), dtype)]
    dtype = scalar_result_dtype(_dtype(xs[0]), a.exponent)
    x = _as(xs[0], dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return [_as(_pow_scalar(_opmath(x), a.exponent, x.dtype == np.float16), dtype)]


def _pow_vjp(a: PowAttrs, xs, ys, gs, ctx):
    g, y = gs[0], ys[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if len(xs) == 1:
            x = xs[0]
            if not is_float(x):
                return [None], {}
            e = a.exponent
            gx = np.zeros_like(x) if e == 0 else g * e * np.power(x, np.asarray(e - 1,
                                                                                 x.dtype))
            return [np.asarray(gx, x.dtype)], {}
        x, p = xs
        xw, pw = x.astype(y.dtype), p.astype(y.dtype)
        gx = np.where(pw == 0, 0.0, g * pw * np.power(xw, pw - 1))
        # torch: no gradient to the exponent where the base is 0 and the exponent >= 0.
        gp = np.where((xw == 0) & (pw >= 0), 0.0, g * y * np.log(xw))
        return [unbroadcast(gx, x), unbroadcast(gp, p)], {}


def _pow_call(a: PowAttrs, args, ctx, ins) -> str:
    other = args[1] if len(args) == 2 else py_number(a.exponent)
    return f"{args[0]} ** {other}"


POW = Op(
    name="pow",
    family="arith",
    doc="x ** exponent (a number), or x ** y (a tensor, broadcasting). An integer tensor to "
        "an integer power stays integer; a float exponent makes it f32, as in torch.",
    attrs=PowAttrs,
    positional=("exponent",),
    min_inputs=1,
    max_inputs=2,
    shape=_pow_shape,
    numpy=_pow_kernel,
    vjp=_pow_vjp,
    torch_call=_pow_call,
    label=lambda a: "" if a.exponent is None else f"** {a.exponent!r}",
    examples=(
        Example({"exponent": 2}, X),
        Example({"exponent": 3.0}, X),
        Example({"exponent": 1.5}, X, float_range=(0.0, 3.0)),
        Example({"exponent": -0.5}, X, float_range=POSITIVE),
        Example({"exponent": -1}, X, float_range=POSITIVE),
        Example({"exponent": 3}, INTS),
        Example({"exponent": 0.5}, INTS),
        Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 4)), float_range=(0.1, 2.0)),
        Example({}, (tensor("f32", 3, 4), tensor("i64", 3, 1)), float_range=(0.1, 2.0),
                int_high=4),
    ),
)

# ---- comparisons ---------------------------------------------------------------------------


class CompareAttrs(Attrs):
    # With one tensor input, the right-hand side is this number.
    other: float | int | None = None


SYMBOL = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}


def _compare_shape(a: CompareAttrs, ins):
    if len(ins) == 2:
        if a.other is not None:
            raise ShapeError("compares with a tensor or a number, not both",
                             expected="one right-hand side", found="both", attr="other")
        return [TensorType("bool", _promoted_pair(ins)[1])]
    if a.other is None:
        raise ShapeError("needs two tensors, or a tensor and a number",
                         expected="2 operands", found="1 tensor")
    need_fits(ins[0], a.other, "other")
    return [TensorType("bool", ins[0].shape)]


def _compare(name: str) -> Op:
    fn = COMPARE[name]
    sym = SYMBOL[name]

    def kernel(a: CompareAttrs, xs, ctx):
        # Both sides are compared in torch's promoted dtype: an i64 tensor against a float is
        # compared in f32, where 16777217 equals 16777216.
        if len(xs) == 2:
            dtype = promote_types(_dtype(xs[0]), _dtype(xs[1]))
            return [fn(_as(xs[0], dtype), _as(xs[1], dtype))]
        dtype = scalar_result_dtype(_dtype(xs[0]), a.other)
        return [fn(_as(xs[0], dtype), scalar_array(a.other, numpy_dtype(dtype)))]

    def emit(a: CompareAttrs, args, ctx, ins) -> str:
        other = args[1] if len(args) == 2 else py_number(a.other)
        return f"{args[0]} {sym} {other}"

    return Op(
        name=name,
        family="arith",
        doc=f"x {sym} y as a bool tensor: y a tensor (broadcasting, dtypes promote as in torch) "
            f"or a number (`x -> {name}(0.5)`).",
        attrs=CompareAttrs,
        positional=("other",),
        min_inputs=1,
        max_inputs=2,
        shape=_compare_shape,
        numpy=kernel,
        torch_call=emit,
        no_grad="a comparison's bool result has no derivative",
        label=lambda a: "" if a.other is None else f"{sym} {a.other!r}",
        examples=(
            Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 3, 1))),
            Example({"other": 0.25}, X),
            Example({}, (tensor("i64", 3, 4), tensor("i64", 4)), int_high=3),
            Example({"other": 2}, INTS, int_high=4),
            Example({}, (tensor("i32", 3, 4), tensor("f32", 3, 4))),
        ),
    )


# ---- where ---------------------------------------------------------------------------------


class WhereAttrs(Attrs):
    # With two tensor inputs (cond, x), the value where cond is false is this number.
    other: float | int | None = None


def _where_shape(a: WhereAttrs, ins):
    cond = ins[0]
    if cond.dtype != "bool":
        raise ShapeError("the condition must be a bool tensor", expected="bool[...]",
                         found=str(cond), arg=0, code="E0302")
    if len(ins) == 3:
        if a.other is not None:
            raise ShapeError("takes a tensor or a number for its third operand, not both",
                             expected="one value where cond is false", found="both",
                             attr="other")
        x, y = ins[1], ins[2]
        dtype = promote_types(x.dtype, y.dtype)
        shape = broadcast(cond.shape, x.shape)
        try:
            shape = broadcast(shape, y.shape)
        except ShapeError as exc:
            exc.arg = 2
            raise
        return [TensorType(dtype, shape)]
    if a.other is None:
        raise ShapeError("needs a value for where the condition is false",
                         expected="where(cond, x, y) or where(cond, x, 0.0)",
                         found="where(cond, x)", attr="other")
    x = ins[1]
    need_fits(x, a.other, "other")
    return [TensorType(scalar_result_dtype(x.dtype, a.other), broadcast(cond.shape, x.shape))]


def _where_kernel(a: WhereAttrs, xs, ctx):
    cond, x = xs[0], xs[1]
    if len(xs) == 3:
        dtype = promote_types(_dtype(x), _dtype(xs[2]))
        return [np.where(cond, _as(x, dtype), _as(xs[2], dtype))]
    dtype = scalar_result_dtype(_dtype(x), a.other)
    return [np.where(cond, _as(x, dtype), scalar_array(a.other, numpy_dtype(dtype)))]


def _where_vjp(a: WhereAttrs, xs, ys, gs, ctx):
    cond, g = xs[0], gs[0]
    gx = unbroadcast(np.where(cond, g, 0), xs[1])
    gy = unbroadcast(np.where(cond, 0, g), xs[2]) if len(xs) == 3 else None
    return [None, gx] + ([gy] if len(xs) == 3 else []), {}


WHERE = Op(
    name="where",
    family="arith",
    doc="x where cond else y (torch.where): cond a bool tensor, y a tensor or a number; all "
        "three broadcast, and x and y promote to a common dtype as in torch.",
    attrs=WhereAttrs,
    positional=("other",),
    min_inputs=2,
    max_inputs=3,
    shape=_where_shape,
    numpy=_where_kernel,
    vjp=_where_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"torch.where({', '.join(args)})" if len(args) == 3
        else f"torch.where({args[0]}, {args[1]}, {py_number(a.other)})"),
    examples=(
        Example({}, (tensor("bool", 2, 3, 4), tensor("f32", 2, 3, 4), tensor("f32", 2, 3, 4))),
        Example({}, (tensor("bool", 3, 1), tensor("f32", 2, 3, 4), tensor("f32", 4))),
        Example({"other": 0.0}, (tensor("bool", 2, 3, 4), tensor("f32", 2, 3, 4))),
        Example({"other": -1}, (tensor("bool", 3, 4), tensor("i64", 3, 4))),
        Example({"other": 0.5}, (tensor("bool", 3, 4), tensor("i32", 3, 4))),
        Example({}, (tensor("bool", 3, 4), tensor("f64", 3, 4), tensor("f32", 3, 4))),
    ),
)


MATH_OPS = (
    *UNARY_OPS,
    _extremum("minimum", np.minimum),
    _extremum("maximum", np.maximum),
    POW,
    *(_compare(name) for name in SYMBOL),
    WHERE,
)
