"""PyTorch back end: IR graph to readable `nn.Module` source text (never imports torch)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from dslc import dims as D
from dslc.diagnostics import SOURCES
from dslc.ir import Graph, IRNode
from dslc.names import CODEGEN_NAMES, PY_BUILTINS, is_plain_attr, py_ident
from dslc.ops.base import GLOROT_HELPER, EmitCtx
from dslc.ops.registry import OPS
from dslc.regions import is_constant, with_regions


def class_name(model: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", model)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not name or not name.isidentifier() or name[0].isdigit():
        name = "Model" + name
    if keyword.iskeyword(name) or name in CODEGEN_NAMES or name in PY_BUILTINS or \
            name in ("Tensor", "Module"):
        name += "Model"
    return name


def safe_ident(name: str) -> str:
    return py_ident(name)


def _safe_text(text: str) -> str:
    """Spec-controlled text placed in a docstring: nothing that could end the string."""
    return re.sub(r"[^\w.\- ]", "_", text)


def _all_nodes(graph: Graph) -> list[tuple[IRNode, Graph]]:
    """Nodes of the graph and of the cells of its scans, in order, with their graph."""
    return with_regions(graph)


class _Modules:
    """The module tree: frames become ModuleList/ModuleDict, layers become nn modules."""

    def __init__(self, graph: Graph, sources: dict[str, str] | None = None):
        self.graph = graph
        # The spec texts the program was loaded from, for the comments (None: read the files).
        self.sources = sources
        self.tree: dict = {}
        self.owner: dict[int, Graph] = {}
        for node, owner in _all_nodes(graph):
            if node.module is None:
                continue
            self.owner[id(node)] = owner
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
                expr = f"self.{p}" if is_plain_attr(p) else f"getattr(self, {p!r})"
            elif frame is not None and frame.kind == "repeat":
                expr += f"[{int(p)}]"
            else:
                expr += f"[{p!r}]"
        return expr

    def constructor_lines(self, graph: Graph) -> list[str]:
        lines: list[str] = []
        for key, val in self.tree.items():
            ident = is_plain_attr(key)
            if isinstance(val, IRNode) and is_constant(val):
                lines.append(f"self.register_buffer({key!r}, {_const_expr(val)}, "
                             "persistent=False)")
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
            owner = self.owner[id(val)]
            return op.torch_module(val.attrs, [owner.type_of(r) for r in val.inputs])
        frame = self.graph.frames.get(path)
        pad = "    " * (indent + 1)
        end = "    " * indent
        if frame is not None and frame.kind == "repeat":
            items = [self._build(f"{path}.{k}", v, indent + 1)
                     for k, v in sorted(val.items(), key=lambda kv: int(kv[0]))]
            return "nn.ModuleList([\n" + "".join(f"{pad}{it},\n" for it in items) + end + "])"
        consts = [(k, v) for k, v in val.items() if isinstance(v, IRNode) and is_constant(v)]
        if consts:
            # A container that holds constants too: a small module made on the spot.
            body = "".join(f"{pad}({k!r}, {self._build(f'{path}.{k}', v, indent + 1)}),\n"
                           for k, v in val.items() if not (isinstance(v, IRNode)
                                                           and is_constant(v)))
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
    # A symbol that only appears inside an expression (`f32[B, 2*T]`) is solved from it when
    # the expression is linear in that symbol alone: T = (x.shape[1] - b) // a.
    for name, nid in graph.inputs:
        for axis, d in enumerate(graph.nodes[nid].types[0].shape):
            free = [s for s in d.free_symbols if s.name not in names]
            if len(free) != 1 or d.free_symbols - set(free) - {D.symbol(n) for n in names}:
                continue
            sym = free[0]
            poly = d.as_poly(sym) if d.is_polynomial(sym) else None
            if poly is None or poly.degree() != 1:
                continue
            a, b = poly.all_coeffs()
            rest = D.py_expr(b, names) if b != 0 else None
            shape = f"{input_vars[name]}.shape[{axis}]"
            num = f"({shape} - {rest})" if rest else shape
            names[sym.name] = num if a == 1 else f"({num} // {D.py_expr(a, names)})"
    return names


class _Body:
    """Emits the statements of one graph (the model's, or a scan cell's inside its loop) with
    variables named after the spec's names, renamed only while an older value is still live."""

    def __init__(self, graph: Graph, mods: _Modules, dim_names: dict[str, str], src_name: str,
                 input_vars: dict[int, str], reserved: set[str]):
        self.graph = graph
        self.mods = mods
        self.dim_names = dim_names
        self.src_name = src_name
        self.reserved = set(reserved)
        self.order = graph.order()
        self.pos = {n.id: i for i, n in enumerate(self.order)}
        self.last_use: dict[tuple[int, int], int] = {}
        for n in self.order:
            for ref in n.inputs:
                self.last_use[ref] = self.pos[n.id]
        for _, ref in graph.outputs:
            self.last_use[ref] = len(self.order)
        # How often each value is read (an output of the graph counts as a read).
        self.reads: dict[tuple[int, int], int] = {}
        for ref in [r for n in self.order for r in n.inputs] + [r for _, r in graph.outputs]:
            self.reads[ref] = self.reads.get(ref, 0) + 1
        self.var_of: dict[tuple[int, int], str] = {}
        self.holder: dict[str, tuple[int, int]] = {}
        for nid, v in input_vars.items():
            self.var_of[(nid, 0)] = v
            self.holder[v] = (nid, 0)
        self.pinned = set(input_vars.values())

    def fresh(self, base: str) -> str:
        """A name no variable of this body or its enclosing bodies uses."""
        base = safe_ident(base)
        cand, k = base, 1
        while cand in self.holder or cand in self.reserved:
            k += 1
            cand = f"{base}_{k}"
        self.reserved.add(cand)
        return cand

    def pick_var(self, base: str, ref: tuple[int, int], at: int) -> str:
        base = safe_ident(base)
        cand, k = base, 1
        while True:
            cur = self.holder.get(cand)
            free = cur is None or cur == ref or self.last_use.get(cur, -1) <= at
            if free and cand not in self.reserved:
                break
            k += 1
            cand = f"{base}_{k}"
        self.holder[cand] = ref
        return cand

    def comment(self, span, last_line: int | None) -> str | None:
        if not span.line or span.line == last_line:
            return None
        text = (_source_line(self.mods.sources, span.file, span.line) or "").strip()
        if len(text) > 80:
            text = text[:77] + "..."
        return f"# {_safe_text(Path(span.file).name)}:{span.line}: {text}"

    def overwritable(self, ref: tuple[int, int]) -> bool:
        """Whether the one reader of the value may overwrite it in place: no graph input or
        output, nothing else reads it, and its producer made a new tensor that the producer's
        backward does not read, so neither autograd nor another variable sees the change."""
        op = OPS.get(self.graph.nodes[ref[0]].op)
        return op is not None and op.result_overwritable and self.reads[ref] == 1

    def inplace_line(self, n: IRNode, args: list[str], ins, ref) -> str | None:
        """`a += b` where the node may overwrite its first operand (the result keeps a's
        variable), else None."""
        op = OPS[n.op]
        if (op.inplace_operator is None or len(args) != 2 or len(n.types) != 1
                or not self.overwritable(n.inputs[0]) or not _same_type(ins[0], n.types[0])):
            return None
        self.var_of[ref] = args[0]
        self.holder[args[0]] = ref
        return f"{args[0]} {op.inplace_operator} {args[1]}"

    def emit_node(self, n: IRNode, loop: tuple[str, str] | None) -> tuple[list[str], list[str]]:
        """The node's lines twice: with concrete module access, and with `loop` = (repeat
        iteration path, loop variable) reaching the iteration's modules through the variable."""
        i = self.pos[n.id]
        op = OPS[n.op]
        args = [self.var_of[r] for r in n.inputs]
        ins = [self.graph.type_of(r) for r in n.inputs]
        concrete = self.mods.access(n.module) if n.module else None
        looped = concrete
        if n.module and loop and (n.module + ".").startswith(loop[0] + "."):
            looped = self.mods.access(n.module, base=(loop[0], loop[1]))
        refs = [(n.id, p) for p in range(len(n.types))]
        # `a, b = x -> f -> g`: intermediate values take the first name, the last node all.
        names = n.name.split(",") if len(n.types) > 1 else [n.name.split(",")[0]]
        if len(names) != len(refs):
            names = [f"{names[0]}_{p}" for p in range(len(refs))]
        if op.torch_stmts is not None:
            targets = [self.pick_var(nm, r, i) for nm, r in zip(names, refs)]
            ctx = EmitCtx(module=concrete, dim_names=self.dim_names, body=self)
            lines = op.torch_stmts(n.attrs, args, ctx, ins, targets)
            for t, r in zip(targets, refs):
                self.var_of[r] = t
            return lines, lines
        augmented = self.inplace_line(n, args, ins, refs[0])
        if augmented is not None:
            return [augmented], [augmented]
        call = op.torch_call
        if op.torch_inplace is not None and len(n.types) == 1 and self.overwritable(n.inputs[0]):
            call = op.torch_inplace
        exprs = [call(n.attrs, args, EmitCtx(module=m, dim_names=self.dim_names), ins)
                 for m in (concrete, looped)]
        targets = [self.pick_var(nm, r, i) for nm, r in zip(names, refs)]
        for t, r in zip(targets, refs):
            self.var_of[r] = t
        return tuple([f"{', '.join(targets)} = {e}"] for e in exprs)

    def sub_body(self, graph: Graph, input_vars: dict[int, str]) -> _Body:
        reserved = self.reserved | set(self.holder)
        return _Body(graph, self.mods, self.dim_names, self.src_name, input_vars, reserved)

    def outer_repeat(self, n: IRNode) -> str | None:
        for path in n.frames:
            frame = self.graph.frames.get(path)
            if frame is not None and frame.kind == "repeat":
                return path
        return None

    def emit(self) -> list[str]:
        graph = self.graph
        body: list[str] = []
        nodes = [n for n in self.order if n.op != "input"]
        k = 0
        last_line = None
        while k < len(nodes):
            rep = self.outer_repeat(nodes[k])
            if rep is None:
                n = nodes[k]
                c = self.comment(n.span, last_line)
                if c:
                    body.append(c)
                last_line = n.span.line
                body += self.emit_node(n, None)[0]
                k += 1
                continue
            run = []
            while k < len(nodes) and self.outer_repeat(nodes[k]) == rep:
                run.append(nodes[k])
                k += 1
            # One repeat: emit each iteration both ways; identical looped text means a loop.
            iters: dict[str, list[IRNode]] = {}
            for n in run:
                it = n.frames[n.frames.index(rep) + 1]
                iters.setdefault(it, []).append(n)
            var = "block"
            concrete_lines: list[str] = []
            looped_texts: list[list[str]] = []
            for it, members in iters.items():
                lines_l: list[str] = []
                it_last = graph.frames[rep].span.line
                for n in members:
                    c = self.comment(n.span, it_last)
                    if c:
                        concrete_lines.append(c)
                        lines_l.append(c)
                    it_last = n.span.line
                    conc, looped = self.emit_node(n, (it, var))
                    concrete_lines += conc
                    lines_l += looped
                looped_texts.append(lines_l)
            same = len(looped_texts) > 1 and all(t == looped_texts[0] for t in looped_texts)
            rc = self.comment(graph.frames[rep].span, last_line)
            if rc:
                body.append(rc)
            if same:
                body.append(f"for {var} in {self.mods.access(rep)}:")
                body += ["    " + ln for ln in looped_texts[0]]
            else:
                body += concrete_lines
            last_line = run[-1].span.line
        return body


