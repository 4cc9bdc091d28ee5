"""PyTorch back end: IR graph to readable `nn.Module` source text (never imports torch)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from dslc import dims as D
from dslc.diagnostics import SOURCES
from dslc.ir import Graph, IRNode
from dslc.ops.base import EmitCtx
from dslc.ops.registry import OPS

# Names a generated module must not take as attributes or locals.
RESERVED = {
    "self", "torch", "nn", "F", "math", "super", "training", "forward", "to", "cuda", "cpu",
    "eval", "train", "parameters", "buffers", "modules", "children", "state_dict", "apply",
    "half", "double", "float", "type", "register_buffer", "register_parameter", "add_module",
    "load_state_dict", "zero_grad", "named_modules", "named_parameters", "named_buffers",
    "requires_grad_", "get_submodule", "extra_repr", "dump_patches", "call_super_init",
}


def class_name(model: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", model)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not name or not name.isidentifier() or name[0].isdigit():
        name = "Model" + name
    if keyword.iskeyword(name) or name in RESERVED or name in ("Tensor", "Module"):
        name += "Model"
    return name


def safe_ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    if not s or s[0].isdigit():
        s = "v_" + s
    if keyword.iskeyword(s) or s in RESERVED or s.startswith("__"):
        s = s + "_"
    return s


class _Modules:
    """The module tree: frames become ModuleList/ModuleDict, layers become nn modules."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.tree: dict = {}
        for node in graph.order():
            if node.module is None:
                continue
            parts = node.module.split(".")
            cur = self.tree
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = node

    def access(self, path: str) -> str:
        expr = "self"
        parts = path.split(".")
        for i, p in enumerate(parts):
            frame = self.graph.frames.get(".".join(parts[:i]))
            if i == 0:
                ident = p.isidentifier() and safe_ident(p) == p
                expr = f"self.{p}" if ident else f"getattr(self, {p!r})"
            elif frame is not None and frame.kind == "repeat":
                expr += f"[{int(p)}]"
            else:
                expr += f"[{p!r}]"
        return expr

    def constructor_lines(self, graph: Graph) -> list[str]:
        lines: list[str] = []
        for key, val in self.tree.items():
            ident = key.isidentifier() and safe_ident(key) == key
            if isinstance(val, IRNode) and val.op == "const":
                lines.append(f"self.register_buffer({key!r}, {_const_expr(val)})")
                continue
            expr = self._build(key, val, 0)
            if ident:
                lines.append(f"self.{key} = {expr}")
            else:
                lines.append(f"self.add_module({key!r}, {expr})")
        return lines

    def _build(self, path: str, val, indent: int) -> str:
        if isinstance(val, IRNode):
            op = OPS[val.op]
            return op.torch_module(val.attrs, [self.graph.type_of(r) for r in val.inputs])
        frame = self.graph.frames.get(path)
        pad = "    " * (indent + 1)
        end = "    " * indent
        if frame is not None and frame.kind == "repeat":
            items = [self._build(f"{path}.{k}", v, indent + 1)
                     for k, v in sorted(val.items(), key=lambda kv: int(kv[0]))]
            return "nn.ModuleList([\n" + "".join(f"{pad}{it},\n" for it in items) + end + "])"
        consts = [(k, v) for k, v in val.items() if isinstance(v, IRNode) and v.op == "const"]
        if consts:
            # A container that holds constants too: a small module made on the spot.
            body = "".join(f"{pad}({k!r}, {self._build(f'{path}.{k}', v, indent + 1)}),\n"
                           for k, v in val.items() if not (isinstance(v, IRNode)
                                                           and v.op == "const"))
            bufs = "".join(f"{pad}({k!r}, {_const_expr(v)}),\n" for k, v in consts)
            return (f"_with_buffers(nn.ModuleDict([\n{body}{end}]), [\n{bufs}{end}])")
        items = [(k, self._build(f"{path}.{k}", v, indent + 1)) for k, v in val.items()]
        return "nn.ModuleDict({\n" + "".join(f"{pad}{k!r}: {e},\n" for k, e in items) + end + "})"


def _const_expr(node: IRNode) -> str:
    arr = node.const_value
    dtype = {"f32": "torch.float32", "f64": "torch.float64", "f16": "torch.float16",
             "bf16": "torch.bfloat16", "i64": "torch.int64", "i32": "torch.int32",
             "bool": "torch.bool"}[node.types[0].dtype]
    return f"torch.tensor({arr.tolist()!r}, dtype={dtype})"


