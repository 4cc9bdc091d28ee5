"""Pass `dead_code`: removes nodes no output depends on, and with them their parameters.

Before:                              After:
  %1 = linear(%0) fc1                  %1 = linear(%0) fc1
  %2 = linear(%0) fc2   (unused)       output y = %1
  output y = %1
The parameter file may still hold fc2.weight/bias: they are dropped when it is loaded.
"""

from __future__ import annotations

from dslc.ir import Graph
from dslc.passes.result import Change, ParamFold, PassResult
from dslc.regions import region_param_keys


def run(graph: Graph) -> PassResult:
    live: set[int] = set()
    stack = [nid for _, (nid, _) in graph.outputs]
    while stack:
        nid = stack.pop()
        if nid in live:
            continue
        live.add(nid)
        stack += [src for src, _ in graph.nodes[nid].inputs]
    inputs = {nid for _, nid in graph.inputs}
    dead = [n for n in graph.order() if n.id not in live and n.id not in inputs]
    res = PassResult(graph)
    dropped: list[str] = []
    for n in dead:
        res.changes.append(Change("dead_code", f"removed unused {n.op}"
                                  + (f" '{n.module}'" if n.module else ""), n.span))
        dropped += [k for k in _keys(n)]
    graph.remove([n.id for n in dead])
    if dropped:
        res.folds.append(ParamFold("drop", tuple(dropped)))
    return res


def _keys(node) -> list[str]:
    keys = [(f"{node.module}.{local}" if local else node.module)
            for local, spec in node.params.items() if spec.persistent]
    keys += list(region_param_keys(node))  # a scan's cell holds layers of its own
    return keys
