"""When to try again: exponential backoff with full jitter, or what the server asked for."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping


def full_jitter_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Uniform in [0, min(max_s, base_s * 2**attempt)] (attempt counts from 0)."""
    return rng.uniform(0.0, min(max_s, base_s * (2.0 ** min(attempt, 62))))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be delta-seconds or an HTTP date; unparseable values are ignored.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