def _same_type(a, b) -> bool:
    return a.dtype == b.dtype and a.rank == b.rank and all(
        D.equal(x, y) is True for x, y in zip(a.shape, b.shape))


def input_arg_names(graph: Graph) -> dict[str, str]:
    """The argument of `forward` for each model input (the spec name, made safe)."""
    names: dict[str, str] = {}
    for name, _nid in graph.inputs:
        v = safe_ident(name)
        while v in names.values():
            v += "_"
        names[name] = v
    return names


FOLD_HELPERS = '''

def _fold_batch_norm(state_dict, prefix, layer, norm, eps, had_bias):
    """Fold the batch norm `norm` into `layer` (W' = W*s, b' = (b - mean)*s + beta)."""
    if prefix + norm + ".running_mean" not in state_dict:
        return  # already in the folded format
    weight = state_dict[prefix + layer + ".weight"]
    if had_bias:
        bias = state_dict[prefix + layer + ".bias"]
    else:
        bias = weight.new_zeros(weight.shape[0])
    gamma = state_dict.pop(prefix + norm + ".weight")
    beta = state_dict.pop(prefix + norm + ".bias")
    mean = state_dict.pop(prefix + norm + ".running_mean")
    var = state_dict.pop(prefix + norm + ".running_var")
    state_dict.pop(prefix + norm + ".num_batches_tracked", None)
    scale = gamma / torch.sqrt(var + eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    state_dict[prefix + layer + ".weight"] = weight * scale.reshape(shape)
    state_dict[prefix + layer + ".bias"] = (bias - mean) * scale + beta
'''


