"""The one interpreter loop: a walk over the IR graph in topological order, used both for the
shape check (per-op shape rule) and for NumPy execution (per-op kernel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.ir import Graph, IRNode
from dslc.limits import MAX_RUN_ELEMENTS
from dslc.ops.base import RunCtx, ShapeError
from dslc.ops.registry import OPS
from dslc.ops.scratch import Scratch
from dslc.ops.workers import Workers
from dslc.regions import regions
from dslc.types import TensorType, dtype_of_array, numpy_dtype

Visit = Callable[[IRNode, list[Any]], list[Any]]


def walk(graph: Graph, visit: Visit, inputs: dict[str, Any],
         release: bool = False) -> dict[tuple[int, int], Any]:
    """Visit every node once in deterministic order; `visit` maps input values to outputs.
    With `release`, a value is dropped once its last reader has run, and what is returned
    holds the graph's outputs only."""
    values: dict[tuple[int, int], Any] = {}
    input_ids = {nid: name for name, nid in graph.inputs}
    # Dropping dead values keeps a run's memory at its widest point, not the sum of every
    # intermediate (ResNet-18 at batch 16: ~400 MB otherwise), and lets the allocator hand a
    # freed block, still in cache, to the next op.
    dead = graph.last_uses() if release else None
    for i, node in enumerate(graph.order()):
        if node.op == "input":
            outs = [inputs[input_ids[node.id]]]
        else:
            outs = visit(node, [values[ref] for ref in node.inputs])
        for port, v in enumerate(outs):
            values[(node.id, port)] = v
        if dead is not None:
            for ref in dead[i]:
                del values[ref]
    return values


def check(graph: Graph) -> None:
    """Re-derive every type with the shape rules; any disagreement is a compiler bug."""

    def visit(node: IRNode, ins: list[TensorType]) -> list[TensorType]:
        op = OPS[node.op]
        for region in regions(node):
            check(region)
        outs = op.shape(node.attrs, ins)
        if [str(t) for t in outs] != [str(t) for t in node.types]:
            raise AssertionError(f"type of {node.op} at {node.span} changed on re-check")
        return outs

    walk(graph, visit, {name: graph.nodes[nid].types[0] for name, nid in graph.inputs})


# ---- binding runtime dims ----------------------------------------------------------------


def run_error(code: str, msg: str, span: Span | None = None, **kw) -> DslcError:
    return DslcError(Diagnostic(code, msg, span or Span("<run>", 0, 0, 0, 0), **kw))


