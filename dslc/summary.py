"""Cost model: typed IR graph to a per-layer table of shapes, parameters, MACs and memory."""

from __future__ import annotations

from typing import Any

import sympy

from dslc import dims as D
from dslc import regions
from dslc.grad_memory import kept_elements, symbolic_peak
from dslc.ir import Graph, IRNode

# Bytes per element of each DSL dtype (bf16 is 2 bytes in torch even though NumPy computes it
# in float32: the estimate is for the model as torch would hold it).
DTYPE_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "f64": 8, "i32": 4, "i64": 8, "bool": 1}

Count = int | str  # an exact integer, or an expression over unbound dims such as "1176*B"


def _numel(shape) -> D.Dim:
    return D.product(D.as_dim(d) for d in shape)


def _fmt_dim(d: D.Dim) -> int | str:
    d = sympy.expand(d) if not d.is_Integer else d
    v = D.value(d)
    return v if v is not None else D.fmt(d)


def _owned(node: IRNode):
    """(state_dict key, ParamSpec) of a node's parameters; a scan owns its cell's layers."""
    for local, spec in node.params.items():
        yield (f"{node.module}.{local}" if local else str(node.module)), spec
    for key, (_, _, spec) in regions.region_param_keys(node).items():
        yield key, spec


def node_params(node: IRNode, seen: set[str] | None = None) -> tuple[D.Dim, D.Dim]:
    """(trainable elements, buffer elements) owned by a node, as dims.

    With `seen`, a state_dict key met before (a tied or shared parameter) counts zero here, so
    a walk in execution order counts every key once, at its first user, as torch does.
    """
    params = D.const(0)
    buffers = D.const(0)
    for key, spec in _owned(node):
        if seen is not None:
            if key in seen:
                continue
            seen.add(key)
        n = _numel(spec.shape)
        if spec.buffer:
            buffers += n
        else:
            params += n
    return params, buffers


def node_param_bytes(node: IRNode, seen: set[str]) -> tuple[D.Dim, D.Dim]:
    pb = D.const(0)
    bb = D.const(0)
    for key, spec in _owned(node):
        if key in seen:
            continue
        seen.add(key)
        n = _numel(spec.shape) * DTYPE_BYTES.get(spec.dtype, 4)
        if spec.buffer:
            bb += n
        else:
            pb += n
    return pb, bb


def node_macs(graph: Graph, node: IRNode) -> D.Dim:
    return regions.node_macs(graph, node)


def layer_name(node: IRNode) -> str:
    """The module path of a layer with parameters, else its value name inside its frame."""
    if node.module:
        return node.module
    if node.frames:
        return f"{node.frames[-1]}.{node.name}"
    return node.name


def inference_peak(graph: Graph, size_of) -> D.Dim | None:
    """Bytes of the values a NumPy run holds at once at its widest point: the interpreter
    drops each value after its last reader (interp.walk), so this, not the sum of every
    value, is what a forward pass without gradients needs, besides the parameters and the
    kernels' own temporaries. `size_of(node, type)` gives a value's bytes. With unbound dims the
    widest point is known when every candidate is a multiple of the same term (the usual
    case: everything scales with the batch B); otherwise None."""
    dead = graph.last_uses()
    held: dict[tuple[int, int], D.Dim] = {}
    live: D.Dim = sympy.Integer(0)
    widths = []
    for i, node in enumerate(graph.order()):
        for port, t in enumerate(node.types):
            n = size_of(node, t)
            held[(node.id, port)] = n
            live += n
        widths.append(live)
        for ref in dead[i]:
            live -= held.pop(ref)
    if all(w.is_Integer for w in widths):
        return max(widths, default=sympy.Integer(0))
    terms = [w.as_coeff_Mul() for w in widths if w != 0]
    if len({rest for _, rest in terms}) != 1:
        return None
    return max(coeff for coeff, _ in terms) * terms[0][1]


