"""The worker (W): a warm, trusted supervisor process; it never runs untrusted code itself.

Started by the pool with a clean environment, W enters a new network namespace (unless the
pool allows the network), preloads the common modules, and serves one request at a time from
its private request pipe. For each job it forks a job process J (``sandbox.harness``) that
confines itself and runs the program; W reads the frames J sends (each call's result and
stdio bytes, then its exit status and CPU time), turns them into a verdict with its own
``json``, and streams the verdicts back on its private reply pipe. When J runs the last call
itself, J's own exit status and CPU time make that verdict, and W keeps the call's wall-clock
watchdog. When J dies or stops answering, W kills everything of the job, wipes the temp dir
as root, and starts a new J for the calls left.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import resource
import select
import signal
import sys
import time
from typing import Any, Callable

from . import harness, isolation
from .harness import (
    CALL_DONE,
    CALL_IN_JOB,
    CONTROL,
    EXEC_FAILED,
    EXEC_OK,
    FLAG_WATCHDOG,
    RESTART,
    RESULT_DATA,
    STDIO_DATA,
)
from .protocol import ChannelClosed, FrameReader, parse_child_message, parse_generated_line, write_frame
from .records import Limits
from .values import json_bytes_violation, json_shape_violation

#: Beyond a child's own watchdog, how long W waits for J before declaring it unresponsive.
GRACE_SECONDS = 2.0
#: The most a generator may stream back, whatever the count.
GENERATE_MAX_BYTES = 64 * 1024 * 1024
#: Size and file-count caps of each worker's temp dir (a tmpfs when the pool runs as root).
TEMP_DIR_BYTES = 128 * 1024 * 1024
TEMP_DIR_INODES = 16384
_HIGH_FD = 1000
_MAX_PAYLOAD = 1 << 20
_SHARED_UID = 65534


class SetupFailed(Exception):
    """This worker cannot run code as the pool promises; the message says why and what to do."""


def main(config_text: str) -> None:
    """Entry point of the worker process (see ``sandbox.pool`` for how it is started)."""
    config = json.loads(config_text)
    try:
        worker = Worker(config)
    except SetupFailed as exc:  # told to the pool instead of "ready"; nothing is served
        write_frame(config["replies_fd"], {"type": "failed", "error": str(exc)})
        raise SystemExit(3) from None
    worker.serve()


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.requests = FrameReader(config["requests_fd"])
        self.replies_fd: int = config["replies_fd"]
        self.hash_seed: int = config["hash_seed"]
        self.keep_paths = tuple(config["keep_paths"])
        self.pid = os.getpid()
        isolation.set_process_name("sandbox-worker")
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
        self.tmpfs = False
        interpreter = _interpreter_paths()
        if os.geteuid() == 0:
            problem = isolation.enter_ipc_namespace()
            if problem:
                notes.append(f"children may share System V IPC objects with each other and the host: {problem}")
            problem = isolation.enter_mount_namespace()
            if problem is None:
                proc_problem = isolation.mount_private_proc()
                if proc_problem:
                    notes.append(f"children see every process in /proc: {proc_problem}")
                covered, problem = isolation.expose_to_other_users(interpreter, config["temp_root"])
                if covered:
                    notes.append(f"hidden from children, except the interpreter: {', '.join(covered)}")
            if problem:
                notes.append(f"mount namespace: {problem}")
            self.tmpfs = problem is None
            self.uid = isolation.worker_uid(self.pid)
            self.unique_uid = self.uid is not None
            if self.uid is None:
                self.uid = _SHARED_UID
                notes.append("uid range not mapped: children share uid 65534; strays are found by process tree")
            # Children under another uid that cannot read the interpreter fail on every import
            # the worker did not preload: wrong verdicts, not a sandbox. Refuse to serve.
            unreachable = [p for p in interpreter if not os.path.exists(p) or isolation.first_blocked(p)]
            if unreachable:
                raise SetupFailed(
                    f"the children's uid cannot read the interpreter at {unreachable[0]}"
                    + (f" ({problem})" if problem else "")
                    + "; install Python where every user may read it, or run the pool as a user other than root"
                )
        else:
            notes.append("pool not running as root: children keep the pool's uid (no RLIMIT_NPROC per worker, "
                         "file permissions of the pool's user apply)")

        self.landlock_abi = isolation.landlock_abi()
        self.readable: tuple[str, ...] = ()
        if self.landlock_abi == 0:
            notes.append("Landlock unavailable: children may read and write wherever their uid may")
        else:
            self.readable = isolation.readable_paths(interpreter, self.keep_paths)
        if 0 < self.landlock_abi < 6:
            notes.append(f"Landlock ABI {self.landlock_abi} < 6: signals to outside processes not scoped")

        self.deny_unix_sockets = self.deny_network and isolation.unix_socket_filter_supported()
        if self.deny_network and not self.deny_unix_sockets:
            notes.append(f"children may connect to Unix sockets in the filesystem: no seccomp filter for "
                         f"{os.uname().machine}")

        self.workdir = os.path.join(config["temp_root"], f"w{self.pid}")
        self._prepare_workdir()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = harness.JOB_FD_LIMIT + 64
        if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        harness.prepare_worker(self.hash_seed)
        gc.collect()
        gc.freeze()  # forks then share the preloaded heap instead of copying it on first GC
        isolation.trim_heap()  # fewer populated pages: cheaper forks
        self.isolation = {
            "network_namespace": network_namespace,
            "unprivileged_user": self.uid is not None,
            "filesystem_confined": self.landlock_abi >= 1,
            "reads_confined": self.landlock_abi >= 1,
            "signals_scoped": self.landlock_abi >= 6,
            "notes": notes,
        }

    def serve(self) -> None:
        pool_gone = False
        try:
            write_frame(self.replies_fd, {"type": "ready", "pid": self.pid, "uid": self.uid,
                                          "unique_uid": self.unique_uid, "isolation": self.isolation})
            while True:
                request = self.requests.read()
                if request["type"] == "run":
                    self._serve_run(request)
                elif request["type"] == "generate":
                    self._serve_generate(request)
        except ChannelClosed:
            pool_gone = True
        finally:
            self._kill_descendants()
            if self.tmpfs and os.path.ismount(self.workdir):
                isolation.unmount(self.workdir)
            try:
                isolation.remove_tree(self.workdir)
            except OSError:
                _remove_as_root(self.workdir)
            if pool_gone:  # the last worker out removes the pool's temp root, even if the pool was killed
                try:  # (not a worker that failed: the pool lives on and starts others in that root)
                    os.rmdir(os.path.dirname(self.workdir))
                except OSError:
                    pass

    # -- requests ----------------------------------------------------------------------------

    def _serve_run(self, request: dict[str, Any]) -> None:
        limits = Limits(**request["limits"])
        calls = request["calls"]

        last: list[dict[str, Any]] = []

        def emit(index: int, result: dict[str, Any]) -> None:
            frame = {"type": "result", "index": index, **result}
            if index == len(calls) - 1:
                last.append(frame)  # sent with "done": the pool reads both on one wake-up
            else:
                write_frame(self.replies_fd, frame)

        index = 0
        while index < len(calls):
            index = self._job("run", request, limits, index, len(calls), emit)
        write_frame(self.replies_fd, *last, {"type": "done"})

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
        control_r, control_w = _pipe()
        if mode == "run":
            result_cap = limits.output_bytes + 2048
        else:
            result_cap = min(GENERATE_MAX_BYTES, max(1, request["count"]) * (limits.output_bytes + 64))
        spec = harness.JobSpec(
            mode=mode, code=request["code"], entry=request["entry"], calls=request.get("calls", []),
            first=first, count=request.get("count", 0), budget_seconds=request.get("budget_seconds", 0.0),
            limits=limits, result_cap=result_cap, hash_seed=self.hash_seed, worker_pid=self.pid,
            workdir=self.workdir, uid=self.uid, unique_uid=self.unique_uid, landlock_abi=self.landlock_abi,
            readable=self.readable, deny_network=self.deny_network, keep_paths=self.keep_paths,
            control_fd=control_w, deny_unix_sockets=self.deny_unix_sockets,
        )
        reaped_before = harness.children_cpu_seconds()
        pid = os.fork()
        if pid == 0:
            harness.run_job(spec)
        os.close(control_w)
        pidfd = os.pidfd_open(pid)
        watch = _JobWatch(self, spec, pid, pidfd, control_r, total, emit, reaped_before)
        try:
            return watch.run()
        finally:
            watch.reap()
            os.close(pidfd)
            os.close(control_r)
            self._kill_descendants()
            self._prepare_workdir()  # empty again for the next J

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
        """The worker's temp dir: present, empty, 0700 and owned by the children's uid.

        As root it is a size-capped tmpfs private to this worker's mount namespace: fast,
        no disk to fill, and gone with the worker. Whatever a job leaves there that plain
        removal cannot take (a tree deeper than PATH_MAX) goes with the whole tmpfs.
        """
        if not os.path.isdir(self.workdir):
            os.mkdir(self.workdir, 0o700)
        with os.scandir(self.workdir) as entries:
            leftovers = [entry.path for entry in entries]
        if self.tmpfs and (leftovers or not os.path.ismount(self.workdir)):
            if os.path.ismount(self.workdir):
                isolation.unmount(self.workdir)
            isolation.mount_private_tmpfs(self.workdir, self.uid, TEMP_DIR_BYTES, TEMP_DIR_INODES)  # type: ignore[arg-type]
            return
        for path in leftovers:
            try:
                isolation.remove_tree(path)
            except OSError:
                _remove_as_root(path)
        os.chmod(self.workdir, 0o700)
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.uid)


class _JobWatch:
    """W's view of one J: reads its frames, applies them, enforces the backstop deadline."""

    def __init__(self, worker: Worker, spec: harness.JobSpec, pid: int, pidfd: int, control_r: int, total: int,
                 emit: Callable[[int, dict[str, Any]], None], reaped_before: float = 0.0) -> None:
        self.worker, self.spec, self.pid, self.pidfd, self.control_r = worker, spec, pid, pidfd, control_r
        self.reaped_before = reaped_before  # W's children's CPU before J: J's tree is what comes on top
        self.limits = spec.limits
        self.total, self.emit = total, emit
        self.index = spec.first
        self.exec_done = False
        self.control = bytearray()
        self.result = bytearray()
        self.stdio = bytearray()
        if spec.mode == "run":
            self.child_wall = self.limits.wall_seconds
        else:
            self.child_wall = spec.budget_seconds * self.limits.wall_factor + 1.0
        self.exited = False
        self.wait_status: int | None = None
        self.job_cpu = 0.0
        self.call_in_job_from: float | None = None  # J's CPU seconds when it began the call it runs itself
        self.deadline = time.monotonic() + self.limits.wall_seconds + GRACE_SECONDS

    @property
    def result_overflow(self) -> bool:
        return len(self.result) > self.spec.result_cap

    def run(self) -> int:
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        poller.register(self.control_r, select.POLLIN)
        control_open = True
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._unresponsive()
            for fd, _event in poller.poll(remaining * 1000):
                if fd == self.pidfd:
                    self.exited = True
            # After an exit too: everything J wrote is in the pipe by now.
            if control_open and not self._read_control():
                # Every write end is closed (J closes its fds early in its exit): the pipe
                # would poll as hung up until J is gone, so only J's exit is waited for now.
                poller.unregister(self.control_r)
                control_open = False
            finished = self._apply_frames()
            if finished is not None:
                return finished
            if self.exited:
                return self._died()

    def _read_control(self) -> bool:
        """Append what J has written to ``self.control``; False once the pipe is at its end."""
        while True:
            try:
                chunk = os.read(self.control_r, 1 << 20)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.control += chunk

    def _apply_frames(self) -> int | None:
        """Act on every complete frame; the next index once this J is done with."""
        while len(self.control) >= CONTROL.size:
            kind, index, wait_status, flags, cpu, size = CONTROL.unpack_from(self.control)
            if size > _MAX_PAYLOAD:
                return self._protocol_error()
            if len(self.control) < CONTROL.size + size:
                return None
            payload = bytes(self.control[CONTROL.size : CONTROL.size + size])
            del self.control[: CONTROL.size + size]
            current = self.exec_done and index == self.index
            in_job = self.call_in_job_from is not None  # then only the result may follow: J's exit ends the call
            if kind == RESULT_DATA and current:
                self.result += payload[: max(self.spec.result_cap + 1 - len(self.result), 0)]
            elif kind == STDIO_DATA and current and not in_job:
                self.stdio += payload[: max(self.limits.stdio_bytes - len(self.stdio), 0)]
            elif kind == EXEC_OK and not self.exec_done:
                self.exec_done = True
                self.deadline = time.monotonic() + self.child_wall + GRACE_SECONDS
            elif kind == EXEC_FAILED and not self.exec_done:
                failure = parse_child_message(payload)
                if failure is None or failure["s"] == "ok":
                    failure = {"s": "crashed", "t": "ProtocolError", "m": "unreadable report from the job process"}
                return self._fail_rest(failure["s"], failure["t"], failure["m"], 0.0)
            elif kind == CALL_IN_JOB and current and not in_job and index == self.total - 1 and cpu >= 0:
                self.call_in_job_from = cpu
                self.deadline = time.monotonic() + self.child_wall  # the call's own watchdog: no grace
            elif kind == CALL_DONE and current and not in_job and cpu >= 0:
                if self.spec.mode == "run":
                    self.emit(index, self._call_verdict(wait_status, flags, cpu))
                else:
                    self.emit(index, self._generate_verdict(wait_status, flags, cpu))
                self.index += 1
                self.result.clear()
                self.stdio.clear()
                self.deadline = time.monotonic() + self.child_wall + GRACE_SECONDS
                if self.index >= self.total:
                    return self.index
            elif kind == RESTART and current and not in_job and self.index > self.spec.first:
                # Only after a call of this J finished: a program that forges a RESTART from
                # its top level would otherwise make the worker start job processes forever.
                return self.index
            else:
                return self._protocol_error()
        return None

    def _protocol_error(self) -> int:
        self._kill_job()
        return self._fail_current("crashed", "ProtocolError", "the job process sent an invalid frame")

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
                    "error_message": f"result message over {self.spec.result_cap} bytes"}
        message = parse_child_message(self.result)
        if message is None or not (os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0):
            return {**verdict, "error_type": "Crashed", "error_message": _describe_exit(wait_status, message)}
        if message["s"] != "ok":
            return {**verdict, "status": message["s"], "error_type": message["t"], "error_message": message["m"]}
        if limits.check_size:
            reason = json_bytes_violation(len(self.result)) or json_shape_violation(message["v"])
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
            if status == "ok" and self.limits.check_size and (
                    json_bytes_violation(len(line)) or json_shape_violation(message["v"])):
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

    def _call_in_job_ended(self, began: float, flags: int) -> int:
        """The verdict of the call J ran itself, from J's exit and its CPU time since ``began``."""
        # The processes the call left were orphaned to W (J exits after the call): kill and
        # reap them first, so that their CPU counts too, as J counts its children's.
        self.worker._kill_descendants()
        orphans = max(harness.children_cpu_seconds() - self.reaped_before - self.job_cpu, 0.0)
        cpu = max(self.job_cpu - began, 0.0) + orphans
        self.emit(self.index, self._call_verdict(self.wait_status or 0, flags, cpu))
        return self.index + 1

    def _died(self) -> int:
        self.reap()
        if self.call_in_job_from is not None:
            return self._call_in_job_ended(self.call_in_job_from, 0)
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
        if self.call_in_job_from is not None:
            return self._call_in_job_ended(self.call_in_job_from, FLAG_WATCHDOG)
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
    clock, which rusage can trail by up to ~20% on a busy virtual machine, so the signal is
    the more exact witness.
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
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))]
    return paths


def _pipe() -> tuple[int, int]:
    """(read end, write end) of a pipe whose write end (J's) sits at a high fd, out of the way
    of the fds user code plays with; W's read end is non-blocking."""
    read_end, write_end = os.pipe()
    high = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
    os.close(write_end)
    os.set_blocking(read_end, False)
    return read_end, high


def _remove_as_root(path: str) -> None:
    """Last resort for trees too deep for path-based removal: coreutils' rm works by fd."""
    import subprocess  # rarely needed; kept out of the worker's preloaded (forked) memory

    subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=False,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

