"""Per-process resources shared by the shard tasks that run in this process.

One sandbox pool per process (the flow process with its threads, or each Dask worker): its
workers are warm, and starting one per shard would waste that.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from sandbox import Limits, SandboxPool

if TYPE_CHECKING:
    from flows.config import SandboxSettings

_lock = threading.Lock()
_pools: dict[tuple, SandboxPool] = {}


def limits_for(settings: "SandboxSettings", **overrides: object) -> Limits:
    base = dict(
        cpu_seconds=settings.cpu_seconds,
        wall_factor=settings.wall_factor,
        memory_bytes=settings.memory_mb * 1024 * 1024,
    )
    base.update(overrides)
    return Limits(**base)  # type: ignore[arg-type]


def get_pool(settings: "SandboxSettings") -> SandboxPool:
    """The process-wide pool for these settings, started on first use."""
    key = (settings.workers, settings.cpu_seconds, settings.wall_factor, settings.memory_mb)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = SandboxPool(workers=settings.workers, limits=limits_for(settings))
            _pools[key] = pool
        return pool


def sandbox_cpu_seconds() -> float:
    """CPU seconds used so far by the sandbox pools of this process (0 where unknown)."""
    with _lock:
        pools = list(_pools.values())
    return sum(pool.cpu_seconds() or 0.0 for pool in pools)


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


atexit.register(close_pools)
