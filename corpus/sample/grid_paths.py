"""Counting monotone lattice paths through a grid with obstacles."""


def unique_paths(grid: list[list[int]]) -> int:
    """Number of right/down paths from the top-left to the bottom-right cell.

    Cells holding 1 are blocked; any other value is free.

    >>> unique_paths([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    2
    >>> unique_paths([[1]])
    0
    """
    if not grid or not grid[0]:
        return 0
    width = len(grid[0])
    ways = [0] * width
    ways[0] = 1
    for row in grid:
        for col in range(width):
            blocked = col >= len(row) or row[col] == 1
            if blocked:
                ways[col] = 0
            elif col > 0:
                ways[col] += ways[col - 1]
    return ways[-1]
