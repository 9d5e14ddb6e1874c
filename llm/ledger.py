"""The response cache, which is also the ledger of paid calls: what makes a resumed run free.

``CachedProvider`` answers keys the ledger already holds and sends only the misses; each
completed result is appended the moment it completes, so a run killed at any instant loses
no call that finished. Failed results are not recorded, so the next run tries them again.
``JournalLedger`` is an append-only JSONL file per writer; the flow process later merges
journals into the DuckDB store with ``read_journal``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from llm.gather import gather_all
from llm.types import ChatRequest, ChatResult, Provider, request_key
from llm.usage import Usage, summarize_usage

__all__ = [
    "CachedProvider",
    "JournalLedger",
    "Ledger",
    "MemoryLedger",
    "Usage",
    "read_journal",
    "summarize_usage",
]

logger = logging.getLogger(__name__)


class Ledger(Protocol):
    """Where completed calls are kept, by key."""

    def get_many(self, keys: list[str]) -> dict[str, ChatResult]: ...

    def append(self, result: ChatResult) -> None: ...

    def sync(self) -> None:
        """Make everything appended so far durable (a no-op for in-memory ledgers)."""
        ...


class MemoryLedger:
    """A ledger in a dict: for tests and for callers that persist results themselves."""

    def __init__(self, preloaded: dict[str, ChatResult] | None = None) -> None:
        self.results: dict[str, ChatResult] = dict(preloaded or {})

    def get_many(self, keys: list[str]) -> dict[str, ChatResult]:
        return {key: self.results[key] for key in keys if key in self.results}

    def append(self, result: ChatResult) -> None:
        self.results[result.key] = result

    def sync(self) -> None:
        pass


class _BackgroundFsync:
    """fsync of one file descriptor on a thread of its own, so the event loop that appends to
    the journal never waits for the disk (tens of milliseconds on a busy or network disk).

    ``request()`` asks for an fsync of everything written so far and returns its number;
    ``wait(n)`` returns once fsync ``n`` (or a later one) is done. Requests made while an fsync
    runs are served by one more. An fsync that fails is raised by the next request or wait."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._error: OSError | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="journal-fsync", daemon=True)
        self._thread.start()

    def request(self) -> int:
        with self._cond:
            self._raise_error()
            self._requested += 1
            self._cond.notify_all()
            return self._requested

    def wait(self, number: int) -> None:
        with self._cond:
            while self._done < number and self._error is None:
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        """Finish the fsyncs asked for, then stop the thread (before the descriptor closes)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._done == self._requested and not self._closing:
                    self._cond.wait()
                if self._done == self._requested or self._error is not None:
                    return
                number = self._requested
            try:
                os.fsync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._done = number
                self._cond.notify_all()


class JournalLedger:
    """Append-only JSONL journal: one ChatResult per line, flushed per line, fsync'd in batches.

    A line is handed to the OS before ``append`` returns, so a killed process loses nothing;
    fsync (for power loss) is asked of a background thread every ``fsync_every`` lines or
    ``fsync_interval_s`` seconds, so the event loop that appends does not wait for the disk,
    and ``sync()``, which CachedProvider calls before it returns a batch, waits until
    everything appended is fsync'd. Opening an existing journal loads it (a torn last line
    from a crash is cut off) and takes an exclusive lock, so two writers cannot interleave
    lines. With ``create=False`` the journal must exist already (a shard on a Dask worker
    opens only the journal the flow created, see tasks.llm_calls).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        preloaded: dict[str, ChatResult] | None = None,
        *,
        fsync_every: int = 20,
        fsync_interval_s: float = 0.2,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync_every = fsync_every
        self._fsync_interval_s = fsync_interval_s
        self._results: dict[str, ChatResult] = dict(preloaded or {})
        # Without ``create``, only a journal that exists is opened (FileNotFoundError otherwise).
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        self._file = os.fdopen(os.open(self.path, flags, 0o644), "ab+")  # noqa: SIM115 - closed in close()
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RuntimeError(f"journal {self.path} is already open for writing (one writer per journal)") from None
        for result in _read_lines(self._file, self.path, repair=True):
            self._results[result.key] = result
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._fsync = _BackgroundFsync(self._file.fileno())
        self._last_request = 0

    def __enter__(self) -> JournalLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_many(self, keys: list[str]) -> dict[str, ChatResult]:
        return {key: self._results[key] for key in keys if key in self._results}

    def append(self, result: ChatResult) -> None:
        with _naming(self.path):
            self._file.write(result.model_dump_json().encode("utf-8") + b"\n")
            self._file.flush()
        self._results[result.key] = result
        self._unsynced += 1
        if (
            self._unsynced >= self._fsync_every
            or time.monotonic() - self._last_sync >= self._fsync_interval_s
        ):
            self._request_fsync()

    def sync(self) -> None:
        with _naming(self.path):
            if self._unsynced:
                self._request_fsync()
            self._fsync.wait(self._last_request)

    def _request_fsync(self) -> None:
        self._last_request = self._fsync.request()
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.sync()
            finally:
                self._fsync.close()
                with _naming(self.path):
                    self._file.close()  # flushes what a failed write left in the buffer


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError of a write to the journal names it (which file filled the disk?)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def read_journal(path: str | os.PathLike[str]) -> list[ChatResult]:
    """Every result in a journal, in write order; a torn last line (crash mid-write) is skipped."""
    with open(path, "rb") as file:
        return _read_lines(file, Path(path), repair=False)


