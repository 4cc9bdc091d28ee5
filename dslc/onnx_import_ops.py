"""ONNX import, the node walk: folding constant and shape nodes, and one handler per ONNX op
that writes the dslc statement (patterns such as MatMul+Add -> `linear` are matched here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy

from dslc import dims as D
from dslc.onnx_import_core import Importer, ImportProblem
from dslc.onnx_import_values import (
    Const,
    Dims,
    Sized,
    Tensor,
    Value,
    Zeros,
    dim_text,
    dims_value,
    make_dims,
)
from dslc.ops.padding import fpad_order

POISON = "<unsupported>"
# Ops computed on sizes and constants (also when they carry symbolic dims).
DIMS_OPS = frozenset({"Constant", "Shape", "ConstantOfShape", "Expand", "Identity", "Cast",
                      "CastLike", "Squeeze", "Unsqueeze", "Reshape", "Concat", "Gather",
                      "Slice", "Mul", "Add", "Sub", "Div", "Max", "Min"})
Handler = Callable[[Importer, object, list, dict], list]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str):
    def deco(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return deco


def attrs_of(imp: Importer, node) -> dict:
    return {a.name: imp.onnx.helper.get_attribute_value(a) for a in node.attribute}


def _name(node) -> str:
    return node.name or f"{node.op_type}({', '.join(node.output)})"


def visit(imp: Importer, node) -> None:
    """Give every output of `node` a value: folded, or written as a statement."""
    if not imp.consumers:
        _count_consumers(imp)
    name = _name(node)
    skip = imp.__dict__.setdefault("skip", {})
    if name in skip:  # consumed by a pattern matched at an earlier node
        for out, v in zip(node.output, skip.pop(name)):
            imp.values[out] = v
        return
    for pattern in NODE_PATTERNS:  # a pattern spanning many nodes, keyed by node names
        outs = pattern(imp, node)
        if outs is not None:
            for out, v in zip(node.output, outs):
                if out:
                    imp.values[out] = v
            return
    ins = [imp.get(n) for n in node.input]
    if any(isinstance(v, Tensor) and v.var == POISON for v in ins):
        # Downstream of a node that failed: still name every op that would fail too, so
        # one run lists them all.
        if node.op_type not in HANDLERS and node.op_type not in DIMS_OPS:
            imp.unsupported.setdefault(node.op_type, []).append(name)
        _poison(imp, node)
        return
    attrs = attrs_of(imp, node)
    try:
        outs = _evaluate(imp, node, ins, attrs)
    except ImportProblem as exc:
        imp.problems.append((node.op_type, name, exc.detail))
        _poison(imp, node)
        return
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        # A node whose attributes or inputs are not what its op requires: a malformed file.
        imp.problems.append((node.op_type, name, f"malformed node ({type(exc).__name__}: "
                             f"{str(exc)[:120]})"))
        _poison(imp, node)
        return
    if outs is None:
        imp.unsupported.setdefault(node.op_type, []).append(name)
        _poison(imp, node)
        return
    for out, v in zip(node.output, outs):
        if out:
            imp.values[out] = v


def _count_consumers(imp: Importer) -> None:
    users: dict[str, list] = {}
    imp.producer = {o: node for node in imp.graph.node for o in node.output if o}
    for node in imp.graph.node:
        for n in node.input:
            if n:
                users.setdefault(n, []).append(node)
    for o in imp.graph.output:
        users.setdefault(o.name, []).append(None)
    imp.consumers = users  # type: ignore[assignment]


def sole_user(imp: Importer, value: str, op: str | tuple[str, ...]):
    """The one node reading `value`, when there is exactly one and it is an `op` node."""
    users = imp.consumers.get(value, [])
    ops = (op,) if isinstance(op, str) else op
    if len(users) == 1 and users[0] is not None and users[0].op_type in ops:
        return users[0]
    return None


def _poison(imp: Importer, node) -> None:
    for out in node.output:
        if out:
            imp.values[out] = Tensor([], "f32", var=POISON)


def _evaluate(imp: Importer, node, ins: list, attrs: dict) -> list | None:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op == "Constant":
        return [_constant(imp, node)]
    present = [v for v in ins if v is not None]
    if all(isinstance(v, Const) for v in present) and op not in ("LSTM", "GRU", "RNN"):
        return _fold(imp, node, ins)
    if any(isinstance(v, Tensor) for v in present) and op != "Shape":
        handler = HANDLERS.get(op)
        if handler is None:
            return None
        return handler(imp, node, ins, attrs)
    return _dims_op(imp, node, ins, attrs)


# ---- constants -----------------------------------------------------------------------------


def _constant(imp: Importer, node) -> Const:
    from onnx.reference import ReferenceEvaluator

    (arr,) = ReferenceEvaluator(node).run(None, {})
    return Const(np.array(arr))


def _fold(imp: Importer, node, ins: list) -> list:
    """A node whose inputs are all constants: evaluated with ONNX's reference evaluator, so
    every standard op folds the same way onnxruntime would compute it."""
    from onnx.reference import ReferenceEvaluator

    feeds = {n: v.array for n, v in zip(node.input, ins) if v is not None and n}
    opset = {o.domain or "": o.version for o in imp.model.opset_import}
    try:
        outs = ReferenceEvaluator(node, opsets={"": opset.get("", 17)}).run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - an op the evaluator lacks, or bad attributes
        raise ImportProblem(f"cannot fold this constant computation ({exc})"[:200]) from None
    # Names flow from the weights, not from the axes, indices and shapes beside them.
    sources = tuple(dict.fromkeys(s for v in ins if isinstance(v, Const)
                                  and v.array.dtype.kind == "f" for s in v.sources))
    if node.op_type in ("Shape", "Size"):
        sources = ()  # a weight's shape is not the weight: a made-up zero bias is no parameter
    return [Const(np.array(o), sources) for o in outs]


# ---- shape arithmetic ----------------------------------------------------------------------


def _axes(node, ins: list, attrs: dict, index: int) -> list[int] | None:
    """Axes given as an input (opset 13+) or as the `axes` attribute (older opsets)."""
    if len(ins) > index and ins[index] is not None:
        if not isinstance(ins[index], Const):
            raise ImportProblem("axes computed at run time")
        return [int(a) for a in ins[index].array.reshape(-1)]
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    return None


def _dims_op(imp: Importer, node, ins: list, attrs: dict) -> list | None:
    """Ops on sizes (Shape -> Gather -> Concat -> Reshape): computed on symbolic dims."""
    op = node.op_type
    if op == "Shape":
        v = ins[0]
        if isinstance(v, Tensor):
            items = imp.shape_dims(v, _name(node))
        elif isinstance(v, Zeros):
            items = list(v.shape)
        elif isinstance(v, Dims):  # the shape of a size vector: its length (none for one size)
            items = [] if v.scalar else [sympy.Integer(len(v.items))]
        else:
            return None
        start = attrs.get("start", 0)
        end = attrs.get("end", len(items))
        return [make_dims(items[slice(start, end)], False)]
    if op in ("ConstantOfShape", "Expand"):
        if op == "Expand":
            for pattern in EXPAND_PATTERNS:
                out = pattern(imp, node, ins, attrs)
                if out is not None:
                    return out
        return _fill(imp, node, ins, attrs)
    vals = [dims_value(v) if v is not None else None for v in ins]
    if any(isinstance(v, (Zeros, Sized)) for v in ins):
        out = _zeros_op(node, ins) if not any(isinstance(v, Sized) for v in ins) else None
        if out is not None:
            out[0].source = (node, ins, 0)
            return out
        return [Sized((node, ins, k)) for k in range(len(node.output))]
    if any(v is None and i is not None for v, i in zip(vals, ins)):
        return None
    first = ins[0]
    scalar = isinstance(first, Dims) and first.scalar or (
        isinstance(first, Const) and first.array.ndim == 0)
    items = vals[0]
    if op in ("Identity", "Cast", "CastLike"):
        return [make_dims(items, scalar)]
    if op == "Squeeze":
        return [make_dims(items, True)] if len(items) == 1 else [make_dims(items, scalar)]
    if op == "Unsqueeze":
        return [make_dims(items, False)]
    if op == "Reshape":
        target = [int(x) for x in vals[1]] if all(x.is_Integer for x in vals[1]) else None
        if target is None:
            return None
        return [make_dims(items, len(target) == 0)]
    if op == "Concat":
        return [make_dims([x for v in vals for x in v], False)]
    if op == "Gather":
        idx = ins[1]
        if not isinstance(idx, Const):
            return None
        picked = [items[int(i)] for i in idx.array.reshape(-1)]
        return [make_dims(picked, idx.array.ndim == 0)]
    if op == "Slice":
        starts, ends = vals[1], vals[2]
        steps = vals[4] if len(vals) > 4 and vals[4] is not None else [sympy.Integer(1)]
        if not (starts[0].is_Integer and ends[0].is_Integer and steps[0].is_Integer):
            return None
        axes = vals[3] if len(vals) > 3 and vals[3] is not None else [sympy.Integer(0)]
        if len(starts) != 1 or int(axes[0]) not in (0, -1):
            return None
        n = len(items)
        s, e, st = int(starts[0]), int(ends[0]), int(steps[0])
        e = max(min(e, n), -n - 1)
        return [make_dims(items[slice(s, e, st)], False)]
    if op in ("Mul", "Add", "Sub", "Div"):
        a, b = vals[0], vals[1]
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            return None
        n = max(len(a), len(b))
        a = a * n if len(a) == 1 else a
        b = b * n if len(b) == 1 else b
        fn = {"Mul": lambda x, y: x * y, "Add": lambda x, y: x + y,
              "Sub": lambda x, y: x - y, "Div": lambda x, y: D.floordiv(x, y)}[op]
        both_scalar = scalar and (isinstance(ins[1], Dims) and ins[1].scalar or isinstance(
            ins[1], Const) and ins[1].array.ndim == 0)
        return [make_dims([sympy.simplify(fn(x, y)) for x, y in zip(a, b)], both_scalar)]
    if op in ("Max", "Min"):
        fn = sympy.Max if op == "Max" else sympy.Min
        return [make_dims([fn(*xs) for xs in zip(*vals)], scalar)]
    return None


def _fill(imp: Importer, node, ins: list, attrs: dict) -> list | None:
    """A constant fill whose shape is only known at run time: kept as `Zeros`, which an RNN's
    initial state drops (dslc's layers start from zeros)."""
    if node.op_type == "ConstantOfShape":
        shape = dims_value(ins[0])
        fill = attrs.get("value")
        value = float(imp.onnx.numpy_helper.to_array(fill).reshape(-1)[0]) if fill else 0.0
        return [Zeros(shape or [], value, "f32", (node, ins, 0))] if shape is not None else None
    src, shape = ins[0], dims_value(ins[1])
    if isinstance(src, Const) and shape is not None and src.array.size >= 1 and np.all(
            src.array == src.array.reshape(-1)[0]):
        return [Zeros(shape, float(src.array.reshape(-1)[0]), "f32", (node, ins, 0))]
    if isinstance(src, Zeros) and shape is not None:
        return [Zeros(shape, src.fill, src.dtype, (node, ins, 0))]
    return None


def _zeros_op(node, ins: list) -> list | None:
    """Slices and views of a runtime-shaped fill stay fills (the per-layer initial states
    torch slices out of one zeros tensor)."""
    if node.op_type in ("Slice", "Squeeze", "Unsqueeze", "Identity", "Reshape", "Gather",
                        "Transpose", "Cast"):
        z = ins[0]
        return [Zeros([], z.fill, z.dtype)]
    return None


# ---- tensor helpers ------------------------------------------------------------------------


def _t(imp: Importer, v: Value, node) -> str:
    if isinstance(v, Zeros):
        raise ImportProblem("a runtime-shaped fill used as a tensor (only an RNN's zero "
                            "initial state is understood)")
    return imp.var(v, _name(node))


def _scalar(v: Value) -> float | int | None:
    if isinstance(v, Const) and v.array.size == 1:
        x = v.array.reshape(-1)[0]
        return int(x) if v.array.dtype.kind in "iub" else float(x)
    return None


def _lit(x) -> str:
    if isinstance(x, int):
        return str(x)
    text = repr(float(x))
    return text if text not in ("inf", "-inf", "nan") else {"inf": "1e300", "-inf": "-1e300",
                                                             "nan": "0.0"}[text]


def _out(imp: Importer, node, var: str, i: int = 0) -> Tensor:
    return imp.tensor(node.output[i], var=var)


def _pipe(imp: Importer, node, ins, expr: str, hint: str | None = None, **kw) -> list:
    (var,) = imp.emit(expr, first=_t(imp, ins[0], node), hint=hint or node.output[0],
                      node=_name(node), **kw)
    return [_out(imp, node, var)]


def _ints(v) -> tuple[int, ...] | int:
    v = tuple(int(x) for x in v)
    return v[0] if len(set(v)) == 1 else v


def _tup(v) -> str:
    if isinstance(v, int):
        return str(v)
    return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"


def _norm_axis(axis: int, rank: int | None) -> int:
    if axis < 0 and rank is not None:
        return axis + rank
    return axis


# ---- activations and arithmetic -------------------------------------------------------------


@handles("Relu", "Sigmoid", "Tanh")
def _act(imp, node, ins, attrs):
    return _pipe(imp, node, ins, node.op_type.lower())


@handles("LeakyRelu")
def _leaky(imp, node, ins, attrs):
    return _pipe(imp, node, ins, f"leaky_relu({_lit(attrs.get('alpha', 0.01))})")


@handles("Elu")
def _elu(imp, node, ins, attrs):
    return _pipe(imp, node, ins, f"elu({_lit(attrs.get('alpha', 1.0))})")


@handles("Gelu")
def _gelu(imp, node, ins, attrs):
    approx = attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return _pipe(imp, node, ins, "gelu" if approx == "none" else f'gelu(approximate="{approx}")')


@handles("HardSigmoid")
def _hsig(imp, node, ins, attrs):
    if abs(attrs.get("alpha", 0.2) - 1 / 6) > 1e-6 or abs(attrs.get("beta", 0.5) - 0.5) > 1e-6:
        raise ImportProblem("HardSigmoid other than torch's (alpha 1/6, beta 0.5)")
    return _pipe(imp, node, ins, "hard_sigmoid")


@handles("HardSwish")
def _hswish(imp, node, ins, attrs):
    return _pipe(imp, node, ins, "hardswish")


@handles("Clip")
def _clip(imp, node, ins, attrs):
    """Clip with constant bounds (inputs from opset 11, attributes before): relu6 for [0, 6],
    hardtanh for two float bounds, clamp for one."""
    if len(ins) > 1:
        bounds = [ins[i] if i < len(ins) else None for i in (1, 2)]
        if any(v is not None and not isinstance(v, Const) for v in bounds):
            raise ImportProblem("a Clip whose bounds are computed at run time")
        lo, hi = (None if v is None else _scalar(v) for v in bounds)
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    if lo is not None and hi is not None:
        if float(lo) == 0.0 and float(hi) == 6.0:
            return _pipe(imp, node, ins[:1], "relu6")
        return _pipe(imp, node, ins[:1],
                     f"hardtanh(min_val={_lit(float(lo))}, max_val={_lit(float(hi))})")
    if lo is None and hi is None:
        return [ins[0]]  # no bounds: the identity
    kw = _kw(min=None if lo is None else _lit(lo), max=None if hi is None else _lit(hi))
    return _pipe(imp, node, ins[:1], f"clamp({kw[2:]})")


@handles("Softmax", "LogSoftmax")
def _softmax(imp, node, ins, attrs):
    rank = imp.rank(ins[0])
    axis = attrs.get("axis", -1 if _opset(imp) >= 13 else 1)
    if _opset(imp) < 13 and rank is not None and _norm_axis(axis, rank) != rank - 1:
        raise ImportProblem("Softmax before opset 13 over several axes")
    fn = "softmax" if node.op_type == "Softmax" else "log_softmax"
    return _pipe(imp, node, ins, f"{fn}({axis})")


@handles("PRelu")
def _prelu(imp, node, ins, attrs):
    slope = ins[1]
    if not isinstance(slope, Const):
        raise ImportProblem("a PRelu slope computed at run time")
    w = slope.array.reshape(-1).astype(np.float32)
    label = imp.take_label(imp.label_for(slope.sources), "prelu")
    n = w.size
    return _pipe(imp, node, ins, f"prelu({n})" if n > 1 else "prelu", label=label,
                 params={"weight": w})


@handles("Identity", "Dropout")
def _identity(imp, node, ins, attrs):
    from dslc.onnx_import_train import IDENTITY_OPS, train_call

    call = train_call(imp, node, IDENTITY_OPS) if node.op_type == "Identity" else None
    if call is not None and isinstance(ins[0], Tensor):
        return _pipe(imp, node, ins, call)  # dslc's dropout, drop_path, ...: with its rate
    out = [ins[0]]
    if len(node.output) > 1 and node.output[1]:
        if imp.consumers.get(node.output[1]):
            raise ImportProblem("a Dropout mask that is used")
        out.append(Const(np.ones((), dtype=bool)))
    return out


@handles("CastLike")
def _cast_like(imp, node, ins, attrs):
    src, like = ins
    dtype = like.dtype if isinstance(like, Tensor) else None
    if isinstance(src, Const) and dtype is not None:
        from dslc.types import numpy_dtype

        return [Const(src.array.astype(numpy_dtype(dtype)), src.sources)]
    if isinstance(src, Tensor) and (dtype is None or dtype == src.dtype):
        return [src]
    raise ImportProblem("a cast between dtypes")


@handles("Cast")
def _cast(imp, node, ins, attrs):
    from dslc.onnx_import_values import DTYPES

    to = DTYPES.get(attrs.get("to"))
    src = ins[0]
    if isinstance(src, Tensor) and to == src.dtype:
        return [src]
    raise ImportProblem(f"a cast from {getattr(src, 'dtype', '?')} to {to or attrs.get('to')}")


_BIN = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}


