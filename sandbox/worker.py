"""The worker (W): a warm, trusted supervisor process; it never runs untrusted code itself.

Started by the pool with a clean environment, W enters a new network namespace (unless the
pool allows the network), preloads the common modules, and serves one request at a time from
its private request pipe. For each job it forks a job process J (``sandbox.harness``) that
confines itself and runs the program; W watches J's control pipe and its children's result
and stdio pipes, turns each call's exit status, CPU time and message into a verdict, and
streams the verdicts back on its private reply pipe. When J dies or stops answering, W kills
everything J left behind, wipes the temp dir as root, and starts a new J for the calls left.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from . import harness, isolation
from .harness import CALL_DONE, CONTROL, EXEC_FAILED, EXEC_OK, FLAG_WATCHDOG, RESTART
from .protocol import ChannelClosed, parse_child_message, parse_generated_line, read_frame, write_frame
from .records import Limits
from .values import json_shape_violation

#: Beyond a child's own watchdog, how long W waits for J before declaring it unresponsive.
GRACE_SECONDS = 2.0
#: The most a generator may stream back, whatever the count.
GENERATE_MAX_BYTES = 64 * 1024 * 1024
_HIGH_FD = 1000
_SHARED_UID = 65534


def main(config_text: str) -> None:
    """Entry point of the worker process (see ``sandbox.pool`` for how it is started)."""
    Worker(json.loads(config_text)).serve()


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.requests_fd: int = config["requests_fd"]
        self.replies_fd: int = config["replies_fd"]
        self.hash_seed: int = config["hash_seed"]
        self.keep_paths = tuple(config["keep_paths"])
        self.pid = os.getpid()
        isolation.set_child_subreaper()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        sys.dont_write_bytecode = True
        notes: list[str] = []

        self.deny_network = not config["network"]
        network_namespace = False
        if self.deny_network:
            problem = isolation.enter_network_namespace()
            network_namespace = problem is None
            if problem:
                notes.append(f"children may reach the network: {problem}")
        else:
            notes.append("network allowed by the pool's configuration")

        self.uid: int | None = None
        self.unique_uid = False
        if os.geteuid() == 0:
            covered, problem = isolation.expose_to_other_users(_interpreter_paths(), config["temp_root"])
            if problem:
                notes.append(f"the interpreter may be unreadable for children: {problem}")
            elif covered:
                notes.append(f"hidden from children, except the interpreter: {', '.join(covered)}")
            self.uid = isolation.worker_uid(self.pid)
            self.unique_uid = self.uid is not None
            if self.uid is None:
                self.uid = _SHARED_UID
                notes.append("uid range not mapped: children share uid 65534; strays are found by process tree")
        else:
            notes.append("pool not running as root: children keep the pool's uid (no RLIMIT_NPROC per worker, "
                         "file permissions of the pool's user apply)")

        self.landlock_abi = isolation.landlock_abi()
        if self.landlock_abi == 0:
            notes.append("Landlock unavailable: children may write wherever their uid may")
        elif self.landlock_abi < 6:
            notes.append(f"Landlock ABI {self.landlock_abi} < 6: signals to outside processes not scoped")

        self.workdir = os.path.join(config["temp_root"], f"w{self.pid}")
        os.mkdir(self.workdir, 0o700)
        self._prepare_workdir()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = _HIGH_FD + 64
        if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        gc.collect()
        gc.freeze()  # forks then share the preloaded heap instead of copying it on first GC
        self.isolation = {
            "network_namespace": network_namespace,
            "unprivileged_user": self.uid is not None,
            "filesystem_confined": self.landlock_abi >= 1,
            "signals_scoped": self.landlock_abi >= 6,
            "notes": notes,
        }

    def serve(self) -> None:
        try:
            write_frame(self.replies_fd, {"type": "ready", "pid": self.pid, "uid": self.uid,
                                          "unique_uid": self.unique_uid, "isolation": self.isolation})
            while True:
                request = read_frame(self.requests_fd)
                if request["type"] == "run":
                    self._serve_run(request)
                elif request["type"] == "generate":
                    self._serve_generate(request)
        except ChannelClosed:
            pass
        finally:
            self._kill_descendants()
            try:
                isolation.remove_tree(self.workdir)
            except OSError:
                _remove_as_root(self.workdir)

    # -- requests ----------------------------------------------------------------------------

    def _serve_run(self, request: dict[str, Any]) -> None:
        limits = Limits(**request["limits"])
        calls = request["calls"]

        def emit(index: int, result: dict[str, Any]) -> None:
            write_frame(self.replies_fd, {"type": "result", "index": index, **result})

        index = 0
        while index < len(calls):
            index = self._job("run", request, limits, index, len(calls), emit)
        write_frame(self.replies_fd, {"type": "done"})

    def _serve_generate(self, request: dict[str, Any]) -> None:
        limits = Limits(**request["limits"])
        outcome: dict[str, Any] = {}

        def keep(_index: int, result: dict[str, Any]) -> None:
            outcome.update(result)

        self._job("generate", request, limits, 0, 1, keep)
        if "values" not in outcome:  # the program never got to run the generator
            outcome = {"status": outcome["status"], "values": [], "calls": 0, "failures": {},
                       "error_type": outcome.get("error_type"), "error_message": outcome.get("error_message"),
                       "cpu": outcome.get("cpu", 0.0)}
        write_frame(self.replies_fd, {"type": "generated", **outcome})

    # -- one job process ------------------------------------------------------------------------

    def _job(self, mode: str, request: dict[str, Any], limits: Limits, first: int, total: int,
             emit: Callable[[int, dict[str, Any]], None]) -> int:
        """Run calls ``first..total-1`` in one J; returns the index of the first call left over."""
        self._prepare_workdir()
        control_r, control_w = _pipe()
        result_r, result_w = _pipe()
        stdio_r, stdio_w = _pipe() if limits.stdio_bytes else (-1, -1)
        spec = harness.JobSpec(
            mode=mode, code=request["code"], entry=request["entry"], calls=request.get("calls", []),
            first=first, count=request.get("count", 0), budget_seconds=request.get("budget_seconds", 0.0),
            limits=limits, hash_seed=self.hash_seed, worker_pid=self.pid, workdir=self.workdir,
            uid=self.uid, unique_uid=self.unique_uid, landlock_abi=self.landlock_abi,
            deny_network=self.deny_network, keep_paths=self.keep_paths,
            control_fd=control_w, result_fd=result_w, stdio_fd=stdio_w,
        )
        pid = os.fork()
        if pid == 0:
            harness.run_job(spec)
        for fd in (control_w, result_w, stdio_w):
            if fd >= 0:
                os.close(fd)
        pidfd = os.pidfd_open(pid)
        watch = _JobWatch(self, mode, spec, pid, pidfd, control_r, result_r, stdio_r, total, emit)
        try:
            return watch.run()
        finally:
            watch.reap()
            for fd in (pidfd, control_r, result_r, stdio_r):
                if fd >= 0:
                    os.close(fd)
            self._kill_descendants()
            self._prepare_workdir()

    # -- cleaning up ----------------------------------------------------------------------------

    def _kill_descendants(self) -> None:
        """Kill and reap everything left below W (W is a subreaper: orphans come back to it)."""
        deadline = time.monotonic() + 10.0
        while isolation.reap_children() and time.monotonic() < deadline:
            if self.unique_uid:
                isolation.kill_all_of_uid(self.uid)  # type: ignore[arg-type]
            else:
                isolation.kill_children()
            signal.sigtimedwait({signal.SIGCHLD}, 0.01)

    def _prepare_workdir(self) -> None:
        """The worker's temp dir: present, empty, 0700 and owned by the children's uid."""
        try:
            with os.scandir(self.workdir) as entries:
                leftovers = [entry.path for entry in entries]
        except FileNotFoundError:
            os.mkdir(self.workdir, 0o700)
            leftovers = []
        for path in leftovers:
            try:
                isolation.remove_tree(path)
            except OSError:
                _remove_as_root(path)
        os.chmod(self.workdir, 0o700)
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.uid)


class _JobWatch:
    """W's view of one J: reads its pipes, applies its events, enforces the backstop deadline."""

    def __init__(self, worker: Worker, mode: str, spec: harness.JobSpec, pid: int, pidfd: int,
                 control_r: int, result_r: int, stdio_r: int, total: int,
                 emit: Callable[[int, dict[str, Any]], None]) -> None:
        self.worker, self.mode, self.spec, self.pid = worker, mode, spec, pid
        self.limits = spec.limits
        self.pidfd, self.control_r, self.result_r, self.stdio_r = pidfd, control_r, result_r, stdio_r
        self.total, self.emit = total, emit
        self.index = spec.first
        self.exec_done = False
        self.control = bytearray()
        self.result = bytearray()
        self.result_overflow = False
        self.stdio = bytearray()
        if mode == "run":
            self.result_cap = self.limits.output_bytes + 2048
            self.child_wall = self.limits.wall_seconds
        else:
            self.result_cap = min(GENERATE_MAX_BYTES, max(1, spec.count) * (self.limits.output_bytes + 64))
            self.child_wall = spec.budget_seconds * self.limits.wall_factor + 1.0
        self.exited = False
        self.wait_status: int | None = None
        self.job_cpu = 0.0
        self.deadline = time.monotonic() + self.limits.wall_seconds + GRACE_SECONDS

    def run(self) -> int:
        poller = select.poll()
        for fd in (self.pidfd, self.control_r, self.result_r, self.stdio_r):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._unresponsive()
            for fd, _event in poller.poll(remaining * 1000):
                if fd == self.pidfd:
                    self.exited = True
                else:
                    self._drain(fd)
            if self.exited:  # everything J wrote is in the pipes now; read it all first
                for fd in (self.control_r, self.result_r, self.stdio_r):
                    if fd >= 0:
                        self._drain(fd)
            finished = self._apply_events()
            if finished is not None:
                return finished
            if self.exited:
                return self._died()

    def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            if fd == self.control_r:
                self.control += chunk
            elif fd == self.result_r:
                room = self.result_cap - len(self.result)
                if len(chunk) > room:
                    self.result_overflow = True
                self.result += chunk[: max(room, 0)]
            else:
                room = self.limits.stdio_bytes - len(self.stdio)
                self.stdio += chunk[: max(room, 0)]

    def _apply_events(self) -> int | None:
        """Act on every complete control event; the next index once this J is done with."""
        while len(self.control) >= CONTROL.size:
            kind, index, wait_status, flags, cpu = CONTROL.unpack_from(self.control)
            del self.control[: CONTROL.size]
            if kind == EXEC_OK and not self.exec_done:
                self.exec_done = True
                self._clear_buffers()
                self.deadline = time.monotonic() + self.child_wall + GRACE_SECONDS
            elif kind == EXEC_FAILED and not self.exec_done:
                failure = parse_child_message(self.result)
                if failure is None or failure["s"] == "ok":
                    failure = {"s": "crashed", "t": "ProtocolError", "m": "unreadable report from the job process"}
                return self._fail_rest(failure["s"], failure["t"], failure["m"], 0.0)
            elif kind == CALL_DONE and self.exec_done and index == self.index and cpu >= 0:
                if self.mode == "run":
                    self.emit(index, self._call_verdict(wait_status, flags, cpu))
                else:
                    self.emit(index, self._generate_verdict(wait_status, flags, cpu))
                self.index += 1
                self._clear_buffers()
                self.deadline = time.monotonic() + self.child_wall + GRACE_SECONDS
                if self.index >= self.total:
                    return self.index
            elif kind == RESTART and self.exec_done and index == self.index:
                return self.index
            else:
                self._kill_job()
                return self._fail_current("crashed", "ProtocolError", "the job process sent an invalid event")
        return None

    def _clear_buffers(self) -> None:
        self.result.clear()
        self.result_overflow = False
        self.stdio.clear()

    def _call_verdict(self, wait_status: int, flags: int, cpu: float) -> dict[str, Any]:
        limits = self.limits
        verdict: dict[str, Any] = {"status": "crashed", "value": None, "error_type": None,
                                   "error_message": None, "cpu": cpu,
                                   "stdio": self.stdio.decode("utf-8", "replace")}
        if flags & FLAG_WATCHDOG:
            return {**verdict, "status": "timeout", "error_type": "Timeout",
                    "error_message": f"wall-clock watchdog: alive after {limits.wall_seconds:g}s "
                                     f"with {cpu:.2f}s of CPU (sleeping or blocked)"}
        if _over_cpu(wait_status, cpu, limits.cpu_seconds):
            return {**verdict, "status": "timeout", "error_type": "Timeout",
                    "error_message": f"CPU time limit of {limits.cpu_seconds:g}s exceeded"}
        if self.result_overflow:
            return {**verdict, "status": "output_limit", "error_type": "OutputLimit",
                    "error_message": f"result message over {self.result_cap} bytes"}
        message = parse_child_message(self.result)
        if message is None or not (os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0):
            return {**verdict, "error_type": "Crashed", "error_message": _describe_exit(wait_status, message)}
        if message["s"] != "ok":
            return {**verdict, "status": message["s"], "error_type": message["t"], "error_message": message["m"]}
        if limits.check_size:
            reason = json_shape_violation(message["v"])
            if reason is not None:
                return {**verdict, "status": "size_limit", "error_type": "SizeLimit", "error_message": reason}
        return {**verdict, "status": "ok", "value": message["v"]}

    def _generate_verdict(self, wait_status: int, flags: int, cpu: float) -> dict[str, Any]:
        values: list[Any] = []
        failures: dict[str, int] = {}
        first_error: tuple[str | None, str | None] = (None, None)
        ended = False
        lines = bytes(self.result).split(b"\n")
        for line in lines[:-1]:  # the last piece is empty or an unfinished line
            message = parse_generated_line(line)
            if message is None:
                break
            status = message["s"]
            if status == "end":
                ended = True
                break
            if status == "ok" and self.limits.check_size and json_shape_violation(message["v"]):
                status = "size_limit"
            if status == "ok":
                values.append(message["v"])
                continue
            failures[status] = failures.get(status, 0) + 1
            if first_error == (None, None):
                first_error = (message.get("t", status), message.get("m", ""))
        if flags & FLAG_WATCHDOG or _over_cpu(wait_status, cpu, self.spec.budget_seconds):
            status = "timeout"
        elif self.result_overflow:
            status = "output_limit"
        elif ended and os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0:
            status = "ok"
        else:
            status = "crashed"
            if first_error == (None, None):
                first_error = ("Crashed", _describe_exit(wait_status, None))
        return {"status": status, "values": values, "calls": len(values) + sum(failures.values()),
                "failures": failures, "error_type": first_error[0], "error_message": first_error[1], "cpu": cpu}

    def _fail_rest(self, status: str, error_type: str, error_message: str, cpu: float) -> int:
        """The program as a whole failed: every call left gets the same verdict."""
        verdict = {"status": status, "value": None, "error_type": error_type,
                   "error_message": error_message, "cpu": cpu, "stdio": ""}
        for index in range(self.index, self.total):
            self.emit(index, verdict)
        return self.total

    def _fail_current(self, status: str, error_type: str, error_message: str) -> int:
        """J failed during a call: that call gets the verdict, the rest go to a new J."""
        if not self.exec_done:
            return self._fail_rest(status, error_type, error_message, self.job_cpu)
        self.emit(self.index, {"status": status, "value": None, "error_type": error_type,
                               "error_message": error_message, "cpu": 0.0, "stdio": ""})
        return self.index + 1

    def _died(self) -> int:
        self.reap()
        if self.index >= self.total:
            return self.index
        if not self.exec_done and _over_cpu(self.wait_status or 0, self.job_cpu, self.limits.cpu_seconds):
            return self._fail_rest("timeout", "Timeout", f"CPU time limit of {self.limits.cpu_seconds:g}s "
                                   "exceeded while running the program's top level", self.job_cpu)
        where = "during a call" if self.exec_done else "while running the program's top level"
        return self._fail_current("crashed", "Crashed", f"the job process died {where}: "
                                  f"{_describe_exit(self.wait_status or 0, None)}")

    def _unresponsive(self) -> int:
        self._kill_job()
        self.reap()
        if not self.exec_done:
            return self._fail_rest("timeout", "Timeout", "the program's top level did not finish in time", self.job_cpu)
        return self._fail_current("timeout", "Timeout", "the job process stopped answering (killed)")

    def _kill_job(self) -> None:
        for killer in (os.killpg, os.kill):
            try:
                killer(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.worker.unique_uid:
            isolation.kill_all_of_uid(self.worker.uid)  # type: ignore[arg-type]

    def reap(self) -> None:
        """Collect J's exit status and CPU time (waiting briefly, then killing it)."""
        if self.wait_status is not None:
            return
        if not self.exited and not select.select([self.pidfd], [], [], GRACE_SECONDS)[0]:
            self._kill_job()
        _pid, self.wait_status, usage = os.wait4(self.pid, 0)
        self.job_cpu = usage.ru_utime + usage.ru_stime
        self.exited = True


def _over_cpu(wait_status: int, cpu: float, limit: float) -> bool:
    """The CPU verdict: at or over the limit by rusage, or stopped by one of our CPU timers.

    SIGPROF (ITIMER_PROF at the limit) and SIGXCPU (RLIMIT_CPU) fire on the kernel's own CPU
    clock, which rusage trails by a few percent, so the signal is the more exact witness.
    """
    if os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) in (signal.SIGPROF, signal.SIGXCPU):
        return True
    return cpu >= limit


def _describe_exit(wait_status: int, message: dict[str, Any] | None) -> str:
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"killed by signal {name}"
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else -1
    if code == harness.EXIT_SETUP_FAILED:
        return "the sandbox could not set up the child"
    if message is None:
        return f"exited with status {code} without a valid result message"
    return f"exited with status {code} after its result message"


def _interpreter_paths() -> list[str]:
    """Where the interpreter and its libraries live; the children must be able to read them."""
    paths = [p for p in sys.path if p and os.path.exists(p)]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return paths


def _pipe() -> tuple[int, int]:
    """A pipe whose write end sits at a high fd, out of the way of fds 0-63 of the children."""
    read_end, write_end = os.pipe()
    high = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    os.close(write_end)
    os.set_blocking(read_end, False)
    return read_end, high


def _remove_as_root(path: str) -> None:
    """Last resort for trees too deep for path-based removal: coreutils' rm works by fd."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=False,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

