"""ONNX import's shared state (dslc/onnx_import.py is the entry): the Importer that every
handler module (onnx_import_ops, _rnn, _graph, _loop, _pool, _patterns, _blocks, _nested,
_text) writes statements into, and the problem they raise; kept apart from the entry so those
modules need not import it back."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.onnx_import_values import (
    DTYPES,
    Const,
    Tensor,
    Value,
    parse_dim_param,
)

# The opsets whose semantics the handlers follow (the default domain). Older files use
# attribute forms (Squeeze axes, Slice starts as attributes) handled too; 7 is where the
# common ops reached their current meaning.
MIN_OPSET = 7
MAX_OPSET = 23

# Words the language gives a meaning (statement keywords, built-ins): never a variable name.
RESERVED = frozenset("""
model block input output const repeat if else assert import as over from along reverse steps
scan and or not true false len min max int float sqrt prod
""".split())


def _span(path: str) -> Span:
    return Span(path, 0, 0, 0, 0)


def require_onnx(path: str):
    """The `onnx` package, or E0820 saying how to install it (it is an optional extra)."""
    try:
        import onnx
    except ImportError:
        raise DslcError(Diagnostic(
            "E0820", "`dslc import` needs the `onnx` package, which is not installed",
            _span(path), hint="pip install dslc[onnx]")) from None
    return onnx


@dataclass
class Stmt:
    targets: list[str]
    expr: str  # the call or expression, without the piped input
    first: str | None = None  # the piped input variable, when expr is a call stage
    label: str | None = None
    params: dict[str, np.ndarray] = field(default_factory=dict)
    node: str = ""  # the ONNX node it came from, for comments and messages
    meta: dict[str, Any] = field(default_factory=dict)  # what patterns need to extend it


@dataclass
class ImportResult:
    spec: str
    params: dict[str, np.ndarray]
    model: str


class Importer:
    """State of one import: the values known so far and the statements written."""

    def __init__(self, onnx_mod, model, path: str, model_name: str):
        self.onnx = onnx_mod
        self.model = model
        self.graph = model.graph
        self.path = path
        self.model_name = model_name
        self.values: dict[str, Value] = {}
        self.stmts: list[Stmt] = []
        self.problems: list[tuple[str, str, str]] = []  # (kind, node, detail)
        self.unsupported: dict[str, list[str]] = {}  # op type -> node names
        self.taken: set[str] = set(RESERVED)
        self.labels: set[str] = set()
        self.paths: dict[str, str] = {}  # layer label -> the initializers' module path
        self.dim_names: dict[str, str] = {}
        self.shapes: dict[str, list[sympy.Expr | None]] = {}
        self.dtypes: dict[str, str] = {}
        self.consts: list[str] = []  # `const` declarations
        self.inputs: list[tuple[str, str]] = []  # (var, declaration)
        self.consumers: dict[str, list] = {}  # value -> the nodes reading it
        self.producer: dict[str, Any] = {}  # value -> the node making it
        self.skip: dict[str, list] = {}  # node -> outputs a pattern already gave
        self.var_types: dict[str, tuple[str, list]] = {}  # variable -> (dtype, shape)
        self.extra_blocks: list[str] = []  # block texts made by handlers (a Loop's cell)
        self.block_names: list[str] = []
        from dslc.ops.registry import OPS

        self.taken |= set(OPS)

    # ---- naming ---------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint).strip("_").lower() or "h"
        if base[0].isdigit():
            base = "v" + base
        if len(base) > 24:
            base = "h"
        if keyword.iskeyword(base):
            base += "_"
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}_{n}" if not base[-1].isdigit() else f"{base}{chr(96 + n)}"
        self.taken.add(name)
        return name

    def label_for(self, sources: tuple[str, ...], suffixes: tuple[str, ...] = ()) -> str | None:
        """The layer name the initializers give (`c1` for `c1.weight`), when it is one name;
        dotted module paths (`layer1.0.conv1`) become `layer1_0_conv1`."""
        prefixes = set()
        for s in sources:
            head, _, last = s.rpartition(".")
            if not head:
                return None
            # `attn.in_proj_weight` names the layer `attn.in_proj`: keep the stem.
            stem = re.sub(r"_?(weight|bias)(_ih|_hh)?(_l\d+)?(_reverse)?$", "", last)
            if stem and stem not in ("running_mean", "running_var"):
                head = f"{head}.{stem}"
            prefixes.add(head)
        if len(prefixes) != 1:
            return None
        path = prefixes.pop()
        label = re.sub(r"[^\w]", "_", path)
        if not re.match(r"^[A-Za-z_]\w*$", label) or label in self.labels or (
                label in RESERVED or keyword.iskeyword(label)):
            return None
        self.paths[label] = path  # the module path, which repeats are recognised by
        return label

    def take_label(self, label: str | None, kind: str) -> str:
        if label is None or label in self.labels:
            n = 1
            while f"{kind}{n}" in self.labels:
                n += 1
            label = f"{kind}{n}"
        self.labels.add(label)
        return label

    # ---- values ---------------------------------------------------------------------------

    def get(self, name: str) -> Value | None:
        if name == "":
            return None
        return self.values[name]

    def var(self, v: Value, node: str = "") -> str:
        """The spec variable holding a runtime value, writing its statement if still lazy."""
        if isinstance(v, Tensor):
            if v.var is None:
                v.var = v.lazy()
            return v.var
        if isinstance(v, Const):
            return self.const_decl(v, node)
        raise ImportProblem("a size computed at run time used as a tensor", node)

    def const_decl(self, c: Const, node: str) -> str:
        arr = c.array
        if arr.size > 4096:
            raise ImportProblem(f"a constant tensor of {arr.size} elements used as an operand "
                                "(no layer of dslc holds it)", node)
        dtype = DTYPES.get(_np_onnx_type(arr.dtype))
        if dtype is None:
            raise ImportProblem(f"a constant of dtype {arr.dtype}", node)
        name = self.fresh(c.sources[0] if c.sources else "k")
        shape = ", ".join(str(d) for d in arr.shape)
        nums = [_num(x) for x in arr.reshape(-1).tolist()]
        rows = [", ".join(nums[i:i + 4]) for i in range(0, len(nums), 4)]
        flat = rows[0] if len(rows) == 1 else "\n      " + ",\n      ".join(rows) + "\n  "
        self.consts.append(f"const {name}: {dtype}[{shape}] = [{flat}]")
        return name

    def emit(self, expr: str, first: str | None = None, hint: str | list[str] = "h", n_out: int = 1,
             label: str | None = None, params: dict[str, np.ndarray] | None = None,
             node: str = "") -> list[str]:
        hints = hint if isinstance(hint, (list, tuple)) else [hint] * n_out
        targets = [self.fresh(h if n_out == 1 or isinstance(hint, (list, tuple))
                              else f"{h}{i}") for i, h in enumerate(hints)]
        self.stmts.append(Stmt(targets, expr, first, label, dict(params or {}), node))
        return targets

    def tensor(self, out_name: str, var: str | None = None, lazy=None, tag=(),
               dtype: str | None = None) -> Tensor:
        t = Tensor(self.shapes.get(out_name, []), dtype or self.dtypes.get(out_name, "f32"),
                   var=var, lazy=lazy, tag=tuple(tag))
        if var is not None:
            self.var_types[var] = (t.dtype, list(t.shape))
        return t

    def rank(self, v: Value) -> int | None:
        if isinstance(v, Tensor):
            return len(v.shape) if v.shape else None
        if isinstance(v, Const):
            return v.array.ndim
        return None

    def shape_dims(self, v: Tensor, node: str) -> list[sympy.Expr]:
        """Every size of a runtime tensor, as spec dims (`x.shape[i]` where shape inference
        could not name it)."""
        if not v.shape:
            raise ImportProblem("the shape of a tensor whose rank is unknown", node)
        out = []
        for i, d in enumerate(v.shape):
            if d is None:
                out.append(D.symbol(f"{self.var(v, node)}.shape[{i}]"))
            else:
                out.append(d)
        return out


class ImportProblem(Exception):
    """A node that cannot be imported as it is; collected, then reported together."""

    def __init__(self, detail: str, node: str = ""):
        super().__init__(detail)
        self.detail = detail
        self.node = node


def _num(x) -> str:
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    return repr(float(x))


def _np_onnx_type(dt: np.dtype) -> int:
    return {np.dtype("float32"): 1, np.dtype("float16"): 10, np.dtype("float64"): 11,
            np.dtype("int32"): 6, np.dtype("int64"): 7, np.dtype("bool"): 9}.get(dt, 0)


def _dim(d, imp: Importer):
    if d.HasField("dim_value") and d.dim_value > 0:
        return sympy.Integer(d.dim_value)
    if d.HasField("dim_param"):
        return parse_dim_param(d.dim_param, imp.dim_names)
    return None
