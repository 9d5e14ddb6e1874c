"""Vector similarity measures used by a toy recommender."""

import numpy as np


def cosine_similarity(a: list[float], b: list[float]) -> float:
    """Cosine of the angle between two vectors, rounded to 4 decimals.

    Vectors of different length are compared on their common prefix; a zero
    vector has similarity 0.0 with everything.

    >>> cosine_similarity([1.0, 0.0], [0.0, 1.0])
    0.0
    >>> cosine_similarity([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    1.0
    >>> cosine_similarity([1.5, -2.0], [-1.5, 2.0])
    -1.0
    """
    n = min(len(a), len(b))
    if n == 0:
        return 0.0
    x = np.asarray(a[:n], dtype=float)
    y = np.asarray(b[:n], dtype=float)
    norms = np.linalg.norm(x) * np.linalg.norm(y)
    if norms == 0:
        return 0.0
    return round(float(np.dot(x, y) / norms), 4)
