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

    def access(self, path: str, base: tuple[str, str] | None = None) -> str:
        """Python expression for the module at `path`; with `base` = (prefix path, variable),
        the part of the path under the prefix is reached through the variable."""
        expr = "self"
        parts = path.split(".")
        start = 0
        if base is not None:
            expr = base[1]
            start = len(base[0].split("."))
        for i, p in enumerate(parts):
            if i < start:
                continue
            frame = self.graph.frames.get(".".join(parts[:i]))
            if i == 0 and base is None:
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

    def emit_node(n: IRNode, loop: tuple[str, str] | None) -> tuple[str, str]:
        """The node's line twice: with concrete module access, and with `loop` = (repeat
        iteration path, loop variable) accessing the iteration's modules through the variable."""
        i = pos[n.id]
        op = OPS[n.op]
        args = [var_of[r] for r in n.inputs]
        ins = [graph.type_of(r) for r in n.inputs]
        concrete = mods.access(n.module) if n.module else None
        looped = concrete
        if n.module and loop and (n.module + ".").startswith(loop[0] + "."):
            looped = mods.access(n.module, base=(loop[0], loop[1]))
        refs = [(n.id, p) for p in range(len(n.types))]
        names = n.name.split(",") if len(n.types) > 1 else [n.name]
        if len(names) != len(refs):
            names = [f"{names[0]}_{p}" for p in range(len(refs))]
        exprs = [op.torch_call(n.attrs, args, EmitCtx(module=m, dim_names=dim_names), ins)
                 for m in (concrete, looped)]
        targets = [pick_var(nm, r, i) for nm, r in zip(names, refs)]
        for t, r in zip(targets, refs):
            var_of[r] = t
        return tuple(f"{', '.join(targets)} = {e}" for e in exprs)

    def comment(n: IRNode, last_line: int | None) -> str | None:
        if not n.span.line or n.span.line == last_line:
            return None
        text = (SOURCES.line(n.span.file, n.span.line) or "").strip()
        if len(text) > 80:
            text = text[:77] + "..."
        return f"# {src_name}:{n.span.line}: {text}"

    def outer_repeat(n: IRNode) -> str | None:
        for path in n.frames:
            if graph.frames[path].kind == "repeat":
                return path
        return None

    body: list[str] = []
    nodes = [n for n in order if n.op != "input"]
    k = 0
    last_line = None
    while k < len(nodes):
        rep = outer_repeat(nodes[k])
        if rep is None:
            n = nodes[k]
            c = comment(n, last_line)
            if c:
                body.append(c)
            last_line = n.span.line
            body.append(emit_node(n, None)[0])
            k += 1
            continue
        run = []
        while k < len(nodes) and outer_repeat(nodes[k]) == rep:
            run.append(nodes[k])
            k += 1
        # One repeat: emit each iteration both ways; identical looped text means a for loop.
        iters: dict[str, list[IRNode]] = {}
        for n in run:
            it = n.frames[n.frames.index(rep) + 1]
            iters.setdefault(it, []).append(n)
        var = "block"
        concrete_lines: list[str] = []
        looped_texts: list[list[str]] = []
        for it, members in iters.items():
            lines_c: list[str] = []
            lines_l: list[str] = []
            it_last = graph.frames[rep].span.line
            for n in members:
                c = comment(n, it_last)
                if c:
                    lines_c.append(c)
                    lines_l.append(c)
                it_last = n.span.line
                conc, looped = emit_node(n, (it, var))
                lines_c.append(conc)
                lines_l.append(looped)
            concrete_lines += lines_c
            looped_texts.append(lines_l)
        same = len(looped_texts) > 1 and all(t == looped_texts[0] for t in looped_texts)
        rc = comment(IRNode(-1, "", None, [], [], graph.frames[rep].span, ""), last_line)
        if rc:
            body.append(rc)
        if same:
            body.append(f"for {var} in {mods.access(rep)}:")
            body += ["    " + ln for ln in looped_texts[0]]
        else:
            body += concrete_lines
        last_line = run[-1].span.line

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
        lines.append("        # dslc computed the layer sizes below for these values; for others,")
        lines.append("        # compile again with `dslc compile --set NAME=VALUE`.")
        for ident, name, pyval in hp_check:
            lines.append(f"        if {ident} != {pyval}:")
            lines.append("            raise ValueError(")
            lines.append(f"                \"compiled for {name}={pyval}; \"")
            lines.append(f"                \"run 'dslc compile --set {name}=...' for another "
                         "value\")")
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
