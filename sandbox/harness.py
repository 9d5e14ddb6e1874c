"""The untrusted side: the job process (J) that runs a program once, and each call's child (C).

Both are forks of a worker (see ``sandbox.worker``). J confines itself (session, rlimits,
unprivileged uid, parent-death signal, no_new_privs, Landlock, child subreaper), executes the
program once, then forks one C per call and reports each call's exit status and CPU time to
the worker on a control pipe. C narrows the confinement to its own temp dir, runs the entry
point, checks and encodes the value, and writes one result message to the result pipe.

Untrusted code runs in this process too, so everything the harness needs after user code has
run is bound before it runs: the os functions (``from os import ...``), the C JSON encoder
and numpy types (``sandbox.values``), the result fd number, and a snapshot of the builtins
that C restores before checking a value. Casual monkeypatching (``json.dumps = ...``,
``builtins.len = ...``, replacing ``sys.stdout``, closing fds 0-2) therefore cannot forge or
break a result; a deliberately malicious function can at most misreport its own value, which
the worker validates (message schema, size cap, item counts and string lengths) and which
concerns that call alone.
"""

from __future__ import annotations

import builtins
import importlib
import linecache
import math
import resource
import signal
import struct
import sys
import tempfile
from dataclasses import dataclass
from os import (
    O_RDWR,
    WNOHANG,
    _exit,
    chdir,
    close,
    closerange,
    devnull,
    dup2,
    environ,
    fork,
    getpid,
    getppid,
    kill,
    killpg,
    mkdir,
    open as os_open,
    setsid,
    wait4,
    write,
)
from time import monotonic
from typing import Any, Callable, NoReturn

from . import isolation
from .records import ERROR_MESSAGE_CHARS, Limits
from .values import NotJSONError, OutputLimitError, convert_bounded, encode_canonical, size_violation

#: Imported once in every worker, so user code gets them without paying for the import.
PRELOADED_MODULES = (
    "math", "itertools", "collections", "heapq", "bisect", "functools", "re", "json", "string",
    "copy", "datetime", "random", "operator", "typing", "numpy", "numpy.random", "pympler.asizeof",
)
for _name in PRELOADED_MODULES:
    importlib.import_module(_name)

import numpy  # noqa: E402  (preloaded above; bound here for the per-call reseed)
import random  # noqa: E402

#: Control events J sends to the worker: kind, call index, wait status, flags, CPU seconds.
CONTROL = struct.Struct("<BiiBd")
EXEC_OK, EXEC_FAILED, CALL_DONE, RESTART = 1, 2, 3, 4
FLAG_WATCHDOG = 1

PROGRAM_FILENAME = "<codeio>"
_PROBE_ITEMS = 4096
EXIT_SENT, EXIT_NOT_SENT, EXIT_SETUP_FAILED = 0, 3, 4

_restore_builtins = builtins.__dict__.update
_builtins_snapshot = dict(builtins.__dict__)
_pthread_sigmask = signal.pthread_sigmask
_sigtimedwait = signal.sigtimedwait
_set_signal = signal.signal
_setitimer = signal.setitimer
_setrlimit = resource.setrlimit
_SIGCHLD = {signal.SIGCHLD}
# Every fd J or C can hold is below the worker's own hard limit (J only ever lowers it).
_hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
_MAX_FD = _hard_nofile if 0 < _hard_nofile < (1 << 20) else 1 << 20


@dataclass(frozen=True)
class JobSpec:
    """Everything J needs, handed over by fork (nothing is serialised)."""

    mode: str  # "run" or "generate"
    code: str
    entry: str
    calls: list[dict]
    first: int
    count: int  # generate: how many calls
    budget_seconds: float  # generate: total CPU
    limits: Limits
    hash_seed: int
    worker_pid: int
    workdir: str
    uid: int | None  # None: do not change user (the pool is not root)
    unique_uid: bool  # the uid is this worker's alone, so kill(-1) reaches exactly our processes
    landlock_abi: int
    deny_network: bool
    keep_paths: tuple[str, ...]  # sys.path entries of the sandbox package, hidden from user code
    control_fd: int
    result_fd: int
    stdio_fd: int  # -1: discard stdout/stderr


