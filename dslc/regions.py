"""Regions: the sub-graphs an op node owns (a scan's cell), reached the same way by every stage
after elaboration (passes, interpreter, summary, render, code generation), so none of them
names the op that owns one; plus the other facts those stages ask a node's op."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dslc import dims as D
from dslc.ops.registry import OPS

if TYPE_CHECKING:  # dslc.ir imports this module: the types only, never at run time
    from dslc.ir import Graph, IRNode


def regions(node: IRNode) -> tuple[Graph, ...]:
    """The regions the node owns, in the op's order; none for graph inputs."""
    op = OPS.get(node.op)
    return op.regions(node.attrs) if op is not None else ()


def with_regions(graph: Graph) -> list[tuple[IRNode, Graph]]:
    """Every node of the graph in order, each followed by its regions' nodes (recursively),
    with the graph that holds it."""
    out: list[tuple[IRNode, Graph]] = []
    for node in graph.order():
        out.append((node, graph))
        for region in regions(node):
            out += with_regions(region)
    return out


def region_param_keys(node: IRNode) -> dict[str, tuple[IRNode, str, Any]]:
    """The parameters and buffers the node's regions hold (a cell's layers), by state_dict key."""
    keys: dict[str, tuple[IRNode, str, Any]] = {}
    for region in regions(node):
        keys.update(region.param_keys())
    return keys


def node_macs(graph: Graph, node: IRNode) -> D.Dim:
    """Multiply-accumulates of one run of the node: its op's own, plus its regions' MACs times
    the number of times each runs."""
    op = OPS.get(node.op)
    if op is None:
        return D.const(0)
    ins = [graph.type_of(ref) for ref in node.inputs]
    total = D.as_dim(op.macs(node.attrs, ins, node.types))
    for region in op.regions(node.attrs):
        total = total + graph_macs(region) * op.region_runs(node.attrs, ins)
    return total


def graph_macs(graph: Graph) -> D.Dim:
    per_run = D.const(0)
    for node in graph.order():
        per_run = per_run + node_macs(graph, node)
    return per_run


def is_constant(node: IRNode) -> bool:
    """A value fixed when compiling (a spec constant): a buffer, not an activation."""
    op = OPS.get(node.op)
    return op is not None and op.constant
