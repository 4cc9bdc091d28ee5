"""Graphviz back end: typed IR graph to DOT text (and SVG/PNG/PDF through the `dot` binary).

The DOT text is built by hand rather than with the `graphviz` package so that every byte is
under our control: node ids come from IR ids, clusters are numbered in frame creation order,
nothing is ordered by hashing, and no path or time is written. The same graph always gives the
same text.

Collapsed repeats (the default) draw one iteration of each run of identical iterations
inside a cluster marked "× n". Iterations are identical when they make the same ops with the
same attributes and types; a repeat whose iterations differ (MobileNetV2's stage: the first
strided, without the residual add, the rest with it) shows each run as its own cluster
("× 1", then "× 3"), so collapsing never hides an op that the expanded diagram has. Edges that
touch a hidden iteration are re-routed to the matching node of its run's drawn iteration and
clipped at the cluster border (`ltail`/`lhead`), so the diagram stays connected:

    x ─▶ [stack × 3: fc1 → relu → fc2] ─▶ head      (edges of iterations 1, 2 go to the box)
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.ir import Frame, Graph, IRNode
from dslc.ops.base import RegionView
from dslc.ops.registry import OPS
from dslc.regions import is_constant
from dslc.summary import node_params

# family -> (shape, fill colour, border colour). Light fills keep black text readable.
FAMILY_STYLE: dict[str, tuple[str, str, str]] = {
    "dense": ("box", "#cfe2f3", "#3d85c6"),
    "conv": ("box", "#d9ead3", "#6aa84f"),
    "pool": ("invtrapezium", "#fff2cc", "#bf9000"),
    "act": ("box", "#fce5cd", "#e69138"),
    "norm": ("box", "#ead1dc", "#a64d79"),
    "shape": ("box", "#eeeeee", "#777777"),
    "arith": ("ellipse", "#f4cccc", "#cc0000"),
    "reg": ("box", "#fafafa", "#999999"),  # dashed: only active in training
    "embed": ("box", "#d0e0e3", "#45818e"),
    "sample": ("diamond", "#d9d2e9", "#674ea7"),
    "spatial": ("box", "#c9daf8", "#3c78d8"),
    "const": ("note", "#f3f3f3", "#666666"),
    "rnn": ("box3d", "#d5f0ea", "#2a9d8f"),
    "attn": ("box", "#fde2e4", "#c9184a"),
    "graph": ("box", "#e2ecd5", "#4f772d"),
    "loss": ("octagon", "#fff0f0", "#990000"),
}
DEFAULT_STYLE = ("box", "#ffffff", "#333333")
CLUSTER_STYLE = {
    "block": ("#f8f9fb", "#6d7a8a", "rounded"),
    "repeat": ("#fdf6e3", "#b58900", "rounded,dashed"),
    "iter": ("#fffdf5", "#c9b46a", "rounded,dotted"),
}


def fmt_params(n: int) -> str:
    """Parameter count as a diagram shows it: 1,234 below a million, then 1.2M, 3.4B."""
    if n >= 10**9:
        return f"{n / 10**9:.1f}B"
    if n >= 10**6:
        return f"{n / 10**6:.1f}M"
    return f"{n:,}"


def quote(s: str) -> str:
    """A DOT double-quoted string; backslashes and quotes cannot end it or start escapes."""
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r", "").replace("\n", "\\n") + '"'


def h(s: str) -> str:
    """Text for inside an HTML-like label."""
    return html.escape(s, quote=True).replace("\n", "<br/>")


# ---- which nodes are drawn where ---------------------------------------------------------


class _Layout:
    """Decides, for a collapsed or expanded drawing, which IR nodes are visible, which cluster
    each sits in, and where an edge to a hidden node is drawn instead."""

    def __init__(self, graph: Graph, expand: bool):
        self.graph = graph
        self.expand = expand
        self.order = graph.order()
        # Nodes of each iteration frame, in creation order (for matching iterations up).
        self.members: dict[str, list[IRNode]] = {}
        self.position: dict[tuple[str, int], int] = {}
        for node in sorted(graph.nodes.values(), key=lambda n: n.id):
            for path in node.frames:
                if graph.frames[path].kind == "iter":
                    group = self.members.setdefault(path, [])
                    self.position[(path, node.id)] = len(group)
                    group.append(node)
        self.same_shape: dict[tuple[str, str], bool] = {}
        self.role_maps: dict[str, tuple[dict[int, tuple], dict[tuple, IRNode]]] = {}
        # Runs of identical iterations: each iteration's drawn stand-in (the first of its
        # run) and the runs of each repeat as (drawn iteration, count); only a repeat with
        # several runs draws them as clusters of their own.
        self.rep_of: dict[str, str] = {}
        self.runs: dict[str, list[tuple[str, int]]] = {}
        for path, frame in graph.frames.items():
            if frame.kind == "repeat":
                self._group(path, frame.count)
        self.ids = {path: i for i, path in enumerate(graph.frames)}
        # Parameters of each repeat, all iterations (None where a count is symbolic).
        self.repeat_params: dict[str, int | None] = {}
        for node in self.order:
            if not node.params:
                continue
            n = D.value(node_params(node)[0])
            for path in node.frames:
                if graph.frames[path].kind == "repeat":
                    prev = self.repeat_params.get(path, 0)
                    self.repeat_params[path] = None if n is None or prev is None else prev + n

    def _signature(self, iter_path: str) -> tuple:
        cut = len(iter_path)
        return tuple((n.op, repr(n.attrs), tuple(str(t) for t in n.types), n.span,
                      tuple(p[cut:] for p in n.frames if p.startswith(iter_path + ".")))
                     for n in self.members.get(iter_path, []))

    def _group(self, rep: str, count: int) -> None:
        runs: list[tuple[str, int]] = []
        last = None
        for i in range(count):
            it = f"{rep}.{i}"
            sig = self._signature(it)
            if runs and sig == last:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((it, 1))
                last = sig
            self.rep_of[it] = runs[-1][0]
        self.runs[rep] = runs

    def multi_run(self, rep: str) -> bool:
        return len(self.runs.get(rep, ())) > 1

    def fold_cluster(self, node: IRNode, rep: str) -> str:
        """The cluster a folded edge is clipped at: the run's cluster, else the repeat's."""
        if not self.multi_run(rep):
            return rep
        mine = next(p for p in node.frames if self.parent_repeat(p) == rep
                    and self.graph.frames[p].kind == "iter")
        return self.rep_of[mine]

    def run_of(self, node: IRNode, rep: str) -> str | None:
        """The drawn iteration of `node`'s run inside repeat `rep` (None: not inside it)."""
        mine = next((p for p in node.frames if self.parent_repeat(p) == rep
                     and self.graph.frames[p].kind == "iter"), None)
        return self.rep_of.get(mine) if mine else None

    def parent_repeat(self, iter_path: str) -> str:
        return iter_path.rsplit(".", 1)[0]

    def hidden_in(self, node: IRNode) -> str | None:
        """The outermost collapsed repeat whose shown iteration does not hold this node."""
        if self.expand:
            return None
        for path in node.frames:
            if self.graph.frames[path].kind == "iter":
                rep = self.parent_repeat(path)
                if self.rep_of.get(path, path) != path:
                    return rep
        return None

    def counterpart(self, node: IRNode, rep: str, outgoing: bool) -> IRNode:
        """The node of the shown iteration of `rep` that plays `node`'s part."""
        mine = next(p for p in node.frames if self.parent_repeat(p) == rep
                    and self.graph.frames[p].kind == "iter")
        shown = self.rep_of[mine]
        src = self.members[mine]
        dst = self.members.get(shown, [])
        key = (mine, shown)
        if key not in self.same_shape:
            self.same_shape[key] = len(src) == len(dst) and all(
                a.op == b.op and a.span == b.span for a, b in zip(src, dst))
        if self.same_shape[key]:
            return dst[self.position[(mine, node.id)]]
        # Iterations differ (an `if` on the index): match the node made by the same statement
        # at the same place inside the iteration, else the first or last node stands in.
        role = self.roles(mine)[0][node.id]
        found = self.roles(shown)[1].get(role)
        if found is not None:
            return found
        return dst[-1] if outgoing else dst[0]

    def roles(self, iter_path: str) -> tuple[dict[int, tuple], dict[tuple, IRNode]]:
        """What each node is within an iteration (its op, statement, frames below the
        iteration, and how many came before it with all of these), both ways round."""
        if iter_path not in self.role_maps:
            by_id: dict[int, tuple] = {}
            by_role: dict[tuple, IRNode] = {}
            count: dict[tuple, int] = {}
            cut = len(iter_path)
            for node in self.members[iter_path]:
                inner = tuple(p[cut:] for p in node.frames if p.startswith(iter_path + "."))
                base = (node.op, node.span, inner)
                role = base + (count.get(base, 0),)
                count[base] = role[-1] + 1
                by_id[node.id] = role
                by_role[role] = node
            self.role_maps[iter_path] = (by_id, by_role)
        return self.role_maps[iter_path]

    def visible(self, node: IRNode, outgoing: bool) -> tuple[IRNode, str | None]:
        """The drawn node standing for `node`, and the outermost collapsed repeat it stands
        in for (None when `node` itself is drawn)."""
        outer = self.hidden_in(node)
        cur = node
        rep = self.hidden_in(cur)
        while rep is not None:
            cur = self.counterpart(cur, rep, outgoing)
            rep = self.hidden_in(cur)
        return cur, outer

    def clusters_of(self, node: IRNode) -> list[str]:
        """The frames drawn as clusters around a visible node, outermost first."""
        out = []
        for path in node.frames:
            kind = self.graph.frames[path].kind
            if kind == "iter" and not self.expand and \
                    not self.multi_run(self.parent_repeat(path)):
                continue  # a collapsed repeat of one run draws its iteration directly
            out.append(path)
        return out

    def cluster_id(self, path: str) -> str:
        return f"cluster_{self.ids[path]}"


