"""Moving averages with numpy."""

import numpy as np


def moving_average(values: list[float], window: int) -> list[float]:
    """Simple moving average over a sliding window, rounded to 3 decimals.

    The window is clamped to 1..len(values); an empty input gives [].

    >>> moving_average([1.0, 2.0, 3.0, 4.0, 5.0], 2)
    [1.5, 2.5, 3.5, 4.5]
    """
    if not values:
        return []
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    smoothed = np.convolve(np.asarray(values, dtype=float), kernel, mode="valid")
    return [round(float(x), 3) for x in smoothed]
