"""Execution sandbox: runs untrusted Python functions, collects JSON results, compares them.

Process model (three levels, each a fork of the one above)::

    pool (P, your process)
     └─ worker W  (one per core; `python -s -P -B`, clean env, PYTHONHASHSEED fixed;
        │          own network namespace; modules preloaded; trusted: never runs user code)
        └─ job process J  (one per job: confines itself, then compiles and runs the program once)
           └─ call child C  (one per call: runs entry(**call) in a fresh fork of J)

* W talks to P over two private pipes (length-prefixed JSON frames; stdout is never used).
  A different hash seed is served by another W started with that PYTHONHASHSEED, because a
  fork inherits its parent's seed. ``random`` and ``numpy.random`` are seeded from the hash
  seed in every child, so the same seed reproduces the same draws and another seed changes
  them, which is how non-determinism shows up.
* J (and so C) drops to an unprivileged uid when the pool runs as root: uid = 2**30 + the
  worker's pid, a uid no other process uses. Before that J takes the rlimits (address space,
  file size, open files, processes per uid, no core files); after it J sets the parent-death
  signal, no_new_privs and a Landlock domain (writes only in the worker's temp dir; from
  Landlock ABI 6, no signals to processes outside the domain) and becomes a child subreaper.
* C starts its own session, narrows Landlock to its own temp dir (its cwd, removed after the
  call, even if chmod-ed), points fds 0-2 at /dev/null (or a capped stdio pipe), keeps only the
  result pipe (at a high fd number), and gets the CPU limit twice: ITIMER_PROF at the limit
  (SIGPROF kills at once, even inside a C loop) and RLIMIT_CPU soft/hard just above it for code
  that blocks SIGPROF. The verdict comes from the CPU time wait4() measures, never from the
  clock: >= the limit is ``timeout``; the wall-clock watchdog (cpu * wall_factor + 1) only
  catches sleepers.

Killing everything: J is a child subreaper, so every descendant of a call, including
grandchildren that called setsid() or double-forked, is reparented to J rather than to init.
After each call J checks whether it still has children; if so it calls kill(-1, SIGKILL),
which reaches every process of the worker's own uid (and only those: the uid is unique to
the worker, and Landlock's signal scope fences it further) in one pass of the kernel's task
list, so a fork bomb cannot outrun it, then reaps them all. RLIMIT_NPROC caps the uid at
``Limits.processes`` meanwhile. When J itself dies or hangs, W (also a subreaper) kills the
uid the same way through a helper that takes on that uid, then reaps; when W dies, J and C
die by their parent-death signal and the pool kills what is left of that uid. Without root
(no uid of its own) the sweep kills the subreaper's children found in /proc until none are
left, and ``isolation`` says what is missing.

Threat model of the result channel: see ``sandbox.harness``. The parent (W) decodes each
result with its own ``json``, accepts only the exact message shapes, caps their size,
re-checks item counts and string lengths, and requires a clean exit after the message: an
exit code alone never means success. The comparison (``outputs_match``) runs in the parent.

JSON conversion policy and the paper's size check: see ``sandbox.values``.
"""

from .compare import outputs_match
from .pool import SandboxPool, WorkerLost
from .records import STATUSES, CallResult, GenerateResult, Isolation, Job, Limits
from .values import NotJSONError, canonical_json, size_violation, to_json_value

__all__ = [
    "STATUSES",
    "CallResult",
    "GenerateResult",
    "Isolation",
    "Job",
    "Limits",
    "NotJSONError",
    "SandboxPool",
    "WorkerLost",
    "canonical_json",
    "outputs_match",
    "size_violation",
    "to_json_value",
]
