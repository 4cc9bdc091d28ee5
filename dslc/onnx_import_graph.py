"""ONNX import of the graph layers: the Gather / ScatterND patterns `dslc export` writes for
`gcn_conv`, `gat_conv`, `sage_conv`, `readout`, ... folded back into one statement of the op.

dslc's exporter names every node `<frame>/<what>/<OpType>@<file:line:col>` and gives it the
doc string `<file:line:col> <op>` (docs/onnx.md), so the nodes one graph op became are found
by those two names together. The op's attributes are read from its parameters' shapes and a
few node attributes (LeakyRelu's slope, a divisor); then the candidate op is lowered again by
the exporter, on inputs of the same types, and its node sequence compared with the file's:
same op types, attributes, small constants, parameters and data flow. Only a group that
matches becomes `x -> gcn_conv(edge_index, 16) as conv1`; a group that names a graph op but
matches none of its candidates is reported (E0826) and nothing is written. Files from other
exporters carry no such names: their ScatterND nodes are listed as ops without a
counterpart (E0825).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from dslc import onnx_import_ops as ops
from dslc.onnx_import_core import Importer, ImportProblem
from dslc.onnx_import_values import Const, Tensor, dim_text

# The ops whose lowering is a Gather / ScatterND pattern (dslc/backends/onnx_lower_graph.py).
GRAPH_OPS = frozenset({
    "gather", "scatter", "edge_softmax", "degree", "add_self_loops", "gcn_norm", "laplacian",
    "propagate", "chebyshev", "diffusion", "readout", "edge_dropout", "gcn_conv", "cheb_conv",
    "gat_conv", "gin_aggregate", "sage_conv", "gmm_conv"})

# The order of each op's inputs, by role: node features [N, ...], edge index [2, E], per-edge
# tensors [E, ...], the batch vector [N]; a trailing "?" marks an optional input.
ROLES: dict[str, tuple[str, ...]] = {
    "gather": ("node", "ei"), "scatter": ("edge", "ei", "node"),
    "edge_softmax": ("edge", "ei", "node"), "degree": ("ei", "node"),
    "add_self_loops": ("ei", "node"), "gcn_norm": ("ei", "node", "edge?"),
    "laplacian": ("ei", "node"), "propagate": ("node", "ei", "edge?"),
    "chebyshev": ("node", "ei", "edge"), "diffusion": ("node", "ei"),
    "readout": ("node", "batch"), "gcn_conv": ("node", "ei", "edge?"),
    "cheb_conv": ("node", "ei"), "gat_conv": ("node", "ei"), "gin_aggregate": ("node", "ei"),
    "sage_conv": ("node", "ei"), "gmm_conv": ("node", "ei", "edge"),
}
OUTPUTS = {"gcn_norm": 2, "laplacian": 2}
# The layer's name in a numbered label when its initializers give none.
KIND = {"gcn_conv": "conv", "cheb_conv": "conv", "gat_conv": "conv", "sage_conv": "conv",
        "gmm_conv": "conv", "gin_aggregate": "agg"}
_NAME = re.compile(r"^(?P<label>.+)/(?P<op>[A-Za-z]+)@(?P<loc>.+?)(_\d+)?$")
FOLDED = Tensor([], "f32", var="<folded>")


@dataclass
class Group:
    """The nodes one IR op of the exported spec became."""

    op: str
    loc: str
    label: str
    nodes: list = field(default_factory=list)
    done: bool = False


def _groups(imp: Importer) -> dict[str, Group]:
    """Node name -> its group, for every node whose names say a graph op made it."""
    cached = imp.__dict__.get("graph_groups")
    if cached is not None:
        return cached
    by_key: dict[tuple[str, str], Group] = {}
    out: dict[str, Group] = {}
    for node in imp.graph.node:
        loc, _, op = node.doc_string.rpartition(" ")
        if op not in GRAPH_OPS or not loc:
            continue
        m = _NAME.match(node.name)
        if m is None or m.group("loc") != loc or m.group("op") != node.op_type:
            continue
        g = by_key.setdefault((m.group("label"), node.doc_string),
                              Group(op, loc, m.group("label")))
        g.nodes.append(node)
        out[node.name] = g
    imp.__dict__["graph_groups"] = out
    return out


def _graph_pattern(imp: Importer, node) -> list | None:
    """The NODE_PATTERNS entry: at the first node of a group, the whole group."""
    g = _groups(imp).get(node.name)
    if g is None or g.done:
        return None
    g.done = True
    made = {o for n in g.nodes for o in n.output if o}
    ext = [i for n in g.nodes for i in n.input if i and i not in made]
    if any(isinstance(imp.values.get(i), Tensor) and imp.values[i].var == ops.POISON
           for i in ext):
        return _settle(imp, g, node, {}, set())  # an input failed: reported there already
    try:
        if g.op == "edge_dropout":
            values, keep = _edge_dropout(imp, g)
        else:
            values, keep = _fold(imp, g)
    except ImportProblem as exc:
        imp.problems.append(("graph layer", f"{g.label} ({g.op} at {g.loc})", exc.detail))
        return _settle(imp, g, node, {}, set())
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        # Nodes whose attributes or inputs are not what their op requires: a malformed file.
        imp.problems.append(("graph layer", f"{g.label} ({g.op} at {g.loc})", "malformed "
                             f"node ({type(exc).__name__}: {str(exc)[:120]})"))
        return _settle(imp, g, node, {}, set())
    return _settle(imp, g, node, values, keep)


def _settle(imp: Importer, g: Group, first, values: dict, keep: set) -> list | None:
    """Values for every node of the group: the op's outputs, placeholders inside; nodes in
    `keep` (sizes that later nodes read too) are left to the ordinary walk. Without values
    (a failure) everything is poisoned, so nothing downstream is reported twice."""
    poison = Tensor([], "f32", var=ops.POISON)
    mine = None
    for n in g.nodes:
        if n.name in keep:
            continue
        outs = [values.get(o, FOLDED) if values else poison for o in n.output]
        if n is first:
            mine = outs
        else:
            imp.skip[n.name] = outs
    return mine  # None for a kept size node: the walk computes it


# ---- edge dropout -------------------------------------------------------------------------


def _edge_dropout(imp: Importer, g: Group) -> tuple[dict, set]:
    """Shape(edge_index)[1:2] -> ConstantOfShape(1): every edge kept, as in evaluation mode.
    The rate is the one `dslc.train_attrs` records (onnx_import_train), else the default."""
    shape, fill = (g.nodes + [None, None])[:2]
    if len(g.nodes) != 2 or shape.op_type != "Shape" or fill.op_type != "ConstantOfShape":
        raise ImportProblem("an edge_dropout other than Shape -> ConstantOfShape of ones")
    a = ops.attrs_of(imp, shape)
    ei = imp.values.get(shape.input[0])
    value = ops.attrs_of(imp, fill).get("value")
    ones = imp.onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1)
    if (a.get("start"), a.get("end")) != (1, 2) or not _is_edge_index(ei) or \
            ones.size != 1 or float(ones.reshape(-1)[0]) != 1.0:
        raise ImportProblem("an edge_dropout other than ones over the edges of an edge index")
    dtype = _dtype_of(int(value.data_type))
    like = next((var for var, _ in imp.inputs if imp.var_types.get(var, ("", []))[0] == dtype
                 and len(imp.var_types[var][1]) >= 1), None)
    if like is None:
        raise ImportProblem(f"an edge_dropout whose dtype {dtype} no input of the model has")
    from dslc.onnx_import_train import train_call

    call = train_call(imp, fill, frozenset({"edge_dropout"})) or "edge_dropout"
    args = call.partition("(")[2].rstrip(")")
    (var,) = imp.emit(f"edge_dropout({like}{', ' + args if args else ''})",
                      first=ops._t(imp, ei, shape),
                      hint=fill.output[0], node=fill.name)
    return {fill.output[0]: imp.tensor(fill.output[0], var=var, dtype=dtype)}, set()


def _dtype_of(elem: int) -> str:
    from dslc.onnx_import_values import DTYPES

    return DTYPES.get(elem, "f32")


def _is_edge_index(v) -> bool:
    return (isinstance(v, Tensor) and v.dtype in ("i64", "i32") and len(v.shape) == 2
            and v.shape[0] is not None and v.shape[0] == 2)


# ---- the general case: candidates checked against the exporter's own lowering -------------


def _fold(imp: Importer, g: Group) -> tuple[dict, set]:
    real = _Side.of_file(imp, g)
    tensors = [v for v in real.runtime if isinstance(imp.values.get(v), Tensor)]
    params = real.params
    tried = []
    for attrs in _candidates(g.op, real, params):
        for order in _orders(imp, g.op, tensors):
            types = _probe_types(imp, g.op, order)
            probe = _probe(g.op, attrs, types, _opset(imp), _carried(imp, attrs))
            if probe is None:
                continue
            why = _compare(real, probe, order)
            if why is None:
                return _emit(imp, g, real, order, attrs), _kept(real)
            tried.append(f"{_call_text(g.op, attrs, ['…'] * len(order))}: {why}")
    detail = f"the nodes do not match dslc's lowering of {g.op}"
    if tried:
        detail += f" ({tried[0]})"
    raise ImportProblem(detail)


def _carried(imp: Importer, attrs: dict) -> tuple[str, ...]:
    """Dims the probe must have an input of, as the file has: a readout's graph count that
    an input holds is read from that input's shape, not computed from the batch vector."""
    graphs = attrs.get("graphs")
    return (graphs,) if isinstance(graphs, str) and graphs in imp.dim_names.values() else ()