# The parameter names a layer scale goes by: dslc's and timm's `gamma`, torchvision's.
_LAYER_SCALE_NAMES = ("gamma", "layer_scale")


def _layer_scale(imp: Importer, node, x: Value, g: Value) -> list | None:
    """x * gamma, gamma an initializer named as a layer scale, [C] over x's last axis or
    [C, 1, ...] over axis 1: `layer_scale` (ConvNeXt, CaiT), its parameter kept."""
    if not (isinstance(x, Tensor) and isinstance(g, Const) and len(g.sources) == 1
            and g.sources[0].rpartition(".")[2] in _LAYER_SCALE_NAMES):
        return None
    rank, shape = imp.rank(x), g.array.shape
    if rank is None or not shape:
        return None
    if len(shape) == 1 and _is_size(x.shape[-1], shape[0]):
        call = "layer_scale"
    elif len(shape) == rank - 1 and rank >= 2 and _is_size(x.shape[1], shape[0]) \
            and all(d == 1 for d in shape[1:]):
        call = "layer_scale(channels_first=true)"
    else:
        return None
    head = g.sources[0].rpartition(".")[0]
    label = imp.take_label(imp.label_for((f"{head}.weight",)) if head else None, "ls")
    return _pipe(imp, node, [x], call, label=label,
                 params={"gamma": g.array.astype(np.float32)})