def run_job(spec: JobSpec) -> NoReturn:
    """J's whole life: confine, execute the program once, serve the calls, clean up, exit."""
    status = EXIT_SETUP_FAILED
    try:
        _confine_job_process(spec)
        status = EXIT_NOT_SENT
        entry = _execute_program(spec)
        if entry is not None:
            if spec.mode == "run":
                for index in range(spec.first, len(spec.calls)):
                    if not _serve_call(spec, index, entry, spec.calls[index]):
                        _send(spec, RESTART, index + 1, 0, 0, 0.0)
                        break
            else:
                _serve_generate(spec, entry)
        _sweep(spec)
        status = EXIT_SENT
    finally:
        _exit(status)


def _confine_job_process(spec: JobSpec) -> None:
    setsid()
    null = os_open(devnull, O_RDWR)
    for fd in (0, 1, 2):  # the program's top level prints nowhere
        dup2(null, fd)
    _close_all_but(0, 1, 2, spec.control_fd, spec.result_fd, spec.stdio_fd)
    limits = spec.limits
    for rlimit, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        _setrlimit(rlimit, (value, value))
    chdir(spec.workdir)
    if spec.uid is not None:
        isolation.drop_privileges(spec.uid)
    isolation.set_parent_death_signal(signal.SIGKILL)
    if getppid() != spec.worker_pid:  # the worker died before the death signal was armed
        _exit(EXIT_SETUP_FAILED)
    isolation.set_no_new_privs()
    if spec.landlock_abi:
        problem = isolation.confine_writes(spec.landlock_abi, spec.workdir, spec.deny_network)
        if problem:
            raise OSError(problem)
    isolation.set_child_subreaper()
    _pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
    _set_signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises instead of killing
    environ["HOME"] = environ["TMPDIR"] = spec.workdir
    tempfile.tempdir = spec.workdir
    sys.path[:] = [p for p in sys.path if p not in spec.keep_paths]
    for name in [m for m in sys.modules if m == "sandbox" or m.startswith("sandbox.")]:
        del sys.modules[name]


def _execute_program(spec: JobSpec) -> Callable[..., Any] | None:
    """Compile and run the program under the CPU limit; the entry point, or None if it failed."""
    _set_signal(signal.SIGPROF, signal.SIG_DFL)
    _setitimer(signal.ITIMER_PROF, spec.limits.cpu_seconds)
    try:
        program = compile(spec.code, PROGRAM_FILENAME, "exec", dont_inherit=True)
        linecache.cache[PROGRAM_FILENAME] = (len(spec.code), None, spec.code.splitlines(True), PROGRAM_FILENAME)
        namespace: dict[str, Any] = {"__name__": "__codeio__", "__builtins__": builtins}
        exec(program, namespace)
        entry = namespace.get(spec.entry)
        if entry is None:
            raise NameError(f"entry point {spec.entry!r} is not defined")
        if not callable(entry):
            raise TypeError(f"entry point {spec.entry!r} is not callable")
    except BaseException as exc:  # noqa: BLE001 - every failure of the program is a verdict
        _setitimer(signal.ITIMER_PROF, 0)
        _write_all(spec.result_fd, _failure_message(exc))
        _send(spec, EXEC_FAILED, -1, 0, 0, 0.0)
        return None
    _setitimer(signal.ITIMER_PROF, 0)
    _sweep(spec)  # anything the program's top level started
    _send(spec, EXEC_OK, -1, 0, 0, 0.0)
    return entry


def _serve_call(spec: JobSpec, index: int, entry: Callable[..., Any], kwargs: dict) -> bool:
    """Run one call in a fresh child; False when its temp dir could not be removed (the
    worker then wipes it as root and starts a new J for the remaining calls)."""
    calldir = spec.workdir + "/call"
    mkdir(calldir, 0o700)
    pid = fork()
    if pid == 0:
        _child(spec, calldir, spec.limits.cpu_seconds, lambda: _one_value(spec, entry, kwargs))
    wait_status, cpu, flags = _await(pid, spec.limits.wall_seconds)
    _sweep(spec)
    _send(spec, CALL_DONE, index, wait_status, flags, cpu)
    try:
        isolation.remove_tree(calldir)
    except OSError:
        return False
    return True


