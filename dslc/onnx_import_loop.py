"""ONNX import of `Loop` and `Scan` nodes: the body graph becomes a cell `block` and the node a
dslc `scan` statement (a handler of the node walk, dslc/onnx_import_ops.py).

A dslc `scan` (docs/language.md, "Recurrences") runs a cell once per step of its sequences,
carrying states. ONNX writes the same thing two ways:

- `Loop(M, cond, states...)`: the body takes (iteration, cond, states...) and gives (cond,
  new states..., per-step outputs...); the per-step outputs come out stacked on a new axis 0.
  dslc's export reads each sequence's step with `Gather(x, t, axis=k)` of an outer tensor; such
  gathers become the scan's `over` sequences (`along k`), and the trip count must be their
  length (or a number: `steps N` without sequences). A loop whose condition can change, that
  uses its counter otherwise, or has no trip count is a while loop: E0826.
- `Scan(states..., sequences...)`: the body takes (states..., steps...) and gives (new
  states..., per-step outputs...), with `scan_input_axes` / `scan_output_axes` and directions.

The body's nodes go through the same handlers as the main graph, in an importer of their own
(`_Body`): its statements are the cell block, its layers the cell's layers (keys
`<scan label>.<layer>.<param>`), and values of the outer graph it reads are constants (weights)
or the cell's extra tensor inputs (`scan cell(memory) ...`). A stacked output is time-major in
ONNX and stacked on `along` in dslc: the exporter's Transpose back is read through, and any
other reader gets the `permute` written out.
"""

from __future__ import annotations

import re

import numpy as np
import sympy

from dslc import onnx_import_ops as ops
from dslc.onnx_import_core import Importer, ImportProblem
from dslc.onnx_import_values import Const, Dims, Tensor, Value, dim_text, dims_value


class _Body(Importer):
    """The importer of a loop body: a scope of its own, sharing the outer dims' names."""

    def __init__(self, outer: Importer, graph, prefix: str):
        super().__init__(outer.onnx, outer.model, outer.path, outer.model_name)
        self.graph = graph
        self.outer = outer
        self.prefix = prefix  # the scan's label in the initializer names (`elman_cell1`)
        self.dim_names = outer.dim_names
        self.taken |= set(outer.dim_names.values()) | set(outer.block_names)
        self.extra_blocks = outer.extra_blocks  # a loop inside the body writes its cell there
        self.block_names = outer.block_names

    def fresh(self, hint: str) -> str:
        """Variables named without the scan's frame (`char_step1/h_new` -> `h_new`)."""
        return super().fresh(_hint(hint))

    def label_for(self, sources: tuple[str, ...], suffixes: tuple[str, ...] = ()) -> str | None:
        """Layer names relative to the scan: `elman_cell1.ih.weight` names the layer `ih`."""
        if self.prefix:
            head = self.prefix + "."
            sources = tuple(s[len(head):] if s.startswith(head) else s for s in sources)
        return super().label_for(sources, suffixes)


def _body_shapes(imp: Importer, body: Importer, node) -> None:
    """Shapes and dtypes of the body's values: the file's value_info, completed by ONNX's
    shape inference of the whole model (which infers subgraphs too)."""
    from dslc.onnx_import_core import _dim
    from dslc.onnx_import_values import DTYPES

    graphs = [_attr_graph(node, "body")]
    inferred = getattr(imp, "_inferred_model", None)
    if inferred is None:
        try:
            inferred = imp.onnx.shape_inference.infer_shapes(imp.model)
        except Exception:  # noqa: BLE001 - inference is help, not a requirement
            inferred = imp.model
        imp.__dict__["_inferred_model"] = inferred
    for other in inferred.graph.node:
        if list(other.output) == list(node.output) and other.op_type == node.op_type:
            graphs.append(_attr_graph(other, "body"))
    for g in graphs:
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if tt.elem_type and vi.name not in body.dtypes:
                body.dtypes[vi.name] = DTYPES.get(tt.elem_type, f"onnx{tt.elem_type}")
            if tt.HasField("shape") and not body.shapes.get(vi.name):
                body.shapes[vi.name] = [_dim(d, body) for d in tt.shape.dim]


def _attr_graph(node, name: str):
    for a in node.attribute:
        if a.name == name:
            return a.g
    raise ImportProblem(f"a {node.op_type} without its `{name}` graph")


