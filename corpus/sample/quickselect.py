"""Order statistics without sorting the whole list."""

from typing import List, Optional


def _partition(values, lo, hi):
    mid = (lo + hi) // 2
    # median of three keeps the pivot choice deterministic and sane
    trio = sorted([(values[lo], lo), (values[mid], mid), (values[hi], hi)])
    pivot_index = trio[1][1]
    values[pivot_index], values[hi] = values[hi], values[pivot_index]
    pivot = values[hi]
    store = lo
    for i in range(lo, hi):
        if values[i] < pivot:
            values[i], values[store] = values[store], values[i]
            store += 1
    values[store], values[hi] = values[hi], values[store]
    return store


def kth_smallest(values: List[int], k: int) -> Optional[int]:
    """Return the k-th smallest value (1-based), or None when k is out of range.

    >>> kth_smallest([7, 10, 4, 3, 20, 15], 3)
    7
    >>> kth_smallest([1, 2], 5) is None
    True
    """
    if k < 1 or k > len(values):
        return None
    work = list(values)
    lo, hi = 0, len(work) - 1
    target = k - 1
    while True:
        if lo == hi:
            return work[lo]
        p = _partition(work, lo, hi)
        if p == target:
            return work[p]
        if p < target:
            lo = p + 1
        else:
            hi = p - 1
