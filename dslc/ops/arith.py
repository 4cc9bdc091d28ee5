"""Elementwise arithmetic with broadcasting (add, sub, mul, div) and matmul."""

from __future__ import annotations

import math

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError
from dslc.ops.grad import unbroadcast
from dslc.types import FLOAT_DTYPES, INT_DTYPES, TensorType, numpy_dtype, tensor


class BinaryAttrs(Attrs):
    # With one tensor input, the other operand is this scalar; `reverse` puts it on the left.
    scalar: float | int | None = None
    reverse: bool = False


def broadcast(a: tuple, b: tuple, what: str = "broadcast") -> tuple:
    out = []
    n = max(len(a), len(b))
    pa = (D.const(1),) * (n - len(a)) + tuple(a)
    pb = (D.const(1),) * (n - len(b)) + tuple(b)
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        else:
            eq = D.equal(x, y)
            if eq is not True:
                why = "differ" if eq is False else "cannot be shown equal"
                raise ShapeError(
                    f"shapes do not {what}: axis {i - n} sizes {D.fmt(x)} and {D.fmt(y)} {why}",
                    expected=f"{D.fmt_shape(a)} to match {D.fmt_shape(b)} (equal sizes or 1)",
                    found=f"{D.fmt_shape(a)} and {D.fmt_shape(b)}", arg=1, code="E0303")
            out.append(x)
    return tuple(out)


# torch's type promotion, for the ops that follow it (comparisons, where, minimum, pow, clamp):
# bool < integers < floats; within a kind the wider wins; f16 with bf16 meet at f32.
_RANK = {"bool": 0, "i32": 1, "i64": 2, "f16": 3, "bf16": 3, "f32": 4, "f64": 5}


def py_number(v: float | int) -> str:
    """A number as Python source: repr, except the non-finite floats, which have no literal
    (`1e999` in a spec is inf; `x + inf` would be a NameError in the generated code)."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"float('{v!r}')"
    return repr(v)


def promote_types(a: str, b: str) -> str:
    """The dtype torch computes `a op b` in, for two tensors of dtypes `a` and `b`."""
    if a == b:
        return a
    if {a, b} == {"f16", "bf16"}:
        return "f32"
    return a if _RANK[a] > _RANK[b] else b


def scalar_result_dtype(dtype: str, scalar: float | int | bool) -> str:
    """The dtype of `tensor op scalar` in torch: a number never widens a tensor of its own kind,
    but a float number makes an integer or bool tensor f32 (the default float), and an int
    number makes a bool tensor i64."""
    if isinstance(scalar, float) and dtype not in FLOAT_DTYPES:
        return "f32"
    if isinstance(scalar, int) and not isinstance(scalar, bool) and dtype == "bool":
        return "i64"
    return dtype


def need_fits(t: TensorType, scalar: float | int | None, attr: str) -> None:
    """An integer number used with an integer tensor must fit its dtype: torch refuses one that
    does not at run time (clamp, where) or wraps it (comparisons), so it is an error here."""
    if t.dtype not in INT_DTYPES or isinstance(scalar, bool) or not isinstance(scalar, int):
        return
    info = np.iinfo(numpy_dtype(t.dtype))
    if not info.min <= scalar <= info.max:
        raise ShapeError(f"{scalar} does not fit the tensor's dtype {t.dtype}",
                         expected=f"{info.min} <= {attr} <= {info.max}", found=str(scalar),
                         attr=attr, code="E0345")


def scalar_array(v: float | int, dtype: np.dtype) -> np.ndarray:
    """A number in the dtype a kernel computes in; a float too large for float16 becomes inf,
    as torch rounds it (integers were checked by need_fits)."""
    with np.errstate(over="ignore"):
        return np.asarray(v, dtype)


def need_numeric(t: TensorType, arg: int = 0) -> None:
    """Integers or floats, not bool (torch's abs, sign, topk refuse bool tensors)."""
    if t.dtype not in FLOAT_DTYPES + INT_DTYPES:
        raise ShapeError("expects a numeric tensor", expected="a float or integer dtype",
                         found=str(t), arg=arg, code="E0302")


def _binary_shape(a: BinaryAttrs, ins):
    if len(ins) == 1:
        if a.scalar is None:
            raise ShapeError("needs two tensors, or a tensor and a number",
                             expected="2 operands", found="1 tensor")
        return [ins[0]]
    x, y = ins
    if x.dtype != y.dtype:
        raise ShapeError("operands have different dtypes", expected=x.dtype, found=y.dtype,
                         arg=1, code="E0302")
    return [TensorType(x.dtype, broadcast(x.shape, y.shape))]


SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
NUMPY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _binary_kernel(name):
    fn = NUMPY[name]

    def kernel(a: BinaryAttrs, xs, ctx):
        x = xs[0]
        if len(xs) == 2:
            return [fn(x, xs[1])]
        s = np.asarray(a.scalar, dtype=x.dtype)
        return [fn(s, x) if a.reverse else fn(x, s)]

    return kernel


def _binary_vjp(name):
    def vjp(a: BinaryAttrs, xs, ys, gs, ctx):
        g = gs[0]
        if len(xs) == 1:
            x = xs[0]
            s = np.asarray(a.scalar, dtype=x.dtype)
            if name in ("add", "sub"):
                gx = -g if (name == "sub" and a.reverse) else g
            elif name == "mul":
                gx = g * s
            else:  # div: x / s, or s / x reversed
                gx = -g * ys[0] / x if a.reverse else g / s
            return [unbroadcast(gx, x)], {}
        x, y = xs
        if name == "add":
            gx, gy = g, g
        elif name == "sub":
            gx, gy = g, -g
        elif name == "mul":
            gx, gy = g * y, g * x
        else:
            gx = g / y
            gy = -gx * x / y
        return [unbroadcast(gx, x), unbroadcast(gy, y)], {}

    return vjp


def _matmul_vjp(a, xs, ys, gs, ctx):
    x, y = xs
    g = gs[0]
    # Make both operands at least 2-d as matmul does, then undo it on the way back.
    x2 = x[None, :] if x.ndim == 1 else x
    y2 = y[:, None] if y.ndim == 1 else y
    g2 = g
    if x.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if y.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    gx = g2 @ np.swapaxes(y2, -1, -2)
    gy = np.swapaxes(x2, -1, -2) @ g2
    gx = unbroadcast(gx, x2) if x.ndim > 1 else unbroadcast(gx, x2).reshape(x.shape)
    gy = unbroadcast(gy, y2) if y.ndim > 1 else unbroadcast(gy, y2).reshape(y.shape)
    return [gx, gy], {}


def _binary_call(name):
    sym = SYMBOL[name]

    def emit(a: BinaryAttrs, args, ctx, ins):
        if len(args) == 2:
            return f"{args[0]} {sym} {args[1]}"
        s = py_number(a.scalar)
        return f"{s} {sym} {args[0]}" if a.reverse else f"{args[0]} {sym} {s}"

    return emit


def _binary(name, doc):
    return Op(
        name=name,
        family="arith",
        doc=doc,
        attrs=BinaryAttrs,
        min_inputs=1,
        max_inputs=2,
        shape=_binary_shape,
        numpy=_binary_kernel(name),
        vjp=_binary_vjp(name),
        torch_call=_binary_call(name),
        # a + b is a new tensor; the gradients of + - * / read the operands, not the result.
        result_overwritable=True,
        # Only + and -: an in-place * or / would make autograd keep a copy of the operand.
        inplace_operator=f"{SYMBOL[name]}=" if name in ("add", "sub") else None,
        label=lambda a: "" if a.scalar is None else (
            f"{a.scalar!r} {SYMBOL[name]} x" if a.reverse else f"x {SYMBOL[name]} {a.scalar!r}"),
        examples=(
            Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 3, 1))),
            Example({}, (tensor("f32", 2, 3), tensor("f32", 2, 3))),
            Example({"scalar": 2.5}, (tensor("f32", 4, 2),)),
            Example({"scalar": 2.0, "reverse": True}, (tensor("f32", 4, 2),)),
        ),
    )