def _fold_hook_lines(folds) -> list[str]:
    """A load_state_dict pre-hook: the optimised module accepts the unoptimised file."""
    drops = [k for f in folds if f.kind == "drop" for k in f.keys]
    bns = [f for f in folds if f.kind == "batch_norm"]
    lines = ["", "def _accept_unoptimised(module, state_dict, prefix, *args):",
             '    """dslc optimised this module; it also loads the parameter file of the '
             'spec as written."""']
    if drops:
        lines.append("    for key in (")
        lines += [f"        {k!r}," for k in drops]
        lines.append("    ):")
        lines.append("        state_dict.pop(prefix + key, None)  # a layer nothing uses")
    for f in bns:
        lines.append(f"    _fold_batch_norm(state_dict, prefix, {f.target!r}, {f.source!r}, "
                     f"{f.eps!r}, {f.had_bias!r})")
    return lines


def _source_line(sources: dict[str, str] | None, file: str, line: int) -> str | None:
    if sources is None:
        return SOURCES.line(file, line)
    lines = sources.get(file, "").splitlines()
    return lines[line - 1] if 1 <= line <= len(lines) else None


def generate(graph: Graph, source_file: str | None = None, folds=(),
             sources: dict[str, str] | None = None) -> str:
    """The whole generated file: imports, one class named after the model, nothing else.
    `sources` (file -> text) are the texts the program was loaded from; without them the
    comments read the files."""
    mods = _Modules(graph, sources)
    cls = class_name(graph.model)
    src_name = _safe_text(Path(source_file or graph.file).name)
    input_vars = input_arg_names(graph)
    dim_names = _dim_names(graph, input_vars)
    top = _Body(graph, mods, dim_names, src_name,
                {nid: input_vars[name] for name, nid in graph.inputs}, set())
    body = top.emit()
    var_of = top.var_of

    outs = [var_of[ref] for _, ref in graph.outputs]
    ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    body.append(f"return {ret}")

    ctor = mods.constructor_lines(graph)
    hp_sig = []
    hp_check = []
    for name, value in graph.hparams.items():
        ident = safe_ident(name)
        while ident in (h[0] for h in hp_check):  # `ｗ` and `w` are one name to Python
            ident += "_"
        pyval = _py_value(value)
        hp_sig.append(f"{ident}={pyval}")
        hp_check.append((ident, name, pyval))
    sig = ", ".join(["self"] + (["*"] + hp_sig if hp_sig else []))
    # Inputs positionally, in declared order, as hand-written modules take them: that is how
    # nn.Sequential, jit.trace, torch.export, ONNX export and torchinfo call a module.
    fwd_sig = ", ".join(["self"] + list(input_vars.values()))

    lines = [
        f'"""PyTorch module generated by dslc from {src_name} '
        f'(model `{_safe_text(graph.model)}`)."""',
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
            "        module.register_buffer(name, value, persistent=False)",
            "    return module",
            "",
        ]
    if any("_glorot(" in c for c in ctor):
        lines += GLOROT_HELPER.split("\n")[:-1] + [""]
    if folds:
        if any(f.kind == "batch_norm" for f in folds):
            lines += FOLD_HELPERS.split("\n")[:-1]
        lines += _fold_hook_lines(folds) + [""]
    lines += [
        "",
        f"class {cls}(nn.Module):",
        f'    """`{_safe_text(graph.model)}` from {src_name}."""',
        "",
        f"    def __init__({sig}):",
        "        super().__init__()",
    ]
    if hp_check:
        lines.append("        # dslc computed the layer sizes below for these values; for others,")
        lines.append("        # compile again with `dslc compile --set NAME=VALUE`.")
        for ident, name, pyval in hp_check:
            lines.append(f"        if {ident} != {pyval}:")
            msg = (f"compiled for {name}={pyval}; run `dslc compile --set {name}=...` "
                   "for another value")
            lines.append("            raise ValueError(")
            lines.append(f"                {msg!r})")
    lines += ["        " + ln for c in ctor for ln in c.split("\n")]
    if folds:
        lines.append("        self.register_load_state_dict_pre_hook(_accept_unoptimised)")
    channels_last = graph.memory_format == "channels_last"
    if channels_last:
        lines.append("        # -O2: 4-d tensors channels last, fastest for convolutions")
        lines.append("        self.to(memory_format=torch.channels_last)")
    lines += ["", f"    def forward({fwd_sig}):"]
    if channels_last:
        for name, nid in graph.inputs:
            t = graph.nodes[nid].types[0]
            if t.rank == 4 and t.is_float:
                v = input_vars[name]
                lines.append(f"        {v} = {v}.contiguous(memory_format=torch.channels_last)")
    lines += ["        " + ln for ln in _constraint_lines(graph, dim_names)]
    lines += ["        " + b for b in body]
    return "\n".join(lines) + "\n"


def _constraint_lines(graph: Graph, dim_names: dict[str, str]) -> list[str]:
    """The facts about input sizes the checker could not decide (the spec's asserts, exact
    divisions of dims): the generated module checks them as `dslc run` does, with the same
    words, instead of running on with wrong sizes."""
    lines = []
    for c in graph.constraints:
        try:
            test = (D.py_divisible(c.expr, dim_names) if c.kind == "integer"
                    else D.py_condition(c.expr, dim_names))
        except ValueError:  # a condition Python cannot state: dslc run still checks it
            continue
        where = f"{_safe_text(Path(c.span.file).name)}:{c.span.line}"
        lines += [f"if not ({test}):",
                  f"    raise ValueError({(c.message + ' (' + where + ')')!r})"]
    return lines


def _py_value(v) -> str:
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, (int, float, str)):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_py_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(D.fmt(v))
