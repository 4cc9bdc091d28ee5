"""Pass `identity`: removes what computes nothing: `identity` ops, reshapes and flattens to the
same shape, transpose or permute pairs that cancel; merges consecutive reshapes.

Before:                                   After:
  %1 = transpose[dim0=1, dim1=2](%0)        %3 = relu(%0)
  %2 = transpose[dim0=2, dim1=1](%1)
  %3 = relu(%2)
"""

from __future__ import annotations

from dslc import dims as D
from dslc.ir import Graph, IRNode
from dslc.passes import Change, PassResult


def _same_type(a, b) -> bool:
    return a.dtype == b.dtype and a.rank == b.rank and all(
        D.equal(x, y) is True for x, y in zip(a.shape, b.shape))


def _perm(node: IRNode, rank: int) -> list[int] | None:
    if node.op == "transpose":
        p = list(range(rank))
        i, j = node.attrs.dim0 % rank, node.attrs.dim1 % rank
        p[i], p[j] = p[j], p[i]
        return p
    if node.op == "permute":
        return [d % rank for d in node.attrs.dims]
    return None


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed: set[int] = set()
    merged: list[int] = []

    def bypass(node: IRNode, to: tuple[int, int], why: str) -> None:
        graph.replace_uses((node.id, 0), to)
        removed.add(node.id)
        res.changes.append(Change("identity", why, node.span))

    for node in graph.order():
        if node.id in removed or node.op == "input":
            continue
        if node.op == "identity":
            bypass(node, node.inputs[0], "removed identity")
            continue
        if node.op in ("reshape", "flatten", "squeeze", "unsqueeze") and _same_type(
                graph.type_of(node.inputs[0]), node.types[0]):
            bypass(node, node.inputs[0], f"removed {node.op} to the same shape")
            continue
        src = graph.nodes[node.inputs[0][0]] if node.inputs else None
        if node.op in ("transpose", "permute") and src is not None and \
                src.op in ("transpose", "permute"):
            rank = node.types[0].rank
            p1, p2 = _perm(src, rank), _perm(node, rank)
            if [p1[i] for i in p2] == list(range(rank)):
                bypass(node, src.inputs[0], f"{src.op} then {node.op} cancel")
            continue
        if node.op == "reshape" and src is not None and src.op in ("reshape", "flatten") and \
                len(graph.users(src.id)) == 1:
            node.inputs = [src.inputs[0]]
            merged.append(src.id)
            res.changes.append(Change("identity", f"merged {src.op} into this reshape",
                                      node.span))
    # A reshape merged away is left without users: it goes too.
    used = {r[0] for n in graph.nodes.values() for r in n.inputs} | \
        {r[0] for _, r in graph.outputs}
    removed |= {m for m in merged if m not in used}
    graph.remove(sorted(n for n in removed))
    graph.rebuild_edges()
    return res
