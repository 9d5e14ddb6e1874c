"""Kadane's algorithm for the maximum-sum contiguous subarray."""


def max_subarray(values: list[int]) -> list[int]:
    """Best sum of a non-empty contiguous run, with the run's start and end index.

    Returns ``[best_sum, start, end]`` (end inclusive); an empty list gives
    ``[0, -1, -1]``.

    >>> max_subarray([-2, 1, -3, 4, -1, 2, 1, -5, 4])
    [6, 3, 6]
    >>> max_subarray([-3, -1, -2])
    [-1, 1, 1]
    """
    if not values:
        return [0, -1, -1]
    best, best_start, best_end = values[0], 0, 0
    running, start = 0, 0
    for index, value in enumerate(values):
        if running <= 0:
            running, start = value, index
        else:
            running += value
        if running > best:
            best, best_start, best_end = running, start, index
    return [best, best_start, best_end]
