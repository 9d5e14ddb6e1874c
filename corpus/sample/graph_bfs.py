"""Breadth-first traversal of an undirected graph given as an edge list."""

from collections import defaultdict, deque


def build_adjacency(edges):
    graph = defaultdict(set)
    for edge in edges:
        if len(edge) != 2:
            continue
        u, v = edge
        graph[u].add(v)
        graph[v].add(u)
    return graph


def bfs_order(edges: list[list[int]], start: int) -> list[int]:
    """Visit order of a breadth-first search from ``start``.

    Neighbours are visited in increasing order so the result is
    reproducible. A start node without edges is visited alone.

    >>> bfs_order([[0, 1], [0, 2], [1, 3], [2, 3]], 0)
    [0, 1, 2, 3]
    >>> bfs_order([[5, 6]], 7)
    [7]
    """
    graph = build_adjacency(edges)
    seen = {start}
    order = []
    queue = deque([start])
    while queue:
        node = queue.popleft()
        order.append(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in seen:
                seen.add(neighbour)
                queue.append(neighbour)
    return order