def summarize(graph: Graph, bind: dict[str, int],
              train_graph: Graph | None = None) -> dict[str, Any]:
    """Every fact of the cost table as plain JSON-able data.

    Counts are ints, or strings such as "1176*B" where a dim is still unbound after `bind`.
    params/buffers are element counts as torch's `parameters()`/`buffers()` give them (each
    state_dict key once); memory is in bytes: parameters, buffers, activations (every value
    one forward pass makes, inputs included, as training keeps them for the backward pass), and
    the inference peak (see inference_peak; constants are buffers there too; None when it
    depends on unbound dims), and the training peaks of `train_graph` (default `graph`; the
    model as written, which is what the backward walk differentiates): one forward and
    backward walk differentiating every float output, without and with checkpointed blocks
    (see grad_memory.training_peak; None when it depends on unbound dims).
    """
    bind = dict(bind or {})
    cache: dict[D.Dim, D.Dim] = {}

    def bound(d) -> D.Dim:
        # Models repeat the same few dims thousands of times; substitute each once.
        d = D.as_dim(d)
        if d.is_Integer:
            return d
        if d not in cache:
            cache[d] = D.substitute(d, bind)
        return cache[d]

    def shape_of(shape) -> list[int | str]:
        out: list[int | str] = []
        for d in shape:
            v = bound(d)
            out.append(int(v) if v.is_Integer else D.fmt(v))
        return out

    def io(name: str, ref: tuple[int, int]) -> dict[str, Any]:
        t = graph.type_of(ref)
        return {"name": name, "dtype": t.dtype, "shape": shape_of(t.shape)}

    inputs = [io(name, (nid, 0)) for name, nid in graph.inputs]
    outputs = [io(name, ref) for name, ref in graph.outputs]

    layers = []
    # Terms are summed once at the end: adding sympy expressions one by one is quadratic.
    params, buffers, macs, acts, pbytes, bbytes = [], [], [], [], [], []
    seen_counts: set[str] = set()
    seen_bytes: set[str] = set()
    # Per block, repeat and iteration (torchinfo's depth): the sums of the layers inside.
    frame_totals: dict[str, tuple[list, list]] = {}
    frame_shape: dict[str, list] = {}
    for node in graph.order():
        if not regions.is_constant(node):  # constants are buffers, counted there
            for t in node.types:
                acts.append(bound(_numel(t.shape)) * DTYPE_BYTES.get(t.dtype, 4))
        if node.op == "input":
            continue
        p, b = node_params(node, seen_counts)
        pb, bb = node_param_bytes(node, seen_bytes)
        m = bound(node_macs(graph, node))
        params.append(p)
        buffers.append(b)
        pbytes.append(pb)
        bbytes.append(bb)
        macs.append(m)
        entry: dict[str, Any] = {
            "name": layer_name(node),
            "op": node.op,
            "shape": shape_of(node.types[0].shape) if node.types else [],
            "dtype": node.types[0].dtype if node.types else None,
            "params": _fmt_dim(p),
            "macs": _fmt_dim(m),
        }
        if len(node.types) > 1:
            entry["shapes"] = [shape_of(t.shape) for t in node.types]
        entry["frames"] = list(node.frames)
        for path in node.frames:
            sub = frame_totals.setdefault(path, ([], []))
            sub[0].append(p)
            sub[1].append(m)
            frame_shape[path] = entry["shape"]
        layers.append(entry)

    total_macs = sympy.Add(*macs)
    act_bytes = sympy.Add(*acts)
    peak = inference_peak(graph, lambda node, t: sympy.Integer(0) if regions.is_constant(node)
                          else bound(_numel(t.shape)) * DTYPE_BYTES.get(t.dtype, 4))
    tg = graph if train_graph is None else train_graph

    def value_bytes(ref: tuple[int, int]) -> D.Dim:
        t = tg.type_of(ref)
        if regions.is_constant(tg.nodes[ref[0]]):
            return sympy.Integer(0)
        return bound(_numel(t.shape)) * DTYPE_BYTES.get(t.dtype, 4)

    def kept_bytes(node: IRNode) -> D.Dim:
        n = kept_elements(tg, node)
        if n == 0:
            return sympy.Integer(0)
        return bound(n) * DTYPE_BYTES.get(node.types[0].dtype, 4)

    train_peak = symbolic_peak(tg, value_bytes, kept_bytes)
    checkpoint_peak = symbolic_peak(tg, value_bytes, kept_bytes, checkpoint=True)
    free = sorted({s.name for e in (total_macs, act_bytes) for s in e.free_symbols})
    return {
        "model": graph.model,
        "bind": {k: bind[k] for k in sorted(bind)},
        "unbound": free,
        "inputs": inputs,
        "outputs": outputs,
        "params": _fmt_dim(sympy.Add(*params)),
        "buffers": _fmt_dim(sympy.Add(*buffers)),
        "macs": _fmt_dim(total_macs),
        "memory": {
            "activation_bytes": _fmt_dim(act_bytes),
            "param_bytes": _fmt_dim(sympy.Add(*pbytes)),
            "buffer_bytes": _fmt_dim(sympy.Add(*bbytes)),
            "inference_peak_bytes": None if peak is None else _fmt_dim(peak),
            "training_peak_bytes": None if train_peak is None else _fmt_dim(train_peak),
            "training_peak_checkpoint_bytes": (None if checkpoint_peak is None
                                               else _fmt_dim(checkpoint_peak)),
        },
        "layers": layers,
        "blocks": [{"path": path, "kind": f.kind, "name": f.name,
                    "depth": _depth(graph, path),
                    "params": _fmt_dim(sympy.Add(*frame_totals[path][0])),
                    "macs": _fmt_dim(sympy.Add(*frame_totals[path][1])),
                    "shape": frame_shape[path]}
                   for path, f in graph.frames.items() if path in frame_totals],
    }


def _depth(graph: Graph, path: str) -> int:
    """How many frames enclose a frame, itself included (1: a top-level block or repeat)."""
    return sum(1 for p in graph.frames if p == path or path.startswith(p + "."))