def _dim_names(graph: Graph, input_vars: dict[str, str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, nid in graph.inputs:
        for axis, d in enumerate(graph.nodes[nid].types[0].shape):
            if d.is_Symbol and d.name not in names:
                names[d.name] = f"{input_vars[name]}.shape[{axis}]"
    return names


def generate(graph: Graph, source_file: str | None = None) -> str:
    """The whole generated file: imports, one class named after the model, nothing else."""
    mods = _Modules(graph)
    cls = class_name(graph.model)
    src_name = Path(source_file or graph.file).name
    order = graph.order()
    pos = {n.id: i for i, n in enumerate(order)}
    last_use: dict[tuple[int, int], int] = {}
    for n in order:
        for ref in n.inputs:
            last_use[ref] = pos[n.id]
    for _, ref in graph.outputs:
        last_use[ref] = len(order)

    # ---- forward: one line per node, variables named after the spec's names
    var_of: dict[tuple[int, int], str] = {}
    holder: dict[str, tuple[int, int]] = {}
    used_names: set[str] = set()
    input_vars = {}
    for name, nid in graph.inputs:
        v = safe_ident(name)
        while v in used_names:
            v += "_"
        used_names.add(v)
        input_vars[name] = v
        var_of[(nid, 0)] = v
        holder[v] = (nid, 0)
    dim_names = _dim_names(graph, input_vars)

    def pick_var(base: str, ref: tuple[int, int], at: int) -> str:
        base = safe_ident(base)
        cand = base
        k = 1
        while True:
            cur = holder.get(cand)
            if cur is None or cur == ref or last_use.get(cur, -1) <= at:
                if cand not in input_vars.values() or last_use.get(holder[cand], -1) <= at:
                    break
            k += 1
            cand = f"{base}_{k}"
        holder[cand] = ref
        return cand

    body: list[str] = []
    last_line = None
    for n in order:
        if n.op == "input":
            continue
        i = pos[n.id]
        op = OPS[n.op]
        if n.span.line and n.span.line != last_line:
            text = (SOURCES.line(n.span.file, n.span.line) or "").strip()
            if len(text) > 80:
                text = text[:77] + "..."
            body.append(f"# {src_name}:{n.span.line}: {text}")
            last_line = n.span.line
        args = [var_of[r] for r in n.inputs]
        ctx = EmitCtx(module=mods.access(n.module) if n.module else None, dim_names=dim_names)
        ins = [graph.type_of(r) for r in n.inputs]
        expr = op.torch_call(n.attrs, args, ctx, ins)
        refs = [(n.id, p) for p in range(len(n.types))]
        names = n.name.split(",") if len(n.types) > 1 else [n.name]
        if len(names) != len(refs):
            names = [f"{names[0]}_{p}" for p in range(len(refs))]
        targets = [pick_var(nm, r, i) for nm, r in zip(names, refs)]
        for t, r in zip(targets, refs):
            var_of[r] = t
        body.append(f"{', '.join(targets)} = {expr}")

    outs = [var_of[ref] for _, ref in graph.outputs]
    ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    body.append(f"return {ret}")

    ctor = mods.constructor_lines(graph)
    hp_sig = []
    hp_check = []
    for name, value in graph.hparams.items():
        ident = safe_ident(name)
        pyval = _py_value(value)
        hp_sig.append(f"{ident}={pyval}")
        hp_check.append((ident, name, pyval))
    sig = ", ".join(["self"] + (["*"] + hp_sig if hp_sig else []))
    fwd_sig = ", ".join(["self", "*"] + list(input_vars.values())) if input_vars else "self"

    lines = [
        f'"""PyTorch module generated by dslc from {src_name} (model `{graph.model}`)."""',
        "",
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "",
    ]
    if any("_with_buffers(" in c for c in ctor):
        lines += [
            "",
            "def _with_buffers(module, buffers):",
            "    for name, value in buffers:",
            "        module.register_buffer(name, value)",
            "    return module",
            "",
        ]
    lines += [
        "",
        f"class {cls}(nn.Module):",
        f'    """`{graph.model}` from {src_name}."""',
        "",
        f"    def __init__({sig}):",
        "        super().__init__()",
    ]
    if hp_check:
        lines.append("        # The layer sizes below were computed by dslc for these values; to change")
        lines.append("        # one, compile again with `dslc compile --set NAME=VALUE`.")
        for ident, name, pyval in hp_check:
            lines.append(f"        if {ident} != {pyval}:")
            lines.append(f"            raise ValueError(\"compiled for {name}={pyval}; run "
                         f"'dslc compile --set {name}=...' for another value\")")
    lines += ["        " + ln for c in ctor for ln in c.split("\n")]
    lines += ["", f"    def forward({fwd_sig}):"]
    lines += ["        " + b for b in body]
    return "\n".join(lines) + "\n"


def _py_value(v) -> str:
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, (int, float, str)):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_py_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(D.fmt(v))
