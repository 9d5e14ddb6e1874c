"""Errors a user can fix: printed as one line by the CLI, never as a traceback."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class UserError(Exception):
    """Bad input or configuration; the message says what to fix."""


class RowsLeftToRetry(Exception):
    """The build finished everything it could, but some rows' LLM calls still failed on
    transient errors (429, 5xx, timeouts, connection errors) after all their retries. Those
    rows have a ``retry`` outcome and are pending again: the next run sends their calls again.
    Everything else is written and exported; ``summary`` is the run's summary."""

    def __init__(self, rows: int, example: str, summary: dict | None = None) -> None:
        self.rows = rows
        self.example = example
        self.summary = summary or {}
        super().__init__(
            f"{rows} row(s) left to retry: their LLM calls failed after all retries (e.g. {example}); "
            "everything else is saved and exported, and the next run sends those calls again"
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.rows, self.example, self.summary))


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix (a setting, the input, a busy database, an endpoint that is
    down, rows left to retry, an interrupted run): their one-line message says it all."""
    from llm.errors import ConfigError, EndpointDown, RunCancelled
    from storage.store import StoreError

    return (UserError, StoreError, ConfigError, EndpointDown, RowsLeftToRetry, RunCancelled)


def disk_full(exc: BaseException) -> bool:
    """A write failed because its disk is full: the database's (``StoreFull``) or another
    file's (the LLM call journal, the export)."""
    from storage.store import StoreFull

    return isinstance(exc, StoreFull) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def disk_full_line(exc: OSError) -> str:
    """The one-line error for a full disk outside the database (the store words its own)."""
    where = f'could not write file "{exc.filename}": ' if exc.filename else ""
    return (f"the disk is full: {where}{exc.strerror or 'No space left on device'}; free space there and "
            "run again (the work committed before is kept)")


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _QuietUserErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for errors a user can fix,
    the exception's one-line message (the CLI's error line, a notebook's raised exception)
    says all there is to say: the record keeps its message and loses the traceback."""

    def filter(self, record: Any) -> bool:
        if record.exc_info and self.quiet(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True

    def quiet(self, exc: BaseException | None) -> bool:
        return isinstance(exc, user_errors()) or (exc is not None and disk_full(exc))


_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")


class _QuietInterrupts(_QuietUserErrors):
    """The same for a run stopped by Ctrl-C or SIGTERM: Prefect logs the stop with the
    traceback of wherever the signal landed, which says nothing a user needs."""

    def quiet(self, exc: BaseException | None) -> bool:
        return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal"


_QUIET_INTERRUPTS = _QuietInterrupts()


def quiet_interrupts() -> None:
    """From now on in this process, Prefect logs a run's interrupt without its traceback."""
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET_INTERRUPTS)  # once: a filter is added once


@contextmanager
def quiet_user_errors() -> Iterator[None]:
    """Within the block, Prefect logs a user-fixable error without its traceback."""
    quiet = _QuietUserErrors()
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    finally:
        for name in _PREFECT_RUN_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