# ---- DOT text ----------------------------------------------------------------------------


@dataclass
class _Cluster:
    path: str
    items: list = field(default_factory=list)  # str lines (nodes) or _Cluster, in order
    children: dict[str, _Cluster] = field(default_factory=dict)


def _node_lines(graph: Graph, node: IRNode, output_of: dict[int, list[str]],
                prefix: str = "n") -> str:
    nid = f"{prefix}{node.id}"
    line = f"line {node.span.line}" if node.span.line else ""
    if node.op == "input":
        t = node.types[0]
        label = f"<<b>{h(node.name)}</b><br/><font point-size=\"10\">{h(str(t))}</font>>"
        tip = f"input {node.name}: {t}"
        if any(n.op in OPS and OPS[n.op].family == "graph" for n in graph.nodes.values()):
            # In a GNN every input is part of the graph value it runs on: node features,
            # edge_index, edge attributes, the batch vector.
            label = (f"<<b>{h(node.name)}</b> <font point-size=\"9\">graph</font><br/>"
                     f"<font point-size=\"10\">{h(str(t))}</font>>")
            return (f"{nid} [shape=parallelogram, style=\"filled,bold\", "
                    f"fillcolor=\"#e3f1e6\", color=\"#2e7d32\", label={label}, "
                    f"tooltip={quote(tip)}];")
        return (f"{nid} [shape=parallelogram, style=\"filled,bold\", fillcolor=\"#ffffff\", "
                f"color=\"#000000\", label={label}, tooltip={quote(tip)}];")
    op = OPS.get(node.op)
    family = op.family if op else ""
    shape, fill, border = FAMILY_STYLE.get(family, DEFAULT_STYLE)
    title = f"<b>{h(node.op)}</b>"
    if node.module:
        title += f" <i>{h(node.module.rsplit('.', 1)[-1])}</i>"
    rows = [title]
    detail = op.label(node.attrs) if op else ""
    if detail:
        rows.append(f"<font point-size=\"10\">{h(detail)}</font>")
    params, buffers = node_params(node)
    pv, bv = D.value(params), D.value(buffers)
    if params != 0:
        text = fmt_params(pv) if pv is not None else D.fmt(params)
        rows.append(f"<font point-size=\"9\" color=\"#444444\">{h(text)} params</font>")
    if buffers != 0 and not is_constant(node):
        text = fmt_params(bv) if bv is not None else D.fmt(buffers)
        rows.append(f"<font point-size=\"9\" color=\"#444444\">{h(text)} buffers</font>")
    label = "<" + "<br/>".join(rows) + ">"
    style = "filled,rounded" if shape == "box" else "filled"
    if family == "reg":
        style += ",dashed"
    extra = ""
    if family == "act" and not node.params:
        # Activations are the commonest nodes and carry little: draw them smaller.
        extra = ", fontsize=10, height=0.3, margin=\"0.08,0.02\""
    if node.id in output_of:
        style += ",bold"
        border = "#000000"
    tip = f"{node.name} = {node.op}" + (f" ({line})" if line else "")
    return (f"{nid} [shape={shape}, style=\"{style}\", fillcolor=\"{fill}\", "
            f"color=\"{border}\", label={label}, tooltip={quote(tip)}{extra}];")