# ---- text table --------------------------------------------------------------------------


def fmt_count(v: Count) -> str:
    """1234567 -> '1,234,567'; expressions are kept as they are."""
    return f"{v:,}" if isinstance(v, int) else str(v)


def fmt_short(v: Count, unit: str = "") -> str:
    """A rounded magnitude: 1234567 -> '1.23 M'; expressions are kept as they are."""
    if not isinstance(v, int):
        return str(v)
    for size, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(v) >= size:
            return f"{v / size:.3g} {suffix}{unit}"
    return f"{v} {unit}".rstrip()


def fmt_bytes(v: Count) -> str:
    if not isinstance(v, int):
        return f"{v} bytes"
    for size, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if v >= size:
            return f"{v:,} bytes ({v / size:.3g} {suffix})"
    return f"{v:,} bytes"


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _io_text(items: list[dict]) -> str:
    return ", ".join(f"{i['name']}: {i['dtype']}{_shape_text(i['shape'])}" for i in items) \
        or "none"


def _block_op(block: dict[str, Any]) -> str:
    if block["kind"] == "repeat":
        return f"repeat {block['name']}"
    if block["kind"] == "iter":
        return "iteration"
    return block["name"]


def format_table(summary: dict[str, Any], depth: int | None = None) -> str:
    """A fixed-width table of the layers with totals; symbolic where dims are unbound. With
    `depth`, what sits deeper than `depth` blocks/repeats is one row per block: its sums."""
    header = ("Layer", "Op", "Output shape", "Params", "MACs")
    blocks = {b["path"]: b for b in summary.get("blocks", [])}
    rows = []
    done: set[str] = set()
    for layer in summary["layers"]:
        frames = layer.get("frames", [])
        if depth is not None and len(frames) >= depth:
            block = blocks[frames[depth - 1]]
            if block["path"] not in done:
                done.add(block["path"])
                rows.append((block["path"], _block_op(block), _shape_text(block["shape"]),
                             fmt_count(block["params"]), fmt_count(block["macs"])))
            continue
        shape = _shape_text(layer["shape"])
        if "shapes" in layer:
            shape += f" (+{len(layer['shapes']) - 1} more)"
        rows.append((layer["name"], layer["op"], shape, fmt_count(layer["params"]),
                     fmt_count(layer["macs"])))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    right = (False, False, False, True, True)

    def line(cells) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    rule_width = sum(widths) + 2 * (len(widths) - 1)
    out = [f"Model: {summary['model']}"]
    if summary.get("bind"):
        out.append("Bound: " + ", ".join(f"{k}={v}" for k, v in summary["bind"].items()))
    out.append(f"Inputs:  {_io_text(summary['inputs'])}")
    out.append(f"Outputs: {_io_text(summary['outputs'])}")
    out.append("")
    out.append(line(header))
    out.append("-" * rule_width)
    out += [line(r) for r in rows]
    out.append("=" * rule_width)
    mem = summary["memory"]
    totals = [
        ("Trainable params", fmt_count(summary["params"]), summary["params"]),
        ("Buffers", fmt_count(summary["buffers"]), summary["buffers"]),
        ("MACs", fmt_count(summary["macs"]), summary["macs"]),
    ]
    label_w = max(len(t[0]) for t in totals + [("Activation memory", "", 0)])
    for label, text, raw in totals:
        extra = f"  ({fmt_short(raw)})" if isinstance(raw, int) and raw >= 1000 else ""
        out.append(f"{label + ':':<{label_w + 1}} {text}{extra}")
    out.append(f"{'Param memory:':<{label_w + 1}} {fmt_bytes(mem['param_bytes'])}")
    if mem["buffer_bytes"]:
        out.append(f"{'Buffer memory:':<{label_w + 1}} {fmt_bytes(mem['buffer_bytes'])}")
    out.append(f"{'Activation memory:':<{label_w + 1}} {fmt_bytes(mem['activation_bytes'])}"
               "  (every value of one forward pass)")
    peak = mem["inference_peak_bytes"]
    out.append(f"{'Inference peak:':<{label_w + 1}} "
               + (f"{fmt_bytes(peak)}  (values alive at once in a run without gradients)"
                  if peak is not None else "depends on the sizes of the unbound dims"))
    for label, key, what in (
            ("Training peak:", "training_peak_bytes", "values kept for the backward walk, "
             "and cotangents"),
            ("  checkpointed:", "training_peak_checkpoint_bytes", "blocks recomputed in the "
             "backward walk: --checkpoint-blocks")):
        if key not in mem:  # a summary made before training peaks were reported
            continue
        value = mem[key]
        out.append(f"{label:<{label_w + 1}} "
                   + (f"{fmt_bytes(value)}  ({what})" if value is not None
                      else "depends on the sizes of the unbound dims"))
    if summary.get("unbound"):
        out.append("Unbound dims: " + ", ".join(summary["unbound"])
                   + " (bind them with --bind NAME=SIZE for numbers)")
    return "\n".join(out) + "\n"