def _probe_types(imp: Importer, op: str, order: list[str]) -> list[tuple[str, list[str]]]:
    """The inputs' types for the probe, by role: N nodes and E edges (the file may know
    neither, or only derived sizes such as E + N), the feature sizes the file's."""
    out = []
    fresh = iter(f"P{i}" for i in range(1, 100))
    for v, role in zip(order, ROLES[op]):
        t = imp.values[v]
        rest = [dim_text(d) if d is not None and sympy.sympify(d).is_Integer else next(fresh)
                for d in t.shape[1:]]
        head = {"ei": ["2", "E"], "batch": ["N"], "node": ["N"] + rest,
                "edge": ["E"] + rest}[role.rstrip("?")]
        out.append((t.dtype, head))
    return out


def _opset(imp: Importer) -> int:
    return max(17, min(23, ops._opset(imp)))


def _orders(imp: Importer, op: str, tensors: list[str]) -> list[list[str]]:
    """Assignments of the group's runtime inputs to the op's inputs that fit the roles."""
    roles = ROLES[op]
    need = [r for r in roles if not r.endswith("?")]
    out = []
    for n in sorted({len(need), len(roles)}, reverse=True):
        for perm in itertools.permutations(tensors, n):
            if all(_fits(imp.values[v], r.rstrip("?")) for v, r in zip(perm, roles)):
                out.append(list(perm))
    return out


