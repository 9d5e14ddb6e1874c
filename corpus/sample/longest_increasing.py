"""Longest strictly increasing subsequence (patience sorting)."""

import bisect


def lis_length(sequence):
    """Length of the longest strictly increasing subsequence.

    >>> lis_length([10, 9, 2, 5, 3, 7, 101, 18])
    4
    >>> lis_length([0, 1, 0, 3, 2, 3])
    4
    >>> lis_length([])
    0
    """
    tails = []
    for value in sequence:
        pos = bisect.bisect_left(tails, value)
        if pos == len(tails):
            tails.append(value)
        else:
            tails[pos] = value
    return len(tails)
