"""Cycle detection in a directed graph with a three-colour depth-first search."""

from typing import Dict, List

WHITE, GREY, BLACK = 0, 1, 2


def has_cycle(graph: Dict[str, List[str]]) -> bool:
    """Tell whether the directed graph (adjacency lists by node name) has a cycle.

    Nodes that only appear as targets count as nodes without outgoing edges.

    >>> has_cycle({"a": ["b"], "b": ["c"], "c": ["a"]})
    True
    >>> has_cycle({"a": ["b", "c"], "b": ["c"], "c": []})
    False
    """
    colour = {}

    def visit(node):
        colour[node] = GREY
        for nxt in graph.get(node, []):
            state = colour.get(nxt, WHITE)
            if state == GREY:
                return True
            if state == WHITE and visit(nxt):
                return True
        colour[node] = BLACK
        return False

    for node in sorted(graph):
        if colour.get(node, WHITE) == WHITE and visit(node):
            return True
    return False
