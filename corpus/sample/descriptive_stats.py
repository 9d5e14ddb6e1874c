"""Descriptive statistics without external libraries."""

import math
from typing import Dict, List


def describe(values: List[float]) -> Dict[str, float]:
    """Mean, median, population standard deviation and range of the values.

    Results are rounded to 3 decimals. An empty list gives an empty dict.

    >>> describe([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    {'mean': 5.0, 'median': 4.5, 'std': 2.0, 'range': 7.0}
    """
    if not values:
        return {}
    n = len(values)
    ordered = sorted(values)
    mean = sum(ordered) / n
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    variance = sum((v - mean) ** 2 for v in ordered) / n
    return {
        "mean": round(mean, 3),
        "median": round(median, 3),
        "std": round(math.sqrt(variance), 3),
        "range": round(ordered[-1] - ordered[0], 3),
    }