class MatmulAttrs(Attrs):
    pass


def _matmul_shape(a, ins):
    x, y = ins
    if x.dtype != y.dtype:
        raise ShapeError("operands have different dtypes", expected=x.dtype, found=y.dtype,
                         arg=1, code="E0302")
    if x.rank == 0 or y.rank == 0:
        raise ShapeError("matmul needs tensors of rank >= 1", expected="rank >= 1",
                         found=f"{x} @ {y}")
    xs = x.shape if x.rank > 1 else (D.const(1),) + x.shape
    ys = y.shape if y.rank > 1 else y.shape + (D.const(1),)
    k1, k2 = xs[-1], ys[-2]
    if D.equal(k1, k2) is not True:
        raise ShapeError(
            f"matmul inner sizes differ: {D.fmt(k1)} (last axis of the left) vs {D.fmt(k2)} "
            "(second-to-last axis of the right)",
            expected=f"right operand of shape [..., {D.fmt(k1)}, *]",
            found=f"{x} @ {y}", arg=1, code="E0303")
    batch = broadcast(xs[:-2], ys[:-2], "broadcast in matmul's batch axes")
    out = batch + ((xs[-2],) if x.rank > 1 else ()) + ((ys[-1],) if y.rank > 1 else ())
    return [TensorType(x.dtype, out)]


def _matmul_macs(a, ins, outs):
    x = ins[0]
    return D.product(outs[0].shape) * x.shape[-1]


ARITH = (
    _binary("add", "Elementwise sum with broadcasting; `a + b` in the language."),
    _binary("sub", "Elementwise difference with broadcasting; `a - b`."),
    _binary("mul", "Elementwise product with broadcasting; `a * b`."),
    _binary("div", "Elementwise quotient with broadcasting; `a / b`."),
    Op(
        name="matmul",
        family="arith",
        doc="Matrix product with batch broadcasting (torch.matmul); `a @ b`.",
        attrs=MatmulAttrs,
        min_inputs=2,
        max_inputs=2,
        shape=_matmul_shape,
        macs=_matmul_macs,
        numpy=lambda a, xs, ctx: [np.matmul(xs[0], xs[1])],
        vjp=_matmul_vjp,
        torch_call=lambda a, args, ctx, ins: f"{args[0]} @ {args[1]}",
        result_overwritable=True,
        examples=(
            Example({}, (tensor("f32", 2, 3, 4), tensor("f32", 4, 5))),
            Example({}, (tensor("f32", 3, 4), tensor("f32", 4))),
            Example({}, (tensor("f32", 2, 1, 3, 4), tensor("f32", 5, 4, 2))),
        ),
    ),
)