def bind_inputs(graph: Graph, arrays: dict[str, np.ndarray],
                bindings: dict[str, int] | None = None) -> dict[str, int]:
    """Check input arrays against the declared types and solve the runtime dims from them."""
    bound = dict(bindings or {})
    names = [n for n, _ in graph.inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        node = graph.nodes[dict(graph.inputs)[missing[0]]]
        raise run_error("E0501", f"missing input '{missing[0]}'", node.span,
                        expected=", ".join(names), found=", ".join(sorted(arrays)) or "none")
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise run_error("E0501", f"unknown input '{extra[0]}'", graph.span,
                        expected=", ".join(names), found=extra[0])
    pending = []
    for name, nid in graph.inputs:
        node = graph.nodes[nid]
        want = node.types[0]
        arr = arrays[name]
        if not isinstance(arr, np.ndarray):
            raise run_error("E0502", f"input '{name}' is not an array", node.span)
        got = dtype_of_array(arr)
        if got != want.dtype and not (want.dtype == "bf16" and got == "f32"):
            raise run_error("E0502", f"input '{name}' has the wrong dtype", node.span,
                            expected=want.dtype, found=str(arr.dtype))
        if arr.ndim != want.rank:
            raise run_error("E0503", f"input '{name}' has the wrong rank", node.span,
                            expected=f"{want} (rank {want.rank})",
                            found=f"shape {list(arr.shape)} (rank {arr.ndim})")
        for axis, (d, n) in enumerate(zip(want.shape, arr.shape)):
            if d.is_Symbol and d.name not in bound:
                bound[d.name] = int(n)
            else:
                pending.append((name, node, axis, d, int(n)))
    for name, node, axis, d, n in pending:
        v = D.substitute(d, bound)
        if not v.is_Integer:
            raise run_error("E0504", f"cannot solve dim {D.fmt(d)} of input '{name}'", node.span,
                            hint=f"bind it with --bind {D.free_names(v)[0]}=<size>")
        if int(v) != n:
            raise run_error("E0503", f"input '{name}' axis {axis} has the wrong size", node.span,
                            expected=(f"{int(v)}" if d.is_Integer else f"{D.fmt(d)} = {int(v)}")
                            + f" (shape {want_str(node, bound)})",
                            found=f"{n} (shape {list(arrays[name].shape)})")
    check_constraints(graph, bound)
    return bound


def want_str(node: IRNode, bound: dict[str, int]) -> str:
    return D.fmt_shape([D.substitute(d, bound) for d in node.types[0].shape])


def check_constraints(graph: Graph, bound: dict[str, int]) -> None:
    for c in graph.constraints:
        v = c.expr.subs({D.symbol(k): val for k, val in bound.items()})
        ok = bool(v.is_integer) if c.kind == "integer" else bool(v == True)  # noqa: E712
        if v.free_symbols:
            continue
        if not ok:
            raise run_error("E0506", c.message, c.span, found=str(v))


def check_sizes(graph: Graph, bound: dict[str, int]) -> None:
    """Refuse before allocating when any tensor would exceed the element limit."""
    key = tuple(sorted(bound.items()))
    passed = graph.__dict__.setdefault("_sizes_passed", set())
    if key in passed:
        return  # this model at these sizes passed before (the sympy work is slow)
    for node in graph.order():
        for t in node.types:
            n = D.substitute(t.numel(), bound)
            if n.is_Integer and int(n) > MAX_RUN_ELEMENTS:
                raise run_error("E0505", "a tensor would be too large to run", node.span,
                                expected=f"at most {MAX_RUN_ELEMENTS} elements",
                                found=f"{int(n)} elements ({t})")
    passed.add(key)


# ---- running -----------------------------------------------------------------------------


def node_params(node: IRNode, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {local: (params[f"{node.module}.{local}" if local else node.module]
                    if spec.persistent else node.const_value)
            for local, spec in node.params.items()}


def run(graph: Graph, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
        train: bool = False, seed: int = 0, bindings: dict[str, int] | None = None,
        threads: int | None = None, fuse: bool = True) -> dict[str, np.ndarray]:
    """Run the model on NumPy; in training mode buffers (batch-norm statistics) are updated in
    `params` in place, as torch updates a module's buffers. `threads`: how many the kernels
    may use (default: ops/workers.py's default_threads). `fuse=False` runs every node's own
    kernel (eval runs otherwise fuse batch norms and activations into the conv before them,
    with the same result bits; see epilogue_chains)."""
    bound = bind_inputs(graph, inputs, bindings)
    check_sizes(graph, bound)
    validate_params(graph, params)
    rng = np.random.default_rng(seed)
    scratch = Scratch()  # this run's reusable temporaries: gone when the run returns
    workers = Workers(threads)  # its kernel threads: started if needed, joined on return
    chains = {} if train or not fuse else epilogue_chains(graph)
    absorbed: set[int] = set()  # id() of the nodes whose work a producer did this run

    def run_graph(sub: Graph, ins: list[np.ndarray]) -> list[np.ndarray]:
        values = walk(sub, visit, {name: v for (name, _), v in zip(sub.inputs, ins)},
                      release=True)
        return [values[ref] for _, ref in sub.outputs]

    def visit(node: IRNode, ins: list[np.ndarray]) -> list[np.ndarray]:
        if id(node) in absorbed:
            return [ins[0]]  # its producer's kernel applied it in place
        ctx = RunCtx(train=train, rng=rng, params=node_params(node, params), bindings=bound,
                     run_graph=run_graph, scratch=scratch, workers=workers)
        chain = chains.get(id(node))
        if chain:
            ctx.epilogue = fused_epilogue(chain, node.types[0].dtype, ctx, params, absorbed)
        return run_node(node, ins, ctx, params)

    try:
        values = walk(graph, visit, inputs, release=True)
    finally:
        workers.close()
    return {name: values[ref] for name, ref in graph.outputs}


# ---- fusion of per-element work into the producing kernel (eval runs) -------------------


def epilogue_chains(graph: Graph) -> dict[int, list[IRNode]]:
    """Per producer (by id() of its node): the nodes its kernel may apply to its result in
    place, in order. A producer's op `takes_epilogue` (a conv); each node of the chain has an
    `epilogue` op (batch norm, relu6, ...), reads nothing but the previous value, is its only
    reader, and keeps a float32/float64 dtype; no value of the chain but the last is a graph
    output. Why: MobileNetV2 runs conv -> batch_norm -> relu6 52 times; applied to the conv's
    output block by block while in cache, on the run's threads, the two are nearly free, where
    as kernels of their own each is a pass over memory and a fresh array."""
    key = graph.last_uses()  # the same object until the graph changes
    cached = graph.__dict__.get("_epilogue_chains")
    if cached is not None and cached[0] is key:
        return cached[1]
    order = graph.order()
    readers: dict[tuple[int, int], list[IRNode]] = {}
    for node in order:
        for ref in node.inputs:
            readers.setdefault(ref, []).append(node)
    outputs = {ref for _, ref in graph.outputs}
    chains: dict[int, list[IRNode]] = {}
    for node in order:
        op = OPS.get(node.op)
        if op is None or not op.takes_epilogue or len(node.types) != 1:
            continue
        dtype = node.types[0].dtype
        if dtype not in ("f32", "f64"):
            continue
        chain: list[IRNode] = []
        ref = (node.id, 0)
        while ref not in outputs and len(readers.get(ref, ())) == 1:
            nxt = readers[ref][0]
            if (OPS[nxt.op].epilogue is None or nxt.inputs != [ref] or len(nxt.types) != 1
                    or nxt.types[0].dtype != dtype):
                break
            chain.append(nxt)
            ref = (nxt.id, 0)
        if chain:
            chains[id(node)] = chain
    graph.__dict__["_epilogue_chains"] = (key, chains)
    return chains


def fused_epilogue(chain: list[IRNode], dtype: str, ctx: RunCtx,
                   params: dict[str, np.ndarray], absorbed: set[int]):
    """The chain's epilogues composed, as far as each op can give one (batch norm in eval);
    the nodes taken are added to `absorbed` (their own kernels are skipped this run)."""
    fns = []
    for node in chain:
        node_ctx = RunCtx(train=ctx.train, rng=ctx.rng, params=node_params(node, params),
                          bindings=ctx.bindings, scratch=ctx.scratch, workers=ctx.workers)
        fn = OPS[node.op].epilogue(node.attrs, node_ctx, np.dtype(numpy_dtype(dtype)))
        if fn is None:
            break
        fns.append(fn)
        absorbed.add(id(node))
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def epilogue(block: np.ndarray) -> None:
        for fn in fns:
            fn(block)
    return epilogue


def run_node(node: IRNode, ins: list[np.ndarray], ctx: RunCtx,
             params: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One node's kernel, its errors made located diagnostics; buffers the kernel updated
    (batch-norm statistics in training) are written back to `params`. The backward walk
    (dslc/autodiff.py) runs its forward through this too, keeping `ctx`."""
    op = OPS[node.op]
    try:
        outs = op.numpy(node.attrs, ins, ctx)
    except ShapeError as exc:
        # E0505 (too large to run) keeps its code; any other shape error a kernel finds is
        # E0507.
        code = "E0505" if exc.code == "E0505" else "E0507"
        raise run_error(code, f"{node.op}: {exc.message}", node.span,
                        expected=exc.expected, found=exc.found) from None
    except FloatingPointError as exc:
        raise run_error("E0508", f"{node.op}: {exc}", node.span) from None
    for local_name, value in ctx.params.items():
        if node.params[local_name].persistent:
            key = f"{node.module}.{local_name}" if local_name else node.module
            params[key] = value
    return [np.asarray(o) for o in outs]


def validate_params(graph: Graph, params: dict[str, np.ndarray]) -> None:
    keys = graph.param_keys()
    missing = [k for k in keys if k not in params]
    if missing:
        node = keys[missing[0]][0]
        raise run_error("E0510", f"missing parameter '{missing[0]}'"
                        + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
                        node.span, expected=", ".join(list(keys)[:8]) + (
                            ", ..." if len(keys) > 8 else ""),
                        hint="omit --params to initialise them from --seed")
    extra = sorted(set(params) - set(keys))
    if extra:
        raise run_error("E0511", f"unexpected parameter '{extra[0]}'", graph.span,
                        expected="only the model's parameters", found=extra[0])
    # The wanted shapes once per graph: int() of a sympy dim costs microseconds, and a
    # MobileNetV2 has 300 parameters (2 ms a run at batch 1, 4% of it).
    shapes = graph.__dict__.get("_param_shapes")
    if shapes is None or shapes.keys() != keys.keys():
        shapes = {key: tuple(int(d) for d in spec.shape) for key, (_, _, spec) in keys.items()}
        graph.__dict__["_param_shapes"] = shapes
    for key, (node, _, _) in keys.items():
        arr = params[key]
        want = shapes[key]
        if tuple(arr.shape) != want:
            raise run_error("E0512", f"parameter '{key}' has the wrong shape", node.span,
                            expected=str(list(want)), found=str(list(arr.shape)))


def init_params(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Parameters and buffers under the generated module's state_dict keys, drawn from the
    same distributions as PyTorch's default initialisers."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, (_node, _local, spec) in graph.param_keys().items():
        shape = tuple(int(d) for d in spec.shape)
        dt = numpy_dtype(spec.dtype)
        # Drawn in float32 directly: VGG-16's 138M weights take seconds, not tens of them.
        if spec.init == "uniform_fan_in":
            bound = np.float32(1.0 / np.sqrt(spec.fan_in) if spec.fan_in > 0 else 0.0)
            arr = rng.random(size=shape, dtype=np.float32) * (2 * bound) - bound
        elif spec.init == "normal":
            arr = rng.standard_normal(size=shape, dtype=np.float32)
        elif spec.init.startswith("normal_zero_row:"):  # nn.Embedding with padding_idx
            arr = rng.standard_normal(size=shape, dtype=np.float32)
            arr[int(spec.init.split(":", 1)[1])] = 0.0
        elif spec.init == "xavier_uniform":
            fan_out = shape[0] * (int(np.prod(shape[2:])) if len(shape) > 2 else 1)
            bound = np.sqrt(6.0 / (spec.fan_in + fan_out))
            arr = rng.uniform(-bound, bound, size=shape)
        elif spec.init == "glorot":
            bound = np.sqrt(6.0 / (shape[-2] + shape[-1]))
            arr = rng.uniform(-bound, bound, size=shape)
        elif spec.init == "ones":
            arr = np.ones(shape)
        elif spec.init == "zeros":
            arr = np.zeros(shape)
        elif spec.init.startswith("constant:"):
            arr = np.full(shape, float(spec.init.split(":", 1)[1]))
        else:  # pragma: no cover - every op's init is one of the above
            raise ValueError(f"unknown init {spec.init}")
        # astype(order="C"), not ascontiguousarray: that makes 0-d buffers (batch norm's
        # num_batches_tracked) 1-d.
        out[key] = np.asarray(arr).astype(dt, order="C")
    return out


def random_inputs(graph: Graph, seed: int = 0,
                  bindings: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bound = dict(bindings or {})
    out = {}
    for name, nid in graph.inputs:
        node = graph.nodes[nid]
        t = node.types[0]
        shape = []
        for d in t.shape:
            v = D.substitute(d, bound)
            if not v.is_Integer and v.free_symbols:
                missing = D.free_names(v)[0]
                raise run_error("E0504", f"dim '{missing}' of input '{name}' is unbound",
                                node.span, hint=f"pass --bind {missing}=<size>")
            if not v.is_Integer or int(v) < 1:
                raise run_error("E0506", f"dim {D.fmt(d)} of input '{name}' is not a positive "
                                "integer for these sizes", node.span,
                                expected="a positive integer", found=f"{D.fmt(v)} with "
                                + ", ".join(f"{k}={val}" for k, val in sorted(bound.items())))
            shape.append(int(v))
        n = int(np.prod(shape)) if shape else 1
        if n > MAX_RUN_ELEMENTS:
            raise run_error("E0505", f"input '{name}' would be too large", node.span,
                            expected=f"at most {MAX_RUN_ELEMENTS} elements", found=str(n))
        if t.is_float:
            arr = rng.standard_normal(size=shape).astype(numpy_dtype(t.dtype))
        elif t.dtype == "bool":
            arr = rng.random(size=shape) < 0.5
        else:
            high = input_int_high(graph, nid, bound)
            arr = rng.integers(0, high, size=shape).astype(numpy_dtype(t.dtype))
        out[name] = arr
    return out


def input_int_high(graph: Graph, nid: int, bindings: dict[str, int] | None = None) -> int:
    """Integer inputs index something (an embedding table, the nodes of a graph): draw them in
    its range. An op's attrs may declare `index_bounds(in_types) -> {input position: dim}`
    (graph ops: an edge index holds indices into axis 0 of the node features)."""
    highs = []
    for user in graph.users(nid):
        node = graph.nodes[user]
        bound = getattr(node.attrs, "num_embeddings", None)
        if bound is not None:
            highs.append(int(bound))
        index_bounds = getattr(node.attrs, "index_bounds", None)
        if callable(index_bounds):
            ins = [graph.type_of(ref) for ref in node.inputs]
            for port, d in index_bounds(ins).items():
                v = D.substitute(d, bindings or {})
                if node.inputs[port] == (nid, 0) and v.is_Integer and int(v) > 0:
                    highs.append(int(v))
    return min(highs) if highs else 2
