"""Durable writes: a file is whole or absent, and a failed write keeps the previous file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import storage.atomic as atomic
from storage.atomic import atomic_open, atomic_path, atomic_write, atomic_write_bytes, atomic_write_text


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_writes_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    atomic_write(target, lambda f: (f.write(b"abc"), f.write(b"def")))
    assert target.read_bytes() == b"abcdef"
    assert names(target.parent) == ["data.bin"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644

    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_replacing_keeps_the_file_mode(tmp_path):
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(0o600)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "new"


def test_writer_failing_midway_leaves_previous_file(tmp_path):
    target = tmp_path / "data.jsonl"
    target.write_bytes(b"previous\n")

    def writer(f):
        f.write(b"partial line")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, writer)
    assert target.read_bytes() == b"previous\n"
    assert names(tmp_path) == ["data.jsonl"]


def test_writer_failing_leaves_no_new_file(tmp_path):
    target = tmp_path / "data.jsonl"

    def writer(f):
        f.write(b"x" * 100_000)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert names(tmp_path) == []


def test_disk_full_in_writer_leaves_nothing(tmp_path):
    target = tmp_path / "data.jsonl"
    target.write_bytes(b"previous\n")

    def writer(f):
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        atomic_write(target, writer)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous\n"
    assert names(tmp_path) == ["data.jsonl"]


def test_disk_full_at_fsync_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "data.jsonl"
    target.write_bytes(b"previous\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new content")
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous\n"
    assert names(tmp_path) == ["data.jsonl"]


def test_atomic_open_text_mode(tmp_path):
    target = tmp_path / "notes.txt"
    with atomic_open(target, "w") as f:
        f.write("a\nb\n")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"a\nb\n"
    with pytest.raises(ValueError):
        with atomic_open(target, "a"):
            pass


def test_atomic_path_for_parquet_writer(tmp_path):
    target = tmp_path / "t.parquet"
    table = pa.table({"a": [1, 2, 3]})
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        pq.write_table(table, tmp)
    assert pq.read_table(target).equals(table)
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            pq.write_table(pa.table({"a": [9]}), tmp)
            raise ValueError("late failure")
    assert pq.read_table(target).equals(table)
    assert names(tmp_path) == ["t.parquet"]
