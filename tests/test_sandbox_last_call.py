"""The last call of a job runs in the job process itself, not in a fork of it (where Landlock
scopes signals; see ``sandbox.harness``), and gets what a child would: the same verdicts, its
own CPU time, the same values and draws, none of the process state a fork leaves behind.

The hostile programs of ``tests/hostile`` run as one-call jobs too (``test_sandbox_hostile``).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from sandbox import Limits, SandboxPool, canonical_json

LIMITS = Limits(cpu_seconds=1.0)
GOOD = "def main_solution(x):\n    return {'double': x * 2}\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, limits=LIMITS) as pool:
        yield pool


def as_child_and_in_job(pool: SandboxPool, code: str, call: dict, limits: Limits = LIMITS) -> list:
    """The call run three ways: first of two (a child), last of two and alone (the job process)."""
    return pool.run(code, [call, call], limits=limits) + pool.run(code, [call], limits=limits)


def test_the_last_call_runs_in_the_job_process(pool):
    if not pool.isolation.signals_scoped:
        pytest.skip("Landlock does not scope signals here: every call runs in a child")
    pids = "import os\ndef main_solution():\n    return [os.getpid(), os.getppid()]\n"
    (alone,) = pool.run(pids, [{}])
    assert alone.value[1] in pool.worker_pids
    first, second, last = [r.value for r in pool.run(pids, [{}] * 3)]
    assert first[1] == second[1] == last[0]  # the children's parent ran the last call
    captured = [r.value for r in pool.run(pids, [{}, {}], limits=replace(LIMITS, stdio_bytes=100))]
    assert captured[0][1] == captured[1][1]  # captured stdio needs a relay: a child again


VERDICTS = {
    "loop": ("def main_solution():\n    while True:\n        pass\n", {}, "timeout"),
    "sleep": ("import time\ndef main_solution():\n    time.sleep(30)\n", {"wall_factor": 1.0}, "timeout"),
    "memory": ("def main_solution():\n    return len(bytearray(8 * 1024**3))\n", {}, "memory"),
    "exit": ("import os\ndef main_solution():\n    os._exit(0)\n", {}, "crashed"),
    "killed": ("import os, signal\ndef main_solution():\n    os.kill(os.getpid(), signal.SIGKILL)\n", {},
               "crashed"),
    "segfault": ("import ctypes\ndef main_solution():\n    return ctypes.string_at(1 << 46, 8)\n", {}, "crashed"),
    "size": ("def main_solution():\n    return list(range(100))\n", {}, "size_limit"),
    "output": ("def main_solution():\n    return 'x' * 2000\n", {"check_size": False, "output_bytes": 1024},
               "output_limit"),
    "not_json": ("def main_solution():\n    return {1, 2}\n", {}, "not_json"),
    "error": ("def main_solution():\n    raise KeyError('missing')\n", {}, "error"),
}


@pytest.mark.parametrize("name", VERDICTS)
def test_every_verdict_is_that_of_a_child(pool, name):
    code, fields, status = VERDICTS[name]
    limits = replace(LIMITS, cpu_seconds=0.5, **fields)
    child, last, alone = as_child_and_in_job(pool, code, {}, limits)
    assert child.status == status, child
    for result in (last, alone):
        assert (result.status, result.error_type, result.value) == (child.status, child.error_type, None), result
        if status != "timeout":  # a timeout's message quotes the CPU time used
            assert result.error_message == child.error_message
    assert [r.value for r in pool.run(GOOD, [{"x": 1}, {"x": 2}])] == [{"double": 2}, {"double": 4}]


SPIN = (
    "import time\n"
    "def spin(seconds):\n"
    "    start = time.process_time()\n"
    "    while time.process_time() - start < seconds:\n"
    "        pass\n"
    "spin(0.4)\n"
    "def main_solution(seconds):\n"
    "    spin(seconds)\n"
    "    return seconds\n"
)


def test_cpu_time_is_the_calls_own(pool):
    """Neither the top level's 0.4 s nor the earlier children's time counts for the last call."""
    results = pool.run(SPIN, [{"seconds": 0.2}] * 3) + pool.run(SPIN, [{"seconds": 0.2}])
    for result in results:
        assert result.status == "ok" and 0.15 <= result.cpu_seconds < 0.35, result


def test_the_call_gets_its_whole_cpu_limit_after_a_busy_top_level(pool):
    assert pool.run(SPIN, [{"seconds": 0.8}])[0].status == "ok"
    endless = pool.run(SPIN, [{"seconds": 1e9}])[0]
    assert endless.status == "timeout" and 0.8 <= endless.cpu_seconds < 1.6, endless


DRAWS = (
    "import random, numpy\n"
    "random.random()\n"
    "numpy.random.random()\n"
    "def main_solution(word):\n"
    "    return [hash(word), list({'alpha', 'beta', 'gamma', 'delta', 'eps'}), random.random(),\n"
    "            random.getrandbits(64), float(numpy.random.random())]\n"
)


@pytest.mark.parametrize("seed", [0, 12345])
def test_values_and_draws_are_those_of_a_child(pool, seed):
    call = {"word": "codeio"}
    results = pool.run(DRAWS, [call] * 3, hash_seed=seed) + pool.run(DRAWS, [call], hash_seed=seed)
    assert len({canonical_json(r.value) for r in results}) == 1, [r.value for r in results]


FORK_DROPS = {
    "thread": (
        "import threading, time\n"
        "def idle():\n"
        "    while True:\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=idle, daemon=True).start()\n"
        "def main_solution():\n"
        "    return threading.active_count()\n",
        1,
    ),
    "timers": (
        "import signal, time\n"
        "def ring(signum, frame):\n"
        "    raise RuntimeError('a timer of the top level rang')\n"
        "signal.signal(signal.SIGALRM, ring)\n"
        "signal.signal(signal.SIGVTALRM, ring)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.5)\n"
        "signal.setitimer(signal.ITIMER_VIRTUAL, 0.3)\n"
        "def main_solution():\n"
        "    time.sleep(0.7)\n"
        "    start = time.process_time()\n"
        "    while time.process_time() - start < 0.4:\n"
        "        pass\n"
        "    return 'quiet'\n",
        "quiet",
    ),
    "pending_signal": (
        "import os, signal\n"
        "seen = []\n"
        "signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
        "def main_solution():\n"
        "    return len(seen)\n",
        0,
    ),
    "orphans": (  # an orphaned grandchild goes to a subreaper, never to the call's process
        "import os, time\n"
        "def main_solution():\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(0.2)\n"
        "        os._exit(0)\n"
        "    os.waitpid(child, 0)\n"
        "    time.sleep(0.5)\n"
        "    try:\n"
        "        return os.waitpid(-1, os.WNOHANG)[0]\n"
        "    except ChildProcessError:\n"
        "        return 'no child'\n",
        "no child",
    ),
}


@pytest.mark.parametrize("name", FORK_DROPS)
def test_what_a_fork_drops_stays_out_of_the_last_call(pool, name):
    code, expected = FORK_DROPS[name]
    assert [r.value for r in as_child_and_in_job(pool, code, {})] == [expected] * 3


def test_a_call_in_the_job_process_cannot_forge_control_frames(pool):
    """Writing a RESTART frame for its own call to every fd it holds (the result pipe in a
    child, the control pipe in the job process) ends that call as crashed, at once: the
    worker takes nothing but the result from the call that J runs."""
    code = (
        "import os, struct\n"
        "def main_solution(index):\n"
        "    frame = struct.pack('<BiiBdI', 6, index, 0, 0, 0.0, 0)\n"
        "    for fd in [int(name) for name in os.listdir('/proc/self/fd')]:\n"
        "        if fd > 2:\n"
        "            try:\n"
        "                os.write(fd, frame)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return 'forged'\n"
    )
    start = time.monotonic()
    results = pool.run(code, [{"index": 0}, {"index": 1}]) + pool.run(code, [{"index": 0}])
    assert [r.status for r in results] == ["crashed"] * 3
    if pool.isolation.signals_scoped:
        assert [r.error_type for r in results[1:]] == ["ProtocolError"] * 2
    assert time.monotonic() - start < 10
    assert [r.value for r in pool.run(GOOD, [{"x": 1}])] == [{"double": 2}]


def test_a_restart_forged_by_the_top_level_does_not_loop(pool):
    """A program whose top level reports itself loaded and then asks for a new job process
    (as J does after a call that left files it cannot remove) gets a crashed verdict at once,
    instead of the worker starting job processes for it over and over."""
    code = (
        "import os, struct\n"
        "frames = struct.pack('<BiiBdI', 1, -1, 0, 0, 0.0, 0) + struct.pack('<BiiBdI', 6, 0, 0, 0, 0.0, 0)\n"
        "for fd in [int(name) for name in os.listdir('/proc/self/fd')]:\n"
        "    if fd > 2:\n"
        "        try:\n"
        "            os.write(fd, frames)\n"
        "        except OSError:\n"
        "            pass\n"
        "def main_solution(x):\n"
        "    return x\n"
    )
    start = time.monotonic()
    results = pool.run(code, [{"x": 1}, {"x": 2}])
    assert [r.status for r in results] == ["crashed"] * 2
    assert time.monotonic() - start < 10
    assert [r.value for r in pool.run(GOOD, [{"x": 1}])] == [{"double": 2}]


def test_the_last_result_and_done_arrive_in_one_write():
    """A job's last call result goes out with the worker's "done" frame in one write, so the
    pool wakes once for both (wake-ups are the dearest part of a short job on a VM); earlier
    results still stream one by one, as their calls end."""
    import os

    from sandbox import SandboxPool

    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    code = "import time\ndef main_solution(x):\n    time.sleep(0.2 if x == 0 else 0)\n    return x\n"
    with SandboxPool(workers=1) as pool:
        pool.run(code, [{"x": 1}])
        os.read = counting_read  # type: ignore[assignment]
        try:
            results = pool.run(code, [{"x": 0}, {"x": 1}])
        finally:
            os.read = real_read  # type: ignore[assignment]
    assert [r.value for r in results] == [0, 1]
    # call 0's result (a read of its own, unless the pool fell behind), then call 1's result
    # and "done" together: never a read for "done" alone
    assert len(reads) <= 2, reads