def _fits(v: Tensor, role: str) -> bool:
    floating = v.dtype in ("f32", "f64", "f16", "bf16")
    if role == "ei":
        return _is_edge_index(v)
    if role == "batch":
        return v.dtype in ("i64", "i32") and len(v.shape) == 1
    return floating and len(v.shape) >= 1


def _or(value: Any, default: Any) -> Any:
    """An attribute's value, or ONNX's default where the node leaves it out."""
    return default if value is None else value


def _float_attr(x: float) -> float:
    """A float32 attribute as the number a spec writes (0.2, not 0.20000000298)."""
    return float(str(np.float32(x)))


def _candidates(op: str, real: _Side, params: dict[str, tuple]) -> list[dict[str, Any]]:
    """The attribute sets the file can have been made with (checked one by one)."""
    types = [n.op_type for n in real.nodes]
    maxed = any(n.op_type == "ScatterND" and real.attr(n, "reduction") in (b"max", "max")
                for n in real.nodes)
    reduce = "max" if maxed else "mean" if "Max" in types else "sum"
    sides = [{"side": "source"}, {"side": "target"}]
    last = real.nodes[-1]
    if op in ("gather", "degree"):
        return sides
    if op == "scatter":
        return [{"reduce": reduce, **s} for s in sides]
    if op in ("edge_softmax", "add_self_loops", "gcn_norm", "propagate"):
        return [{}]
    if op == "laplacian":
        lam = real.divisor() or 2.0
        return [{"normalization": n, "scaled": s, "lambda_max": lam}
                for n in ("sym", "rw", "none") for s in (False, True)]
    if op == "chebyshev":
        return [{"K": len(last.input)}] if last.op_type == "Concat" else []
    if op == "diffusion":
        return [{"hops": len(last.input)}] if last.op_type == "Concat" else []
    if op == "readout":
        graphs = real.out_dim0()
        if isinstance(graphs, str) and real.imp is not None:  # the spec's name of the dim
            graphs = real.imp.dim_names.get(graphs, graphs)
        return [{"reduce": reduce, "graphs": graphs}] if graphs is not None else []
    if op == "gcn_conv" and "weight" in params:
        return [{"out_channels": params["weight"][0], "bias": "bias" in params}]
    if op == "cheb_conv" and "weight" in params:
        k, o = params["weight"][:2]
        return [{"out_channels": o, "K": k, "normalization": n,
                 "lambda_max": real.divisor() or 2.0, "bias": "bias" in params}
                for n in ("sym", "rw", "none")]
    if op == "gat_conv" and "att_src" in params:
        _, h, c = params["att_src"]
        slope = next((_float_attr(_or(real.attr(n, "alpha"), 0.01)) for n in real.nodes
                      if n.op_type == "LeakyRelu"), 0.2)
        return [{"out_channels": c, "heads": h, "concat": "ReduceMean" not in types,
                 "negative_slope": slope, "bias": "bias" in params}]
    if op == "gin_aggregate":
        if "eps" in params:
            return [{"train_eps": True}]
        scale = real.scalar_operand("Mul")
        eps = round(scale - 1.0, 6) if scale is not None else 0.0
        return [{"eps": eps}]
    if op == "sage_conv" and "lin_l_weight" in params:
        aggr = "lstm" if "weight_ih" in params else "max" if maxed else "mean"
        return [{"out_channels": params["lin_l_weight"][0], "aggr": aggr,
                 "project": "lin_weight" in params, "root_weight": "lin_r_weight" in params,
                 "bias": "lin_l_bias" in params}]
    if op == "gmm_conv" and "mu" in params and "g" in params:
        k = params["mu"][0]
        return [{"out_channels": params["g"][1] // k, "kernel_size": k,
                 "root_weight": "root_weight" in params, "bias": "bias" in params}]
    return []


