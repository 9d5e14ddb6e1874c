"""Execution sandbox: runs untrusted Python functions, collects JSON results, compares them.

Process model (each level a fork of the one above, except the worker, which is started)::

    pool (P, the pipeline's process)
     └─ worker W  "sandbox-worker": one per core; `python -s -P -B` with a clean environment
        │   (PATH, PYTHONHASHSEED, TZ=UTC, LANG, *_NUM_THREADS=1); own network, mount and
        │   IPC namespaces (SysV IPC off in it); modules preloaded; trusted: it never runs user code
        └─ job process J  "sandbox-job": one per job; confines itself, then compiles and
           │   runs the program once, and runs the job's last call itself (below)
           └─ call child C  "sandbox-call": one per call but the last: entry(**call) in a
                  fresh fork of J

* P and W talk over two private pipes (length-prefixed JSON frames); stdout is never used.
  A different hash seed is served by other Ws (as many, started on first use) with that
  PYTHONHASHSEED, because a fork inherits its parent's seed. ``random`` and ``numpy.random`` start from the hash seed
  in every job, so the same seed reproduces the same draws and another seed changes them.
* As root, W's temp dir is a size-capped tmpfs (128 MiB) private to its mount namespace, and
  directories other users cannot enter (pyenv under /root) are covered by an empty tmpfs
  that only lets the interpreter's own files through.
* J takes the rlimits (address space, file size, open files, processes, no core files),
  then, when the pool runs as root, drops to its worker's own unprivileged uid
  (2**30 + the worker's pid, no supplementary groups), sets the parent-death signal,
  no_new_privs and a Landlock domain (reads only beneath the interpreter's installation, the
  shared libraries, time zone data, /proc and the worker's temp dir, the one place it may
  write; no TCP when the network is off; from Landlock ABI 6 no signals to processes outside
  the domain), and becomes a child subreaper. The worker derives the read allow-list once, at
  start (``isolation.readable_paths``); the program's top level runs under it too.
* C starts its own session, narrows Landlock to its own temp dir (its cwd, emptied after the
  call even if chmod-ed), keeps fds 0-2 on /dev/null (or a capped stdio pipe) and only its
  result pipe (at fd 1010), and gets the CPU limit twice: ITIMER_PROF at the limit (SIGPROF
  kills at once, even inside a C loop) and RLIMIT_CPU (SIGXCPU, then SIGKILL) for code that
  blocks SIGPROF. The verdict comes from CPU time (wait4) and those signals, never from the
  clock: over the limit is ``timeout``; the wall-clock watchdog (cpu * wall_factor + 1) only
  catches sleepers.
* J runs the job's last call itself instead of forking C for it, which saves a fork (a
  one-call job pays one, not two), when the call could not tell J from C: J has a single
  thread and no pending signal, Landlock scopes signals (ABI 6), stdio is not captured. J
  then sets itself up as C would (the same Landlock, fds, rlimits and CPU timers, no
  subreaper role, interval timers of the top level disarmed), runs the call and exits. J
  has run only this job's program, and every earlier call ran in a C, so the call sees no
  other call's state; W keeps the call's watchdog, and J's exit status and CPU time since
  the call began make its verdict.

Killing everything: J is a child subreaper, so every descendant of a call, grandchildren
that called setsid() or double-forked included, is reparented to J rather than to init.
After each call in a C, J checks whether it still has children; if so it calls
kill(-1, SIGKILL), which reaches every process of the worker's own uid (and only those: the
uid is unique to the worker, and Landlock's signal scope fences it further) in one pass of
the kernel's task list, so a fork bomb cannot outrun it; RLIMIT_NPROC caps the uid
meanwhile. Then J reaps. When J exits (after the call it ran itself, whose orphans go to W),
dies or hangs, W (a subreaper too) kills the uid the same way through a helper that takes on
the uid, and reaps. When W dies, J and C die by their parent-death signal and the pool kills
what is left of that uid. Without a uid of its own (not root, or the uid range is not
mapped) the subreaper kills its children found in /proc until none are left, and
``SandboxPool.isolation`` says what is missing.

Result channel: each child writes one message on its own result pipe; J relays it to W in
frames with the call's index, exit status and CPU time, so calls cannot mix (the call J runs
itself sends its message in such frames, and J's exit stands for the child's). W decodes
the message with its own ``json``, accepts only the exact message shapes, caps their size,
re-checks item counts and string lengths, and requires a clean exit after the message: an
exit code alone never means success. Threat model of the child side: ``sandbox.harness``.
The comparison (``outputs_match``) runs in the parent.

JSON conversion policy and the paper's size check: ``sandbox.values``.
"""

from typing import Any

from .compare import outputs_match
from .records import STATUSES, CallResult, GenerateResult, Isolation, Job, Limits
from .values import NotJSONError, canonical_json, size_violation, to_json_value


def __getattr__(name: str) -> Any:
    # The pool (threads, subprocess, logging) loads on first use, so the worker processes,
    # which import this package too, stay smaller and fork faster.
    if name in ("SandboxPool", "SandboxUnavailable", "WorkerLost"):
        from . import pool

        return getattr(pool, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")


__all__ = [
    "STATUSES",
    "CallResult",
    "GenerateResult",
    "Isolation",
    "Job",
    "Limits",
    "NotJSONError",
    "SandboxPool",
    "SandboxUnavailable",
    "WorkerLost",
    "canonical_json",
    "outputs_match",
    "size_violation",
    "to_json_value",
]
