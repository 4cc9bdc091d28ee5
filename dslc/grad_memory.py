"""Reverse mode's plan and its memory, between the IR and dslc/autodiff.py: which nodes the
forward keeps for the backward walk, which blocks are recomputed (checkpointing), and the
bytes the walk holds at its peak, computed from the graph alone (`dslc summary`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from dslc.ir import Graph, IRNode
from dslc.ops.registry import OPS

Ref = tuple[int, int]


def trainable(node: IRNode) -> list[str]:
    """The node's parameters that get a gradient: persistent float non-buffers."""
    return [local for local, spec in node.params.items()
            if spec.persistent and not spec.buffer and spec.dtype in ("f16", "bf16", "f32",
                                                                      "f64")]


def has_region_params(node: IRNode) -> bool:
    """Whether the node owns a region (a scan's cell) with parameters of its own."""
    attrs = node.attrs.__dict__ if node.attrs is not None else {}
    return any(isinstance(v, Graph) and v.param_keys() for v in attrs.values())


def active_nodes(graph: Graph, wrt_inputs: bool) -> set[int]:
    """Nodes whose float outputs depend on a trainable parameter (or an input, when input
    gradients are asked for): the ones a gradient must pass through."""
    active: set[int] = set()
    for node in graph.order():
        if node.op == "input":
            if wrt_inputs and node.types[0].is_float:
                active.add(node.id)
        elif (trainable(node) or has_region_params(node)
              or any(ref[0] in active for ref in node.inputs)):
            active.add(node.id)
    return active


def reaching(graph: Graph, active: set[int], loss_refs: list[Ref]) -> set[int]:
    """The active nodes a cotangent from `loss_refs` reaches, walking back along float
    values: the only nodes whose vjp the backward walk runs."""
    reach = set(loss_refs)
    out: set[int] = set()
    for node in reversed(graph.order()):
        if node.op == "input" or node.id not in active:
            continue
        if not any((node.id, port) in reach for port in range(len(node.types))):
            continue
        out.add(node.id)
        reach.update(ref for ref in node.inputs if graph.type_of(ref).is_float)
    return out


def block_of(graph: Graph, node: IRNode) -> str | None:
    """The unit `checkpoint_blocks` recomputes: the outermost frame around the node that is a
    block instance or one iteration of a repeat (a repeat as a whole is many such units)."""
    for path in node.frames:
        frame = graph.frames.get(path)
        if frame is not None and frame.kind != "repeat":
            return path
    return None


@dataclass
class Plan:
    """What the forward keeps: `keep` are the nodes whose inputs, outputs and context are
    taped; a node in `segment` (checkpointing) is not taped in the forward: its block's
    inputs from outside the block are, and the whole block is run again when the backward
    walk reaches it."""

    keep: set[int]
    segment: dict[int, str] = field(default_factory=dict)
    members: dict[str, list[int]] = field(default_factory=dict)  # block -> ids, in order


def make_plan(graph: Graph, loss_refs: list[Ref] | None = None, wrt_inputs: bool = False,
              checkpoint: bool = False) -> Plan:
    """Without `loss_refs` every node is kept (a tape any output can be differentiated on);
    with them only the active nodes that the loss's cotangent reaches."""
    if loss_refs is None:
        keep = {n.id for n in graph.order() if n.op != "input"}
    else:
        keep = reaching(graph, active_nodes(graph, wrt_inputs), loss_refs)
    plan = Plan(keep)
    if not checkpoint:
        return plan
    blocks: dict[str, list[int]] = {}
    for node in graph.order():
        path = block_of(graph, node) if node.op != "input" else None
        if path is not None:
            blocks.setdefault(path, []).append(node.id)
    for path, ids in blocks.items():
        if any(i in keep for i in ids):  # a block the backward never enters is not recomputed
            plan.members[path] = ids
            for i in ids:
                plan.segment[i] = path
    return plan


# ---- the static memory model ---------------------------------------------------------------


def float_outputs(graph: Graph) -> list[Ref]:
    return [ref for _, ref in graph.outputs if graph.type_of(ref).is_float]


