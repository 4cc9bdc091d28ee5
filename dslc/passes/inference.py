"""Pass `inference` (-O2): drops what only acts in training: dropout, dropout2d and
gaussian_noise become their input; reparameterize becomes its mean, as it is in eval mode.

Before:                               After:
  %1 = dropout[p=0.5](%0)               %2 = linear(%0) fc1
  %2 = linear(%1) fc1
"""

from __future__ import annotations

from dslc.ir import Graph
from dslc.passes import Change, PassResult

TRAIN_ONLY = ("dropout", "dropout2d", "gaussian_noise", "reparameterize")


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed = []
    for node in graph.order():
        if node.op in TRAIN_ONLY:
            graph.replace_uses((node.id, 0), node.inputs[0])
            removed.append(node.id)
            res.changes.append(Change("inference", f"removed {node.op} (inactive at "
                                      "inference)", node.span))
    graph.remove(removed)
    return res
