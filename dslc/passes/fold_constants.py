"""Pass `fold_constants`: an op whose inputs are all spec constants is computed once, when the
model is compiled, and becomes a constant itself (dim arithmetic is already folded by the
elaborator's symbolic dims).

Before:                                      After:
  %1 = const k : f32[3]                        %3 = const k_folded : f32[3]
  %2 = mul[scalar=2.0](%1)                     %4 = add(%0, %3)
  %4 = add(%0, %2)
"""

from __future__ import annotations

import numpy as np

from dslc.ir import Graph, IRNode
from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS
from dslc.passes.result import Change, PassResult
from dslc.regions import is_constant


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed = []
    for node in graph.order():
        op = OPS.get(node.op)
        if op is None or op.constant or op.regions(node.attrs) or node.params or op.random \
                or not node.inputs or len(node.types) != 1:
            continue
        srcs = [graph.nodes[s] for s, _ in node.inputs]
        if not all(is_constant(s) for s in srcs):
            continue
        if any(not d.is_Integer for d in node.types[0].shape):
            continue
        ctx = RunCtx(train=False, rng=np.random.default_rng(0))
        value = op.numpy(node.attrs, [s.const_value for s in srcs], ctx)[0]
        t = node.types[0]
        const = OPS["const"]
        attrs = const.attrs(dtype=t.dtype, shape=tuple(int(d) for d in t.shape))
        module = f"{srcs[0].module}_{node.op}"
        while any(n.module == module for n in graph.nodes.values()):
            module += "_"
        new = IRNode(graph.new_id(), "const", attrs, [], [t], node.span, node.name,
                     module=module, params=const.params(attrs, []), frames=node.frames,
                     const_value=np.asarray(value))
        graph.add(new)
        graph.replace_uses((node.id, 0), (new.id, 0))
        removed.append(node.id)
        res.changes.append(Change("fold_constants", f"computed {node.op} of constants when "
                                  "compiling", node.span))
    graph.remove(removed)
    return res
