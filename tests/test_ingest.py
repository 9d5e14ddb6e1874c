"""Ingestion: every reject reason, deduplication, row sources (JSONL/Parquet), bad sources."""

from __future__ import annotations

import json

import polars as pl
import pytest

from storage.models import ShardResult
from tasks.ingest import SourceError, iter_source, validate_items


def _ingest(store, path, name="src", kind="mixed", max_bytes=10_000):
    items = [it.as_row() for it in iter_source(str(path), name, kind)]
    log, raws = validate_items(items, max_bytes)
    return store.write_ingest(ShardResult(stage="ingest", config_key="k", rows={"ingest_log": log, "raw_files": raws}))


def test_every_reject_reason(tmp_path, store):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "good.py").write_text("def f(x):\n    return x + 1\n")
    (d / "dup.py").write_text("def f(x):\n    return x + 1\n")
    (d / "empty.py").write_text("   \n")
    (d / "binary.py").write_bytes(b"\x00\x01\x02def")
    (d / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (d / "huge.py").write_text("x = 1\n" * 5000)
    (d / "broken.py").write_text("def f(:\n")
    (d / "notes.txt").write_text("ignored: not a .py file")
    counts = _ingest(store, d)
    assert counts == {
        "ok": 1, "duplicate:duplicate_content": 1, "rejected:empty": 1, "rejected:binary": 1,
        "rejected:not_utf8": 1, "rejected:too_large": 1, "rejected:syntax_error": 1,
    }
    assert store.query("SELECT count(*) FROM raw_files")[0][0] == 1
    assert store.query("SELECT count(*) FROM ingest_log")[0][0] == 7


def test_duplicates_across_runs_and_sources(tmp_path, store):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.py").write_text("print('same')\n")
    (b / "y.py").write_text("print('same')\n")
    assert _ingest(store, a, name="a") == {"ok": 1}
    assert _ingest(store, b, name="b") == {"duplicate:duplicate_content": 1}
    assert store.query("SELECT count(*) FROM raw_files")[0][0] == 1


def test_jsonl_and_parquet_rows(tmp_path, store):
    rows = [
        {"content": "def a():\n    return 1\n", "repo_name": "r/x", "path": "a.py"},
        {"content": "def b(:", "repo_name": "r/x", "path": "b.py"},
        {"content": "", "repo_name": "r/y", "path": "c.py"},
    ]
    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    assert _ingest(store, jl) == {"ok": 1, "rejected:syntax_error": 1, "rejected:empty": 1, "rejected:bad_record": 1}
    pq = tmp_path / "c.parquet"
    pl.DataFrame([{**r, "content": r["content"].replace("1", "2")} for r in rows]).write_parquet(pq)
    assert _ingest(store, pq) == {"ok": 1, "rejected:syntax_error": 1, "rejected:empty": 1}
    repo = store.query("SELECT repo_name, path FROM raw_files ORDER BY path")
    assert repo[0] == ("r/x", "a.py")


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(iter_source(str(tmp_path / "missing"), "s", "mixed"))
    pq = tmp_path / "nocontent.parquet"
    pl.DataFrame({"text": ["x"]}).write_parquet(pq)
    with pytest.raises(SourceError, match="no `content` column"):
        list(iter_source(str(pq), "s", "mixed"))