def _region_view(node: IRNode, graph: Graph) -> RegionView | None:
    """How the node's op draws the region it owns; None for a plain node."""
    op = OPS.get(node.op)
    if op is None or op.region_view is None:
        return None
    return op.region_view(node.attrs, [graph.type_of(r) for r in node.inputs], node.types)


def _cell_lines(view: RegionView, pre: str, step: str | None) -> list[str]:
    """One copy of a region: its inputs (with their roles: step, state, fixed) and nodes,
    with edges."""
    cell = view.region
    lines = []
    for (name, nid), role in zip(cell.inputs, view.roles):
        t = cell.nodes[nid].types[0]
        shown = f"{name}[{step}]" if step and role == "step" else name
        lines.append(f"  {pre}n{nid} [shape=cds, style=filled, fillcolor=\"#ffffff\", "
                     f"label=<<b>{h(shown)}</b> <font point-size=\"9\">{role} "
                     f"{h(D.fmt_shape(t.shape))}</font>>];")
    for n in cell.order():
        if n.op != "input":
            lines.append("  " + _node_lines(cell, n, {}, prefix=pre + "n"))
    for n in cell.order():
        for src, port in n.inputs:
            t = cell.nodes[src].types[port]
            lines.append(f"  {pre}n{src} -> {pre}n{n.id} "
                         f"[label={quote(' ' + D.fmt_shape(t.shape))}];")
    return lines


