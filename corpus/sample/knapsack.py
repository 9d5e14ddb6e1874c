"""0/1 knapsack solved with a one-dimensional DP table."""

from typing import List


def knapsack(weights: List[int], values: List[int], capacity: int) -> int:
    """Best total value of items that fit in a bag of the given capacity.

    Each item can be taken at most once. Extra entries in the longer of
    ``weights``/``values`` are ignored, as are items with non-positive weight.

    Parameters
    ----------
    weights : list of int
        Weight of each item.
    values : list of int
        Value of each item.
    capacity : int
        How much weight the bag holds.

    Returns
    -------
    int
        The largest achievable total value.

    >>> knapsack([1, 3, 4, 5], [1, 4, 5, 7], 7)
    9
    """
    if capacity <= 0:
        return 0
    best = [0] * (capacity + 1)
    for weight, value in zip(weights, values):
        if weight <= 0:
            continue
        for room in range(capacity, weight - 1, -1):
            candidate = best[room - weight] + value
            if candidate > best[room]:
                best[room] = candidate
    return best[capacity]
