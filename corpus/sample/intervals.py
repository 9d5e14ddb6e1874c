"""Merging overlapping closed intervals."""

from typing import List


def merge_intervals(intervals: List[List[int]]) -> List[List[int]]:
    """Merge overlapping intervals; each interval's ends may come in either order.

    >>> merge_intervals([[1, 3], [2, 6], [8, 10], [15, 18]])
    [[1, 6], [8, 10], [15, 18]]
    >>> merge_intervals([[4, 1], [3, 5]])
    [[1, 5]]
    """
    spans = sorted(sorted(pair) for pair in intervals if len(pair) == 2)
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
