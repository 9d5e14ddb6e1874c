"""Counting islands of 1s in a 0/1 grid with an iterative flood fill."""


def count_islands(grid: list[list[int]]) -> int:
    """Number of 4-connected groups of cells equal to 1.

    >>> count_islands([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    2
    >>> count_islands([[0, 0], [0, 0]])
    0
    """
    seen = set()
    islands = 0
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            if cell != 1 or (r, c) in seen:
                continue
            islands += 1
            stack = [(r, c)]
            seen.add((r, c))
            while stack:
                y, x = stack.pop()
                for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < len(grid) and 0 <= nx < len(grid[ny]):
                        if grid[ny][nx] == 1 and (ny, nx) not in seen:
                            seen.add((ny, nx))
                            stack.append((ny, nx))
    return islands
