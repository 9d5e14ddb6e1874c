"""The classic two-sum interview question."""

from typing import Optional


def two_sum(nums: list[int], target: int) -> Optional[list[int]]:
    """Indices of the first pair of numbers adding up to ``target``, or None.

    >>> two_sum([2, 7, 11, 15], 9)
    [0, 1]
    >>> two_sum([3, 3], 6)
    [0, 1]
    >>> two_sum([1, 2], 7) is None
    True
    """
    seen = {}
    for index, value in enumerate(nums):
        partner = target - value
        if partner in seen:
            return [seen[partner], index]
        seen[value] = index
    return None
