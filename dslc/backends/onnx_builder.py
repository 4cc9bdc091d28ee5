"""ONNX back end, the builder: ONNX graphs, names, constants and runtime dims for the lowerings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sympy
from onnx import TensorProto, helper, numpy_helper

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.ir import Graph, IRNode
from dslc.types import FLOAT_DTYPES as FLOAT
from dslc.types import TensorType, numpy_dtype

# dslc dtype -> ONNX element type. bf16 is computed in float32 by NumPy; ONNX has BFLOAT16.
ELEM: dict[str, int] = {
    "f16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16, "f32": TensorProto.FLOAT,
    "f64": TensorProto.DOUBLE, "i32": TensorProto.INT32, "i64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}


def export_error(code: str, message: str, span: Span | None, **kw) -> DslcError:
    return DslcError(Diagnostic(code, message, span or Span("<export>", 0, 0, 0, 0), **kw))


def location(span: Span) -> str:
    """`file:line:col` with the file's name only (the doc strings must not depend on where the
    spec was checked out)."""
    return f"{Path(span.file).name}:{span.line}:{span.column}"


@dataclass
class ExportState:
    """What every graph of one export shares: the opset, parameters, initializers, names."""

    opset: int
    params: dict[str, np.ndarray]
    bindings: dict[str, int]
    initializers: dict[str, TensorProto] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    node_names: set[str] = field(default_factory=set)
    # runtime symbol (or srepr of a derived input dim) -> (graph input value, axis) holding it
    sym_sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    dim_cache: dict[str, str] = field(default_factory=dict)
    const_cache: dict[tuple, str] = field(default_factory=dict)
    root: GraphBuilder | None = None
    table: dict = field(default_factory=dict)  # op name -> lowering
    # ONNX node name -> the attributes of the train-only op it stands for (dropout's p, ...),
    # which inference export loses: the model property `dslc.train_attrs` (docs/onnx.md)
    train_attrs: dict[str, dict] = field(default_factory=dict)
    # Lowers an IR sub-graph into a builder (onnx_export.lower_into, handed in by the exporter,
    # which imports this module): (builder, graph, input values) -> IR value -> ONNX value.
    lower_into: Any = None

    def unique(self, base: str) -> str:
        """A value name no other value of the model has (ONNX values are SSA, model-wide
        unique so subgraphs can read outer values without shadowing)."""
        name = base
        k = 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def unique_node(self, base: str) -> str:
        name = base
        k = 1
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name


class GraphBuilder:
    """One ONNX graph under construction (the model's, or a Loop body)."""

    def __init__(self, state: ExportState, name: str):
        self.state = state
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []

    def make_graph(self) -> onnx.GraphProto:
        inits = list(self.state.initializers.values()) if self is self.state.root else []
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                 initializer=inits, value_info=self.value_info)


def value_info(name: str, t: TensorType, bindings: dict[str, int]) -> onnx.ValueInfoProto:
    """A typed value: fixed dims as numbers, plain symbols as named dim_params, derived dims
    (B*T, T-2) unnamed."""
    shape: list[Any] = []
    for d in t.shape:
        d = D.substitute(d, bindings)
        if d.is_Integer:
            shape.append(int(d))
        elif d.is_Symbol:
            shape.append(d.name)
        else:
            shape.append(None)
    return helper.make_tensor_value_info(name, ELEM[t.dtype], shape)


