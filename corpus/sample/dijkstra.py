"""Single-source shortest paths with Dijkstra's algorithm and a binary heap."""

import heapq
from typing import List, Optional, Tuple


def shortest_distances(n: int, edges: List[Tuple[int, int, int]], source: int) -> List[Optional[int]]:
    """Distance from ``source`` to every node 0..n-1 of a directed graph.

    Edges are ``(u, v, weight)`` triples; edges that mention nodes outside
    the graph or carry a negative weight are skipped. Unreachable nodes get None.

    >>> shortest_distances(4, [(0, 1, 4), (0, 2, 1), (2, 1, 2), (1, 3, 1)], 0)
    [0, 3, 1, 4]
    >>> shortest_distances(3, [(0, 1, 5)], 2)
    [None, None, 0]
    """
    if n <= 0:
        return []
    adjacency = [[] for _ in range(n)]
    for u, v, weight in edges:
        if 0 <= u < n and 0 <= v < n and weight >= 0:
            adjacency[u].append((v, weight))
    dist: List[Optional[int]] = [None] * n
    if not 0 <= source < n:
        return dist
    heap = [(0, source)]
    while heap:
        d, node = heapq.heappop(heap)
        if dist[node] is not None:
            continue
        dist[node] = d
        for nxt, weight in adjacency[node]:
            if dist[nxt] is None:
                heapq.heappush(heap, (d + weight, nxt))
    return dist
