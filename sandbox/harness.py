"""The untrusted side: the job process (J) that runs a program once, and each call's child (C).

Both are forks of a worker (see ``sandbox.worker``). J confines itself (session, rlimits,
unprivileged uid, parent-death signal, no_new_privs, Landlock, child subreaper), executes the
program once, then forks one C per call. Each C gets fresh pipes for its result and (when
captured) its stdout/stderr; J relays what arrives on them to the worker as framed chunks on
its control pipe, followed by the call's exit status and CPU time, so one call's output can
never be mistaken for another's. C narrows the confinement to its own temp dir, runs the
entry point, checks and encodes the value, and writes one result message.

J runs the last call of a job itself, which saves a fork (a one-call job costs one fork, not
two), when the call cannot tell J from a child (``_can_run_last_call``): J takes on the
child's confinement and limits, sends the result message on its control pipe and exits, and
the worker turns J's exit status and its CPU time since the call began into the verdict, as J
does for a child. Nothing of another call can be in J: every earlier call ran in a child.

Untrusted code runs in these processes too, so everything the harness needs after user code
has run is bound before it runs: the os functions (``from os import ...``), the C JSON
encoder and numpy types (``sandbox.values``), the result fd number, and a snapshot of the
builtins that C restores before checking a value. Casual monkeypatching (``json.dumps = ...``,
``builtins.len = ...``, replacing ``sys.stdout``, closing fds 0-2) therefore cannot forge or
break a result; a deliberately malicious function can at most misreport its own value, which
the worker validates (message schema, size cap, item counts and string lengths) and which
concerns that call alone.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import linecache
import math
import resource
import select
import signal
import struct
import sys
from dataclasses import dataclass
from os import (
    O_RDWR,
    O_WRONLY,
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
    chmod,
    kill,
    killpg,
    listdir,
    lstat,
    mkdir,
    open as os_open,
    pidfd_open,
    pipe,
    read,
    scandir,
    set_blocking,
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

import numpy  # noqa: E402  (preloaded above; bound here to seed it once per worker)
import random  # noqa: E402

#: Frames J sends to the worker: kind, call index, wait status, flags, CPU seconds, payload size.
#: CALL_IN_JOB: J runs this (last) call itself; its CPU seconds are J's so far.
CONTROL = struct.Struct("<BiiBdI")
EXEC_OK, EXEC_FAILED, RESULT_DATA, STDIO_DATA, CALL_DONE, RESTART, CALL_IN_JOB = 1, 2, 3, 4, 5, 6, 7
FLAG_WATCHDOG = 1
#: Where the result pipe sits in a child: far above the fds user code plays with. J's own fd
#: limit stays just above it, so the child can put it there before lowering its own.
RESULT_FD = 1010
JOB_FD_LIMIT = 1024
_CHUNK = 1 << 16

PROGRAM_FILENAME = "<codeio>"
CALLDIR = "call"  # each child's temp dir, inside the worker's
_PROBE_ITEMS = 4096
EXIT_SENT, EXIT_NOT_SENT, EXIT_SETUP_FAILED = 0, 3, 4

_random_state_after_program: list[Any] = [None]
# Built once in the worker (``prepare_worker``), so that a job process J, every page of whose
# memory it writes to is copied from the worker, does less than it would building them.
_unix_socket_filter: list[Any] = [None]  # the seccomp program of ``isolation.deny_unix_sockets``
_sandbox_modules: list[Any] = [(), -1]  # the sandbox's entries of sys.modules, and its size then
_restore_random = random.setstate
_restore_builtins = builtins.__dict__.update
_builtins_snapshot = dict(builtins.__dict__)
_pthread_sigmask = signal.pthread_sigmask
_sigpending = signal.sigpending
_sigtimedwait = signal.sigtimedwait
_set_signal = signal.signal
_setitimer = signal.setitimer
_setrlimit = resource.setrlimit
_getrusage = resource.getrusage
_poll = select.poll
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
    result_cap: int  # bytes of a child's result stream J relays (one more reveals an overflow)
    hash_seed: int
    worker_pid: int
    workdir: str
    uid: int | None  # None: do not change user (the pool is not root)
    unique_uid: bool  # the uid is this worker's alone, so kill(-1) reaches exactly our processes
    landlock_abi: int
    readable: tuple[str, ...]  # where J and C may read (``isolation.readable_paths``), with Landlock
    deny_network: bool
    keep_paths: tuple[str, ...]  # sys.path entries of the sandbox package, hidden from user code
    control_fd: int
    deny_unix_sockets: bool = False  # seccomp: no socket(AF_UNIX) (socket files are outside every namespace)


def prepare_worker(hash_seed: int) -> None:
    """Once per worker: seed numpy's global generator (every fork inherits it), and fill the
    lazy caches the children use (pympler's type table, the encoder): a cache filled in a
    child is thrown away with it, so each call would pay again."""
    numpy.random.seed(hash_seed & 0xFFFFFFFF)
    sample = {"ints": [1, -(2**70)], "floats": (0.5, float("nan")), "text": "é", "none": None, "flag": True,
              "array": numpy.arange(3), "scalar": numpy.float64(1.0), "nested": {"k": [[1, 2], (3,)]}}
    for limits in (Limits(), Limits(check_size=False)):
        _value_message(sample, limits)
        _value_message({1, 2}, limits)
    _failure_message(ValueError("warm-up"))
    _unix_socket_filter[0] = isolation.unix_socket_filter()
    _sandbox_modules[:] = [_own_modules(), len(sys.modules)]


def _own_modules() -> tuple[str, ...]:
    return tuple(m for m in sys.modules if m == "sandbox" or m.startswith("sandbox."))


def run_job(spec: JobSpec) -> NoReturn:
    """J's whole life: confine, execute the program once, serve the calls, clean up, exit."""
    status = EXIT_SETUP_FAILED
    try:
        _confine_job_process(spec)
        status = EXIT_NOT_SENT
        entry = _execute_program(spec)
        if entry is not None and spec.mode == "run":
            _serve_calls(spec, entry)
        elif entry is not None:
            _serve_generate(spec, entry)
        _sweep(spec)
        status = EXIT_SENT
    finally:
        _exit(status)


def _confine_job_process(spec: JobSpec) -> None:
    setsid()
    isolation.set_process_name("sandbox-job")
    null = os_open(devnull, O_RDWR)
    for fd in (0, 1, 2):  # the program's top level prints nowhere
        dup2(null, fd)
    _close_all_but(0, 1, 2, spec.control_fd)
    limits = spec.limits
    for rlimit, value in (
        (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
        (resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes)),
        (resource.RLIMIT_NOFILE, (limits.open_files, JOB_FD_LIMIT)),  # J raises its soft limit later
        (resource.RLIMIT_NPROC, (limits.processes, limits.processes)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),  # no POSIX message queue: state no fork would reset
    ):
        _setrlimit(rlimit, value)
    # RLIMIT_AS bounds each process, not a call's tree of them: should a call's processes
    # together exhaust the machine's memory, the kernel's OOM killer takes them first, not the
    # pipeline, the Prefect server or another program (raising one's own score needs no
    # privilege; the call's processes inherit it).
    try:
        fd = os_open("/proc/self/oom_score_adj", O_WRONLY)
        try:
            write(fd, b"1000")
        finally:
            close(fd)
    except OSError:
        pass
    chdir(spec.workdir)
    if spec.uid is not None:
        isolation.drop_privileges(spec.uid)
    isolation.set_parent_death_signal(signal.SIGKILL)
    if getppid() != spec.worker_pid:  # the worker died before the death signal was armed
        _exit(EXIT_SETUP_FAILED)
    isolation.set_no_new_privs()
    if spec.deny_unix_sockets:
        isolation.deny_unix_sockets(_unix_socket_filter[0])  # the worker checked it can (its isolation report)
    if spec.landlock_abi:
        ruleset = isolation.landlock_ruleset(spec.landlock_abi, spec.workdir, spec.readable, spec.deny_network)
        isolation.enforce_ruleset(ruleset)
        close(ruleset)
    isolation.set_child_subreaper()
    _pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
    _set_signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises instead of killing
    environ["HOME"] = environ["TMPDIR"] = spec.workdir
    sys.path[:] = [p for p in sys.path if p not in spec.keep_paths]
    # The worker's list, unless it imported modules since (reading every key of sys.modules
    # would copy the pages of all of them: a tenth of a one-call job's page faults).
    own, size = _sandbox_modules
    for name in own if size == len(sys.modules) else _own_modules():
        sys.modules.pop(name, None)


def _execute_program(spec: JobSpec) -> Callable[..., Any] | None:
    """Compile and run the program under the CPU limit; the entry point, or None if it failed.

    ``random`` and ``numpy.random`` start from the hash seed (numpy's global state was seeded
    by the worker and is inherited by fork; ``random`` reseeds itself at fork, so it is seeded
    again here), so a program that seeds them itself keeps its own seed, and every call starts
    from the state the program left (the child restores ``random``'s, which fork reseeds).
    """
    random.seed(spec.hash_seed)
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
        _send(spec, EXEC_FAILED, -1, payload=_failure_message(exc))
        return None
    _setitimer(signal.ITIMER_PROF, 0)
    _random_state_after_program[0] = random.getstate()
    gc.freeze()  # the program's objects, like the worker's, stay out of the children's collections
    _setrlimit(resource.RLIMIT_NOFILE, (JOB_FD_LIMIT, JOB_FD_LIMIT))  # room for RESULT_FD
    _sweep(spec)  # anything the program's top level started
    _send(spec, EXEC_OK, -1)
    return entry


def _serve_calls(spec: JobSpec, entry: Callable[..., Any]) -> None:
    """One fresh child per call, in order, each starting from an empty temp dir; the last
    call J runs itself when it can (no call comes after it to see what it leaves)."""
    ruleset = _prepare_children(spec)
    last = len(spec.calls) - 1
    for index in range(spec.first, last + 1):
        kwargs = spec.calls[index]
        if index == last and _can_run_last_call(spec):
            _call_in_job(spec, index, ruleset, entry, kwargs)  # J exits there
        _run_child(spec, index, ruleset, spec.limits.cpu_seconds, spec.limits.wall_seconds,
                   lambda: _one_value(spec, entry, kwargs))
        try:
            _empty_calldir()
        except OSError:  # the worker wipes the dir as root and starts a new J for the rest
            _send(spec, RESTART, index + 1)
            return


def _serve_generate(spec: JobSpec, entry: Callable[..., Any]) -> None:
    ruleset = _prepare_children(spec)
    wall = spec.budget_seconds * spec.limits.wall_factor + 1.0
    _run_child(spec, 0, ruleset, spec.budget_seconds, wall, lambda: _many_values(spec, entry))


def _prepare_children(spec: JobSpec) -> int:
    """Once per job, what every child of it shares, so each fork has less to do: the temp dir
    (J's cwd, emptied after each call), the environment, the signal dispositions (the
    program's top level may have changed them), and the Landlock ruleset that confines writes
    to the temp dir and reads to it and the allow-list, which each child enforces on itself.
    Returns the ruleset fd, or -1. Interval timers the top level armed are disarmed: a fork
    does not inherit them, and J may run the last call itself."""
    mkdir(CALLDIR, 0o700)
    chdir(CALLDIR)
    environ["HOME"] = environ["TMPDIR"] = spec.workdir + "/" + CALLDIR  # tempfile reads TMPDIR on first use
    for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL):
        _setitimer(timer, 0)
    for signum, handler in (
        (signal.SIGPROF, signal.SIG_DFL),
        (signal.SIGXCPU, signal.SIG_DFL),
        (signal.SIGCHLD, signal.SIG_DFL),
        (signal.SIGXFSZ, signal.SIG_IGN),
    ):
        _set_signal(signum, handler)
    if not spec.landlock_abi:
        return -1
    return isolation.landlock_ruleset(spec.landlock_abi, ".", spec.readable, spec.deny_network)