# ---- writing the call --------------------------------------------------------------------


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return repr(v)
    return str(int(v))


def _call_text(op: str, attrs: dict[str, Any], args: list[str]) -> str:
    """`op(args..., positional attrs..., kw=...)`, leaving out attributes at their default;
    readout's graphs, a dim name, is written as a string."""
    from dslc.ops.registry import OPS

    spec = OPS[op]
    fields = spec.attrs.model_fields

    def needed(k: str) -> bool:
        f = fields[k]
        return f.is_required() or attrs[k] != f.default
    pos = [k for k in spec.positional if k in attrs]
    upto = max((i + 1 for i, k in enumerate(pos) if needed(k)), default=0)
    parts = list(args) + [_literal(attrs[k]) for k in pos[:upto]]
    parts += [f"{k}={_literal(v)}" for k, v in attrs.items()
              if k not in pos[:upto] and needed(k)]
    return f"{op}({', '.join(parts)})"


# ---- the probe: the exporter's lowering of a candidate ------------------------------------

_PROBES: dict[tuple, Any] = {}


def _probe(op: str, attrs: dict, types: list, opset: int, carried: tuple[str, ...] = ()):
    """The nodes dslc's exporter writes for `op` with these attributes on inputs of these
    types (cached), as a `_Side`; None when the candidate does not check."""
    key = (op, tuple(sorted(attrs.items())), tuple((d, tuple(s)) for d, s in types), opset,
           carried)
    if key in _PROBES:
        return _PROBES[key]
    import dslc
    from dslc.backends.onnx_export import build_model
    from dslc.diagnostics import DslcError

    decls, names = [], []
    for i, (dtype, dims) in enumerate(types):
        names.append(f"in{i}")
        decls.append(f"  input in{i}: {dtype}[{', '.join(dims)}]")
    decls += [f"  input carry{i}: f32[{d}]" for i, d in enumerate(carried)]
    n_out = OUTPUTS.get(op, 1)
    outs = [f"out{i}" for i in range(n_out)]
    label = " as layer" if op in KIND else ""
    text = "model probe {\n" + "\n".join(decls) + "\n" + \
        f"  {', '.join(outs)} = {_call_text(op, attrs, names)}{label}\n" + \
        f"  output {', '.join(outs)}\n}}\n"
    side = None
    try:
        prog = dslc.load("probe.dl", text=text)
        params = prog.init_params(0)
        model = build_model(prog.graph, prog.fold_params(params), opset)
        side = _Side.of_probe(model, op, names, outs)
    except DslcError:  # the candidate does not check on these types: no match
        side = None
    except Exception:  # noqa: BLE001 - nor does one the exporter cannot lower
        side = None
    _PROBES[key] = side
    return side


