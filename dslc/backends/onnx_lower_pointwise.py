"""ONNX lowerings of the element-wise ops added with issue 13: activations (relu6, hardtanh,
clamp, selu, celu, softplus, softsign, silu, mish, hardswish, hardsigmoid, logsigmoid, glu,
softmin) and math (abs ... reciprocal, pow, minimum/maximum, comparisons, where, cumsum,
topk), with torch's dtype promotion as Casts."""

from __future__ import annotations

import numpy as np

from dslc.backends.onnx_builder import Lower
from dslc.ops.activation import SELU_ALPHA, SELU_SCALE
from dslc.ops.arith import promote_types, scalar_result_dtype

# ---- helpers -------------------------------------------------------------------------------


def as_dtype(lw: Lower, x: str, have: str, want: str) -> str:
    """x Cast to dslc dtype `want` (x itself when it has it already)."""
    return x if have == want else lw.cast(x, want)


def _unary(op_type: str):
    def lower(lw: Lower, node, ins):
        return [lw.op(op_type, [ins[0]])]
    return lower


def _clip(lw: Lower, x: str, lo, hi) -> str:
    """Clip with its bounds as inputs (opset 11+), constants of x's dtype."""
    dt = lw.out_types[0].dtype
    return lw.op("Clip", [x, lw.scalar(lo, dt), lw.scalar(hi, dt)])


# ---- activations ---------------------------------------------------------------------------


def _relu6(lw: Lower, node, ins):
    return [_clip(lw, ins[0], 0.0, 6.0)]


def _hardtanh(lw: Lower, node, ins):
    return [_clip(lw, ins[0], lw.attrs.min_val, lw.attrs.max_val)]


def _clamp(lw: Lower, node, ins):
    """max(x, min) then min(·, max), in the result dtype (an integer tensor with a float
    bound is compared in f32, as torch): min > max gives max everywhere, as torch."""
    a = lw.attrs
    dt = lw.out_types[0].dtype
    y = as_dtype(lw, ins[0], lw.in_types[0].dtype, dt)
    if a.min is not None:
        y = lw.op("Max", [y, lw.scalar(a.min, dt)])
    if a.max is not None:
        y = lw.op("Min", [y, lw.scalar(a.max, dt)])
    return [y]


def _selu(lw: Lower, node, ins):
    return [lw.op("Selu", [ins[0]], alpha=SELU_ALPHA, gamma=SELU_SCALE)]


def _celu(lw: Lower, node, ins):
    """Celu (float32 only in ONNX); other precisions alpha · Elu(x / alpha), the same
    function."""
    alpha = lw.attrs.alpha
    if lw.in_types[0].dtype == "f32":
        return [lw.op("Celu", [ins[0]], alpha=alpha)]
    scaled = lw.op("Div", [ins[0], lw.fscalar(alpha)])
    return [lw.op("Mul", [lw.op("Elu", [scaled], alpha=1.0), lw.fscalar(alpha)])]


def _softplus(lw: Lower, node, ins):
    """torch's softplus: x where beta·x > threshold, else Softplus(beta·x) / beta."""
    a = lw.attrs
    x = ins[0]
    bx = x if a.beta == 1.0 else lw.op("Mul", [x, lw.fscalar(a.beta)])
    soft = lw.op("Softplus", [bx])
    if a.beta != 1.0:
        soft = lw.op("Div", [soft, lw.fscalar(a.beta)])
    return [lw.op("Where", [lw.op("Greater", [bx, lw.fscalar(a.threshold)]), x, soft])]


def _silu(lw: Lower, node, ins):
    return [lw.op("Mul", [ins[0], lw.op("Sigmoid", [ins[0]])])]


def _mish(lw: Lower, node, ins):
    """Mish from opset 18; before, x · Tanh(Softplus(x))."""
    if lw.opset >= 18:
        return [lw.op("Mish", [ins[0]])]
    return [lw.op("Mul", [ins[0], lw.op("Tanh", [lw.op("Softplus", [ins[0]])])])]


