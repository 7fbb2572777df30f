"""The causal graph: the only module that imports networkx.

It owns the structure of a scenario's structural causal model -- which node listens to which --
inferred from the names each formula uses: acyclicity (a cycle is an error that names it),
the topological order the sampler follows, and the descendants an intervention reaches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx

from simsys.errors import GraphError


def build_graph(parents: Mapping[str, Sequence[str]]) -> nx.DiGraph:
    """A DAG with an edge parent -> child for every inferred parent (nodes in declaration order)."""
    g = nx.DiGraph()
    g.add_nodes_from(parents)
    for child, ps in parents.items():
        for p in ps:
            g.add_edge(p, child)
    return g


def topological_order(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Nodes so that every parent comes before its children; ties keep declaration order.

    Raises
    ------
    GraphError
        If the graph has a cycle; the message lists it, e.g. ``a -> b -> a``.
    """
    g = build_graph(parents)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        rank = {n: i for i, n in enumerate(parents)}
        return list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
    path = [u for u, _ in cycle] + [cycle[0][0]]
    raise GraphError(f"the graph has a cycle: {' -> '.join(path)}; a node cannot depend on itself")


def descendants(parents: Mapping[str, Sequence[str]], nodes: Sequence[str]) -> set[str]:
    """Every node downstream of any of ``nodes`` (excluding them)."""
    g = build_graph(parents)
    out: set[str] = set()
    for n in nodes:
        out |= nx.descendants(g, n)
    return out - set(nodes)
