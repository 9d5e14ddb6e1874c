"""Counting inversions with a merge sort."""


def _merge_count(values):
    if len(values) <= 1:
        return values, 0
    mid = len(values) // 2
    left, left_count = _merge_count(values[:mid])
    right, right_count = _merge_count(values[mid:])
    merged = []
    count = left_count + right_count
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            count += len(left) - i
            j += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged, count


def count_inversions(values: list[int]) -> int:
    """Count pairs (i, j) with i < j and values[i] > values[j].

    Runs in O(n log n) by piggybacking on merge sort.

    >>> count_inversions([2, 4, 1, 3, 5])
    3
    >>> count_inversions([-3, -1, -2])
    1
    """
    _, count = _merge_count(list(values))
    return count
