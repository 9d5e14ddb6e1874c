"""Conway's Game of Life on a small bounded board."""


def _live_neighbours(board, r, c):
    count = 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            rr, cc = r + dr, c + dc
            if 0 <= rr < len(board) and 0 <= cc < len(board[rr]):
                count += board[rr][cc]
    return count


def life_step(board: list[list[int]], generations: int) -> list[list[int]]:
    """Advance the board (1 = alive, 0 = dead) by the given number of generations.

    Cells beyond the edge count as dead.

    >>> life_step([[0, 1, 0], [0, 1, 0], [0, 1, 0]], 1)
    [[0, 0, 0], [1, 1, 1], [0, 0, 0]]
    """
    current = [[1 if cell else 0 for cell in row] for row in board]
    for _ in range(max(generations, 0)):
        nxt = []
        for r, row in enumerate(current):
            new_row = []
            for c, cell in enumerate(row):
                n = _live_neighbours(current, r, c)
                new_row.append(1 if n == 3 or (cell and n == 2) else 0)
            nxt.append(new_row)
        current = nxt
    return current
