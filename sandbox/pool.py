"""The pool (P side): warm workers, one per core, shared safely by the pipeline's threads."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import isolation
from .protocol import ChannelClosed, FrameReader, write_frame
from .records import CallResult, GenerateResult, Isolation, Job, Limits
from .values import to_json_value

log = logging.getLogger("codeio.sandbox")

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from sandbox.worker import main; main(sys.argv[2])"
_INHERITED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # numpy can crash without them on some CPUs
_START_TIMEOUT = 120.0
_STOP_TIMEOUT = 5.0
# Beyond two watchdog periods (the program's top level and one call) and the worker's own
# grace, how long the pool waits for any frame before it declares the worker hung.
_FRAME_SLACK = 30.0

_warned_lock = threading.Lock()
_warned: set[tuple[str, ...]] = set()


class WorkerLost(Exception):
    """A worker died or hung while serving a request."""


class SandboxUnavailable(OSError):
    """A worker could not be set up to run code as promised on this machine (the message says
    why and what to change); retrying does not help."""


class SandboxPool:
    """Runs untrusted programs in warm worker processes; see the package docstring.

    ``run``, ``run_many`` and ``generate`` may be called from many threads at once; each blocks
    until a worker is free. A worker that dies is replaced on the next request.
    """

    def __init__(self, workers: int | None = None, limits: Limits = Limits(), hash_seed: int = 0,
                 network: bool = False) -> None:
        self.workers: int = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        self.limits = limits
        self.hash_seed = hash_seed
        self.network = network
        base = tempfile.gettempdir()
        if isolation.first_blocked(base) is not None:  # the children's uid could not reach it
            base = "/tmp"
        self.temp_root = tempfile.mkdtemp(prefix="codeio-sandbox-", dir=base)
        os.chmod(self.temp_root, 0o711)
        self._state = _PoolState()
        self._finalizer = weakref.finalize(self, self._state.shutdown, self.temp_root)
        self._state.live[hash_seed] = self.workers
        started: list[_WorkerProcess] = []
        try:
            for _ in range(self.workers):  # started side by side, then awaited
                started.append(_WorkerProcess(hash_seed, network, self.temp_root))
                self._state.everyone.add(started[-1])
            for worker in started:
                worker.wait_ready()
        except BaseException:
            for worker in started:  # none serves yet: stop them here, not in close()'s wait
                worker.kill()
                self._state.everyone.discard(worker)
            self.close()
            raise
        self._state.idle[hash_seed] = started
        self.isolation: Isolation = started[0].isolation
        for worker in started:  # each worker sets itself up: warn about any that fell short
            _warn_once(worker.isolation, network)

    # -- public API ---------------------------------------------------------------------------

    def run(self, code: str, calls: list[dict], entry: str = "main_solution", limits: Limits | None = None,
            hash_seed: int | None = None) -> list[CallResult]:
        """Call ``entry(**call)`` for each call, each in a fresh fork; results in call order."""
        limits = limits or self.limits
        seed = self.hash_seed if hash_seed is None else hash_seed
        plain_calls = [_kwargs(call) for call in calls]
        results: list[CallResult | None] = [None] * len(plain_calls)
        index = 0
        while index < len(plain_calls):
            worker = self._acquire(seed)
            healthy = False
            try:
                index = worker.run(code, entry, plain_calls, index, limits, results)
                healthy = True
            except WorkerLost as lost:
                if worker.progress < len(plain_calls):
                    results[worker.progress] = CallResult("crashed", error_type="WorkerLost", error_message=str(lost))
                index = worker.progress + 1
            finally:
                self._release(worker, healthy)
        return results  # type: ignore[return-value]

    def run_many(self, jobs: list[Job], hash_seed: int | None = None) -> list[list[CallResult]]:
        """Run jobs concurrently across the workers; results in job order."""
        seed = self.hash_seed if hash_seed is None else hash_seed
        width = min(len(jobs), self._capacity(seed))
        if width <= 1:
            return [self.run(job.code, job.calls, job.entry, job.limits, seed) for job in jobs]
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sandbox") as executor:
            return list(executor.map(lambda job: self.run(job.code, job.calls, job.entry, job.limits, seed), jobs))

    def generate(self, code: str, entry: str = "input_generator", count: int = 1000, budget_seconds: float = 10.0,
                 limits: Limits | None = None, hash_seed: int | None = None) -> GenerateResult:
        """Call a no-argument generator up to ``count`` times in one child under a CPU budget."""
        if count < 0 or not budget_seconds > 0:
            raise ValueError("count must be >= 0 and budget_seconds > 0")
        limits = limits or self.limits
        seed = self.hash_seed if hash_seed is None else hash_seed
        worker = self._acquire(seed)
        healthy = False
        try:
            result = worker.generate(code, entry, count, budget_seconds, limits)
            healthy = True
            return result
        except WorkerLost as lost:
            return GenerateResult("crashed", error_type="WorkerLost", error_message=str(lost))
        finally:
            self._release(worker, healthy)

    def cpu_seconds(self) -> float | None:
        """CPU seconds the workers and everything they ran (job processes, calls) have used
        since the pool started; a job still running counts once it has ended. None where
        /proc cannot be read (not Linux). Lets a caller tell the sandbox's share of the
        machine apart from its own."""
        with self._state.lock:
            live = list(self._state.everyone)
            retired = self._state.retired_cpu
        used = [_tree_cpu_seconds(worker.pid) for worker in live]
        if live and all(u is None for u in used):
            return None
        return retired + sum(u for u in used if u is not None)

    def in_use(self) -> bool:
        """Whether a request is being served (or waits for a worker) right now."""
        with self._state.lock:
            state = self._state
            return sum(state.live.values()) > sum(len(idle) for idle in state.idle.values())

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (all hash seeds)."""
        with self._state.lock:
            return sorted(w.pid for w in self._state.everyone if w.pid)

    @property
    def worker_uids(self) -> list[int]:
        """The uids the live workers' children run as (empty when the pool is not root)."""
        with self._state.lock:
            return sorted({w.uid for w in self._state.everyone if w.uid is not None})

    def close(self) -> None:
        """Stop every worker and remove the temp root; waits for requests in flight to finish."""
        self._finalizer()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers -----------------------------------------------------------------------------

    def _capacity(self, seed: int) -> int:
        """Workers per seed: as many as the pool's own; another seed's start on first use.

        Another seed gets the same width because its callers (the determinism re-run) often
        have the own seed's workers idle meanwhile: one worker would leave cores unused."""
        return self.workers

    def _acquire(self, seed: int) -> "_WorkerProcess":
        state = self._state
        with state.lock:
            while True:
                if state.closed:
                    raise RuntimeError("the sandbox pool is closed")
                idle = state.idle.setdefault(seed, [])
                if idle:
                    return idle.pop()
                if state.live.get(seed, 0) < self._capacity(seed):
                    state.live[seed] = state.live.get(seed, 0) + 1
                    break
                state.waiters(seed).wait()
        worker = None
        try:
            worker = _WorkerProcess(seed, self.network, self.temp_root)
            with state.lock:
                state.everyone.add(worker)
            worker.wait_ready()
            _warn_once(worker.isolation, self.network)
            return worker
        except BaseException:
            with state.lock:
                if worker is not None:  # killed by wait_ready; close() must not wait for it
                    state.everyone.discard(worker)
                state.live[seed] -= 1
                state.waiters(seed).notify()  # one waiter may start a worker in its place
            raise

    def _release(self, worker: "_WorkerProcess", healthy: bool) -> None:
        state = self._state
        with state.lock:
            keep = healthy and not state.closed
            if keep:
                state.idle.setdefault(worker.seed, []).append(worker)
            else:
                state.live[worker.seed] -= 1
                state.everyone.discard(worker)
                state.retired_cpu += _tree_cpu_seconds(worker.pid) or 0.0
                state.lock.notify_all()  # shutdown waits for everyone to be gone
            # One waiter of this seed: the worker, or room for a new one, serves one request.
            # (Waking every waiting thread cost each of them a wake-up to find nothing.)
            state.waiters(worker.seed).notify()
        if not keep:
            if healthy:
                worker.stop()
            else:
                worker.kill()


