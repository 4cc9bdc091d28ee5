"""IR: the elaborated model as a networkx graph of typed op nodes, with block/repeat frames."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from dslc.diagnostics import Span
from dslc.ops.base import ParamSpec
from dslc.regions import region_param_keys
from dslc.types import TensorType


@dataclass(frozen=True)
class Frame:
    """A block instance, a repeat, or one repeat iteration; nodes record the frames they sit in."""

    path: str  # module path, e.g. `layer1` or `layer1.0`
    kind: str  # block | repeat | iter
    name: str  # block name, repeat label, or iteration index
    span: Span
    count: int = 0  # iterations, for repeats


@dataclass
class IRNode:
    id: int
    op: str  # a registered op name, or `input`
    attrs: Any
    inputs: list[tuple[int, int]]  # (producer id, output port)
    types: list[TensorType]
    span: Span
    name: str  # the spec's name for the value (used in generated code and diagrams)
    module: str | None = None  # state_dict prefix of the layer when it owns parameters
    params: dict[str, ParamSpec] = field(default_factory=dict)
    frames: tuple[str, ...] = ()  # paths of the enclosing frames, outermost first
    const_value: Any = None  # for `const` nodes: the numpy array


@dataclass
class Constraint:
    """A fact about runtime dims the checker could not decide (e.g. T % 2 == 0)."""

    expr: Any  # sympy expression that must be an integer (divisibility) or true
    kind: str  # "integer" or "true"
    message: str
    span: Span


@dataclass
class Graph:
    model: str
    hparams: dict[str, Any]
    g: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)
    nodes: dict[int, IRNode] = field(default_factory=dict)
    inputs: list[tuple[str, int]] = field(default_factory=list)
    outputs: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    frames: dict[str, Frame] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    span: Span | None = None
    file: str = ""
    # How the generated module keeps 4-d tensors: "contiguous" (NCHW) or "channels_last"
    # (set by the -O2 pass of that name; NumPy results do not depend on it).
    memory_format: str = "contiguous"
    # Cached execution order; every change to nodes or edges goes through add(),
    # rebuild_edges() or remove(), which clear it. (The interpreter walks a scan's cell once per
    # step: sorting it every time cost more than the cell's arithmetic.)
    _order: list[IRNode] | None = field(default=None, repr=False, compare=False)
    # Cached by last_uses(), cleared with _order; keyed by the outputs, which change apart.
    _last_uses: tuple[tuple, list[list[tuple[int, int]]]] | None = field(
        default=None, repr=False, compare=False)

    def add(self, node: IRNode) -> IRNode:
        self._order = self._last_uses = None
        self.nodes[node.id] = node
        self.g.add_node(node.id)
        for port, (src, out) in enumerate(node.inputs):
            self.g.add_edge(src, node.id, key=port, port=out)
        return node

    def new_id(self) -> int:
        return max(self.nodes) + 1 if self.nodes else 0

    def copy(self) -> Graph:
        """A copy whose nodes can be changed without touching this graph (attrs are frozen)."""
        g = Graph(self.model, dict(self.hparams), frames=dict(self.frames),
                  constraints=list(self.constraints), span=self.span, file=self.file,
                  memory_format=self.memory_format)
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        for node in self.nodes.values():
            g.nodes[node.id] = replace(node, inputs=list(node.inputs), types=list(node.types),
                                       params=dict(node.params))
        g.rebuild_edges()
        return g

    def rebuild_edges(self) -> None:
        self._order = self._last_uses = None
        self.g = nx.MultiDiGraph()
        for nid in sorted(self.nodes):
            self.g.add_node(nid)
        for nid in sorted(self.nodes):
            for port, (src, out) in enumerate(self.nodes[nid].inputs):
                self.g.add_edge(src, nid, key=port, port=out)

    def replace_uses(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        """Every use of value `old` (by nodes and outputs) becomes a use of `new`."""
        for node in self.nodes.values():
            node.inputs = [new if r == old else r for r in node.inputs]
        self.outputs = [(n, new if r == old else r) for n, r in self.outputs]

    def remove(self, node_ids) -> None:
        for nid in node_ids:
            del self.nodes[nid]
        self.rebuild_edges()

    def order(self) -> list[IRNode]:
        """Deterministic topological order: ties broken by creation index."""
        if self._order is None:
            self._order = [self.nodes[i] for i in nx.lexicographical_topological_sort(self.g)]
        return list(self._order)

    def last_uses(self) -> list[list[tuple[int, int]]]:
        """Per node of order(), the values no later node reads and no output is: a run can
        drop them once that node has run. A value nobody reads is listed at its producer."""
        key = tuple(ref for _, ref in self.outputs)
        if self._last_uses is None or self._last_uses[0] != key:
            order = self.order()
            last: dict[tuple[int, int], int] = {}
            for i, node in enumerate(order):
                for port in range(len(node.types)):
                    last[(node.id, port)] = i
                for ref in node.inputs:
                    last[ref] = i
            for ref in key:
                last.pop(ref, None)
            plan: list[list[tuple[int, int]]] = [[] for _ in order]
            for ref, i in last.items():
                plan[i].append(ref)
            self._last_uses = (key, plan)
        return self._last_uses[1]

    def type_of(self, ref: tuple[int, int]) -> TensorType:
        return self.nodes[ref[0]].types[ref[1]]

    def param_keys(self) -> dict[str, tuple[IRNode, str, ParamSpec]]:
        """Every parameter and buffer by its state_dict key, in execution order."""
        keys = {}
        for node in self.order():
            for local, spec in node.params.items():
                if not spec.persistent:
                    continue
                key = f"{node.module}.{local}" if local else node.module
                keys[key] = (node, local, spec)
            keys.update(region_param_keys(node))  # a recurrence's cell holds its own layers
        return keys

    def users(self, node_id: int) -> list[int]:
        return sorted({v for _, v in self.g.out_edges(node_id)})