def _can_run_last_call(spec: JobSpec) -> bool:
    """Whether J may run the job's last call itself, the call unable to tell J from a child.

    A child starts from J's memory, the program's state, which J keeps; what matters is the
    process state a fork does not carry over. Other threads and pending signals (but
    SIGCHLD, discarded when unmasked as its action is the default) send the call to a child;
    interval timers are disarmed by ``_prepare_children`` and the subreaper role is dropped
    by ``_call_in_job``. The rest is out of reach without the program's own ctypes or fork
    plumbing (POSIX timers, record or memory locks, at-fork hooks it registers). Two more
    conditions: Landlock scopes signals, so that signalling its parent (the worker, not J)
    fails for the call as it does from a child, and stdio is not captured, which only a free
    J relays.
    """
    if spec.limits.stdio_bytes or spec.landlock_abi < 6:
        return False
    try:
        single_thread = len(listdir("/proc/self/task")) == 1
    except OSError:
        return False
    return single_thread and _sigpending() <= _SIGCHLD


def _call_in_job(spec: JobSpec, index: int, ruleset: int, entry: Callable[..., Any], kwargs: dict) -> NoReturn:
    """J runs call ``index`` itself, set up as ``_child`` sets up C, then exits. The result
    message goes on the control pipe; the worker takes J's exit status, and J's CPU time since
    the CALL_IN_JOB frame, as the call's, and runs the call's wall-clock watchdog. J already
    leads its own session and has its parent-death signal; ``random`` needs no restoring (only
    a fork reseeds it). Nothing remains to clean up after the call in J: J exits, and the
    worker kills whatever the call left, as it does after any J."""
    status = EXIT_SETUP_FAILED
    try:
        isolation.set_process_name("sandbox-call")
        _pthread_sigmask(signal.SIG_SETMASK, ())
        isolation.set_child_subreaper(False)  # the call's orphans go to the worker, as a child's go to J
        _close_all_but(0, 1, 2, spec.control_fd, ruleset)
        if ruleset >= 0:
            isolation.enforce_ruleset(ruleset)
            close(ruleset)
        limits = spec.limits
        _setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        own, reaped = _getrusage(resource.RUSAGE_SELF), _getrusage(resource.RUSAGE_CHILDREN)
        _limit_cpu(limits.cpu_seconds, own.ru_utime + own.ru_stime)
        # What wait4 will report for J counts J's reaped children too: the worker subtracts this.
        _send(spec, CALL_IN_JOB, index, cpu=own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime)
        status = EXIT_NOT_SENT
        _setitimer(signal.ITIMER_PROF, limits.cpu_seconds)
        message = _call_message(spec, entry, kwargs, getpid())
        for start in range(0, len(message), _CHUNK):
            _send(spec, RESULT_DATA, index, payload=message[start : start + _CHUNK])
        status = EXIT_SENT
    finally:
        _exit(status)