def _hardsigmoid(lw: Lower, node, ins):
    return [lw.op("HardSigmoid", [ins[0]], alpha=1.0 / 6.0, beta=0.5)]


def _logsigmoid(lw: Lower, node, ins):
    """log(sigmoid(x)) = -Softplus(-x) (no exp of a large number)."""
    return [lw.op("Neg", [lw.op("Softplus", [lw.op("Neg", [ins[0]])])])]


def _softmin(lw: Lower, node, ins):
    return [lw.op("Softmax", [lw.op("Neg", [ins[0]])], axis=lw.attrs.dim)]


def _glu(lw: Lower, node, ins):
    """Split in two halves along dim, first · Sigmoid(second)."""
    t = lw.in_types[0]
    axis = lw.attrs.dim % t.rank
    half = int(t.shape[axis]) // 2
    first, second = lw.op("Split", [ins[0], lw.ints([half, half])], n_out=2, axis=axis)
    return [lw.op("Mul", [first, lw.op("Sigmoid", [second])])]


# ---- math ----------------------------------------------------------------------------------


def _sign(lw: Lower, node, ins):
    """(x > 0) - (x < 0) as torch: NaN and -0.0 give 0 (ONNX Sign keeps NaN)."""
    x = ins[0]
    dt = lw.out_types[0].dtype
    zero = lw.scalar(0, dt)
    pos = lw.cast(lw.op("Greater", [x, zero]), dt)
    neg = lw.cast(lw.op("Less", [x, zero]), dt)
    return [lw.op("Sub", [pos, neg])]


def _square(lw: Lower, node, ins):
    return [lw.op("Mul", [ins[0], ins[0]])]


def _log1p(lw: Lower, node, ins):
    """log(1 + x) accurate near 0 (Goldberg): u = 1 + x; x where u == 1, else
    log(u) · x / (u - 1), which cancels the rounding of u."""
    x = ins[0]
    one = lw.fscalar(1.0)
    u = lw.op("Add", [x, one])
    ratio = lw.op("Div", [lw.op("Mul", [lw.op("Log", [u]), x]), lw.op("Sub", [u, one])])
    return [lw.op("Where", [lw.op("Equal", [u, one]), x, ratio])]


def _rsqrt(lw: Lower, node, ins):
    return [lw.op("Reciprocal", [lw.op("Sqrt", [ins[0]])])]


def _promoted(lw: Lower, ins: list[str], dtype: str) -> list[str]:
    return [as_dtype(lw, x, t.dtype, dtype) for x, t in zip(ins, lw.in_types)]


def _extremum(op_type: str):
    def lower(lw: Lower, node, ins):
        return [lw.op(op_type, _promoted(lw, ins, lw.out_types[0].dtype))]
    return lower


def _pow(lw: Lower, node, ins):
    """x ** y: both Cast to the promoted dtype. x ** number: the kernel's shortcuts for
    floats (x·x, x·x·x, Sqrt, Reciprocal) as nodes, Pow otherwise."""
    dt = lw.out_types[0].dtype
    if len(ins) == 2:
        return [lw.op("Pow", _promoted(lw, ins, dt))]
    e = lw.attrs.exponent
    x = as_dtype(lw, ins[0], lw.in_types[0].dtype, dt)
    if dt in ("f16", "bf16", "f32", "f64"):
        if e == 2:
            return [lw.op("Mul", [x, x])]
        if e == 3:
            return [lw.op("Mul", [lw.op("Mul", [x, x]), x])]
        if e == 0.5:
            return [lw.op("Sqrt", [x])]
        if e == -0.5:
            return [lw.op("Reciprocal", [lw.op("Sqrt", [x])])]
        if e == -1:
            return [lw.op("Reciprocal", [x])]
        if e == -2:
            return [lw.op("Reciprocal", [lw.op("Mul", [x, x])])]
    return [lw.op("Pow", [x, lw.scalar(e, dt)])]