def _region_lines(node: IRNode, view: RegionView, expand: bool = False) -> str:
    """A node that runs a region repeatedly (a scan's recurrence). Rolled (the default): the
    region in a cluster, each looping output going back to the input it replaces. Unrolled
    (`expand`): the region at steps 1, 2 and the last, each looping output feeding the next
    step. Either way the node collects the outputs."""
    cell = view.region
    steps = D.fmt(view.steps) if view.steps is not None else "?"
    stem = f"cluster_{view.cluster}{node.id}"
    lines = [f"subgraph {stem} {{",
             f"  label=<<b>{h(view.keyword)}</b> {h(view.title)}>; "
             "style=\"rounded,filled\"; fillcolor=\"#f3f0fa\"; "
             "color=\"#7a5fb0\"; labeljust=l;"]
    outs = view.collected
    lines.append("  " + _node_lines(cell, node, {}, prefix="n")
                 .replace(f"<b>{h(node.op)}</b>", f"<b>{h(view.collector)}</b>", 1))
    if not expand:
        lines += _cell_lines(view, f"s{node.id}_", None)
        for (src, _port), target in view.loops:
            lines.append(f"  s{node.id}_n{src} -> s{node.id}_n{target} [style=dashed, "
                         "color=\"#7a5fb0\", constraint=false, label=\" next step\"];")
        for src, _port in outs:
            lines.append(f"  s{node.id}_n{src} -> n{node.id} [style=dotted];")
    else:
        n = D.value(view.steps) if view.steps is not None else None
        labels = [str(i + 1) for i in range(n)] if n is not None and n <= 3 else \
            ["1", "2", steps]
        # The first copy keeps the rolled ids, so the node's inputs still arrive there.
        prefixes = [f"s{node.id}_"] + [f"s{node.id}_t{i}_" for i in range(1, len(labels))]
        for i, (label, pre) in enumerate(zip(labels, prefixes)):
            lines.append(f"  subgraph {stem}_t{i} {{")
            lines.append(f"    label=<t = {h(label)}>; style=\"dashed\"; color=\"#7a5fb0\";")
            lines += ["  " + ln for ln in _cell_lines(view, pre, label)]
            lines.append("  }")
            for src, _port in outs:
                lines.append(f"  {pre}n{src} -> n{node.id} [style=dotted];")
        for i in range(len(prefixes) - 1):
            gap = len(labels) == 3 and labels[2] == steps and n is None and i == 1
            for (src, _port), target in view.loops:
                if gap:
                    dots = f"s{node.id}_gap{target}"
                    lines.append(f"  {dots} [shape=plaintext, label=\"…\"];")
                    lines.append(f"  {prefixes[i]}n{src} -> {dots} [color=\"#7a5fb0\"];")
                    lines.append(f"  {dots} -> {prefixes[i + 1]}n{target} "
                                 "[color=\"#7a5fb0\"];")
                else:
                    lines.append(f"  {prefixes[i]}n{src} -> {prefixes[i + 1]}n{target} "
                                 "[color=\"#7a5fb0\", label=\" state\"];")
    lines.append("}")
    return "\n".join(lines)


