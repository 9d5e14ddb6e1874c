"""Bubble sort with an early exit, kept around for teaching purposes."""

from typing import List


def bubble_sort(items: List[int]) -> List[int]:
    """Sort a list of integers in ascending order using bubble sort.

    The scan stops as soon as a full pass makes no swap, so already
    sorted input costs a single pass.

    Args:
        items: the integers to sort; the list passed in is not modified.

    Returns:
        A new list with the same integers in ascending order.

    >>> bubble_sort([5, 1, 4, 2, 8])
    [1, 2, 4, 5, 8]
    """
    result = list(items)
    n = len(result)
    for end in range(n - 1, 0, -1):
        swapped = False
        for i in range(end):
            if result[i] > result[i + 1]:
                result[i], result[i + 1] = result[i + 1], result[i]
                swapped = True
        if not swapped:
            break
    return result


if __name__ == "__main__":
    print(bubble_sort([3, 2, 1]))