_COMPARE = {"eq": "Equal", "ne": "Equal", "lt": "Less", "le": "LessOrEqual",
            "gt": "Greater", "ge": "GreaterOrEqual"}


def _compare(name: str):
    def lower(lw: Lower, node, ins):
        """Both sides in torch's promoted dtype; ne is Not(Equal)."""
        a = lw.attrs
        if len(ins) == 2:
            dt = promote_types(lw.in_types[0].dtype, lw.in_types[1].dtype)
            pair = _promoted(lw, ins, dt)
        else:
            dt = scalar_result_dtype(lw.in_types[0].dtype, a.other)
            pair = [as_dtype(lw, ins[0], lw.in_types[0].dtype, dt), lw.scalar(a.other, dt)]
        y = lw.op(_COMPARE[name], pair)
        return [lw.op("Not", [y]) if name == "ne" else y]
    return lower


def _where(lw: Lower, node, ins):
    dt = lw.out_types[0].dtype
    x = as_dtype(lw, ins[1], lw.in_types[1].dtype, dt)
    if len(ins) == 3:
        y = as_dtype(lw, ins[2], lw.in_types[2].dtype, dt)
    else:
        y = lw.scalar(lw.attrs.other, dt)
    return [lw.op("Where", [ins[0], x, y])]


# The accumulator of dslc's (and torch's CPU) cumsum: f32 sums in f64, f16 in f32.
_CUMSUM_ACC = {"f16": "f32", "bf16": "f32", "f32": "f64", "f64": "f64"}


def _cumsum(lw: Lower, node, ins):
    """CumSum in the kernel's accumulator dtype (integers and bools in i64), Cast back."""
    have, out = lw.in_types[0].dtype, lw.out_types[0].dtype
    acc = _CUMSUM_ACC.get(out, "i64")
    x = as_dtype(lw, ins[0], have, acc)
    y = lw.op("CumSum", [x, lw.const(np.asarray(lw.attrs.dim, np.int64), "axis")])
    return [as_dtype(lw, y, acc, out)]


def _topk(lw: Lower, node, ins):
    """TopK's values (sorted; largest first or smallest first); k = 0 is an empty Slice
    (TopK wants k >= 1 in onnxruntime)."""
    a = lw.attrs
    axis = a.dim % lw.in_types[0].rank
    if a.k == 0:
        return [lw.op("Slice", [ins[0], lw.ints([0]), lw.ints([0]), lw.ints([axis])])]
    values, _ = lw.op("TopK", [ins[0], lw.ints([a.k])], n_out=2, axis=axis,
                      largest=int(a.largest), sorted=1)
    return [values]


LOWERINGS = {
    "relu6": _relu6,
    "hardtanh": _hardtanh,
    "clamp": _clamp,
    "selu": _selu,
    "celu": _celu,
    "softplus": _softplus,
    "softsign": _unary("Softsign"),
    "silu": _silu,
    "mish": _mish,
    "hardswish": _unary("HardSwish"),
    "hardsigmoid": _hardsigmoid,
    "logsigmoid": _logsigmoid,
    "glu": _glu,
    "softmin": _softmin,
    "abs": _unary("Abs"),
    "sign": _sign,
    "square": _square,
    "exp": _unary("Exp"),
    "log": _unary("Log"),
    "log1p": _log1p,
    "sqrt": _unary("Sqrt"),
    "rsqrt": _rsqrt,
    "reciprocal": _unary("Reciprocal"),
    "minimum": _extremum("Min"),
    "maximum": _extremum("Max"),
    "pow": _pow,
    **{name: _compare(name) for name in _COMPARE},
    "where": _where,
    "cumsum": _cumsum,
    "topk": _topk,
}
