"""The DuckDB store: migrations, idempotent upserts, one transaction per shard, lock errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from storage.ids import content_id
from storage.models import IOPair, Outcome, ShardResult
from storage.store import Store, StoreError, StoreLocked


def test_migrations_from_empty_file(tmp_path):
    s = Store(tmp_path / "a.duckdb")
    assert s.schema_version() >= 1
    tables = {r[0] for r in s.query("SELECT table_name FROM information_schema.tables")}
    assert {"raw_files", "functions", "io_pairs", "prediction_tasks", "attempts", "llm_calls",
            "stage_outcomes", "ingest_log", "runs"} <= tables
    v = s.schema_version()
    s.close()
    s2 = Store(tmp_path / "a.duckdb")  # re-opening applies nothing twice
    assert s2.schema_version() == v
    assert s2.query("SELECT count(*) FROM schema_migrations")[0][0] == v
    s2.close()


def _pair(fid: str, n: int, out: int) -> dict:
    inp = {"n": n}
    return IOPair(id=IOPair.make_id(fid, inp), function_id=fid, input=inp, output=out, ordinal=n).row()


def test_write_shard_is_idempotent(store):
    res = ShardResult(
        stage="sample_io", config_key="k1",
        rows={"io_pairs": [_pair("f1", i, i * i) for i in range(5)]},
        outcomes=[Outcome(item_id="f1", status="ok")],
    )
    store.write_shard(res)
    store.write_shard(res)
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 5
    assert store.query("SELECT count(*) FROM stage_outcomes")[0][0] == 1
    assert store.query("SELECT DISTINCT config_key FROM io_pairs")[0][0] == "k1"


def test_shard_write_is_atomic(store):
    bad = ShardResult(
        stage="sample_io", config_key="k1",
        rows={"io_pairs": [_pair("f1", 1, 1), {"id": "x"}]},  # second row violates NOT NULL
        outcomes=[Outcome(item_id="f1", status="ok")],
    )
    with pytest.raises(Exception):
        store.write_shard(bad)
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 0
    assert store.query("SELECT count(*) FROM stage_outcomes")[0][0] == 0


def test_content_ids_are_stable():
    assert content_id({"b": 1, "a": [1, 2]}) == content_id({"a": [1, 2], "b": 1})
    assert content_id("x") != content_id("y")
    assert IOPair.make_id("f", {"a": 1, "b": 2}) == IOPair.make_id("f", {"b": 2, "a": 1})


def test_locked_database_is_a_clear_error(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreLocked, match="in use by another process"):
            Store(path, read_only=True)
    finally:
        holder.kill()
        holder.wait()


def test_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(StoreError):
        Store(bogus)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)
