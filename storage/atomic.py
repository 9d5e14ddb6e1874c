"""Durable file writes: a file is either whole or absent (or still its previous version).

Every write goes to a temp file in the target's directory, is flushed and fsynced, renamed over
the target with ``os.replace`` (atomic on POSIX), and the directory is fsynced so the rename
survives a crash. On any error, disk full (ENOSPC) included, the temp file is removed and the
previous file, if any, is left as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

# A new file gets these permission bits; a replaced file keeps its own.
_NEW_FILE_MODE = 0o644


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on a clean exit it becomes ``path``.

    For writers that want a path rather than a file object (e.g. a Parquet writer). Whatever
    the block writes to the temp path is fsynced before the rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        yield tmp
        _fsync_file(tmp)
        _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", encoding: str | None = None, buffering: int = -1
) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it becomes ``path``.

    ``mode`` is 'wb' or 'w' (text, UTF-8 and '\\n' line ends unless ``encoding`` says otherwise).
    ``buffering`` is ``open``'s (a writer of many small records may want a larger buffer).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as tmp:
        if mode == "w":
            handle: IO = open(tmp, "w", encoding=encoding or "utf-8", newline="\n", buffering=buffering)
        else:
            handle = open(tmp, "wb", buffering=buffering)
        with handle:
            yield handle


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer`` with a binary file; the result replaces ``path`` only if it returns."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, all or nothing."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` encoded as ``encoding``, all or nothing."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path) -> None:
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    os.chmod(tmp, mode)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # file systems that cannot sync a directory say so; the rename stands
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)