# ---- comparing two node lists ------------------------------------------------------------


class _Side:
    """One op's nodes, from the file or from a probe, with what each input is: a runtime
    input of the op, a parameter (by its local name), a constant, or a size."""

    def __init__(self, nodes: list, kind_of, onnx_helper, outputs: list[str]):
        self.nodes = nodes
        self.helper = onnx_helper
        self.made = {o: (k, p) for k, n in enumerate(nodes) for p, o in enumerate(n.output)}
        self.kind_of = kind_of  # external value -> ("runtime",) ("param", local, shape)
        #                         ("const", array) ("size",)
        self.outputs = outputs
        self.static: set[int] = set()
        for k, n in enumerate(nodes):
            kinds = [self.kind(i) for i in n.input if i]
            if n.op_type == "Shape" or all(c[0] != "runtime" and c[0] != "node" for c in kinds):
                self.static.add(k)
        self.live = [k for k in range(len(nodes)) if k not in self.static]
        self.runtime = list(dict.fromkeys(i for n in nodes for i in n.input
                                          if i and self.kind(i)[0] == "runtime"))
        self.params = {}
        for n in nodes:
            for i in n.input:
                c = self.kind(i) if i else ("",)
                if c[0] == "param":
                    self.params[c[1]] = c[2]
        self.imp: Importer | None = None  # the file's side: where its values are
        self.g: Group | None = None
        self.prefix: str | None = None  # the parameters' module path
        self.inputs: list[str] = []  # the probe's side: its graph inputs, in the op's order
        self.result: list[str] = []  # the file's values the op's outputs are, once matched

    def kind(self, value: str) -> tuple:
        if value in self.made:
            k, p = self.made[value]
            if k in getattr(self, "static", ()):
                return ("size",)
            return ("node", k, p)
        return self.kind_of(value)

    def attr(self, node, name: str):
        for a in node.attribute:
            if a.name == name:
                return self.helper.get_attribute_value(a)
        return None

    def divisor(self) -> float | None:
        """The scalar a Div divides by (the Laplacian's lambda_max)."""
        for n in self.nodes:
            if n.op_type == "Div" and len(n.input) == 2:
                c = self.kind(n.input[1])
                if c[0] == "const" and c[1].size == 1 and c[1].dtype.kind == "f":
                    return _float_attr(float(c[1].reshape(-1)[0]))
        return None

    def scalar_operand(self, op_type: str) -> float | None:
        for n in self.nodes:
            if n.op_type == op_type:
                for i in n.input:
                    c = self.kind(i)
                    if c[0] == "const" and c[1].size == 1 and c[1].dtype.kind == "f":
                        return float(c[1].reshape(-1)[0])
        return None

    def out_dim0(self) -> int | str | None:
        """The first size of the op's output as the file declares it: a number or a dim
        name (readout's graph count, which no input need have)."""
        if self.imp is None or not self.outputs:
            return None
        g = self.imp.graph
        for vi in list(g.value_info) + list(g.output):
            if vi.name == self.outputs[0] and vi.type.tensor_type.shape.dim:
                d = vi.type.tensor_type.shape.dim[0]
                if d.HasField("dim_value"):
                    return int(d.dim_value)
                if re.match(r"^[A-Za-z_]\w*$", d.dim_param):
                    return d.dim_param
        return None

    @classmethod
    def of_file(cls, imp: Importer, g: Group) -> _Side:
        names = {n.name for n in g.nodes}
        inits = {t.name for t in imp.graph.initializer}
        prefix = _param_prefix(g, inits)

        def kind_of(value: str) -> tuple:
            v = imp.values.get(value)
            if value in inits and prefix and value.startswith(prefix + "."):
                arr = v.array if isinstance(v, Const) else None
                return ("param", value[len(prefix) + 1:], None if arr is None else arr.shape)
            if isinstance(v, Const):
                return ("const", v.array)
            if isinstance(v, Tensor):
                return ("runtime",)
            return ("size",)
        # The op's results: values its nodes make that other nodes (or the graph) read.
        outputs = []
        graph_out = {o.name for o in imp.graph.output}
        for n in g.nodes:
            for o in n.output:
                users = imp.consumers.get(o, [])
                if o and (o in graph_out or any(u is not None and u.name not in names
                                                for u in users)):
                    outputs.append(o)
        side = cls(list(g.nodes), kind_of, imp.onnx.helper, outputs)
        side.imp, side.g, side.prefix = imp, g, prefix
        return side

    @classmethod
    def of_probe(cls, model, op: str, inputs: list[str], outs: list[str]) -> _Side:
        from onnx import helper, numpy_helper

        nodes = [n for n in model.graph.node if n.doc_string.endswith(f" {op}")]
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        ins = set(inputs)

        def kind_of(value: str) -> tuple:
            if value in ins:
                return ("runtime",)
            if value.startswith("layer."):
                return ("param", value[len("layer."):], inits[value].shape)
            if value in inits:
                return ("const", inits[value])
            return ("size",)
        # An output the exporter passed through an Identity is read from the node making it.
        alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
        side = cls(nodes, kind_of, helper, [alias.get(o, o) for o in outs])
        side.inputs = inputs
        return side


