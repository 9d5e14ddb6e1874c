"""A seeded two-dimensional lattice random walk."""

import random

MOVES = [(1, 0), (-1, 0), (0, 1), (0, -1)]


def random_walk(steps: int, seed: int) -> dict:
    """Walk ``steps`` unit steps on the grid with a private RNG seeded by ``seed``.

    Returns the final position and the largest Manhattan distance from the
    origin seen along the way.

    >>> random_walk(0, 1)
    {'final': [0, 0], 'max_distance': 0}
    """
    rng = random.Random(seed)
    x = y = 0
    farthest = 0
    for _ in range(max(steps, 0)):
        dx, dy = rng.choice(MOVES)
        x += dx
        y += dy
        farthest = max(farthest, abs(x) + abs(y))
    return {"final": [x, y], "max_distance": farthest}