def _cluster_label(graph: Graph, frame: Frame, layout: _Layout) -> str:
    if frame.kind == "block":
        return (f"<<b>{h(frame.name)}</b> <font point-size=\"10\" color=\"#555555\">"
                f"{h(frame.path)}</font>>")
    if frame.kind == "repeat":
        total = layout.repeat_params.get(frame.path, 0)
        text = f"<b>{h(frame.name)}</b> × {frame.count}"
        if total:
            text += f" <font point-size=\"10\" color=\"#555555\">{fmt_params(total)} params</font>"
        return "<" + text + ">"
    rep = layout.parent_repeat(frame.path)
    if not layout.expand and layout.multi_run(rep):
        count = dict(layout.runs[rep])[frame.path]
        first = int(frame.path.rsplit(".", 1)[1])
        which = f"{first}" if count == 1 else f"{first}–{first + count - 1}"
        return (f"<<b>× {count}</b> <font point-size=\"10\">{h(rep)}.{which}"
                "</font>>")
    return f"<<font point-size=\"10\">{h(frame.path)}</font>>"


def _emit_cluster(graph: Graph, layout: _Layout, cl: _Cluster, depth: int, out: list[str]):
    pad = "  " * depth
    frame = graph.frames[cl.path]
    fill, border, style = CLUSTER_STYLE.get(frame.kind, CLUSTER_STYLE["block"])
    out.append(f"{pad}subgraph {layout.cluster_id(cl.path)} {{")
    out.append(f"{pad}  label={_cluster_label(graph, frame, layout)};")
    out.append(f"{pad}  style=\"{style},filled\"; fillcolor=\"{fill}\"; color=\"{border}\";"
               f" labeljust=l;")
    for item in cl.items:
        if isinstance(item, _Cluster):
            _emit_cluster(graph, layout, item, depth + 1, out)
        else:
            out.append(f"{pad}  {item}")
    out.append(f"{pad}}}")


def to_dot(graph: Graph, expand: bool = False) -> str:
    """Deterministic DOT text for the graph; `expand` draws every repeat iteration."""
    layout = _Layout(graph, expand)
    output_of: dict[int, list[str]] = {}
    for name, (nid, _port) in graph.outputs:
        output_of.setdefault(nid, []).append(name)

    root = _Cluster("")
    visible_ids: list[int] = []
    for node in layout.order:
        if layout.hidden_in(node) is not None:
            continue
        visible_ids.append(node.id)
        cur = root
        for path in layout.clusters_of(node):
            if path not in cur.children:
                child = _Cluster(path)
                cur.children[path] = child
                cur.items.append(child)
            cur = cur.children[path]
        view = _region_view(node, graph)
        if view is not None:
            cur.items.append(_region_lines(node, view, expand))
        else:
            cur.items.append(_node_lines(graph, node, output_of))

    out = [f"digraph {quote(graph.model)} {{"]
    out.append(f"  graph [label=<<b>{h(graph.model)}</b>>, labelloc=t, fontsize=16, "
               "fontname=\"Helvetica\", rankdir=TB, compound=true, newrank=true, "
               "nodesep=0.3, ranksep=0.35];")
    out.append("  node [fontname=\"Helvetica\", fontsize=11, margin=\"0.12,0.04\", "
               "height=0.4];")
    out.append("  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\", "
               "fontcolor=\"#333333\", arrowsize=0.7];")
    for item in root.items:
        if isinstance(item, _Cluster):
            _emit_cluster(graph, layout, item, 1, out)
        else:
            out.append(f"  {item}")
    for i, (name, _ref) in enumerate(graph.outputs):
        out.append(f"  out{i} [shape=house, style=\"filled,bold\", fillcolor=\"#ffffff\", "
                   f"color=\"#000000\", label=<<b>{h(name)}</b>>, "
                   f"tooltip={quote('output ' + name)}];")

    # Edges, in consumer order then input port; later iterations fold onto the shown one.
    edges: list[str] = []
    seen: set[tuple] = set()
    drawn: set[tuple[int, str]] = set()

    def add_edge(src: IRNode, port: int, dst_id: str, dst: IRNode | None, in_port: int,
                 head_override: str | None = None):
        t = src.types[port]
        label = D.fmt_shape(t.shape)
        if len(src.types) > 1:
            label = f"#{port} {label}"
        # An edge with both ends inside one collapsed repeat is the repeat's own business.
        tail_rep = layout.hidden_in(src)
        head_rep = layout.hidden_in(dst) if dst is not None else None
        if tail_rep is not None and dst is not None and tail_rep in dst.frames and \
                layout.run_of(src, tail_rep) == layout.run_of(dst, tail_rep):
            return
        if head_rep is not None and head_rep in src.frames and \
                layout.run_of(src, head_rep) == layout.run_of(dst, head_rep):
            return
        tail, _ = layout.visible(src, outgoing=True)
        head_id = dst_id
        if dst is not None:
            head, _ = layout.visible(dst, outgoing=False)
            head_id = head_override if head_override and head is dst else f"n{head.id}"
        attrs = [f"label={quote(' ' + label)}"]
        if tail_rep is not None:
            attrs.append(f"ltail={layout.cluster_id(layout.fold_cluster(src, tail_rep))}")
        if head_rep is not None:
            attrs.append(f"lhead={layout.cluster_id(layout.fold_cluster(dst, head_rep))}")
        folded = tail_rep is not None or head_rep is not None
        # A folded edge repeats what an edge between the same drawn nodes already shows
        # (a value fed to every iteration, say): draw it once.
        key = (tail.id, head_id) if folded else (tail.id, head_id, in_port)
        if key in seen or (folded and (tail.id, head_id) in drawn):
            return
        seen.add(key)
        drawn.add((tail.id, head_id))
        edges.append(f"  n{tail.id} -> {head_id} [{', '.join(attrs)}];")

    for node in layout.order:
        # A region op's inputs go to its region's input nodes.
        view = _region_view(node, graph)
        cell_in = ([f"s{node.id}_n{nid}" for _, nid in view.region.inputs]
                   if view is not None else [])
        for in_port, (src_id, port) in enumerate(node.inputs):
            add_edge(graph.nodes[src_id], port, "", node, in_port,
                     cell_in[in_port] if cell_in else None)
    for i, (_name, (nid, port)) in enumerate(graph.outputs):
        add_edge(graph.nodes[nid], port, f"out{i}", None, 0)
    out += edges
    out.append("}")
    return "\n".join(out) + "\n"