class _PoolState:
    """Everything the finalizer needs, kept apart from the pool so the pool can be collected."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        # Threads waiting for a worker of a seed; on the same lock as ``lock``.
        self._waiters: dict[int, threading.Condition] = {}
        self.idle: dict[int, list[_WorkerProcess]] = {}
        self.live: dict[int, int] = {}
        self.everyone: set[_WorkerProcess] = set()
        self.retired_cpu = 0.0  # CPU of workers that were replaced, read before they went
        self.closed = False

    def waiters(self, seed: int) -> threading.Condition:
        """The condition threads wait on for a worker of ``seed`` (call with ``lock`` held)."""
        waiting = self._waiters.get(seed)
        if waiting is None:
            waiting = self._waiters[seed] = threading.Condition(self.lock)
        return waiting

    def shutdown(self, temp_root: str) -> None:
        with self.lock:
            self.closed = True
            idle = [w for workers in self.idle.values() for w in workers]
            self.idle.clear()
            for worker in idle:
                self.everyone.discard(worker)
            self.lock.notify_all()
            for waiting in self._waiters.values():
                waiting.notify_all()
        for worker in idle:
            worker.stop()
        with self.lock:  # requests in flight end, then their workers stop in _release
            self.lock.wait_for(lambda: not self.everyone, timeout=60.0)
            stragglers = list(self.everyone)
            self.everyone.clear()
        for worker in stragglers:
            worker.kill()
        shutil.rmtree(temp_root, ignore_errors=True)


class _WorkerProcess:
    """The pool's handle on one worker process and its two private pipes."""

    def __init__(self, seed: int, network: bool, temp_root: str) -> None:
        self.seed = seed
        self.temp_root = temp_root
        self.pid = 0
        self.uid: int | None = None
        self.unique_uid = False
        self.progress = 0  # index of the call being served (for WorkerLost)
        self.killed = False
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        self.reader = FrameReader(self.replies)
        config = {"requests_fd": requests_r, "replies_fd": replies_w, "hash_seed": seed, "network": network,
                  "temp_root": temp_root, "keep_paths": [_PACKAGE_PARENT]}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-s", "-P", "-B", "-c", _BOOTSTRAP, _PACKAGE_PARENT, json.dumps(config)],
                env=_clean_env(seed), cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=(requests_r, replies_w), close_fds=True, start_new_session=True,
            )
        finally:
            os.close(requests_r)
            os.close(replies_w)
        self.pid = self.process.pid

    def wait_ready(self) -> None:
        try:
            ready = self.reader.read(_START_TIMEOUT)
        except ChannelClosed as exc:
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {exc}") from exc
        if ready.get("type") == "failed":
            self.kill()
            raise SandboxUnavailable(f"sandbox: {ready['error']}")
        self.uid = ready["uid"]
        self.unique_uid = ready["unique_uid"]
        facts = ready["isolation"]
        self.isolation = Isolation(**{**facts, "notes": tuple(facts["notes"])})

    def run(self, code: str, entry: str, calls: list[dict], first: int, limits: Limits,
            results: list[CallResult | None]) -> int:
        self.progress = first
        self._send({"type": "run", "code": code, "entry": entry, "calls": calls[first:], "limits": _fields(limits)})
        while True:
            frame = self._receive(limits.wall_seconds)
            if frame["type"] == "done":
                return len(calls)
            index = first + frame["index"]
            results[index] = CallResult(
                status=frame["status"], value=frame["value"], error_type=frame["error_type"],
                error_message=frame["error_message"], cpu_seconds=frame["cpu"], stdio=frame["stdio"],
            )
            self.progress = index + 1

    def generate(self, code: str, entry: str, count: int, budget_seconds: float, limits: Limits) -> GenerateResult:
        self._send({"type": "generate", "code": code, "entry": entry, "count": count,
                    "budget_seconds": budget_seconds, "limits": _fields(limits)})
        frame = self._receive(max(limits.wall_seconds, budget_seconds * limits.wall_factor + 1.0))
        return GenerateResult(
            status=frame["status"], values=frame["values"], calls=frame["calls"], failures=frame["failures"],
            error_type=frame["error_type"], error_message=frame["error_message"], cpu_seconds=frame["cpu"],
        )

    def _send(self, message: dict[str, Any]) -> None:
        try:
            write_frame(self.requests, message)
        except ChannelClosed as exc:
            raise WorkerLost(f"sandbox worker {self.pid} is gone: {exc}") from exc

    def _receive(self, wall_seconds: float) -> dict[str, Any]:
        try:
            return self.reader.read(2 * (wall_seconds + 2.0) + _FRAME_SLACK)
        except ChannelClosed as exc:
            code = self.process.poll()
            how = f"exit status {code}" if code is not None else "hung, killed"
            raise WorkerLost(f"sandbox worker {self.pid} lost ({how}): {exc}") from exc

    def stop(self) -> None:
        """Ask the worker to finish (it cleans up after itself), killing it if it does not."""
        os.close(self.requests)
        try:
            self.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        os.close(self.replies)
        if self.process.returncode != 0:
            self._clean_up_after()

    def kill(self) -> None:
        """Kill the worker and everything its children left behind (once: a second call would
        close descriptor numbers that may belong to someone else by then)."""
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self._clean_up_after()

    def _clean_up_after(self) -> None:
        """The worker could not clean up: kill its uid's processes and remove its temp dir."""
        if self.unique_uid and self.uid is not None:
            isolation.kill_all_of_uid(self.uid)
        shutil.rmtree(os.path.join(self.temp_root, f"w{self.pid}"), ignore_errors=True)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and of its children it has reaped (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(v) for v in fields[11:15]) / _TICKS


def _clean_env(seed: int) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "PYTHONHASHSEED": str(seed),
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update({k: os.environ[k] for k in _INHERITED_ENV if k in os.environ})
    return env


@functools.lru_cache(maxsize=64)
def _fields(limits: Limits) -> dict[str, Any]:
    """``asdict(limits)``, once per distinct Limits (frozen): every job sends them, and asdict
    deep-copies field by field. Only ever encoded, never changed."""
    return asdict(limits)


def _kwargs(call: Any) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise TypeError(f"each call must be a kwargs dict, not {type(call).__name__}")
    plain = to_json_value(call)
    if any(not key.isidentifier() for key in plain):
        raise TypeError("call keys must be identifiers (they become keyword arguments)")
    return plain


def _warn_once(isolation: Isolation, network_allowed: bool) -> None:
    network_ok = isolation.network_namespace or network_allowed
    if network_ok and isolation.unprivileged_user and isolation.filesystem_confined and isolation.reads_confined:
        return
    key = isolation.notes
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("sandbox isolation is incomplete: %s", "; ".join(isolation.notes) or "see SandboxPool.isolation")