def _is_size(dim, n: int) -> bool:
    return dim is not None and dim.is_Integer and int(dim) == n


def _plus_zeros(node, a: Value, b: Value) -> Tensor | None:
    """x + zeros (or x - zeros) of x's own shape is x: a sum started from a runtime-shaped
    zero fill (WaveNet's skip total `zeros([B, skip, T])`) folds to its first term."""
    pairs = {"Add": ((a, b), (b, a)), "Sub": ((b, a),)}.get(node.op_type, ())
    for z, x in pairs:
        if isinstance(z, Zeros) and z.fill == 0.0 and isinstance(x, Tensor) \
                and _same_dims(z.shape, x.shape):
            return x
    return None


def _same_dims(p: list, q: list) -> bool:
    return bool(p) and len(p) == len(q) and all(
        u is not None and v is not None and sympy.simplify(u - v) == 0
        for u, v in zip(p, q, strict=True))


@handles("Add", "Sub", "Mul", "Div")
def _binary(imp, node, ins, attrs):
    a, b = ins
    sym = _BIN[node.op_type]
    kept = _plus_zeros(node, a, b)
    if kept is not None:
        return [kept]
    if node.op_type == "Mul":
        scaled = _layer_scale(imp, node, a, b) or _layer_scale(imp, node, b, a)
        if scaled is not None:
            return scaled
    if node.op_type == "Add":
        for pattern in ADD_PATTERNS:
            out = pattern(imp, node, a, b)
            if out is not None:
                return out
    ra, rb = imp.rank(a), imp.rank(b)
    texts = []
    for v, other_rank in ((a, rb), (b, ra)):
        s = _scalar(v)
        if s is not None and (v.array.ndim <= (other_rank or 0)):
            texts.append(_lit(s))
        else:
            texts.append(_t(imp, v, node))
    expr = f"{texts[0]} {sym} {texts[1]}"
    if texts[1].startswith("-"):
        expr = f"{texts[0]} {sym} ({texts[1]})"
    (var,) = imp.emit(expr, hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


@handles("MatMul")
def _matmul(imp, node, ins, attrs):
    a, b = ins
    for pattern in MATMUL_PATTERNS:
        out = pattern(imp, node, a, b)
        if out is not None:
            return out
    if isinstance(a, Tensor) and isinstance(b, Const) and b.array.ndim == 2:
        weight = b.array.T.astype(np.float32)
        return _linear(imp, node, ins[0], weight, b.sources, node.output[0])
    (var,) = imp.emit(f"{_t(imp, a, node)} @ {_t(imp, b, node)}", hint=node.output[0],
                      node=_name(node))
    return [_out(imp, node, var)]


def _linear(imp, node, x, weight, sources, out_name):
    """`linear`, with the bias of a following Add folded in (MatMul + Add)."""
    params = {"weight": np.ascontiguousarray(weight)}
    add = sole_user(imp, out_name, "Add")
    bias_src: tuple[str, ...] = ()
    final = out_name
    if add is not None:
        other = [n for n in add.input if n != out_name]
        bv = imp.values.get(other[0]) if len(other) == 1 else None
        if isinstance(bv, Const) and bv.array.shape in ((weight.shape[0],),):
            params["bias"] = bv.array.astype(np.float32)
            bias_src = bv.sources
            final = add.output[0]
    label = imp.take_label(imp.label_for(_weight_sources(sources) + _weight_sources(bias_src)),
                           "fc")
    expr = f"linear({weight.shape[0]})" if "bias" in params else \
        f"linear({weight.shape[0]}, bias=false)"
    (var,) = imp.emit(expr, first=_t(imp, x, node), hint=final, label=label, params=params,
                      node=_name(node))
    result = imp.tensor(final, var=var)
    if final != out_name:
        imp.skip[_name(add)] = [result]
    return [result]


def _weight_sources(sources: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sources)


@handles("Gemm")
def _gemm(imp, node, ins, attrs):
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    if not isinstance(b, Const) or attrs.get("transA", 0) or not isinstance(a, Tensor):
        raise ImportProblem("a Gemm other than x @ W(ᵀ) + b with constant W")
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    w = b.array if attrs.get("transB", 0) else b.array.T
    w = (w * alpha).astype(np.float32)
    params = {"weight": np.ascontiguousarray(w)}
    sources = b.sources
    if c is not None:
        if not isinstance(c, Const) or c.array.size not in (1, w.shape[0]):
            raise ImportProblem("a Gemm bias that is not a constant vector")
        params["bias"] = np.broadcast_to(c.array.reshape(-1) * beta,
                                         (w.shape[0],)).astype(np.float32)
        sources = sources + c.sources
    label = imp.take_label(imp.label_for(sources), "fc")
    expr = f"linear({w.shape[0]})" if "bias" in params else f"linear({w.shape[0]}, bias=false)"
    return _pipe(imp, node, ins, expr, label=label, params=params)


# ---- convolution, normalisation, pooling ------------------------------------------------------


def _pads(attrs: dict, n: int, what: str, per_side: bool = False) -> tuple[int, ...] | int:
    """ONNX pads [begin per axis, end per axis] as dslc's padding: per axis when symmetric,
    else (where the op takes it, `per_side`) per side in F.pad's order (ops/padding.py)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise ImportProblem(f"{what} with auto_pad {auto} (write explicit pads)")
    pads = list(attrs.get("pads", [0] * (2 * n))) if auto == "NOTSET" else [0] * (2 * n)
    if pads[:n] != pads[n:]:
        if not per_side:
            raise ImportProblem(f"{what} with asymmetric pads {pads}")
        return fpad_order(tuple((pads[i], pads[n + i]) for i in range(n)))
    return _ints(pads[:n])


def _kw(**items) -> str:
    return "".join(f", {k}={v}" for k, v in items.items() if v is not None)


@handles("Conv")
def _conv(imp, node, ins, attrs):
    w = ins[1]
    b = ins[2] if len(ins) > 2 else None
    if not isinstance(w, Const) or (b is not None and not isinstance(b, Const)):
        raise ImportProblem("a Conv whose weight is computed at run time")
    n = w.array.ndim - 2
    if n not in (1, 2, 3):
        raise ImportProblem(f"a {n}-D convolution (dslc has conv1d, conv2d and conv3d)")
    out_ch = w.array.shape[0]
    kernel = _ints(w.array.shape[2:])
    stride = _ints(attrs.get("strides", [1] * n))
    dil = _ints(attrs.get("dilations", [1] * n))
    pad = _pads(attrs, n, "Conv", per_side=True)
    groups = attrs.get("group", 1)
    params = {"weight": w.array.astype(np.float32)}
    sources = w.sources
    if b is not None and not b.sources and not np.any(b.array):
        b = None  # a zero bias the exporter made up for a layer that has none
    if b is not None:
        params["bias"] = b.array.astype(np.float32)
        sources = sources + b.sources
    opts = _kw(stride=_tup(stride) if stride != 1 else None,
               padding=_tup(pad) if pad != 0 else None,
               dilation=_tup(dil) if dil != 1 else None, groups=groups if groups != 1 else None)
    if spec_const(w) and (b is None or spec_const(b)):
        # A spec's `const` kernel (dslc's export names it `<name>.const`): kept a constant,
        # passed to the functional form, so the import adds no parameter.
        args = [_t(imp, x, node) for x in (ins[0], _named_const(w), _named_const(b)) if x]
        (var,) = imp.emit(f"conv{n}d({', '.join(args)}{opts})", hint=node.output[0],
                          node=_name(node))
        return [_out(imp, node, var)]
    call = f"conv{n}d({out_ch}, {_tup(kernel)}{opts}" + (", bias=false" if b is None else "") \
        + ")"
    label = imp.take_label(imp.label_for(sources), "conv")
    return _pipe(imp, node, ins, call, label=label, params=params)


def spec_const(v: Value | None) -> bool:
    """An initializer dslc's export wrote for a spec's `const` (named `<name>.const`), small
    enough to write out: it imports as a `const`, not as a layer's parameter."""
    return isinstance(v, Const) and len(v.sources) == 1 and v.sources[0].endswith(".const") \
        and v.array.size <= 4096


def _named_const(v: Const | None) -> Const | None:
    return None if v is None else Const(v.array, (v.sources[0][:-len(".const")],))


@handles("ConvTranspose")
def _conv_transpose(imp, node, ins, attrs):
    """ConvTranspose: weights [in, out/groups, *k] as torch's; ONNX's pads are the output crop
    per side, dslc's padding (per axis, or per side in F.pad's order)."""
    w = ins[1]
    b = ins[2] if len(ins) > 2 else None
    if not isinstance(w, Const) or (b is not None and not isinstance(b, Const)):
        raise ImportProblem("a ConvTranspose whose weight is computed at run time")
    if attrs.get("output_shape"):
        raise ImportProblem("a ConvTranspose given an output_shape (write pads instead)")
    n = w.array.ndim - 2
    if n not in (1, 2, 3):
        raise ImportProblem(f"a {n}-D transposed convolution")
    groups = attrs.get("group", 1)
    out_ch = w.array.shape[1] * groups
    kernel = _ints(w.array.shape[2:])
    stride = _ints(attrs.get("strides", [1] * n))
    dil = _ints(attrs.get("dilations", [1] * n))
    out_pad = _ints(attrs.get("output_padding", [0] * n))
    pad = _pads(attrs, n, "ConvTranspose", per_side=True)
    params = {"weight": w.array.astype(np.float32)}
    sources = w.sources
    if b is not None:
        params["bias"] = b.array.astype(np.float32)
        sources = sources + b.sources
    call = f"conv_transpose{n}d({out_ch}, {_tup(kernel)}" + _kw(
        stride=_tup(stride) if stride != 1 else None, padding=_tup(pad) if pad != 0 else None,
        output_padding=_tup(out_pad) if out_pad != 0 else None,
        groups=groups if groups != 1 else None, bias="false" if b is None else None,
        dilation=_tup(dil) if dil != 1 else None) + ")"
    label = imp.take_label(imp.label_for(sources), "deconv")
    return _pipe(imp, node, ins, call, label=label, params=params)


@handles("BatchNormalization")
def _bn(imp, node, ins, attrs):
    if not all(isinstance(v, Const) for v in ins[1:5]):
        raise ImportProblem("batch normalisation whose statistics are computed at run time")
    if attrs.get("training_mode", 0):
        raise ImportProblem("batch normalisation in training mode")
    if any(o and imp.consumers.get(o) for o in node.output[1:]):
        raise ImportProblem("batch normalisation whose running statistics are used")
    scale, bias, mean, var = (v.array.astype(np.float32) for v in ins[1:5])
    params = {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var,
              "num_batches_tracked": np.zeros((), dtype=np.int64)}
    sources = tuple(s for v in ins[1:5] for s in v.sources)
    eps = attrs.get("epsilon", 1e-5)
    momentum = 1.0 - attrs.get("momentum", 0.9)
    kw = _kw(eps=_lit(eps) if abs(eps - 1e-5) > 1e-12 else None,
             momentum=_lit(round(momentum, 6)) if abs(momentum - 0.1) > 1e-6 else None)
    label = imp.take_label(imp.label_for(sources), "bn")
    return _pipe(imp, node, ins, f"batch_norm({kw[2:]})" if kw else "batch_norm", label=label,
                 params=params)


@handles("LayerNormalization")
def _ln(imp, node, ins, attrs):
    x = ins[0]
    rank = imp.rank(x)
    axis = _norm_axis(attrs.get("axis", -1), rank)
    if rank is None or not isinstance(ins[1], Const):
        raise ImportProblem("a layer normalisation of unknown rank or with run-time scale")
    shape = tuple(int(d) for d in x.shape[axis:]) if all(
        d is not None and d.is_Integer for d in x.shape[axis:]) else None
    if shape is None:
        raise ImportProblem("a layer normalisation over axes of run-time size")
    b = ins[2] if len(ins) > 2 else None
    params = {"weight": ins[1].array.astype(np.float32).reshape(shape)}
    sources = ins[1].sources
    if b is not None:
        params["bias"] = b.array.astype(np.float32).reshape(shape)
        sources = sources + b.sources
    if any(o and imp.consumers.get(o) for o in node.output[1:]):
        raise ImportProblem("a layer normalisation whose mean or inverse deviation is used")
    eps = attrs.get("epsilon", 1e-5)
    kw = _kw(eps=_lit(float(np.float32(eps))) if abs(eps - 1e-5) > 1e-9 else None,
             bias="false" if b is None else None)
    shape_arg = "" if len(shape) == 1 else _tup(shape)
    args = ", ".join(a for a in (shape_arg, kw[2:]) if a)
    label = imp.take_label(imp.label_for(sources), "ln")
    return _pipe(imp, node, ins, f"layer_norm({args})" if args else "layer_norm", label=label,
                 params=params)


@handles("LRN")
def _lrn(imp, node, ins, attrs):
    size = attrs["size"]
    call = f"local_response_norm({size}, alpha={_lit(attrs.get('alpha', 1e-4))}, " \
           f"beta={_lit(attrs.get('beta', 0.75))}, k={_lit(attrs.get('bias', 1.0))})"
    return _pipe(imp, node, ins, call)


def _pool_call(node, attrs: dict, n: int) -> str:
    kind = "max" if node.op_type == "MaxPool" else "avg"
    if any(d != 1 for d in attrs.get("dilations", [1] * n)):
        raise ImportProblem("pooling with dilation")
    if len(node.output) > 1 and node.output[1]:
        raise ImportProblem("max pooling whose indices are used")
    kernel = _ints(attrs["kernel_shape"])
    stride = _ints(attrs.get("strides", [1] * n))
    pad = _pads(attrs, n, node.op_type)
    kw = _kw(stride=_tup(stride) if stride != kernel else None,
             padding=_tup(pad) if pad != 0 else None,
             ceil_mode="true" if attrs.get("ceil_mode", 0) else None,
             count_include_pad="false" if kind == "avg" and pad != 0 and not attrs.get(
                 "count_include_pad", 0) else None)
    return f"{kind}_pool{n}d({_tup(kernel)}{kw})"


@handles("MaxPool", "AveragePool")
def _pool(imp, node, ins, attrs):
    n = len(attrs["kernel_shape"])
    if n not in (1, 2, 3):
        raise ImportProblem(f"{n}-D pooling")
    return _pipe(imp, node, ins, _pool_call(node, attrs, n))


@handles("DepthToSpace")
def _depth_to_space(imp, node, ins, attrs):
    """DepthToSpace in mode CRD is torch's pixel_shuffle (DCR orders the channels block-major)."""
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "CRD":
        raise ImportProblem(f"DepthToSpace in mode {mode} (pixel_shuffle is mode CRD)")
    return _pipe(imp, node, ins, f"pixel_shuffle({attrs['blocksize']})")


@handles("GridSample")
def _grid_sample(imp, node, ins, attrs):
    mode = attrs.get("mode", b"bilinear")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pad = attrs.get("padding_mode", b"zeros")
    pad = pad.decode() if isinstance(pad, bytes) else pad
    mode = {"linear": "bilinear"}.get(mode, mode)
    if mode not in ("bilinear", "nearest") or pad not in ("zeros", "border"):
        raise ImportProblem(f"grid sampling with mode {mode} and padding {pad}")
    kw = _kw(mode=f'"{mode}"' if mode != "bilinear" else None,
             padding_mode=f'"{pad}"' if pad != "zeros" else None,
             align_corners="true" if attrs.get("align_corners", 0) else None)
    (var,) = imp.emit(f"grid_sample({_t(imp, ins[0], node)}, {_t(imp, ins[1], node)}{kw})",
                      hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


@handles("GlobalAveragePool")
def _gap(imp, node, ins, attrs):
    return _pipe(imp, node, ins, "global_avg_pool")


# ---- shapes ------------------------------------------------------------------------------


@handles("Flatten")
def _flatten(imp, node, ins, attrs):
    axis = _norm_axis(attrs.get("axis", 1), imp.rank(ins[0]))
    if axis == 1:
        return _pipe(imp, node, ins, "flatten")
    dims = imp.shape_dims(ins[0], _name(node))
    head = D.product(dims[:axis])
    return _pipe(imp, node, ins, f"reshape(({dim_text(head)}, -1))")


@handles("Reshape")
def _reshape(imp, node, ins, attrs):
    x, target = ins[0], dims_value(ins[1])
    if target is None:
        raise ImportProblem("a reshape to a shape computed from tensor values")
    if isinstance(x, Tensor) and x.tag and x.tag[0] in RESHAPE_THROUGH:
        folded = RESHAPE_THROUGH[x.tag[0]](imp, node, x, target)
        if folded is not None:
            return [folded]
    entries = []
    for i, t in enumerate(target):
        if t == 0 and not attrs.get("allowzero", 0):
            entries.append(imp.shape_dims(x, _name(node))[i])
        else:
            entries.append(t)
    rank = imp.rank(x)
    if len(entries) == 2 and rank and rank > 2:
        dims = imp.shape_dims(x, _name(node))
        rest = entries[1] == -1 or sympy.simplify(entries[1] - D.product(dims[1:])) == 0
        if rest and sympy.simplify(entries[0] - dims[0]) == 0:
            return _pipe(imp, node, ins, "flatten")
    return _pipe(imp, node, ins, f"reshape({_tup_dims(entries)})")


def _tup_dims(entries) -> str:
    texts = [dim_text(e) for e in entries]
    return "(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")"


# Patterns living in onnx_import_patterns: tried first for an Add of a runtime tensor, and
# for an Expand of a constant to runtime sizes.
ADD_PATTERNS: list[Callable] = []
EXPAND_PATTERNS: list[Callable] = []
MATMUL_PATTERNS: list[Callable] = []
RESHAPE_THROUGH: dict[str, Callable] = {}  # tag -> fold (filled by onnx_import_rnn)
# Tried at every node before its own handler: (imp, node) -> its outputs' values, or None
# (onnx_import_graph: the graph layers' Gather/ScatterND patterns, recognised as a whole).
NODE_PATTERNS: list[Callable] = []
TRANSPOSE_THROUGH: dict[str, Callable] = {}
SQUEEZE_THROUGH: dict[str, Callable] = {}
SLICE_THROUGH: dict[str, Callable] = {}  # (filled by onnx_import_loop)


@handles("Transpose")
def _transpose(imp, node, ins, attrs):
    x = ins[0]
    rank = imp.rank(x)
    perm = list(attrs.get("perm", list(range(rank or 0))[::-1]))
    if isinstance(x, Tensor) and x.tag and x.tag[0] in TRANSPOSE_THROUGH:
        folded = TRANSPOSE_THROUGH[x.tag[0]](imp, node, x, perm)
        if folded is not None:
            return [folded]
    if perm == list(range(len(perm))):
        return [x]
    if perm == [1, 0, 2] and isinstance(x, Tensor):
        # [B, T, F] <-> [T, B, F]: kept lazy, so an RNN reading it takes x batch-first.
        return [_lazy_swap(imp, node, x)]
    moved = [i for i, p in enumerate(perm) if p != i]
    if len(moved) == 2:
        return _pipe(imp, node, ins, f"transpose({moved[0]}, {moved[1]})")
    return _pipe(imp, node, ins, f"permute({_tup(perm)})")


def _lazy_swap(imp: Importer, node, x: Tensor) -> Tensor:
    out = imp.tensor(node.output[0], tag=("swap01", x))

    def write() -> str:
        (var,) = imp.emit("transpose(0, 1)", first=_t(imp, x, node), hint=node.output[0],
                          node=_name(node))
        return var
    out.lazy = write
    return out


@handles("Squeeze", "Unsqueeze")
def _squeeze(imp, node, ins, attrs):
    x = ins[0]
    axes = _axes(node, ins, attrs, 1)
    rank = imp.rank(x)
    if isinstance(x, Tensor) and x.tag and x.tag[0] in SQUEEZE_THROUGH and \
            node.op_type == "Squeeze":
        folded = SQUEEZE_THROUGH[x.tag[0]](imp, node, x, axes)
        if folded is not None:
            return [folded]
    if node.op_type == "Unsqueeze":
        pooled = _pool1d_pattern(imp, node, x, axes, rank)
        if pooled is not None:
            return pooled
        out_rank = (rank or 0) + len(axes)
        axes = sorted(_norm_axis(a, out_rank) for a in axes)
        fn = "unsqueeze"
    else:
        if axes is None:
            dims = imp.shape_dims(x, _name(node))
            axes = [i for i, d in enumerate(dims) if d == 1]
        axes = sorted((_norm_axis(a, rank) for a in axes), reverse=True)
        fn = "squeeze"
    var = _t(imp, x, node)
    for a in axes:
        (var,) = imp.emit(f"{fn}({a})", first=var, hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


def _pool1d_pattern(imp, node, x, axes, rank):
    """Unsqueeze(2) -> MaxPool/AveragePool with kernel (1, k) -> Squeeze(2): a 1-D pool (how
    torch exports max_pool1d)."""
    if rank != 3 or axes is None or [_norm_axis(a, 4) for a in axes] != [2]:
        return None
    pool = sole_user(imp, node.output[0], ("MaxPool", "AveragePool"))
    if pool is None:
        return None
    pattrs = attrs_of(imp, pool)
    k = list(pattrs.get("kernel_shape", []))
    sq = sole_user(imp, pool.output[0], "Squeeze")
    if len(k) != 2 or k[0] != 1 or sq is None:
        return None
    sq_axes = _axes(sq, [imp.values.get(n) for n in sq.input], attrs_of(imp, sq), 1)
    if sq_axes is None or [_norm_axis(a, 4) for a in sq_axes] != [2]:
        return None
    one_d = dict(pattrs)
    one_d["kernel_shape"] = k[1:]
    if "strides" in one_d:
        one_d["strides"] = list(one_d["strides"])[1:]
    if "pads" in one_d:
        p = list(one_d["pads"])
        if p[0] != 0 or p[2] != 0:
            return None
        one_d["pads"] = [p[1], p[3]]
    if "dilations" in one_d:
        one_d["dilations"] = list(one_d["dilations"])[1:]
    (var,) = imp.emit(_pool_call(pool, one_d, 1), first=_t(imp, x, node), hint=sq.output[0],
                      node=_name(pool))
    result = imp.tensor(sq.output[0], var=var)
    imp.skip[_name(pool)] = [Tensor([], "f32", var="<folded>")]
    imp.skip[_name(sq)] = [result]
    return [Tensor([], "f32", var="<folded>")]


@handles("Concat")
def _concat(imp, node, ins, attrs):
    parts = [_t(imp, v, node) for v in ins if v is not None]
    (var,) = imp.emit(f"concat({', '.join(parts)}, dim={attrs.get('axis', 0)})",
                      hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


@handles("Split")
def _split(imp, node, ins, attrs):
    axis = attrs.get("axis", 0)
    if len(ins) > 1 and ins[1] is not None:
        sizes = dims_value(ins[1])
        if sizes is None or not all(s.is_Integer for s in sizes):
            raise ImportProblem("split sizes computed at run time")
        sections = _tup(tuple(int(s) for s in sizes))
    elif "split" in attrs:
        sections = _tup(tuple(attrs["split"]))
    else:
        sections = str(len(node.output))
    outs = imp.emit(f"split({sections}, {axis})", first=_t(imp, ins[0], node),
                    hint=node.output[0], n_out=len(node.output), node=_name(node))
    return [_out(imp, node, v, i) for i, v in enumerate(outs)]


@handles("Gather")
def _gather(imp, node, ins, attrs):
    data, idx = ins
    axis = attrs.get("axis", 0)
    if isinstance(data, Const) and isinstance(idx, Tensor) and data.array.ndim == 2 and axis == 0:
        table = data.array.astype(np.float32)
        label = imp.take_label(imp.label_for(data.sources), "emb")
        return _pipe(imp, node, [idx], f"embedding({table.shape[0]}, {table.shape[1]})",
                     label=label, params={"weight": table})
    if isinstance(data, Tensor) and isinstance(idx, Const) and idx.array.ndim == 0:
        rank = imp.rank(data)
        axis = _norm_axis(axis, rank)
        items = [":"] * axis + [str(int(idx.array))]
        (var,) = imp.emit(f"{_t(imp, data, node)}[{', '.join(items)}]", hint=node.output[0],
                          node=_name(node))
        return [_out(imp, node, var)]
    raise ImportProblem("a Gather other than an embedding lookup or one constant index")


@handles("Slice")
def _slice(imp, node, ins, attrs):
    x = ins[0]
    if isinstance(x, Tensor) and x.tag and x.tag[0] in SLICE_THROUGH:
        folded = SLICE_THROUGH[x.tag[0]](imp, node, x, ins)
        if folded is not None:
            return [folded]
    if len(ins) > 1:
        vals = [dims_value(v) if v is not None else None for v in ins[1:]]
        if any(v is not None and not all(e.is_Integer for e in v) for v in vals):
            raise ImportProblem("slice bounds computed at run time")
        starts, ends = [int(e) for e in vals[0]], [int(e) for e in vals[1]]
        axes = [int(e) for e in vals[2]] if len(vals) > 2 and vals[2] else list(
            range(len(starts)))
        steps = [int(e) for e in vals[3]] if len(vals) > 3 and vals[3] else [1] * len(starts)
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    if any(s != 1 for s in steps):
        raise ImportProblem("a slice with a step other than 1")
    rank = imp.rank(x)
    axes = [_norm_axis(a, rank) for a in axes]
    shape = x.shape if isinstance(x, Tensor) else []
    if len(shape) == rank and all(s == 0 and shape[a] is not None and shape[a].is_Integer
                                  and e >= int(shape[a]) for a, s, e in zip(axes, starts, ends)):
        return [x]  # the whole tensor (torch slices the first layers' states out of all)
    items = [":"] * (max(axes) + 1)
    big = 2 ** 62
    for a, s, e in zip(axes, starts, ends):
        lo = "" if s == 0 or s <= -big else str(s)
        hi = "" if e >= big else str(e)
        items[a] = f"{lo}:{hi}"
    (var,) = imp.emit(f"{_t(imp, x, node)}[{', '.join(items)}]", hint=node.output[0],
                      node=_name(node))
    return [_out(imp, node, var)]


@handles("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
def _reduce(imp, node, ins, attrs):
    axes = _axes(node, ins, attrs, 1)
    if axes is None:
        raise ImportProblem("a reduction over every axis")
    rank = imp.rank(ins[0])
    if node.op_type == "ReduceMean" and attrs.get("keepdims", 1) and rank in (3, 4) and sorted(
            _norm_axis(a, rank) for a in axes) == list(range(2, rank)):
        return _pipe(imp, node, ins, "global_avg_pool")
    fn = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max",
          "ReduceMin": "min"}[node.op_type]
    keep = "true" if attrs.get("keepdims", 1) else "false"
    dim = str(axes[0]) if len(axes) == 1 else _tup(tuple(axes))
    return _pipe(imp, node, ins, f"{fn}({dim}, {keep})")


def _opset(imp: Importer) -> int:
    return {o.domain or "": o.version for o in imp.model.opset_import}.get("", 17)

