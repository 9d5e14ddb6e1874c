"""Disjoint-set forest with path compression and union by size."""


class DisjointSet:
    def __init__(self, size):
        self.parent = list(range(size))
        self.size = [1] * size

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True


def count_components(n: int, pairs: list[list[int]]) -> int:
    """Number of connected components among nodes 0..n-1 after joining the pairs.

    Pairs that refer to nodes outside the range are ignored.

    >>> count_components(5, [[0, 1], [1, 2], [3, 4]])
    2
    >>> count_components(3, [])
    3
    """
    forest = DisjointSet(max(n, 0))
    components = max(n, 0)
    for pair in pairs:
        if len(pair) != 2:
            continue
        a, b = pair
        if 0 <= a < n and 0 <= b < n and forest.union(a, b):
            components -= 1
    return components
