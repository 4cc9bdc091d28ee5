"""Pass `inference` (-O2): drops what only acts in training: every op whose record says
`train_only` (dropout, drop_path, gaussian_noise, ...) becomes its first input, as it is in eval
mode (reparameterize becomes its mean).

Before:                               After:
  %1 = dropout[p=0.5](%0)               %2 = linear(%0) fc1
  %2 = linear(%1) fc1
"""

from __future__ import annotations

from dslc.ir import Graph
from dslc.ops.registry import OPS
from dslc.passes.result import Change, PassResult


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed = []
    for node in graph.order():
        op = OPS.get(node.op)  # None for the graph's own nodes (input)
        if op is not None and op.train_only:
            graph.replace_uses((node.id, 0), node.inputs[0])
            removed.append(node.id)
            res.changes.append(Change("inference", f"removed {node.op} (inactive at "
                                      "inference)", node.span))
    graph.remove(removed)
    return res
