"""Graph lint, run after every pass in the tests: the IR is still well formed and typed."""

from __future__ import annotations

import networkx as nx

from dslc.interp import check
from dslc.ir import Graph


def lint(graph: Graph) -> None:
    """Raise AssertionError when the graph is not a valid program."""
    ids = set(graph.nodes)
    for node in graph.nodes.values():
        for src, port in node.inputs:
            assert src in ids, f"%{node.id} uses missing %{src}"
            assert port < len(graph.nodes[src].types), f"%{node.id} uses bad port {port}"
    for name, (nid, _) in graph.outputs:
        assert nid in ids, f"output {name} refers to missing %{nid}"
    assert nx.is_directed_acyclic_graph(graph.g), "graph has a cycle"
    assert sorted(graph.g.nodes) == sorted(ids), "networkx view out of date"
    modules = [n.module for n in graph.nodes.values() if n.module]
    assert len(modules) == len(set(modules)), "two layers share a name"
    check(graph)