def _param_prefix(g: Group, inits: set[str]) -> str | None:
    """The module path of the op's parameters (`conv1`, `conv.0.agg`): the frame and the
    layer name of the group's label, as the exporter's state_dict keys spell them."""
    read = {i for n in g.nodes for i in n.input if i in inits and "." in i}
    heads = {i.rsplit(".", 1)[0] for i in read}
    want = g.label.replace("/", ".")
    if want in heads:
        return want
    return heads.pop() if len(heads) == 1 else None


def _compare(real: _Side, probe: _Side, order: list[str]) -> str | None:
    """None when the file's nodes are the probe's (sizes aside), else what differs."""
    if [real.nodes[k].op_type for k in real.live] != [probe.nodes[k].op_type
                                                      for k in probe.live]:
        return "the op sequence differs"
    if set(real.params) != set(probe.params) or any(
            real.params[k] is not None and tuple(real.params[k]) != tuple(probe.params[k])
            for k in real.params):
        return "the parameters differ"
    mapping: dict[str, str] = {}
    for rk, pk in zip(real.live, probe.live):
        rn, pn = real.nodes[rk], probe.nodes[pk]
        if len(rn.input) != len(pn.input) or len(rn.output) != len(pn.output):
            return f"node {rn.name} has other inputs"
        if not _same_attrs(real, rn, probe, pn):
            return f"node {rn.name} has other attributes"
        for r_in, p_in in zip(rn.input, pn.input):
            why = _same_input(real, r_in, probe, p_in, mapping)
            if why:
                return f"node {rn.name}: {why}"
    for p_name, r_name in zip(probe.inputs, order):
        if mapping.get(p_name, r_name) != r_name:
            return "the inputs are used in another order"
    if set(mapping) - set(probe.inputs):
        return "unexpected inputs"
    # The op's results: the probe's outputs, at the same places in the file's nodes.
    outs = []
    for o in probe.outputs:
        c = probe.kind(o)
        if c[0] != "node":
            return "an output is not computed by the op"
        k, p = c[1], c[2]
        outs.append(real.nodes[real.live[probe.live.index(k)]].output[p])
    extra = [o for o in real.outputs if o not in outs and real.kind(o)[0] == "node"]
    if extra:
        return f"{extra[0]} inside the pattern is read by other nodes"
    real.result = outs
    return None


