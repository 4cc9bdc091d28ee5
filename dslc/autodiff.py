"""Reverse-mode differentiation on NumPy: the interpreter's forward walk keeping each node's
inputs, outputs and RunCtx, then the same graph walked backwards through each op's `vjp`.

No op is named here: an op with regions (a scan) differentiates them in its own `vjp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dslc.grad_memory import Plan, active_nodes, make_plan, trainable
from dslc.interp import (
    bind_inputs,
    check_sizes,
    node_params,
    run_error,
    run_node,
    validate_params,
)
from dslc.ir import Graph, IRNode
from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS

Ref = tuple[int, int]

# What a test or benchmark may watch: called with (tape, cotangents, other arrays alive) at the
# instants `grad_memory.training_peak` models (after each forward node, after each recomputed
# block, and as each vjp returns).
Probe = Callable[["Tape", dict, list[Any]], None]


@dataclass
class Tape:
    """What the forward kept for the backward walk, per node id (only the nodes of `plan.keep`
    outside checkpointed blocks; those blocks' outside inputs in `seg_ins`)."""

    graph: Graph
    order: list[IRNode]
    ins: dict[int, list[np.ndarray]]
    outs: dict[int, list[np.ndarray]]
    ctxs: dict[int, RunCtx]
    outputs: dict[str, np.ndarray]
    plan: Plan | None = None
    seg_ins: dict[str, dict[Ref, np.ndarray]] = field(default_factory=dict)
    rng_states: dict[int, dict] = field(default_factory=dict)  # checkpointed node -> its rng
    run: Callable[..., Any] | None = None  # re-runs a node (a checkpointed block's recompute)
    probe: Probe | None = None


def param_key(node: IRNode, local: str) -> str:
    # A region op (a scan) names its cells' parameters by their full state_dict keys.
    if node.module is None:
        return local
    return f"{node.module}.{local}" if local else node.module


def is_float(arr: Any) -> bool:
    return isinstance(arr, np.ndarray) and np.issubdtype(arr.dtype, np.floating)


def forward(graph: Graph, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
            train: bool = False, seed: int = 0, bindings: dict[str, int] | None = None,
            float64: bool = False, *, loss_refs: list[Ref] | None = None,
            wrt_inputs: bool = False, checkpoint: bool = False,
            probe: Probe | None = None) -> Tape:
    """The interpreter's run, keeping what the backward walk needs (see grad_memory.make_plan:
    everything without `loss_refs`). With `float64`, float inputs and parameters are widened
    after the checks (the finite-difference check). With `checkpoint`, each block's values
    are dropped as in a run without gradients and recomputed by the backward walk."""
    bound = bind_inputs(graph, inputs, bindings)
    check_sizes(graph, bound)
    validate_params(graph, params)
    if float64:
        inputs = {k: widen(v) for k, v in inputs.items()}
        for k in list(params):
            params[k] = widen(params[k])
    plan = make_plan(graph, loss_refs, wrt_inputs, checkpoint)
    return taped(graph, inputs, params, train, np.random.default_rng(seed), bound, plan, probe)


def taped(graph: Graph, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
          train: bool, rng: np.random.Generator, bound: dict[str, int],
          plan: Plan | None = None, probe: Probe | None = None) -> Tape:
    """One graph's forward walk, keeping the inputs, outputs and context of the nodes of
    `plan.keep` (without a plan: of every node); every other value is dropped once its last
    reader has run.

    A region an op's kernel runs (`ctx.run_graph`: a scan's cell, once per step) is taped the
    same way (every node of it), and the op's vjp differentiates the k-th run through
    `ctx.saved["region_vjp"](k, output cotangents) -> (input cotangents,
    {parameter key: gradient})`, which releases that run's tape: backpropagation through time
    holds every step's values until the backward walk reaches it."""
    if plan is None:
        plan = make_plan(graph)
    tape = Tape(graph, graph.order(), {}, {}, {}, {}, plan=plan, probe=probe)

    def run(node: IRNode, ins: list[np.ndarray], gen: np.random.Generator,
            sink: dict[str, np.ndarray]) -> tuple[list[np.ndarray], RunCtx]:
        regions: list[Tape | None] = []

        def run_region(sub: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:
            t = taped(sub, {name: v for (name, _), v in zip(sub.inputs, xs)}, params, train,
                      gen, bound, make_plan(sub))
            regions.append(t)
            return [t.outputs[name] for name, _ in sub.outputs]

        ctx = RunCtx(train=train, rng=gen, params=node_params(node, params), bindings=bound,
                     run_graph=run_region, grad=node.id in plan.keep)
        outs = run_node(node, ins, ctx, sink)
        if regions:
            ctx.saved["region_vjp"] = lambda k, gouts: region_vjp(regions, k, gouts)
        return outs, ctx

    tape.run = run
    input_ids = {nid: name for name, nid in graph.inputs}
    dead = graph.last_uses()
    values: dict[Ref, np.ndarray] = {}
    for i, node in enumerate(tape.order):
        if node.op == "input":
            outs = [inputs[input_ids[node.id]]]
        else:
            ins = [values[ref] for ref in node.inputs]
            seg = plan.segment.get(node.id)
            if seg is not None:
                # A checkpointed block keeps only what it reads from outside, and where the
                # random stream stood (a recomputed dropout draws the same mask).
                held = tape.seg_ins.setdefault(seg, {})
                for ref, v in zip(node.inputs, ins):
                    if plan.segment.get(ref[0]) != seg:
                        held[ref] = v
                tape.rng_states[node.id] = rng.bit_generator.state
            outs, ctx = run(node, ins, rng, params)
            if seg is None and node.id in plan.keep:
                tape.ins[node.id], tape.outs[node.id], tape.ctxs[node.id] = ins, outs, ctx
            del ins, ctx
        for port, v in enumerate(outs):
            values[(node.id, port)] = v
        del outs
        for ref in dead[i]:
            del values[ref]
        if probe is not None:
            probe(tape, {}, list(values.values()))
    tape.outputs = {name: values[ref] for name, ref in graph.outputs}
    return tape


def recompute(tape: Tape, seg: str) -> None:
    """Run a checkpointed block again from its kept outside inputs, with the random stream
    where it stood in the forward, taping its nodes for the backward walk. Buffers the
    kernels update (batch-norm statistics) go to a copy: the forward updated them once."""
    plan = tape.plan
    assert plan is not None and tape.run is not None
    vals: dict[Ref, np.ndarray] = dict(tape.seg_ins[seg])
    sink: dict[str, np.ndarray] = {}
    for nid in plan.members[seg]:
        node = tape.graph.nodes[nid]
        gen = np.random.default_rng()
        gen.bit_generator.state = tape.rng_states.pop(nid)
        ins = [vals[ref] for ref in node.inputs]
        outs, ctx = tape.run(node, ins, gen, sink)
        for port, v in enumerate(outs):
            vals[(nid, port)] = v
        if nid in plan.keep:
            tape.ins[nid], tape.outs[nid], tape.ctxs[nid] = ins, outs, ctx
    if tape.probe is not None:
        tape.probe(tape, {}, list(vals.values()))
    del tape.seg_ins[seg]


def region_vjp(regions: list[Tape | None], k: int, gouts: list[np.ndarray | None],
               ) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
    """The k-th taped run of a region, walked backwards from its outputs' cotangents."""
    tape = regions[k]
    if tape is None:
        raise ValueError(f"region run {k} was differentiated already")
    regions[k] = None
    seeds: dict[Ref, np.ndarray] = {}
    for (_, ref), g in zip(tape.graph.outputs, gouts):
        if g is not None:
            seeds[ref] = seeds[ref] + g if ref in seeds else np.asarray(g)
    grads = backward(tape.graph, tape, seeds, wrt_inputs=True)
    gins = [grads.pop(name, None) for name, _ in tape.graph.inputs]
    return gins, grads


def widen(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float64) if is_float(arr) else arr


def backward(graph: Graph, tape: Tape, seeds: dict[Ref, np.ndarray],
             wrt_inputs: bool = False) -> dict[str, np.ndarray]:
    """Walk the graph in reverse order from the output cotangents `seeds`; returns the
    gradient of every trainable parameter (zeros where the loss does not depend on it) and,
    with `wrt_inputs`, of every float input by its name. Each node's saved values are dropped
    as soon as its vjp has run, and each cotangent once its producer's vjp has; a value
    several nodes read is freed with the last of their tape entries."""
    active = active_nodes(graph, wrt_inputs)
    plan = tape.plan
    cot: dict[Ref, np.ndarray] = dict(seeds)
    grads: dict[str, np.ndarray] = {}
    for node in reversed(tape.order):
        if (plan is not None and node.id in plan.segment and node.id in plan.keep
                and plan.segment[node.id] in tape.seg_ins):
            recompute(tape, plan.segment[node.id])
        ins = tape.ins.pop(node.id, None)
        outs = tape.outs.pop(node.id, None)
        ctx = tape.ctxs.pop(node.id, None)
        gouts = [cot.pop((node.id, port), None) for port in range(len(node.types))]
        if node.op == "input" or node.id not in active or all(g is None for g in gouts):
            if node.op == "input" and wrt_inputs and gouts[0] is not None:
                name = next(n for n, nid in graph.inputs if nid == node.id)
                grads[name] = gouts[0]
            continue
        op = OPS[node.op]
        if op.vjp is None:
            raise no_gradient(node)
        if ins is None:
            raise AssertionError(f"{node.op} at {node.span} was not taped")
        ctx.input_grads = tuple(ref[0] in active for ref in node.inputs)
        gins, gparams = op.vjp(node.attrs, ins, outs, gouts, ctx)
        if tape.probe is not None:
            tape.probe(tape, cot, [*ins, *outs, *gouts, *gins, *ctx.saved.values()])
        del ins, outs, ctx, gouts  # the tape entry goes now, not with the next node's
        for ref, g in zip(node.inputs, gins):
            if g is None or ref[0] not in active:
                continue
            g = np.asarray(g)
            cot[ref] = cot[ref] + g if ref in cot else g
        del gins
        for local, g in gparams.items():
            key = param_key(node, local)
            grads[key] = grads[key] + g if key in grads else np.asarray(g)
    return grads


def no_gradient(node: IRNode):
    op = OPS[node.op]
    reason = op.no_grad or "no vector-Jacobian product is written for it yet"
    return run_error("E0530", f"cannot differentiate through '{node.op}': {reason}",
                     node.span, hint="the gradient of the loss passes this op on its way to a "
                     "trainable parameter; change the model or differentiate another output")


def check_differentiable(graph: Graph, loss_refs: list[Ref], wrt_inputs: bool = False) -> None:
    """Before running anything: every op a gradient must pass has a vjp, else E0530 at the
    first the backward walk would meet. A gradient flows back along float values from the
    loss to the active nodes (those depending on a trainable parameter)."""
    active = active_nodes(graph, wrt_inputs)
    reach = set(loss_refs)
    for node in reversed(graph.order()):
        if node.op == "input" or node.id not in active:
            continue
        if not any((node.id, port) in reach for port in range(len(node.types))):
            continue
        if OPS[node.op].vjp is None:
            raise no_gradient(node)
        reach.update(ref for ref in node.inputs if graph.type_of(ref).is_float)


def output_seeds(graph: Graph, outputs: dict[str, np.ndarray],
                 loss: str | dict[str, np.ndarray]) -> dict[Ref, np.ndarray]:
    """The cotangents of the outputs: 1 for a named scalar loss, or the given dict."""
    refs = dict(graph.outputs)
    names = ", ".join(refs)
    if isinstance(loss, str):
        if loss not in refs:
            raise run_error("E0531", f"no output named '{loss}' to differentiate",
                            graph.span, expected=f"one of: {names}", found=loss)
        value = outputs[loss]
        if not is_float(value) or value.size != 1:
            node = graph.nodes[refs[loss][0]]
            raise run_error("E0531", f"the loss '{loss}' is not a float scalar", node.span,
                            expected="a float scalar output (a loss op's mean, say)",
                            found=f"{value.dtype} of shape {list(value.shape)}",
                            hint="pass --loss NAME to pick a scalar output")
        return {refs[loss]: np.ones_like(value)}
    seeds = {}
    for name, g in loss.items():
        if name not in refs:
            raise run_error("E0531", f"no output named '{name}' to differentiate",
                            graph.span, expected=f"one of: {names}", found=name)
        g = np.asarray(g)
        value = outputs[name]
        if g.shape != value.shape or not is_float(value):
            node = graph.nodes[refs[name][0]]
            raise run_error("E0532", f"the cotangent of '{name}' does not fit the output",
                            node.span, expected=f"float {list(value.shape)}",
                            found=f"{g.dtype} {list(g.shape)} for a {value.dtype} output")
        ref = refs[name]
        g = g.astype(value.dtype)
        # Two outputs may name one value: their cotangents add up.
        seeds[ref] = seeds[ref] + g if ref in seeds else g
    return seeds


def default_loss(graph: Graph) -> str:
    """The model's single scalar float output, or a diagnostic naming the outputs."""
    scalars = [name for name, ref in graph.outputs
               if graph.type_of(ref).is_float and graph.type_of(ref).rank == 0]
    if len(scalars) == 1:
        return scalars[0]
    found = ", ".join(f"{n}: {graph.type_of(r)}" for n, r in graph.outputs)
    raise run_error("E0531", "which output is the loss?" if scalars else
                    "the model has no scalar float output to differentiate", graph.span,
                    expected="exactly one scalar float output, or --loss NAME", found=found)


def grad(graph: Graph, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
         loss: str | dict[str, np.ndarray] | None = None, train: bool = False, seed: int = 0,
         bindings: dict[str, int] | None = None, wrt_inputs: bool = False,
         float64: bool = False, checkpoint_blocks: bool = False, probe: Probe | None = None,
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(gradients by parameter key, plus input names with `wrt_inputs`; the forward's
    outputs). Buffers updated in training are written to `params`, as in `interp.run`.
    `checkpoint_blocks` recomputes each block's values in the backward walk instead of
    keeping them (same gradients, less memory, one more forward of every block)."""
    if loss is None:
        loss = default_loss(graph)
    refs = dict(graph.outputs)
    loss_refs = [refs[n] for n in ([loss] if isinstance(loss, str) else loss) if n in refs]
    check_differentiable(graph, loss_refs, wrt_inputs)
    tape = forward(graph, inputs, params, train, seed, bindings, float64, loss_refs=loss_refs,
                   wrt_inputs=wrt_inputs, checkpoint=checkpoint_blocks, probe=probe)
    seeds = output_seeds(graph, tape.outputs, loss)
    grads = backward(graph, tape, seeds, wrt_inputs)
    out: dict[str, np.ndarray] = {}
    for key, (node, local, _spec) in graph.param_keys().items():
        if local in trainable(node):
            g = grads.get(key)
            out[key] = (np.zeros_like(params[key]) if g is None
                        else np.asarray(g, dtype=params[key].dtype))
    if wrt_inputs:
        for name, nid in graph.inputs:
            if graph.nodes[nid].types[0].is_float:
                g = grads.get(name)
                x = np.asarray(inputs[name])
                dt = np.float64 if float64 else x.dtype
                out[name] = np.zeros(x.shape, dt) if g is None else np.asarray(g, dtype=dt)
    return out, tape.outputs