def _empty_calldir() -> None:
    """Remove whatever the last call left in the temp dir (J's cwd), whatever its modes."""
    if lstat(".").st_mode & 0o700 != 0o700:
        chmod(".", 0o700)
    with scandir(".") as entries:
        leftovers = [entry.name for entry in entries]
    for name in leftovers:
        isolation.remove_tree(name)


def _run_child(spec: JobSpec, index: int, ruleset: int, cpu_seconds: float, wall_seconds: float,
               body: Callable[[], None]) -> None:
    """Fork C for ``body``, relay its output while it runs, kill what it leaves, report."""
    result_r, result_w = pipe()
    stdio_r, stdio_w = pipe() if spec.limits.stdio_bytes else (-1, -1)
    reaped_before = children_cpu_seconds()
    pid = fork()
    if pid == 0:
        _child(spec, ruleset, cpu_seconds, result_w, stdio_w, body)
    close(result_w)
    if stdio_w >= 0:
        close(stdio_w)
    relay = _Relay(spec, index, result_r, stdio_r)
    wait_status, cpu, flags = relay.until_exit(pid, wall_seconds)
    _sweep(spec)  # after this no process can hold the pipes' write ends: drain them to the end
    # The call's CPU is its whole tree's: C and what C waited for (in C's rusage), and the
    # processes it left, which J reaped as their subreaper. Helpers nobody waits for would
    # otherwise compute beyond the limit unseen, and the verdict would depend on the load.
    cpu = max(cpu, children_cpu_seconds() - reaped_before)
    relay.drain()
    _send(spec, CALL_DONE, index, wait_status, flags, cpu)


