"""Merging stock counts from two warehouses."""

from typing import Dict


def merge_inventories(first: Dict[str, int], second: Dict[str, int]) -> Dict[str, int]:
    """Add up item counts from both inventories, dropping items with no stock left.

    Keys come out sorted so reports are stable.

    >>> merge_inventories({"apple": 3, "pear": 1}, {"apple": 2, "pear": -1, "fig": 4})
    {'apple': 5, 'fig': 4}
    """
    totals = dict(first)
    for item, count in second.items():
        totals[item] = totals.get(item, 0) + count
    return {item: totals[item] for item in sorted(totals) if totals[item] > 0}