class Lower:
    """What a lowering gets: the IR node and helpers that append ONNX nodes to the current
    graph, named and documented after the node's spec location."""

    def __init__(self, builder: GraphBuilder, node: IRNode, ins: list[str], ir_graph: Graph):
        self.b = builder
        self.state = builder.state
        self.node = node
        self.attrs = node.attrs
        self.ins = ins
        # Types with the --bind sizes in: a bound dim is a number to every lowering.
        self.in_types = [self._bound(ir_graph.type_of(r)) for r in node.inputs]
        self.out_types = [self._bound(t) for t in node.types]
        self.opset = self.state.opset
        self.made: list[onnx.NodeProto] = []  # the nodes this lowering appended, in order
        # A layer is named by its module (`conv1` of `layer1.0.conv1`), other ops by the value
        # the statement assigns, under the innermost block or repeat iteration.
        frame = node.frames[-1] if node.frames else ""
        what = node.name
        if node.module and node.params and any(p.persistent for p in node.params.values()):
            what = node.module[len(frame) + 1:] if node.module.startswith(frame + ".") \
                else node.module
        self.label = f"{frame}/{what}" if frame else what
        self.loc = location(node.span)
        self.doc = f"{self.loc} {node.op}"

    def _bound(self, t: TensorType) -> TensorType:
        if not self.state.bindings:
            return t
        return t.with_shape([D.substitute(d, self.state.bindings) for d in t.shape])

    # ---- nodes -----------------------------------------------------------------------

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, into: GraphBuilder | None
           = None, **attrs) -> Any:
        """Append one ONNX node; returns its output name (or names when n_out > 1). Empty
        strings in `inputs` are omitted optional inputs."""
        b = into or self.b
        outs = [self.state.unique(f"{self.label}/{op_type}") for _ in range(n_out)]
        name = self.state.unique_node(f"{self.label}/{op_type}@{self.loc}")
        node = helper.make_node(op_type, inputs, outs, name=name, doc_string=self.doc,
                                **{k: v for k, v in attrs.items() if v is not None})
        b.nodes.append(node)
        if b is self.b:
            self.made.append(node)
        return outs[0] if n_out == 1 else outs

    def need_opset(self, version: int, what: str) -> None:
        """Refuse (located) when the chosen opset is older than `version`."""
        if self.opset < version:
            raise export_error(
                "E0803", f"{self.node.op}: {what} needs ONNX opset {version} or newer",
                self.node.span, expected=f"--opset {version} or higher",
                found=f"--opset {self.opset}",
                hint=f"export with --opset {version}")

    def unsupported(self, what: str, hint: str | None = None) -> DslcError:
        return export_error("E0804", f"{self.node.op}: {what} has no ONNX lowering",
                            self.node.span, hint=hint)

    # ---- parameters and constants ------------------------------------------------------

    def param(self, local: str) -> str:
        """The initializer of one of this node's parameters, named by its state_dict key."""
        spec = self.node.params[local]
        if not spec.persistent:
            return self.const(np.asarray(self.node.const_value), f"{self.label}.const")
        key = f"{self.node.module}.{local}" if local else self.node.module
        if key not in self.state.initializers:
            arr = np.asarray(self.state.params[key])
            self.state.names.add(key)
            self.state.initializers[key] = numpy_helper.from_array(arr, key)
        # A float parameter meets the input in the input's precision (an f16 or f64 model
        # keeps f32 parameter files, as the generated module's .half() would cast them).
        want = self._compute_dtype()
        if spec.dtype in FLOAT and want is not None and want != spec.dtype:
            return self.cast(key, want)
        return key

    def _compute_dtype(self) -> str | None:
        for t in self.in_types:
            if t.dtype in FLOAT:
                return t.dtype
        return None

    def has_param(self, local: str) -> bool:
        return local in self.node.params

    def const(self, arr: np.ndarray, hint: str = "const") -> str:
        """A constant as an initializer (shared by equal small constants)."""
        arr = np.asarray(arr)
        key = None
        if arr.size <= 16:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            hit = self.state.const_cache.get(key)
            if hit is not None:
                return hit
        name = self.state.unique(hint)
        self.state.initializers[name] = numpy_helper.from_array(arr, name)
        if key is not None:
            self.state.const_cache[key] = name
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), "ints")

    def scalar(self, value, dtype: str) -> str:
        """A 0-d constant of a dslc dtype (a float constant in the input's precision)."""
        return self.const(np.asarray(value, dtype=numpy_dtype(dtype)), "scalar")

    def fscalar(self, value, like: int = 0) -> str:
        """A 0-d constant with the dtype of input `like`."""
        return self.scalar(value, self.in_types[like].dtype)

    # ---- runtime dims ----------------------------------------------------------------

    def dim(self, d) -> str:
        """An int64[1] tensor holding dim `d` at run time (from the inputs' shapes)."""
        return self.dims([d])

    def dims(self, dims) -> str:
        """An int64[k] tensor of dims (a constant when all are fixed)."""
        subs = [D.substitute(D.as_dim(d), self.state.bindings) for d in dims]
        if all(s.is_Integer for s in subs):
            return self.ints(int(s) for s in subs)
        key = ",".join(sympy.srepr(s) for s in subs)
        hit = self.state.dim_cache.get(key)
        if hit is not None:
            return hit
        parts = [self._dim_expr(s) for s in subs]
        out = parts[0] if len(parts) == 1 else self.op("Concat", parts, into=self.state.root,
                                                       axis=0)
        self.state.dim_cache[key] = out
        return out

    def _root_op(self, op_type: str, inputs: list[str], **attrs) -> str:
        # Every runtime dim is computed in the model's graph, so any graph (a Loop body
        # included) that is built later can read it.
        return self.op(op_type, inputs, into=self.state.root, **attrs)

    def _dim_expr(self, e) -> str:
        """int64[1] for a sympy dim expression: + - * floor/ceil division, min, max, mod."""
        if e.is_Integer:
            return self.ints([int(e)])
        key = sympy.srepr(e)
        hit = self.state.dim_cache.get(key)
        if hit is not None:
            return hit
        out = self._dim_expr_uncached(e)
        self.state.dim_cache[key] = out
        return out

    def _dim_expr_uncached(self, e) -> str:
        whole = self.state.sym_sources.get(sympy.srepr(e))
        if whole is not None:  # an input axis has exactly this size (2*B, say)
            return self._root_op("Shape", [whole[0]], start=whole[1], end=whole[1] + 1)
        if e.is_Symbol:
            src = self.state.sym_sources.get(e.name)
            if src is None:
                raise export_error(
                    "E0805", f"{self.node.op}: dim {e.name} cannot be read from the model's "
                    "inputs", self.node.span,
                    expected=f"an input with an axis of size {e.name}", found=D.fmt(e),
                    hint=f"fix it with --bind {e.name}=<size>")
            value, axis = src
            return self._root_op("Shape", [value], start=axis, end=axis + 1)
        if isinstance(e, (sympy.floor, sympy.ceiling)):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            n, d = self._dim_expr(sympy.expand(num)), self._dim_expr(den)
            if isinstance(e, sympy.ceiling):  # -((-n) // d), for positive d
                n = self._root_op("Sub", [self._root_op("Add", [n, d]), self.ints([1])])
            return self._floordiv(n, d)
        if e.is_Add:
            terms = [self._dim_expr(a) for a in e.as_ordered_terms()]
            out = terms[0]
            for t in terms[1:]:
                out = self._root_op("Add", [out, t])
            return out
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            if coeff.is_Rational and not coeff.is_Integer:
                num, den = sympy.fraction(e)
                return self._floordiv(self._dim_expr(num), self._dim_expr(den))
            factors = [self._dim_expr(a) for a in e.as_ordered_factors()]
            out = factors[0]
            for f in factors[1:]:
                out = self._root_op("Mul", [out, f])
            return out
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            base = self._dim_expr(e.base)
            out = base
            for _ in range(int(e.exp) - 1):
                out = self._root_op("Mul", [out, base])
            return out
        if isinstance(e, sympy.Mod):
            return self._root_op("Mod", [self._dim_expr(e.args[0]), self._dim_expr(e.args[1])])
        if isinstance(e, (sympy.Max, sympy.Min)):
            return self._root_op("Max" if isinstance(e, sympy.Max) else "Min",
                                 [self._dim_expr(a) for a in e.args])
        raise export_error("E0805", f"{self.node.op}: dim {D.fmt(e)} has no ONNX form",
                           self.node.span, found=D.fmt(e))

    def _floordiv(self, n: str, d: str) -> str:
        # ONNX integer Div truncates; floor(n / d) = (n - Mod(n, d)) / d with Python's Mod
        # (fmod=0 takes the divisor's sign), exact for negative numerators too.
        rem = self._root_op("Mod", [n, d])
        return self._root_op("Div", [self._root_op("Sub", [n, rem]), d])

    # ---- helpers used by many lowerings ------------------------------------------------

    def reshape(self, x: str, dims) -> str:
        return self.op("Reshape", [x, self.dims(dims)])

    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes)])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.ints(axes)])

    def cast(self, x: str, dtype: str) -> str:
        return self.op("Cast", [x], to=ELEM[dtype])

    def lower_cell(self, body: GraphBuilder, cell: Graph, input_values: list[str]) -> dict:
        """Lower an IR sub-graph (a scan's cell) into `body`; returns its value map."""
        return self.state.lower_into(body, cell, input_values)
