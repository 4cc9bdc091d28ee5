"""ONNX back end: lowers the optimised IR graph to an ONNX model (`dslc export`).

Built with the `onnx` package alone (never through torch). Design decisions:

- (The lead's decision.) Lowerings live here and in the family modules `onnx_lower_*.py`, as
  one plain table keyed by IR op name, not in the op files (DESIGN.md's "one place per op"
  notwithstanding): `onnx` is an optional dependency (`pip install dslc[onnx]`), imported only
  when a model is exported, and the op files were being edited by several contributors at
  once. An op without an entry is a located E0802 ("no ONNX lowering for op X"), never a
  traceback.
- A lowering is `fn(lw: Lower, node: IRNode, ins: list[str]) -> list[str]`: it appends ONNX
  nodes through `lw` (one node, or a small pattern documented in docs/onnx.md) and returns
  the ONNX value names of the IR node's outputs.
- Names: parameters are initializers named by their state_dict keys; ONNX nodes are named
  `<frame>/<layer or value>/<OpType>@<file:line:col>` where <frame> is the innermost
  block/repeat path of the IR node (`layer1.0/conv1/Conv@cnn.dl:32:12`), so a repeat's
  iterations and a block's layers read as one group; every node's doc_string is the spec
  location and op. The value an IR node computes is `<frame>/<layer or value>` (graph inputs
  and outputs keep the spec's names).
- Dims: symbols bound nowhere stay symbolic (`dim_param` B, T, N, E), derived dims (B*T, T-2)
  are left unnamed; shapes that depend on runtime dims are computed from the inputs' shapes
  (Shape, then integer arithmetic), once per model.
- Inference only: random ops (dropout, noise, reparameterize, edge dropout) export as their
  evaluation-mode function (the identity, the mean, all edges kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import sympy

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.ir import Graph, IRNode

DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 17, 23
# The IR version each opset needs (onnx.helper.VERSION_TABLE); onnxruntime reads these.
IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}
MAX_MODEL_BYTES = 2 ** 31  # protobuf's limit for one message (an ONNX file)

Lowering = Callable[..., list[str]]


def require_onnx() -> None:
    """E0801 when the optional `onnx` package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise DslcError(Diagnostic(
            "E0801", "exporting to ONNX needs the `onnx` package, which is not installed",
            Span("<export>", 0, 0, 0, 0), hint="pip install dslc[onnx]")) from None


def lowerings() -> dict[str, Lowering]:
    """The table: IR op name -> lowering (imports onnx)."""
    from dslc.backends import (
        onnx_lower_attention,
        onnx_lower_conv,
        onnx_lower_core,
        onnx_lower_graph,
        onnx_lower_loss,
        onnx_lower_modern,
        onnx_lower_pointwise,
        onnx_lower_pool,
        onnx_lower_resample,
        onnx_lower_seq,
    )

    table: dict[str, Lowering] = {}
    for mod in (onnx_lower_core, onnx_lower_seq, onnx_lower_attention, onnx_lower_graph,
                onnx_lower_loss, onnx_lower_conv, onnx_lower_pool, onnx_lower_pointwise,
                onnx_lower_modern, onnx_lower_resample):
        table.update(mod.LOWERINGS)
    return table


def lower_graph(state, graph: Graph, name: str):
    """The model's ONNX graph builder, its inputs the spec's, and the IR value map."""
    from dslc.backends.onnx_builder import GraphBuilder, value_info

    b = GraphBuilder(state, name)
    state.root = b
    names = []
    for in_name, nid in graph.inputs:
        t = graph.nodes[nid].types[0]
        state.names.add(in_name)
        b.inputs.append(value_info(in_name, t, state.bindings))
        names.append(in_name)
        for axis, d in enumerate(t.shape):
            d = D.substitute(d, state.bindings)
            if d.is_Symbol:
                state.sym_sources.setdefault(d.name, (in_name, axis))
            elif not d.is_Integer:
                state.sym_sources.setdefault(sympy.srepr(d), (in_name, axis))
    return b, lower_into(b, graph, names)