# ---- images ------------------------------------------------------------------------------


def render_bytes(graph: Graph, fmt: str, expand: bool = False) -> bytes:
    """The diagram as `fmt` (dot, svg, png or pdf); images come from Graphviz's `dot`."""
    text = to_dot(graph, expand=expand)
    if fmt == "dot":
        return text.encode("utf-8")
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"unknown diagram format {fmt!r}")
    where = Span(graph.file or "<graph>", 0, 0, 0, 0)
    exe = shutil.which("dot")
    if exe is None:
        raise DslcError(Diagnostic(
            "E0605", "cannot draw the diagram: Graphviz's `dot` program is not installed",
            where, expected="`dot` on PATH", found="no `dot` executable",
            hint="install Graphviz (e.g. `apt-get install graphviz` or `brew install "
                 "graphviz`), or write .dot text with -o model.dot"))
    # Cairo stamps PDFs with the current time; newer cairo honours SOURCE_DATE_EPOCH, older
    # ones get their date rewritten below, so the same model always gives the same file.
    env = dict(os.environ, SOURCE_DATE_EPOCH="0")
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=text.encode("utf-8"),
                              capture_output=True, env=env, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DslcError(Diagnostic("E0606", "Graphviz `dot` failed to run", where,
                                   found=str(exc)[:300])) from None
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise DslcError(Diagnostic("E0606", f"Graphviz `dot` failed (exit {proc.returncode})",
                                   where, found=err[:500] or "no output"))
    if fmt == "pdf":
        return _pin_pdf_dates(proc.stdout)
    return proc.stdout


_EPOCH_DIGITS = "19700101000000"


def _pin_pdf_dates(data: bytes) -> bytes:
    """Replace the digits of a PDF's CreationDate/ModDate with 1970-01-01 00:00:00, keeping
    the length so the cross-reference offsets stay right."""

    def pin(m: re.Match) -> bytes:
        digits = iter(_EPOCH_DIGITS)
        out = bytes(ord(next(digits, "0")) if 48 <= c <= 57 else c for c in m.group(2))
        return m.group(1) + out + b")"

    return re.sub(rb"(/(?:CreationDate|ModDate)\s*\()(D:[^)]{0,40})\)", pin, data)
