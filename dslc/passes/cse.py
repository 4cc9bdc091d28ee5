"""Pass `cse`: common-subexpression elimination; two nodes doing the same thing to the same
values become one (never layers with parameters, never random ops).

Before:                              After:
  %1 = relu(%0)                        %1 = relu(%0)
  %2 = relu(%0)                        %3 = add(%1, %1)
  %3 = add(%1, %2)
"""

from __future__ import annotations

from dslc.ir import Graph
from dslc.ops.registry import OPS
from dslc.passes.result import Change, PassResult


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    seen: dict[tuple, tuple[int, ...]] = {}
    removed = []
    for node in graph.order():
        op = OPS.get(node.op)
        # Never graph inputs, layers, constants, random ops, or nodes owning regions (a
        # scan's cell holds layers of its own).
        if op is None or node.params or op.random or op.constant or op.regions(node.attrs):
            continue
        try:
            key = (node.op, node.attrs, tuple(node.inputs))
            hash(key)
        except TypeError:
            continue
        if key not in seen:
            seen[key] = node.id
            continue
        keep = seen[key]
        for port in range(len(node.types)):
            graph.replace_uses((node.id, port), (keep, port))
        removed.append(node.id)
        res.changes.append(Change("cse", f"{node.op} computed again: reuses the value from "
                                  f"line {graph.nodes[keep].span.line}", node.span))
    graph.remove(removed)
    return res
