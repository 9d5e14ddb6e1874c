"""Comparison of an expected output with an actual one; runs in the parent, never in a child."""

from __future__ import annotations

import math
from typing import Any

from .values import NotJSONError, to_json_value


def outputs_match(expected: Any, actual: Any, rel_tol: float = 1e-3, abs_tol: float = 1e-9) -> bool:
    """True when the two values are the same JSON value, numbers compared with tolerance.

    Both sides are first converted by the sandbox's JSON policy (tuples become lists, numpy
    scalars plain numbers), then compared recursively: lists item by item, dicts on the same
    keys, strings and None exactly. Numbers match when equal or ``math.isclose`` under the
    tolerances, so ``1 == 1.0``; bools are not numbers (``True`` does not match ``1``); NaN
    matches NaN and an infinity only the infinity of the same sign. A value the policy cannot
    convert raises ``NotJSONError`` rather than comparing unequal.
    """
    a, b = to_json_value(expected), to_json_value(actual)
    try:
        return _match(a, b, rel_tol, abs_tol)
    except RecursionError:
        raise NotJSONError("nested too deep to compare") from None


def _match(a: Any, b: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _numbers_match(a, b, rel_tol, abs_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_match(x, y, rel_tol, abs_tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_match(a[k], b[k], rel_tol, abs_tol) for k in a)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def _numbers_match(a: int | float, b: int | float, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    try:
        x, y = float(a), float(b)
    except OverflowError:  # an int beyond float range equals no float
        return False
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)