def _same_attrs(real: _Side, rn, probe: _Side, pn) -> bool:
    ra = {a.name: real.helper.get_attribute_value(a) for a in rn.attribute}
    pa = {a.name: probe.helper.get_attribute_value(a) for a in pn.attribute}
    if set(ra) != set(pa):
        return False
    for k, v in ra.items():
        w = pa[k]
        if isinstance(v, float) or isinstance(w, float):
            if not np.isclose(float(v), float(w), rtol=1e-6):
                return False
        elif hasattr(v, "dims") and hasattr(w, "dims"):  # a TensorProto (ConstantOfShape)
            from onnx import numpy_helper

            a, b = numpy_helper.to_array(v), numpy_helper.to_array(w)
            if a.shape != b.shape or not np.allclose(a, b, equal_nan=True):
                return False
        elif v != w:
            return False
    return True


def _same_input(real: _Side, r_in: str, probe: _Side, p_in: str,
                mapping: dict[str, str]) -> str | None:
    if not r_in or not p_in:
        return None if r_in == p_in else "an optional input differs"
    rc, pc = real.kind(r_in), probe.kind(p_in)
    if pc[0] == "runtime":
        if rc[0] != "runtime":
            return "an input of the op is computed inside it"
        if mapping.setdefault(p_in, r_in) != r_in:
            return "one input of the op is read where the lowering reads another"
        return None
    if rc[0] != pc[0] and not {rc[0], pc[0]} <= {"size", "const"}:
        return f"reads a {rc[0]} where the lowering reads a {pc[0]}"
    if pc[0] == "node" and (rc[1] != real.live[probe.live.index(pc[1])] or rc[2] != pc[2]):
        return "the data flow differs"
    if pc[0] == "param" and rc[1] != pc[1]:
        return f"reads parameter {rc[1]} where the lowering reads {pc[1]}"
    if pc[0] == "const" and rc[0] == "const":
        a, b = rc[1], pc[1]
        if a.shape != b.shape or a.dtype != b.dtype or not np.allclose(
                a.astype(np.float64), b.astype(np.float64), rtol=1e-6, equal_nan=True):
            return "a constant differs"
    return None


# ---- the statement ------------------------------------------------------------------------


def _emit(imp: Importer, g: Group, real: _Side, order: list[str], attrs: dict) -> dict:
    """The op's statement, its first input piped in; the file's output values as its
    targets."""
    args = [ops._t(imp, imp.values[v], g.nodes[0]) for v in order]
    params = {}
    for n in g.nodes:
        for i in n.input:
            c = real.kind(i) if i else ("",)
            if c[0] == "param" and c[1] not in params:
                params[c[1]] = np.ascontiguousarray(imp.values[i].array.astype(np.float32))
    label = None
    if params:
        label = imp.take_label(_label(imp, real.prefix), KIND.get(g.op, g.op))
    call = _call_text(g.op, attrs, args[1:])
    targets = imp.emit(call, first=args[0], hint=list(real.result),
                       n_out=len(real.result), label=label, params=params,
                       node=g.nodes[-1].name)
    return {o: imp.tensor(o, var=t) for o, t in zip(real.result, targets)}


def _label(imp: Importer, prefix: str | None) -> str | None:
    """`conv1` for `conv1.weight`, `conv_0_agg` for `conv.0.agg.eps` (the module path kept for
    the repeat finder), when the name is free."""
    if not prefix:
        return None
    label = re.sub(r"[^\w]", "_", prefix)
    if not re.match(r"^[A-Za-z_]\w*$", label) or label in imp.labels or label in imp.taken:
        return None
    imp.paths[label] = prefix
    return label


def _kept(real: _Side) -> set[str]:
    """Size nodes whose values other nodes read too (a dim the exporter computed once for
    the whole model), with the size nodes they are computed from: the walk folds them."""
    imp, g = real.imp, real.g
    names = {n.name for n in g.nodes}
    keep: set[int] = set()
    for k in real.static:
        n = g.nodes[k]
        if any(u is None or u.name not in names for o in n.output
               for u in imp.consumers.get(o, [])):
            keep.add(k)
    stack = list(keep)
    while stack:
        n = g.nodes[stack.pop()]
        for i in n.input:
            if i in real.made:
                k = real.made[i][0]
                if k in real.static and k not in keep:
                    keep.add(k)
                    stack.append(k)
    return {g.nodes[k].name for k in keep}


ops.NODE_PATTERNS.append(_graph_pattern)