def _serve_generate(spec: JobSpec, entry: Callable[..., Any]) -> None:
    calldir = spec.workdir + "/call"
    mkdir(calldir, 0o700)
    pid = fork()
    if pid == 0:
        _child(spec, calldir, spec.budget_seconds, lambda: _many_values(spec, entry))
    wall = spec.budget_seconds * spec.limits.wall_factor + 1.0
    wait_status, cpu, flags = _await(pid, wall)
    _sweep(spec)
    _send(spec, CALL_DONE, 0, wait_status, flags, cpu)


def _child(spec: JobSpec, calldir: str, cpu_seconds: float, body: Callable[[], None]) -> NoReturn:
    """C: confine to ``calldir`` and the CPU budget, then run ``body``; never returns."""
    status = EXIT_SETUP_FAILED
    try:
        setsid()
        isolation.set_parent_death_signal(signal.SIGKILL)
        _pthread_sigmask(signal.SIG_SETMASK, ())
        for signum, handler in (
            (signal.SIGPROF, signal.SIG_DFL),
            (signal.SIGXCPU, signal.SIG_DFL),
            (signal.SIGCHLD, signal.SIG_DFL),
            (signal.SIGXFSZ, signal.SIG_IGN),
        ):
            _set_signal(signum, handler)
        null = os_open(devnull, O_RDWR)
        dup2(null, 0)
        out = spec.stdio_fd if spec.stdio_fd >= 0 else null
        dup2(out, 1)
        dup2(out, 2)
        _close_all_but(0, 1, 2, spec.result_fd)
        chdir(calldir)
        environ["HOME"] = environ["TMPDIR"] = calldir
        tempfile.tempdir = calldir
        if spec.landlock_abi:
            problem = isolation.confine_writes(spec.landlock_abi, calldir, spec.deny_network)
            if problem:
                raise OSError(problem)
        # Backstops for code that blocks SIGPROF: SIGXCPU at the next whole second, SIGKILL
        # well past the limit (rusage runs a few percent behind the kernel's timer clock, and
        # a SIGKILL must still read as over the limit).
        _setrlimit(resource.RLIMIT_CPU, (math.ceil(cpu_seconds), math.ceil(cpu_seconds * 1.25) + 1))
        random.seed(spec.hash_seed)
        numpy.random.seed(spec.hash_seed & 0xFFFFFFFF)
        status = EXIT_NOT_SENT
        _setitimer(signal.ITIMER_PROF, cpu_seconds)
        body()
        status = EXIT_SENT
    finally:
        _exit(status)


