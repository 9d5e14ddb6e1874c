"""The process's sandbox pools: one per sandbox setting, and the idle pools of other settings
are closed when a build starts, so trying settings one after another keeps one pool."""

from __future__ import annotations

import threading
import time

from flows.config import SandboxSettings
from tasks import runtime

SLEEPER = "import time\ndef main_solution(s):\n    time.sleep(s)\n    return s\n"


def test_idle_pools_of_other_settings_are_closed_and_busy_ones_kept():
    a, b = SandboxSettings(workers=1, cpu_seconds=2.0), SandboxSettings(workers=1, cpu_seconds=3.0)
    runtime.close_pools()  # the pools earlier tests in this process left
    try:
        pool_a = runtime.get_pool(a)
        assert pool_a.run("def main_solution(x):\n    return x\n", [{"x": 1}])[0].value == 1
        used = runtime.sandbox_cpu_seconds()
        busy = threading.Thread(target=pool_a.run, args=(SLEEPER, [{"s": 1.5}]))
        busy.start()
        time.sleep(0.5)
        assert pool_a.in_use()
        assert runtime.close_other_pools(b) == 0  # a request is being served: kept
        busy.join()
        pool_b = runtime.get_pool(b)
        assert runtime.close_other_pools(b) == 1
        assert not pool_a.worker_pids and runtime.get_pool(b) is pool_b
        assert runtime.get_pool(a) is not pool_a  # a new pool, should the setting come back
        assert runtime.sandbox_cpu_seconds() >= used  # the closed pool's CPU still counts
    finally:
        runtime.close_pools()
