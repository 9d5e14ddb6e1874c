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
_retired_cpu = 0.0  # CPU of the pools closed by close_other_pools


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
    key = _key(settings)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = SandboxPool(workers=settings.workers, limits=limits_for(settings))
            _pools[key] = pool
        return pool


def _key(settings: "SandboxSettings") -> tuple:
    return (settings.workers, settings.cpu_seconds, settings.wall_factor, settings.memory_mb)


def close_other_pools(settings: "SandboxSettings") -> int:
    """Close the pools of settings other than ``settings`` that no request is using; returns
    how many. A build calls it before it starts, when no other build's shard runs in this
    process, so a notebook trying one setting after another keeps one pool's workers, not a
    pool per setting tried."""
    global _retired_cpu
    keep = _key(settings)
    with _lock:
        closing = [(k, p) for k, p in _pools.items() if k != keep and not p.in_use()]
        for k, pool in closing:
            _retired_cpu += pool.cpu_seconds() or 0.0
            del _pools[k]
    for _k, pool in closing:
        pool.close()
    return len(closing)


def sandbox_cpu_seconds() -> float:
    """CPU seconds used so far by the sandbox pools of this process, closed ones included (0
    where unknown)."""
    with _lock:
        pools, retired = list(_pools.values()), _retired_cpu
    return retired + sum(pool.cpu_seconds() or 0.0 for pool in pools)


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


atexit.register(close_pools)