def lower_into(b, graph: Graph, input_values: list[str]) -> dict:
    """Lower the nodes of IR `graph` into builder `b` (the model's graph or a Loop body), its
    inputs bound to the ONNX values `input_values`; returns IR value -> ONNX value name."""
    from dslc.backends.onnx_builder import Lower, export_error, value_info

    state = b.state
    table = state.table
    values: dict[tuple[int, int], str] = {}
    for (_, nid), val in zip(graph.inputs, input_values):
        values[(nid, 0)] = val
    for node in graph.order():
        if node.op == "input":
            continue
        fn = table.get(node.op)
        if fn is None:
            raise export_error("E0802", f"no ONNX lowering for op `{node.op}`", node.span,
                               hint="export a model without it, or add a lowering to "
                               "dslc/backends/onnx_lower_*.py (see docs/onnx.md)")
        ins = [values[r] for r in node.inputs]
        lw = Lower(b, node, ins, graph)
        outs = list(fn(lw, node, ins))
        assert len(outs) == len(node.types), f"{node.op} lowering gave {len(outs)} outputs"
        _note_train_attrs(state, node, lw)
        made = _made_outputs(lw)
        for port, val in enumerate(outs):
            if val in made:
                val = _name_value(lw, node, port, val)
                b.value_info.append(value_info(val, node.types[port], state.bindings))
            values[(node.id, port)] = val
    return values


# Ops whose attributes only act in training, so that their inference lowering loses them.
TRAIN_ATTR_OPS = frozenset({"dropout", "dropout2d", "alpha_dropout", "drop_path",
                            "gaussian_noise", "edge_dropout"})


# Layers with a training-only attribute among others: ONNX's RNN, LSTM and GRU have no
# dropout between stacked layers.
TRAIN_ATTR_FIELDS = {"rnn": "dropout", "lstm": "dropout", "gru": "dropout"}


def _note_train_attrs(state, node: IRNode, lw) -> None:
    """A train-only op (dropout, drop_path, edge_dropout, ...) exports as its inference
    function, without its rate: its nodes' names map to its attributes in the model property
    `dslc.train_attrs`, which `dslc import` reads back (dslc/onnx_import_train.py). So does a
    recurrent layer's non-zero `dropout`."""
    if not lw.made or node.op not in TRAIN_ATTR_OPS | TRAIN_ATTR_FIELDS.keys():
        return
    attrs = node.attrs.model_dump(mode="json") if node.attrs is not None else {}
    if node.op in TRAIN_ATTR_FIELDS:
        key = TRAIN_ATTR_FIELDS[node.op]
        if not attrs.get(key):
            return
        attrs = {key: attrs[key]}
    for n in lw.made:
        state.train_attrs[n.name] = {"op": node.op, **attrs}


def _made_outputs(lw) -> set[str]:
    return {o for n in lw.made for o in n.output}


def _name_value(lw, node: IRNode, port: int, val: str) -> str:
    """Rename the value a lowering returned to `<frame>/<spec name>` when one of its own
    nodes made it (a pass-through such as eval-mode dropout keeps its input's name)."""
    made = [n for n in lw.made if val in n.output]
    if not made:
        return val
    base = lw.label
    if len(node.types) > 1:
        # `hs, h = scan ...` names its values together: each port gets its own name
        names = node.name.split(",")
        base = (base.rsplit("/", 1)[0] + "/" if "/" in base else "") + names[port].strip() \
            if len(names) == len(node.types) else f"{base}.{port}"
    new = lw.state.unique(base)
    for n in lw.made:
        for i, o in enumerate(n.output):
            if o == val:
                n.output[i] = new
        for i, o in enumerate(n.input):
            if o == val:
                n.input[i] = new
    lw.state.names.discard(val)
    return new


