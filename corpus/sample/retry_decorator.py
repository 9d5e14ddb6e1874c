"""Retrying flaky calls with exponential backoff."""

import functools
import time
from typing import Callable, Tuple, Type


def retry(func: Callable, attempts: int = 3, delay: float = 0.1,
          exceptions: Tuple[Type[BaseException], ...] = (Exception,)) -> Callable:
    """Wrap ``func`` so that it is retried on the given exceptions."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        wait = delay
        for attempt in range(attempts):
            try:
                return func(*args, **kwargs)
            except exceptions:
                if attempt == attempts - 1:
                    raise
                time.sleep(wait)
                wait *= 2

    return wrapper