def _one_value(spec: JobSpec, entry: Callable[..., Any], kwargs: dict) -> None:
    me = getpid()
    try:
        value = entry(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends are errors too
        if getpid() != me:  # a fork made by the user code came back here: it has nothing to say
            _exit(EXIT_NOT_SENT)
        _restore_builtins(_builtins_snapshot)
        message = _failure_message(exc)
    else:
        if getpid() != me:
            _exit(EXIT_NOT_SENT)
        _restore_builtins(_builtins_snapshot)
        message = _value_message(value, spec.limits)
    _flush_stdio(spec)
    _write_all(spec.result_fd, message)


def _many_values(spec: JobSpec, entry: Callable[..., Any]) -> None:
    """Generate: one line per call, ``{"s":"ok","v":..}`` or a failure, then an end line."""
    me = getpid()
    reported_failure = False
    for _ in range(spec.count):
        try:
            value = entry()
        except BaseException as exc:  # noqa: BLE001
            if getpid() != me:
                _exit(EXIT_NOT_SENT)
            _restore_builtins(_builtins_snapshot)
            message = _failure_message(exc)
        else:
            if getpid() != me:
                _exit(EXIT_NOT_SENT)
            _restore_builtins(_builtins_snapshot)
            message = _value_message(value, spec.limits)
        if not message.startswith(b'{"s":"ok"'):
            if reported_failure:  # only the first failure carries its details
                message = message[: message.index(b",")] + b"}"
            reported_failure = True
        _write_all(spec.result_fd, message + b"\n")
    _flush_stdio(spec)
    _write_all(spec.result_fd, b'{"s":"end"}\n')


def _value_message(value: Any, limits: Limits) -> bytes:
    """The result message for a returned value: checked, converted, encoded and capped."""
    try:
        if limits.check_size:
            reason = size_violation(value)
            if reason is not None:
                try:  # a value that is not JSON at all says so, whatever its size
                    convert_bounded(value, _PROBE_ITEMS)
                except OutputLimitError:
                    pass
                return _message("size_limit", "SizeLimit", reason)
        converted = convert_bounded(value, limits.output_bytes)
        text = encode_canonical(converted).encode("utf-8")
    except NotJSONError as exc:
        return _message("not_json", "NotJSONError", str(exc))
    except OutputLimitError as exc:
        return _message("output_limit", "OutputLimit", str(exc))
    except (TypeError, ValueError) as exc:  # e.g. an int with more digits than str() allows
        return _message("not_json", type(exc).__name__, str(exc))
    except MemoryError:
        return _message("memory", "MemoryError", "out of memory while encoding the value")
    if len(text) > limits.output_bytes:
        return _message("output_limit", "OutputLimit", f"{len(text)} bytes of JSON (limit {limits.output_bytes})")
    return b'{"s":"ok","v":' + text + b"}"


def _failure_message(exc: BaseException) -> bytes:
    status = "memory" if isinstance(exc, MemoryError) else "error"
    try:
        name = type(exc).__name__
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        name, text = "Exception", "<unprintable exception>"
    return _message(status, name, text)


def _message(status: str, error_type: str, error_message: str) -> bytes:
    """``{"s":status,"t":type,"m":message}``, status first so a reader can cut after it."""
    parts = [b'{"s":"', status.encode("ascii"), b'"']
    for key, text, limit in ((b"t", error_type, 100), (b"m", error_message, ERROR_MESSAGE_CHARS)):
        clean = text[:limit].encode("utf-8", "replace").decode("utf-8")
        parts += [b',"', key, b'":', encode_canonical(clean).encode("utf-8")]
    parts.append(b"}")
    return b"".join(parts)


def _flush_stdio(spec: JobSpec) -> None:
    if spec.stdio_fd < 0:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the user may have closed or replaced it
            pass


def _await(pid: int, wall_seconds: float) -> tuple[int, float, int]:
    """Wait for C: (wait status, CPU seconds, flags); kill it when the watchdog expires."""
    deadline = monotonic() + wall_seconds
    flags = 0
    while True:
        done, wait_status, usage = wait4(pid, 0 if flags else WNOHANG)
        if done == pid:
            return wait_status, usage.ru_utime + usage.ru_stime, flags
        remaining = deadline - monotonic()
        if remaining <= 0:
            flags = FLAG_WATCHDOG
            _kill_group(pid)
            continue
        _sigtimedwait(_SIGCHLD, min(remaining, 0.25))


def _kill_group(pid: int) -> None:
    for killer in (killpg, kill):
        try:
            killer(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _sweep(spec: JobSpec) -> None:
    """Kill and reap every descendant of J (J is their subreaper, so none can escape it)."""
    deadline = monotonic() + 1.0
    while isolation.reap_children():
        if spec.unique_uid:
            try:
                kill(-1, signal.SIGKILL)  # every process of this worker's uid but J itself
            except ProcessLookupError:
                pass
        else:
            isolation.kill_children()
        if monotonic() > deadline:
            return  # the worker kills the whole uid / group when J exits
        _sigtimedwait(_SIGCHLD, 0.01)


def _send(spec: JobSpec, kind: int, index: int, wait_status: int, flags: int, cpu: float) -> None:
    _write_all(spec.control_fd, CONTROL.pack(kind, index, wait_status, flags, cpu))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[write(fd, view) :]


def _close_all_but(*keep: int) -> None:
    low = 0
    for fd in sorted({fd for fd in keep if fd >= 0}):
        if fd > low:
            closerange(low, fd)
        low = fd + 1
    closerange(low, _MAX_FD)