def build_model(graph: Graph, params: dict[str, np.ndarray], opset: int = DEFAULT_OPSET,
                bindings: dict[str, int] | None = None, doc: str = ""):
    """The ONNX ModelProto of an optimised IR graph with these (already folded) parameters."""
    require_onnx()
    from onnx import helper

    from dslc.backends.onnx_builder import ExportState, value_info

    state = ExportState(opset=opset, params=params, bindings=dict(bindings or {}),
                        table=lowerings(), lower_into=lower_into)
    # The outputs' names are the spec's: no intermediate value may take them.
    state.names.update(name for name, _ in graph.outputs)
    b, values = lower_graph(state, graph, graph.model)
    input_names = {v.name for v in b.inputs}
    used: set[str] = set()
    renamed: dict[str, str] = {}
    for out_name, ref in graph.outputs:
        val = renamed.get(values[ref], values[ref])
        t = graph.type_of(ref)
        if val != out_name:
            if val in input_names or val in used or val in state.initializers:
                # An output that is an input, another output or a parameter: an Identity.
                b.nodes.append(helper.make_node("Identity", [val], [out_name],
                                                name=state.unique_node(f"{out_name}/Identity")))
            else:
                _rename(b, val, out_name)
                renamed[val] = out_name
        used.add(out_name)
        b.outputs.append(value_info(out_name, t, state.bindings))
    b.value_info = [v for v in b.value_info if v.name not in used]
    _drop_unused_constants(state, b)
    model = helper.make_model(
        b.make_graph(), producer_name="dslc", producer_version="0.1.0", doc_string=doc,
        opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION[opset]
    # Where the model came from, for a reader of the file (Netron shows these).
    props = {"dslc.model": graph.model, "dslc.spec": graph.file.rsplit("/", 1)[-1]}
    if graph.hparams:
        props["dslc.hparams"] = ", ".join(f"{k}={v!r}" for k, v in graph.hparams.items())
    if bindings:
        props["dslc.bind"] = ", ".join(f"{k}={v}" for k, v in sorted(bindings.items()))
    if state.train_attrs:
        props["dslc.train_attrs"] = json.dumps(state.train_attrs, sort_keys=True)
    helper.set_model_props(model, props)
    return model


def _drop_unused_constants(state, b) -> None:
    """A lowering may make a constant it ends up not using (a shared small constant, say):
    leave out initializers no node of any graph reads."""
    read: set[str] = set()

    def walk(nodes):
        for n in nodes:
            read.update(n.input)
            for attr in n.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g.node)
    walk(b.nodes)
    read.update(o.name for o in b.outputs)
    for name in [k for k in state.initializers if k not in read]:
        del state.initializers[name]


def _rename(b, old: str, new: str) -> None:
    """Rename a value everywhere in the model's graph (nodes, value_info, Loop bodies)."""
    def walk(nodes):
        for n in nodes:
            for i, o in enumerate(n.output):
                if o == old:
                    n.output[i] = new
            for i, o in enumerate(n.input):
                if o == old:
                    n.input[i] = new
            for attr in n.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g.node)
                    for vi in list(attr.g.output):
                        if vi.name == old:
                            vi.name = new
    walk(b.nodes)
    for vi in b.value_info:
        if vi.name == old:
            vi.name = new


def check_opset(opset: int, span: Span) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DslcError(Diagnostic(
            "E0806", f"ONNX opset {opset} is not supported", span,
            expected=f"{MIN_OPSET} <= opset <= {MAX_OPSET} (default {DEFAULT_OPSET})",
            found=str(opset)))


def export_bytes(prog, params: dict[str, np.ndarray] | None = None, opset: int = DEFAULT_OPSET,
                 bindings: dict[str, int] | None = None, seed: int = 0) -> bytes:
    """The serialised ONNX model of a Program: parameters from `params` (the source's
    state_dict format, as `dslc run --params` takes) or initialised from `seed`."""
    from dslc import interp

    require_onnx()
    check_opset(opset, prog.graph.span or Span(prog.path, 0, 0, 0, 0))
    if params is None:
        params = prog.init_params(seed)
    else:
        interp.validate_params(prog.source, params)
    folded = prog.fold_params(params)
    model = build_model(prog.graph, folded, opset, bindings,
                        doc=f"{prog.name} from {prog.path.rsplit('/', 1)[-1]} (dslc)")
    size = model.ByteSize()
    if size >= MAX_MODEL_BYTES:
        raise DslcError(Diagnostic(
            "E0807", "the model is too large for one ONNX file", prog.graph.span
            or Span(prog.path, 0, 0, 0, 0), expected="less than 2 GiB (protobuf's limit)",
            found=f"{size / 2 ** 30:.1f} GiB", hint="export a smaller configuration (--set)"))
    return model.SerializeToString()
