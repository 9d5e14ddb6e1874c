"""The data that crosses the pool's API: limits in, jobs in, results and isolation facts out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Every status a call can end with. ``ok`` is the only one that carries a value.
STATUSES = ("ok", "error", "timeout", "memory", "size_limit", "not_json", "output_limit", "crashed")

#: Statuses the child itself may report in its result message (the rest are decided outside it).
CHILD_STATUSES = frozenset({"ok", "error", "memory", "size_limit", "not_json", "output_limit"})

ERROR_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Limits:
    """Per-child limits. CPU time decides ``timeout``; the wall-clock watchdog only catches sleepers."""

    cpu_seconds: float = 5.0
    wall_factor: float = 3.0
    memory_bytes: int = 2 * 1024**3
    file_size_bytes: int = 1024**2
    open_files: int = 64
    processes: int = 64  # RLIMIT_NPROC of the worker's uid: holds only when the pool runs as root
    output_bytes: int = 64 * 1024  # JSON of the returned value; beyond it the call is 'output_limit'
    stdio_bytes: int = 0  # stdout+stderr kept per call (CallResult.stdio); 0 discards them
    check_size: bool = True  # the paper's appendix-A size check on the returned value

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cpu_seconds) and self.cpu_seconds > 0):
            raise ValueError("cpu_seconds must be a positive number")
        if not (math.isfinite(self.wall_factor) and self.wall_factor >= 1):
            raise ValueError("wall_factor must be >= 1")
        if self.memory_bytes < 256 * 1024**2:
            raise ValueError("memory_bytes below 256 MiB leaves no room for numpy")
        if self.open_files < 16:
            raise ValueError("open_files must be >= 16")
        for name in ("file_size_bytes", "processes", "output_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.stdio_bytes < 0:
            raise ValueError("stdio_bytes must be >= 0")

    @property
    def wall_seconds(self) -> float:
        """The watchdog: how long a child may exist, sleeping or not."""
        return self.cpu_seconds * self.wall_factor + 1.0


@dataclass(frozen=True)
class Job:
    """One program and the calls of its entry point, each call a kwargs dict."""

    code: str
    calls: list[dict]
    entry: str = "main_solution"
    limits: Limits | None = None


@dataclass
class CallResult:
    """The verdict of one call. ``value`` is the JSON-converted return value when ``ok``."""

    status: str
    value: Any = None
    error_type: str | None = None
    error_message: str | None = None  # at most 500 characters
    # CPU time of the call's process as rusage reports it. The limit itself is enforced by the
    # kernel's CPU timers, which rusage can trail by several percent (up to ~20% on a busy
    # virtual machine), so a 'timeout' may show a little less than the limit here.
    cpu_seconds: float = 0.0
    stdio: str = ""  # captured stdout+stderr, only when Limits.stdio_bytes > 0

    @property
    def error(self) -> str | None:
        """``"Type: message"`` for anything but ``ok``, for one-line drop reasons."""
        if self.status == "ok":
            return None
        return f"{self.error_type or self.status}: {self.error_message or ''}".rstrip(": ")


@dataclass
class GenerateResult:
    """What a no-argument generator produced in one child under one CPU budget.

    ``status`` describes the child as a whole (``ok`` when it finished all calls; ``timeout``
    when the budget ran out, in which case the values collected so far are still here).
    ``failures`` counts the calls that produced no value, by status.
    """

    status: str
    values: list[Any] = field(default_factory=list)
    calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    cpu_seconds: float = 0.0

    @property
    def error(self) -> str | None:
        """The first error as ``"Type: message"``, or None when nothing failed."""
        if self.error_type is None and self.error_message is None:
            return None
        return f"{self.error_type or self.status}: {self.error_message or ''}".rstrip(": ")


@dataclass(frozen=True)
class Isolation:
    """What is in force for the children of a pool (reported by ``codeio doctor``)."""

    network_namespace: bool  # children run in an empty network namespace (no network at all)
    unprivileged_user: bool  # children run as a dedicated unprivileged uid, one per worker
    filesystem_confined: bool  # Landlock: children can write only inside their temp dir
    reads_confined: bool  # Landlock: children can read only the interpreter, system libraries, their temp dir
    signals_scoped: bool  # Landlock: children cannot signal processes outside their sandbox
    notes: tuple[str, ...] = ()  # why anything above is missing

    @property
    def complete(self) -> bool:
        return (self.network_namespace and self.unprivileged_user and self.filesystem_confined
                and self.reads_confined)
