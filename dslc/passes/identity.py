"""Pass `identity`: removes what computes nothing: `identity` ops, reshapes and flattens to the
same shape, transpose or permute pairs that cancel; merges consecutive reshapes. Which ops
qualify is each op's own trait (`identity_when`, `axis_permutation`, `view`, `absorbs_view`).

Before:                                   After:
  %1 = transpose[dim0=1, dim1=2](%0)        %3 = relu(%0)
  %2 = transpose[dim0=2, dim1=1](%1)
  %3 = relu(%2)
"""

from __future__ import annotations

from dslc.ir import Graph, IRNode
from dslc.ops.registry import OPS
from dslc.passes.result import Change, PassResult


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed: set[int] = set()
    merged: list[int] = []

    def bypass(node: IRNode, to: tuple[int, int], why: str) -> None:
        graph.replace_uses((node.id, 0), to)
        removed.add(node.id)
        res.changes.append(Change("identity", why, node.span))

    for node in graph.order():
        op = OPS.get(node.op)
        if node.id in removed or op is None:  # graph inputs
            continue
        why = op.identity_when(node.attrs, [graph.type_of(r) for r in node.inputs],
                               node.types) if op.identity_when else None
        if why:
            bypass(node, node.inputs[0], why)
            continue
        src = graph.nodes[node.inputs[0][0]] if node.inputs else None
        src_op = OPS.get(src.op) if src is not None else None
        if op.axis_permutation and src_op is not None and src_op.axis_permutation:
            rank = node.types[0].rank
            p1 = src_op.axis_permutation(src.attrs, rank)
            p2 = op.axis_permutation(node.attrs, rank)
            if [p1[i] for i in p2] == list(range(rank)):
                bypass(node, src.inputs[0], f"{src.op} then {node.op} cancel")
            continue
        if op.absorbs_view and src_op is not None and src_op.view and \
                len(graph.users(src.id)) == 1:
            node.inputs = [src.inputs[0]]
            merged.append(src.id)
            res.changes.append(Change("identity", f"merged {src.op} into this {node.op}",
                                      node.span))
    # A reshape merged away is left without users: it goes too.
    used = {r[0] for n in graph.nodes.values() for r in n.inputs} | \
        {r[0] for _, r in graph.outputs}
    removed |= {m for m in merged if m not in used}
    graph.remove(sorted(n for n in removed))
    graph.rebuild_edges()
    return res
