"""Binary search helpers in the style of the bisect module."""


def lower_bound(sorted_values: list[int], target: int) -> int:
    """Return the first index at which ``target`` could be inserted keeping order.

    The list is expected to be sorted in ascending order; every element
    before the returned index is strictly smaller than ``target``.

    >>> lower_bound([1, 3, 3, 5, 8], 3)
    1
    >>> lower_bound([1, 3, 3, 5, 8], 9)
    5
    """
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def contains(sorted_values: list[int], target: int) -> bool:
    """Tell whether ``target`` occurs in the sorted list."""
    index = lower_bound(sorted_values, target)
    return index < len(sorted_values) and sorted_values[index] == target