def training_peak(graph: Graph, size_of: Callable[[Ref], int],
                  loss_refs: list[Ref] | None = None, wrt_inputs: bool = False,
                  checkpoint: bool = False,
                  extra_of: Callable[[IRNode], int] = lambda node: 0) -> int:
    """Bytes held at the widest point of one forward and backward walk (dslc/autodiff.py)
    differentiating `loss_refs` (default: every float output, each given a cotangent),
    replaying the walk's own events: forward values until their last reader has run, taped
    values until the vjp of the last node that keeps them has run, a checkpointed block's
    outside inputs until it is recomputed, the outputs throughout, and the cotangents from
    the vjp that makes them until their producer's vjp, and what a kernel keeps for its vjp
    (`extra_of(node)` bytes: Op.vjp_keeps) with its tape entry. Measured at the instants
    `autodiff.Probe` sees: after each forward node, after each recomputed block and as each
    vjp returns (its output cotangents and input cotangents both alive). Not counted: the
    parameters and their gradients, the kernels' temporaries, what a kernel keeps without
    declaring it (dropout's mask, a scan's per-step values), and that an op may hand back its
    input (dropout in eval or at p = 0), which counts as a value of its own here."""
    loss_refs = float_outputs(graph) if loss_refs is None else loss_refs
    plan = make_plan(graph, loss_refs, wrt_inputs, checkpoint)
    active = active_nodes(graph, wrt_inputs)
    order = graph.order()
    dead = graph.last_uses()
    # A held thing is a key: a forward value (ref), a recomputed value ("r", ref) or a
    # cotangent ("g", ref); holders count how many places keep it.
    holds: dict[object, int] = {}
    held_size: dict[object, int] = {}
    total = 0  # bytes of the keys held

    def hold(key: object, n: int) -> None:
        nonlocal total
        if key not in holds:
            holds[key] = 0
            held_size[key] = n
            total += n
        holds[key] += 1

    def drop(key: object) -> None:
        nonlocal total
        holds[key] -= 1
        if not holds[key]:
            del holds[key]
            total -= held_size.pop(key)

    def live(extra: dict[object, int] | None = None) -> int:
        return total + sum(n for k, n in (extra or {}).items() if k not in holds)

    def kept(node: IRNode, tag: str = "k") -> list[object]:
        """The key of what the node's kernel keeps for its vjp (Op.vjp_keeps), if any."""
        keeps = OPS[node.op].vjp_keeps if node.op in OPS else None
        if keeps is None:
            return []
        n = extra_of(node)
        if not n:
            return []
        key = (tag + "k", (node.id, 0))
        extras[key] = n
        return [key]

    extras: dict[object, int] = {}

    def size(key: object) -> int:
        if key in extras:
            return extras[key]
        return size_of(key[1] if isinstance(key[0], str) else key)

    taped: dict[int, list[object]] = {}  # node -> keys its tape entry holds
    seg_ins: dict[str, list[object]] = {}
    peak = 0
    for i, node in enumerate(order):
        outs = [(node.id, p) for p in range(len(node.types))]
        for ref in outs:
            hold(ref, size_of(ref))  # the forward's value
        seg = plan.segment.get(node.id)
        if seg is not None:
            held = seg_ins.setdefault(seg, [])
            for ref in node.inputs:
                if plan.segment.get(ref[0]) != seg and ref not in held:
                    held.append(ref)
                    hold(ref, size_of(ref))
        elif node.id in plan.keep:
            taped[node.id] = list(node.inputs) + outs + kept(node)
            for key in taped[node.id]:
                hold(key, size(key))
        for ref in dead[i]:
            drop(ref)
        peak = max(peak, live())
    for _, ref in graph.outputs:
        hold(ref, size_of(ref))  # the tape's outputs, held through the backward walk
    for _, ref in graph.outputs:
        drop(ref)  # the forward's own reference (outputs are never in `dead`)
    for ref in loss_refs:
        if ("g", ref) not in holds:
            hold(("g", ref), size_of(ref))
    done: set[str] = set()
    for node in reversed(order):
        seg = plan.segment.get(node.id)
        if seg is not None and node.id in plan.keep and seg not in done:
            done.add(seg)
            vals: dict[object, int] = {}
            members = set(plan.members[seg])
            for mid in plan.members[seg]:
                m = graph.nodes[mid]
                mouts = [("r", (mid, p)) for p in range(len(m.types))]
                for key in mouts:
                    vals[key] = size_of(key[1])
                if mid in plan.keep:
                    keys = [("r", ref) if ref[0] in members else ref for ref in m.inputs]
                    taped[mid] = keys + mouts + kept(m, "r")
                    for key in taped[mid]:
                        hold(key, size(key))
            peak = max(peak, live(vals))
            for ref in seg_ins.pop(seg):
                drop(ref)
        if node.id not in taped:
            continue
        gouts = [("g", (node.id, p)) for p in range(len(node.types))]
        reached = [k for k in gouts if k in holds]
        if reached and node.id in active:
            gins = {("n", ref): size_of(ref) for ref in node.inputs
                    if graph.type_of(ref).is_float}
            peak = max(peak, live(gins))
            for ref in node.inputs:
                if ref[0] in active and graph.type_of(ref).is_float:
                    if ("g", ref) not in holds:
                        hold(("g", ref), size_of(ref))
        for key in reached:
            drop(key)
        for key in taped.pop(node.id):
            drop(key)
    return peak


def kept_elements(graph: Graph, node: IRNode):
    """Elements the node's kernel keeps for its vjp (Op.vjp_keeps; 0 without it), a dim."""
    from dslc import dims as D

    op = OPS.get(node.op)
    if op is None or op.vjp_keeps is None:
        return D.const(0)
    ins = [graph.type_of(ref) for ref in node.inputs]
    return D.as_dim(op.vjp_keeps(node.attrs, ins, node.types))


def symbolic_peak(graph: Graph, size_of: Callable[[Ref], sympy.Expr],
                  extra_of: Callable[[IRNode], sympy.Expr] | None = None,
                  **kw) -> sympy.Expr | None:
    """`training_peak` where the sizes may hold unbound dims: exact when every size is an
    integer or every nonzero size is a multiple of one common term (everything scales with
    the batch B), else None (the widest point depends on the sizes)."""
    sizes: dict[object, sympy.Expr] = {}
    for node in graph.order():
        for port in range(len(node.types)):
            sizes[(node.id, port)] = sympy.sympify(size_of((node.id, port)))
        if extra_of is not None:
            sizes[node.id] = sympy.sympify(extra_of(node))
    if all(s.is_Integer for s in sizes.values()):
        return sympy.Integer(training_peak(graph, lambda r: int(sizes[r]),
                                           extra_of=lambda n: int(sizes.get(n.id, 0)), **kw))
    terms = {key: s.as_coeff_Mul() for key, s in sizes.items() if s != 0}
    rests = {rest for _, rest in terms.values()}
    if len(rests) != 1:
        return None
    rest = rests.pop()
    coeff = {key: int(c) for key, (c, _) in terms.items()}
    return training_peak(graph, lambda r: coeff.get(r, 0),
                         extra_of=lambda n: coeff.get(n.id, 0), **kw) * rest