def _outer_reads(graph, skip: set[int] = frozenset()) -> list[str]:
    """Names the body reads but does not define (values of the enclosing graph), but for the
    nodes in `skip`."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for n in graph.node:
        defined.update(o for o in n.output if o)
    reads: list[str] = []
    for n in (n for k, n in enumerate(graph.node) if k not in skip):
        for name in list(n.input) + _nested_reads(n):
            if name and name not in defined and name not in reads:
                reads.append(name)
    for o in graph.output:
        if o.name not in defined and o.name not in reads:
            reads.append(o.name)
    return reads


def _nested_reads(node) -> list[str]:
    out: list[str] = []
    for a in node.attribute:
        if a.g and a.g.node:
            out += _outer_reads(a.g)
    return out


def _prefix(imp: Importer, graph) -> str:
    """The first component shared by every initializer the body reads (`elman_cell1` of
    `elman_cell1.ih.weight`): the scan's own label in dslc's export, kept as the label."""
    firsts = set()
    for name in _outer_reads(graph):
        v = imp.values.get(name)
        if isinstance(v, Const) and v.sources and v.array.dtype.kind == "f":
            for s in v.sources:
                first, dot, _rest = s.partition(".")
                if dot:  # a dotless name (the export's `scalar`) names no layer
                    firsts.add(first)
    if len(firsts) == 1:
        first = firsts.pop()
        if re.match(r"^[A-Za-z_]\w*$", first):
            return first
    return ""


def _hint(name: str) -> str:
    return name.rpartition("/")[2] or name


def _same(a, b) -> bool:
    return a is not None and b is not None and sympy.simplify(sympy.sympify(a) - b) == 0


class _Cell:
    """What the scan statement needs from the body: the cell block and the mapping."""

    def __init__(self):
        self.seq_vars: list[str] = []  # outer variables scanned over
        self.seq_inputs: list[tuple[str, Tensor]] = []  # body name -> step tensor
        self.state_inputs: list[tuple[str, Tensor]] = []  # body name -> state tensor
        self.skip_nodes: set[int] = set()  # body nodes the mapping already stands for
        self.fixed: dict[str, Value] = {}  # body inputs with a known value (the condition)


def _build_cell(imp: Importer, node, graph, cell: _Cell, state_outs: list[str],
                step_outs: list[str], stacked: list[str]
                ) -> tuple[str, list[str], str | None, dict, int]:
    """Import the body as a block. Returns (block name, static outer variables, the scan's
    label, its parameters, how many per-step outputs the cell writes)."""
    prefix = _prefix(imp, graph)
    body = _Body(imp, graph, prefix)
    _body_shapes(imp, body, node)
    body.values.update(cell.fixed)
    decls: list[tuple[str, Tensor]] = []
    hints = [imp.var(imp.values[s], node.name) for s in cell.seq_vars] + [
        name for name, _ in cell.state_inputs]
    for hint, (name, t) in zip(hints, cell.seq_inputs + cell.state_inputs, strict=True):
        var = body.fresh(hint)
        t.var = var
        body.values[name] = t
        body.var_types[var] = (t.dtype, list(t.shape))
        decls.append((var, t))
    statics: list[str] = []
    for name in _outer_reads(graph, cell.skip_nodes):
        if name in body.values:
            continue
        v = imp.values.get(name)
        if v is None:
            raise ImportProblem(f"the body reads '{name}', which the outer graph lacks")
        if isinstance(v, Tensor):
            if v.var == ops.POISON:
                raise ImportProblem("the body reads a value that did not import")
            outer_var = imp.var(v, node.name)
            var = body.fresh(outer_var)
            inner = Tensor(list(v.shape), v.dtype, var=var)
            body.values[name] = inner
            body.var_types[var] = (v.dtype, list(v.shape))
            statics.append(outer_var)
            decls.append((var, inner))
        else:
            body.values[name] = v  # weights and sizes: the cell reads them as they are
    nodes = [n for k, n in enumerate(graph.node) if k not in cell.skip_nodes]
    for n in nodes:
        ops.visit(body, n)
    _merge_problems(imp, body, node)
    outs = [body.values.get(o) for o in state_outs + step_outs]
    if any(v is None or isinstance(v, Tensor) and v.var == ops.POISON for v in outs):
        raise ImportProblem("its body does not import (see the other messages)")
    out_vars = [body.var(v, node.name) for v in outs]
    n_states = len(state_outs)
    # A cell that returns only its states makes them the per-step outputs (Elman).
    only_states = out_vars[n_states:] == out_vars[:n_states]
    written = out_vars[:n_states] if only_states else out_vars
    stem = re.sub(r"\d+$", "", prefix)
    name = imp.fresh(stem if stem and stem != prefix else f"{prefix}_cell" if prefix else "cell")
    imp.block_names.append(name)
    label = imp.take_label(prefix or None, name) if _has_params(body) else None
    hints = [_stacked_hint(imp, s) for s in stacked] + ["y"] * len(step_outs)
    block, params = _block_text(body, name, decls, written, n_states, hints)
    imp.extra_blocks.append(block)
    return name, statics, label, params, 0 if only_states else len(step_outs)


def _has_params(body: Importer) -> bool:
    return any(st.label and st.params for st in body.stmts)


def _merge_problems(imp: Importer, body: Importer, node) -> None:
    where = node.name or node.op_type
    for op, names in body.unsupported.items():
        imp.unsupported.setdefault(op, []).extend(f"{where}/{n}" for n in names)
    imp.problems += [(kind, f"{where}/{n}", detail) for kind, n, detail in body.problems]
    if body.unsupported or body.problems:
        body.unsupported.clear()
        body.problems.clear()
        raise ImportProblem("its body does not import (see the other messages)")


def _block_text(body: Importer, name: str, decls: list[tuple[str, Tensor]],
                out_vars: list[str], n_states: int, out_hints: list[str]) -> tuple[str, dict]:
    from dslc.onnx_import_text import _chains, _format, _live, _refs

    defined = {v for v, _ in decls} | {t for st in body.stmts for t in st.targets}
    defined |= {c.split(":")[0].split()[1] for c in body.consts}
    stmts = _live(body.stmts, out_vars, defined)
    used: set[str] = set(out_vars)
    for st in stmts:
        used |= set(_refs(st.expr, defined)) | ({st.first} if st.first else set())
    dims = set(body.dim_names.values())
    typed = any(dims & set(re.findall(r"[A-Za-z_]\w*", st.expr)) for st in stmts)
    lines = [f"block {name} {{"]
    for var, t in decls:
        lines.append(f"  input {var}{_type(t) if typed else ''}")
    lines += [f"  {c}" for c in body.consts if c.split(":")[0].split()[1] in used]
    for targets, parts in _chains(stmts, out_vars, defined):
        lines += _format(targets, parts)
    names, seen = [], set()
    for k, var in enumerate(out_vars):
        if var in seen or (k >= n_states and var in {v for v, _ in decls}):
            hint = out_hints[k - n_states] if k >= n_states else "y"
            names.append(f"{body.fresh(hint)} = {var}")
        else:
            names.append(var)
        seen.add(var)
    lines += [f"  output {', '.join(names)}", "}", ""]
    params = {}
    for st in stmts:
        if st.label and st.params:
            for k, v in st.params.items():
                params[f"{st.label}.{k}"] = v
    return "\n".join(lines), params


def _type(t: Tensor) -> str:
    if not t.shape or any(d is None or not (d.is_Integer or d.is_Symbol) for d in t.shape):
        return ""
    return f": {t.dtype}[{', '.join(dim_text(d) for d in t.shape)}]"


def _step_type(t: Tensor, axis: int) -> Tensor:
    shape = list(t.shape[:axis]) + list(t.shape[axis + 1:]) if t.shape else []
    return Tensor(shape, t.dtype)


# ---- Loop -----------------------------------------------------------------------------------


@ops.handles("Loop")
def _loop(imp: Importer, node, ins: list, attrs: dict):
    graph = _attr_graph(node, "body")
    if len(graph.input) < 2 or len(graph.output) < 1:
        raise ImportProblem("a Loop body without its iteration and condition inputs")
    trip, cond = ins[0], ins[1] if len(ins) > 1 else None
    states = ins[2:]
    it_name, cond_name = graph.input[0].name, graph.input[1].name
    if trip is None:
        raise ImportProblem("a Loop without a trip count (a while loop: dslc's scan runs a "
                            "fixed number of steps)")
    if cond is not None and not (isinstance(cond, Const) and bool(cond.array.reshape(-1)[0])):
        raise ImportProblem("a Loop whose first condition is computed at run time")
    if not _cond_kept(imp, graph, cond_name):
        raise ImportProblem("a Loop whose condition can change inside the body (a while "
                            "loop: dslc's scan runs every step)")
    cell = _Cell()
    cell.fixed[cond_name] = Const(np.ones((), dtype=bool))
    index, reverse = _step_index(imp, graph, it_name, trip, cell)
    along = None
    for k, n in enumerate(graph.node):
        if index not in n.input or k in cell.skip_nodes:
            continue
        outer = n.input[0] if n.input else ""
        if outer not in imp.values:
            outer = _whole_slice(imp, graph, outer, cell)
        v = imp.values.get(outer)
        if n.op_type != "Gather" or list(n.input[1:]) != [index] or not isinstance(v, Tensor):
            raise ImportProblem("a Loop that uses its iteration number other than to take "
                                "one step of an outer sequence (`Gather(x, t)`)")
        axis = ops._norm_axis(ops.attrs_of(imp, n).get("axis", 0), imp.rank(v))
        if along is not None and axis != along:
            raise ImportProblem("a Loop that steps through its sequences on different axes")
        along = axis
        cell.seq_vars.append(outer)
        cell.seq_inputs.append((n.output[0], _step_type(v, axis)))
        cell.skip_nodes.add(k)
    n_carried = len(states)
    body_outs = [o.name for o in graph.output]
    if len(body_outs) < 1 + n_carried:
        raise ImportProblem("a Loop body with fewer outputs than its carried states")
    collected = _collectors(imp, node, graph, cell)  # carried index -> the value inserted
    real = [i for i in range(n_carried) if i not in collected]
    for i in real:
        v = states[i]
        if not isinstance(v, Tensor):
            raise ImportProblem("a Loop state that starts from a constant (dslc's scan starts "
                                "from tensors)")
        cell.state_inputs.append((graph.input[2 + i].name, Tensor(list(v.shape), v.dtype)))
    steps = _trip_steps(imp, trip, [imp.values[s] for s in cell.seq_vars], along)
    sequences = [node.output[i] for i in collected]
    stacked = sequences + list(node.output[n_carried:])
    if along is None:
        along = _output_axis(imp, stacked)
    if reverse and not cell.seq_vars:
        raise ImportProblem("a Loop that counts down without stepping through a sequence")
    if reverse and sequences:
        raise ImportProblem("a Loop that counts down and collects a sequence")
    return _scan_stmt(imp, node, graph, cell, [body_outs[1 + i] for i in real],
                      list(collected.values()) + body_outs[1 + n_carried:],
                      [states[i] for i in real], steps, along, reverse,
                      finals=[node.output[i] for i in real], stacked=stacked,
                      time_major=True, sequences=frozenset(sequences))


def _collectors(imp: Importer, node, graph, cell: _Cell) -> dict[int, str]:
    """Carried values that start as `SequenceEmpty` and gain one `SequenceInsert` per step
    (how torch's TorchScript export collects a Python loop's outputs): per-step outputs, not
    states. Returns {carried index: the body value inserted}."""
    out: dict[int, str] = {}
    for i, outer in enumerate(node.input[2:]):
        prod = imp.producer.get(outer)
        if prod is None or prod.op_type != "SequenceEmpty":
            continue
        b_in, b_out = graph.input[2 + i].name, graph.output[1 + i].name
        k, ins = next(((k, n) for k, n in enumerate(graph.node) if b_out in n.output),
                      (None, None))
        readers = [n for n in graph.node if b_in in n.input]
        if ins is None or ins.op_type != "SequenceInsert" or list(ins.input[:1]) != [b_in] \
                or len(ins.input) != 2 or readers != [ins]:
            raise ImportProblem("a Loop that carries an ONNX sequence other than to collect "
                                "one value per step")
        cell.skip_nodes.add(k)
        out[i] = ins.input[1]
    return out


def _body_const(imp: Importer, graph, name: str, depth: int = 0) -> np.ndarray | None:
    """The value of a body value computed from constants alone (torch's Constant and
    Unsqueeze nodes inside the body), or None."""
    v = imp.values.get(name)
    if isinstance(v, Const):
        return v.array
    prod = next((n for n in graph.node if name in n.output), None)
    if prod is None or depth > 6:
        return None
    feeds = {}
    for i in prod.input:
        if i:
            arr = _body_const(imp, graph, i, depth + 1)
            if arr is None:
                return None
            feeds[i] = arr
    from onnx.reference import ReferenceEvaluator

    try:
        outs = ReferenceEvaluator(prod, opsets={"": ops._opset(imp)}).run(None, feeds)
    except Exception:  # noqa: BLE001 - not a foldable node: no constant
        return None
    return np.asarray(outs[list(prod.output).index(name)])


def _whole_slice(imp: Importer, graph, name: str, cell: _Cell) -> str:
    """`Slice(x, 0, INT64_MAX, axis, 1)` of an outer tensor inside the body (torch slices
    `x[:, t]` as all of x, then the step): x itself."""
    k, prod = next(((k, n) for k, n in enumerate(graph.node) if name in n.output),
                   (None, None))
    if prod is None or prod.op_type != "Slice" or prod.input[0] not in imp.values:
        return name
    vals = [_body_const(imp, graph, i) if i else None for i in prod.input[1:5]]
    starts, ends = vals[0], vals[1]
    steps = vals[3] if len(vals) > 3 and vals[3] is not None else np.ones(1, np.int64)
    if starts is None or ends is None or np.any(starts != 0) or np.any(steps != 1) or \
            np.any(ends < 2 ** 62):
        return name
    if [n for n in graph.node if name in n.input and n.op_type != "Gather"]:
        return name
    cell.skip_nodes.add(k)
    return prod.input[0]


def _step_index(imp: Importer, graph, it_name: str, trip: Value, cell: _Cell
                ) -> tuple[str, bool]:
    """The body value that indexes the sequences: the iteration number itself, or `last - t`
    with `last` the trip count less one (dslc's export of a `reverse` scan). Every other use
    of the iteration number is a loop dslc's scan cannot express."""
    users = [(k, n) for k, n in enumerate(graph.node) if it_name in n.input]
    if any(n.op_type == "Gather" for _, n in users):
        return it_name, False
    if len(users) == 1 and users[0][1].op_type == "Sub" and list(users[0][1].input[1:]) == [
            it_name]:
        k, sub = users[0]
        last = dims_value(imp.values.get(sub.input[0])) if isinstance(
            imp.values.get(sub.input[0]), (Const, Dims)) else None
        count = dims_value(trip) if isinstance(trip, (Const, Dims)) else None
        if last and count and len(last) == 1 and _same(last[0], count[0] - 1):
            cell.skip_nodes.add(k)
            return sub.output[0], True
    return it_name, False


def _cond_kept(imp: Importer, graph, cond_name: str) -> bool:
    """The body's condition output is its condition input (through Identity) or true."""
    out = graph.output[0].name
    seen = 0
    while out != cond_name and seen < 8:
        seen += 1
        prod = next((n for n in graph.node if out in n.output), None)
        if prod is None:  # a value of the outer graph: a constant true (torch's export)
            v = imp.values.get(out)
            return isinstance(v, Const) and v.array.size == 1 and bool(v.array.reshape(-1)[0])
        if prod.op_type == "Identity":
            out = prod.input[0]
            continue
        if prod.op_type == "Constant":
            from onnx import numpy_helper

            for a in prod.attribute:
                if a.name == "value":
                    return bool(numpy_helper.to_array(a.t).reshape(-1)[0])
        return False
    return out == cond_name


def _trip_steps(imp: Importer, trip: Value, seqs: list[Tensor], along: int | None):
    """None when the sequences set the steps (the trip count must be their length), else the
    fixed number of steps."""
    count = dims_value(trip) if isinstance(trip, (Const, Dims)) else None
    if count is None or len(count) != 1:
        raise ImportProblem("a Loop whose trip count is computed from tensor values")
    if not seqs:
        if not count[0].is_Integer or int(count[0]) < 1:
            raise ImportProblem("a Loop without sequences whose trip count is not a number")
        return int(count[0])
    for s in seqs:
        length = s.shape[along] if s.shape and len(s.shape) > along else None
        if not _same(count[0], length):
            raise ImportProblem("a Loop whose trip count is not the length of the sequence it "
                                f"steps through ({dim_text(count[0])} steps, length "
                                f"{'?' if length is None else dim_text(length)})")
    return None


def _output_axis(imp: Importer, stacked: list[str]) -> int:
    """Without sequences, the axis the stacked outputs are moved to by a Transpose after the
    loop (dslc's export: 1), else 0."""
    for name in stacked:
        user = ops.sole_user(imp, name, "Transpose")
        if user is not None:
            perm = list(ops.attrs_of(imp, user).get("perm", []))
            k = perm.index(0) if 0 in perm else -1
            if k > 0 and perm == list(range(1, k + 1)) + [0] + list(range(k + 1, len(perm))):
                return k
    return 0


# ---- Scan -----------------------------------------------------------------------------------


@ops.handles("Scan")
def _scan(imp: Importer, node, ins: list, attrs: dict):
    if ops._opset(imp) < 9:
        raise ImportProblem("a Scan of opset 8 (batched, with sequence_lens)")
    graph = _attr_graph(node, "body")
    n_in = int(attrs["num_scan_inputs"])
    n_states = len(ins) - n_in
    states, seqs = ins[:n_states], ins[n_states:]
    n_out = len(node.output) - n_states
    in_axes = [ops._norm_axis(a, imp.rank(s)) for a, s in
               zip(attrs.get("scan_input_axes", [0] * n_in), seqs)]
    out_axes = list(attrs.get("scan_output_axes", [0] * n_out))
    in_dirs = list(attrs.get("scan_input_directions", [0] * n_in))
    out_dirs = list(attrs.get("scan_output_directions", [0] * n_out))
    if len(set(in_axes)) > 1:
        raise ImportProblem("a Scan over sequences on different axes")
    if len(set(in_dirs + out_dirs)) > 1:
        raise ImportProblem("a Scan whose sequences and outputs run in different directions")
    along = in_axes[0] if in_axes else 0
    body_outs = [o.name for o in graph.output]
    rank_out = [len(imp.shapes.get(o) or []) for o in node.output[n_states:]]
    if any(_norm(a, r) != along for a, r in zip(out_axes, rank_out)):
        raise ImportProblem("a Scan that stacks its outputs on another axis than it reads its "
                            "sequences")
    cell = _Cell()
    names = [i.name for i in graph.input]
    for name, v in zip(names[:n_states], states, strict=True):
        if not isinstance(v, Tensor):
            raise ImportProblem("a Scan state that starts from a constant")
        cell.state_inputs.append((name, Tensor(list(v.shape), v.dtype)))
    for k, (name, v) in enumerate(zip(names[n_states:], seqs, strict=True)):
        if not isinstance(v, Tensor):
            raise ImportProblem("a Scan over a constant sequence")
        cell.seq_vars.append(node.input[n_states + k])
        cell.seq_inputs.append((name, _step_type(v, along)))
    # dslc's cell takes the step inputs first, then the states.
    return _scan_stmt(imp, node, graph, cell, body_outs[:n_states], body_outs[n_states:],
                      states, None, along, bool(in_dirs and in_dirs[0]),
                      finals=list(node.output[:n_states]), stacked=list(node.output[n_states:]),
                      time_major=False)


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 and rank else axis


# ---- the scan statement ----------------------------------------------------------------------


def _scan_stmt(imp: Importer, node, graph, cell: _Cell, state_outs, step_outs, states,
               steps: int | None, along: int, reverse: bool, finals: list[str],
               stacked: list[str], time_major: bool, sequences: frozenset = frozenset()
               ) -> list:
    if not states:
        raise ImportProblem("a loop that carries no state (a dslc scan starts `from` states)")
    name, statics, label, params, n_step = _build_cell(imp, node, graph, cell, state_outs,
                                                        step_outs, stacked)
    seq_vars = [imp.var(imp.values[s], node.name) for s in cell.seq_vars]
    init_vars = [imp.var(v, node.name) for v in states]
    call = f"scan {name}" + (f"({', '.join(statics)})" if statics else "")
    if seq_vars:
        call += f" over {', '.join(seq_vars)}"
    call += f" from {', '.join(init_vars)}"
    if steps is not None:
        call += f" steps {steps}"
    if along != 1:
        call += f" along {along}"
    if reverse:
        call += " reverse"
    n_outs = n_step or len(states)
    out_hints = [_stacked_hint(imp, s) for s in stacked] + ["ys"] * (n_outs - len(stacked))
    hints = out_hints[:n_outs] + [_hint(f) for f in finals]
    targets = imp.emit(call, hint=hints, n_out=n_outs + len(states), label=label,
                       params=params, node=node.name or "Loop")
    imp.stmts[-1].meta["scan"] = True
    result = {f: imp.tensor(f, var=t) for f, t in zip(finals, targets[n_outs:])}
    for j, s in enumerate(stacked):
        var = targets[j]
        if s in sequences:
            result[s] = _collected(imp, s, var, along)
        elif time_major and reverse:
            result[s] = _reversed(imp, s, var, along)
        elif time_major and along != 0:
            result[s] = _time_major(imp, node, s, var, along)
        else:
            result[s] = imp.tensor(s, var=var)
    return [result.get(o) for o in node.output]  # in the node's order


def _stacked_hint(imp: Importer, name: str) -> str:
    user = ops.sole_user(imp, name, "Transpose")
    return user.output[0] if user is not None else "ys"


def _time_major(imp: Importer, node, onnx_name: str, var: str, along: int) -> Tensor:
    """A Loop's stacked output [steps, ...]: the scan's output (stacked on `along`) with the
    step axis moved first, written only if a reader needs it that way."""
    out = imp.tensor(onnx_name, tag=("scan_steps", var, along))

    def write() -> str:
        rank = len(out.shape) if out.shape else along + 1
        perm = [along] + [i for i in range(rank) if i != along]
        expr = "transpose(0, 1)" if along == 1 and rank == 2 or perm == [1, 0] + list(
            range(2, rank)) else f"permute({ops._tup(tuple(perm))})"
        (v,) = imp.emit(expr, first=var, hint=onnx_name, node=node.name or "Loop")
        return v
    out.lazy = write
    return out


def _through_transpose(imp: Importer, node, x: Tensor, perm: list[int]) -> Tensor | None:
    """The Transpose that moves the loop's step axis back to `along` is the scan's output."""
    _tag, var, along = x.tag
    want = list(range(1, along + 1)) + [0] + list(range(along + 1, len(perm)))
    if perm != want:
        return None
    return imp.tensor(node.output[0], var=var)


def _reversed(imp: Importer, onnx_name: str, var: str, along: int) -> Tensor:
    """A reverse Loop's stacked output, in the order the steps ran (last step first): only the
    Slice that reverses it back into time order (dslc's export) has a dslc counterpart."""
    out = imp.tensor(onnx_name, tag=("scan_rev", var, along))

    def write() -> str:
        raise ImportProblem("a reversed Loop's stacked output read in the order the steps ran "
                            "(dslc's reverse scan gives it in time order)")
    out.lazy = write
    return out


def _through_slice(imp: Importer, node, x: Tensor, ins: list) -> Tensor | None:
    """Slice(y, -1, -inf, axis 0, step -1) of a reverse Loop's output: the scan's output."""
    vals = [dims_value(v) if isinstance(v, (Const, Dims)) else None for v in ins[1:5]]
    if len(vals) < 4 or any(v is None or len(v) != 1 for v in vals):
        return None
    start, end, axis, step = (v[0] for v in vals)
    if not (start == -1 and axis == 0 and step == -1 and end.is_Integer and
            (int(end) <= -2 ** 62 or _same(end, -1 - (x.shape[0] if x.shape else 10 ** 9)))):
        return None
    _tag, var, along = x.tag
    if along == 0:
        return imp.tensor(node.output[0], var=var)
    return _time_major(imp, node, node.output[0], var, along)


def _collected(imp: Importer, onnx_name: str, var: str, along: int) -> Tensor:
    """A Loop's ONNX sequence of per-step values: only its ConcatFromSequence (next) reads."""
    out = Tensor([], "f32", tag=("scan_seq", var, along))

    def write() -> str:
        raise ImportProblem("an ONNX sequence read other than by ConcatFromSequence")
    out.lazy = write
    return out


@ops.handles("ConcatFromSequence")
def _concat_from_sequence(imp: Importer, node, ins: list, attrs: dict):
    """The steps a Loop collected, stacked on a new axis (`new_axis=1`): the scan's output
    when that axis is `along`, its time-major view when it is 0."""
    x = ins[0]
    if not (isinstance(x, Tensor) and x.tag and x.tag[0] == "scan_seq"):
        raise ImportProblem("a sequence that does not come from a Loop's steps")
    _tag, var, along = x.tag
    axis = int(attrs.get("axis", 0))
    if not attrs.get("new_axis", 0) or axis < 0:
        raise ImportProblem("a ConcatFromSequence that joins the steps on an existing axis")
    if axis == along:
        return [imp.tensor(node.output[0], var=var)]
    if axis == 0:
        return [_time_major(imp, node, node.output[0], var, along)]
    raise ImportProblem(f"steps stacked on axis {axis} while the loop reads axis {along}")


ops.TRANSPOSE_THROUGH["scan_steps"] = _through_transpose
ops.SLICE_THROUGH["scan_rev"] = _through_slice