def _read_lines(file: BinaryIO, path: Path, *, repair: bool) -> list[ChatResult]:
    """Parse a journal. Bytes after the last newline are a line torn by a crash: skipped, and
    cut off when ``repair`` (before appending), so the next line starts clean."""
    file.seek(0)
    data = file.read()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        logger.warning("journal %s: ignoring a torn last line (%d bytes)", path, len(data) - complete)
        if repair:
            file.truncate(complete)
            file.flush()
            os.fsync(file.fileno())
    results: list[ChatResult] = []
    for number, line in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            results.append(ChatResult.model_validate_json(line))
        except ValueError:
            raise ValueError(f"journal {path}: line {number} is not a ChatResult") from None
    return results


class CachedProvider:
    """A Provider that pays only for calls the ledger does not hold yet."""

    def __init__(self, inner: Provider, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger
        self.model = inner.model
        self.extra_body = getattr(inner, "extra_body", None)
        self.hits = 0
        self.sent = 0

    async def complete(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResult], None] | None = None
    ) -> list[ChatResult]:
        """One result per request, in order. ``on_result(i, result)`` (optional) is called on
        the event loop as soon as request ``i``'s result is known, cached ones first, so a
        caller can start on the answers while the other calls are still out."""
        keys = [request_key(self.inner, request) for request in requests]
        cached = self.ledger.get_many(list(dict.fromkeys(keys)))
        misses: dict[str, ChatRequest] = {}
        positions: dict[str, list[int]] = {}
        for i, (key, request) in enumerate(zip(keys, requests)):
            positions.setdefault(key, []).append(i)
            if key not in cached and key not in misses:
                misses[key] = request
        self.hits += len(requests) - sum(1 for key in keys if key not in cached)
        self.sent += len(misses)

        def deliver(key: str, result: ChatResult) -> None:
            if on_result is not None:
                for i in positions[key]:
                    on_result(i, _for_request(result, requests[i]))

        for key, result in cached.items():
            deliver(key, result)
        try:
            fresh = await gather_all([self._complete_one(key, request, deliver) for key, request in misses.items()])
        finally:
            self.ledger.sync()
        answered = {**cached, **dict(zip(misses, fresh))}
        return [_for_request(answered[key], request) for key, request in zip(keys, requests)]

    async def _complete_one(
        self, key: str, request: ChatRequest, deliver: Callable[[str, ChatResult], None]
    ) -> ChatResult:
        (result,) = await self.inner.complete([request])
        if result.key != key:  # recorded under another key, it would be paid for again each run
            raise ValueError(f"{type(self.inner).__name__} returned key {result.key[:12]}, expected {key[:12]}")
        if result.error is None:
            self.ledger.append(result)
        deliver(key, result)
        return result


def _for_request(result: ChatResult, request: ChatRequest) -> ChatResult:
    """A cached answer relabelled with the asking stage (the key ignores the stage)."""
    if result.stage == request.stage:
        return result
    return result.model_copy(update={"stage": request.stage})