class _Relay:
    """Forwards a child's result and stdio pipes to the worker as framed chunks, capped."""

    def __init__(self, spec: JobSpec, index: int, result_r: int, stdio_r: int) -> None:
        self.spec, self.index = spec, index
        self.left = {result_r: spec.result_cap + 1}  # one byte past the cap reveals an overflow
        self.kind = {result_r: RESULT_DATA}
        if stdio_r >= 0:
            self.left[stdio_r] = spec.limits.stdio_bytes
            self.kind[stdio_r] = STDIO_DATA

    def until_exit(self, pid: int, wall_seconds: float) -> tuple[int, float, int]:
        """Relay until C exits; (wait status, CPU seconds, flags). The watchdog kills sleepers."""
        pidfd = pidfd_open(pid)
        poller = _poll()
        for fd in (pidfd, *self.left):
            poller.register(fd, select.POLLIN)
        deadline = monotonic() + wall_seconds
        flags = 0
        try:
            while True:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    flags = FLAG_WATCHDOG
                    for killer in (killpg, kill):
                        try:
                            killer(pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                    break
                ready = poller.poll(remaining * 1000)
                if any(fd == pidfd for fd, _ in ready):
                    break
                for fd, _event in ready:
                    if not self._forward(fd):
                        poller.unregister(fd)
        finally:
            close(pidfd)
        _pid, wait_status, usage = wait4(pid, 0)
        return wait_status, usage.ru_utime + usage.ru_stime, flags

    def drain(self) -> None:
        for fd in list(self.left):
            set_blocking(fd, False)
            try:
                while self._forward(fd):
                    pass
            except BlockingIOError:
                pass
            close(fd)

    def _forward(self, fd: int) -> bool:
        """Move one chunk from ``fd`` to the worker; False at end of stream."""
        chunk = read(fd, _CHUNK)
        if not chunk:
            return False
        room = self.left[fd]
        if room > 0:
            self.left[fd] = room - len(chunk)
            _send(self.spec, self.kind[fd], self.index, payload=chunk[:room])
        return True


def _child(spec: JobSpec, ruleset: int, cpu_seconds: float, result_w: int, stdio_w: int,
           body: Callable[[], None]) -> NoReturn:
    """C: its own session, fds 0-2 on /dev/null (or the stdio pipe), only the result pipe kept
    (at RESULT_FD), writes confined to the temp dir, CPU and fd limits; then ``body``."""
    status = EXIT_SETUP_FAILED
    try:
        setsid()
        isolation.set_process_name("sandbox-call")
        isolation.set_parent_death_signal(signal.SIGKILL)
        _pthread_sigmask(signal.SIG_SETMASK, ())
        dup2(result_w, RESULT_FD)
        if stdio_w >= 0:
            dup2(stdio_w, 1)
            dup2(stdio_w, 2)
        _close_all_but(0, 1, 2, RESULT_FD, ruleset)
        if ruleset >= 0:
            isolation.enforce_ruleset(ruleset)
            close(ruleset)
        _setrlimit(resource.RLIMIT_NOFILE, (spec.limits.open_files, spec.limits.open_files))
        _limit_cpu(cpu_seconds, 0.0)
        _restore_random(_random_state_after_program[0])  # undo the fork-time reseed of `random`
        status = EXIT_NOT_SENT
        _setitimer(signal.ITIMER_PROF, cpu_seconds)
        body()
        status = EXIT_SENT
    finally:
        _exit(status)


def children_cpu_seconds() -> float:
    """CPU seconds of every descendant this process has reaped (itself or as their subreaper).
    Bound before any user code runs (``_getrusage``), so J's count cannot be patched; the
    worker uses it too."""
    usage = _getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _limit_cpu(cpu_seconds: float, used: float) -> None:
    """RLIMIT_CPU, the backstop for code that blocks SIGPROF: SIGXCPU at the next whole second
    past the limit, SIGKILL well past it (rusage can trail the kernel's timer clock by up to
    ~20%, and a SIGKILL must still read as over the limit). The rlimit counts the CPU time
    the process has ``used`` already, so both are shifted by it."""
    _setrlimit(resource.RLIMIT_CPU, (math.ceil(used + cpu_seconds), math.ceil(used + cpu_seconds * 1.25) + 1))


def _call_message(spec: JobSpec, entry: Callable[..., Any], kwargs: dict, me: int) -> bytes:
    """Call the entry point once and encode what came back: a value or a failure."""
    try:
        value = entry(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends are errors too
        if getpid() != me:  # a fork made by the user code came back here: it has nothing to say
            _exit(EXIT_NOT_SENT)
        _restore_builtins(_builtins_snapshot)
        return _failure_message(exc)
    if getpid() != me:
        _exit(EXIT_NOT_SENT)
    _restore_builtins(_builtins_snapshot)
    return _value_message(value, spec.limits)


def _one_value(spec: JobSpec, entry: Callable[..., Any], kwargs: dict) -> None:
    message = _call_message(spec, entry, kwargs, getpid())
    _flush_stdio(spec)
    _write_all(RESULT_FD, message)


def _many_values(spec: JobSpec, entry: Callable[..., Any]) -> None:
    """Generate: one line per call, ``{"s":"ok","v":..}`` or a failure, then an end line."""
    me = getpid()
    reported_failure = False
    for _ in range(spec.count):
        message = _call_message(spec, entry, {}, me)
        if not message.startswith(b'{"s":"ok"'):
            if reported_failure:  # only the first failure carries its details
                message = message[: message.index(b",")] + b"}"
            reported_failure = True
        _write_all(RESULT_FD, message + b"\n")
    _flush_stdio(spec)
    _write_all(RESULT_FD, b'{"s":"end"}\n')


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
    if not spec.limits.stdio_bytes:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the user may have closed or replaced it
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


def _send(spec: JobSpec, kind: int, index: int, wait_status: int = 0, flags: int = 0, cpu: float = 0.0,
          payload: bytes = b"") -> None:
    _write_all(spec.control_fd, CONTROL.pack(kind, index, wait_status, flags, cpu, len(payload)) + payload)


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
