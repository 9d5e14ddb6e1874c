"""The DuckDB store: migrations, idempotent upserts, one transaction per shard, lock errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
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
    with pytest.raises(duckdb.ConstraintException):
        store.write_shard(bad)
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 0
    assert store.query("SELECT count(*) FROM stage_outcomes")[0][0] == 0


def _sample_shard(key: str, fid: str, n: int, status: str = "ok") -> ShardResult:
    return ShardResult(stage="sample_io", config_key=key, rows={"io_pairs": [_pair(fid, i, i + 1) for i in range(n)]},
                       outcomes=[Outcome(item_id=fid, status=status)])


def test_rows_of_another_config_key_are_a_separate_version(store):
    store.write_shard(_sample_shard("k1", "f1", 3))
    store.write_shard(_sample_shard("k2", "f1", 3))  # same ids, another setting
    assert store.query("SELECT config_key, count(*) FROM io_pairs GROUP BY ALL ORDER BY 1") == [("k1", 3), ("k2", 3)]
    # Written again under k1 with fewer pairs: k1's rows of f1 are replaced, k2's are untouched.
    store.write_shard(_sample_shard("k1", "f1", 1, status="dropped"))
    assert store.query("SELECT config_key, count(*) FROM io_pairs GROUP BY ALL ORDER BY 1") == [("k1", 1), ("k2", 3)]
    assert store.query("SELECT config_key, status FROM stage_outcomes ORDER BY 1") == [("k1", "dropped"), ("k2", "ok")]


def test_group_write_is_one_transaction(store):
    good = _sample_shard("k1", "f1", 2)
    bad = ShardResult(stage="sample_io", config_key="k1", rows={"io_pairs": [{"id": "x"}]},  # NOT NULL violated
                      outcomes=[Outcome(item_id="f2", status="ok")])
    with pytest.raises(duckdb.ConstraintException):
        store.write_shards([good, bad])
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 0
    store.write_shards([good, _sample_shard("k1", "f2", 3)])
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 5
    assert store.query("SELECT count(*) FROM stage_outcomes")[0][0] == 2


def test_an_item_twice_in_one_write_is_refused(store):
    with pytest.raises(StoreError, match="f1 appears twice"):
        store.write_shards([_sample_shard("k1", "f1", 2), _sample_shard("k1", "f1", 2)])
    assert store.query("SELECT count(*) FROM io_pairs")[0][0] == 0


def test_schema_1_database_is_migrated_with_its_rows(tmp_path):
    import duckdb

    from storage.store import _migrations

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    version, name, sql = _migrations()[0]
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    con.execute(sql)
    con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    con.execute("INSERT INTO io_pairs (id, config_key, function_id, input_json, output_json, ordinal) "
                "VALUES ('p1', 'k1', 'f1', '{}', '1', 0)")
    con.execute("INSERT INTO stage_outcomes (stage, config_key, item_id, status) VALUES ('sample_io', 'k1', 'f1', 'ok')")
    con.close()
    with Store(path) as s:
        assert s.schema_version() == _migrations()[-1][0]
        assert s.query("SELECT id, config_key, function_id FROM io_pairs") == [("p1", "k1", "f1")]
        assert s.query("SELECT status, failed_runs FROM stage_outcomes") == [("ok", None)]
        keyed = {r[0] for r in s.query("SELECT table_name FROM information_schema.table_constraints "
                                       "WHERE constraint_type = 'PRIMARY KEY'")}
        assert not keyed & {"io_pairs", "prediction_tasks", "attempts", "stage_outcomes"}
        s.write_shard(_sample_shard("k1", "f1", 2))  # the migrated outcome is found and replaced
        assert s.query("SELECT count(*) FROM io_pairs")[0][0] == 2
        assert s.query("SELECT count(*) FROM stage_outcomes")[0][0] == 1


def test_schema_5_pairs_get_same_output_as_for_first_of_output(tmp_path):
    # Migration 006 replaces io_pairs.first_of_output (a 64-hex id on every pair) with
    # same_output_as (NULL unless another pair of the function, under the same key, has the
    # output and a smaller id), computed for every stored pair: those that had first_of_output
    # and those stored before it (NULL there). Rows keep their values and their order.
    import duckdb

    from storage.store import _migrations

    path = tmp_path / "v5.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    for version, name, sql in _migrations()[:5]:
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    recorded = [_pair("f1", i, i % 2) for i in range(5)]
    legacy = [_pair("f2", i, i % 3) for i in range(6)]
    elsewhere = [_pair("f1", i, i % 2) for i in range(5, 30)]  # f1 under another key
    first = {(r["function_id"], r["output_json"]): min(q["id"] for q in recorded + legacy
                                                      if (q["function_id"], q["output_json"]) == (r["function_id"], r["output_json"]))
             for r in recorded + legacy}
    rows = ([(r, "k1", first[(r["function_id"], r["output_json"])]) for r in recorded]
            + [(r, "k1", None) for r in legacy] + [(r, "k2", r["id"]) for r in elsewhere])
    for r, key, first_of_output in rows:
        con.execute("INSERT INTO io_pairs (id, config_key, function_id, input_json, output_json, ordinal, first_of_output) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", [r["id"], key, r["function_id"], r["input_json"], r["output_json"],
                                                     r["ordinal"], first_of_output])
    con.close()
    with Store(path) as s:
        assert s.schema_version() == 6
        assert "first_of_output" not in s.columns("io_pairs")
        got = s.query("SELECT id, config_key, function_id, output_json, ordinal, same_output_as FROM io_pairs")
    smallest_k2 = {out: min(r["id"] for r in elsewhere if r["output_json"] == out) for out in ("0", "1")}
    want = []
    for r, key, _ in rows:
        smallest = first[(r["function_id"], r["output_json"])] if key == "k1" else smallest_k2[r["output_json"]]
        want.append((r["id"], key, r["function_id"], r["output_json"], r["ordinal"],
                     smallest if smallest != r["id"] else None))
    assert got == want
    firsts = 2 + 3 + 2  # the first pair of each output: f1's two and f2's three under k1, f1's two under k2
    assert sum(g[5] is not None for g in got) == len(rows) - firsts


def test_content_ids_are_stable():
    assert content_id({"b": 1, "a": [1, 2]}) == content_id({"a": [1, 2], "b": 1})
    assert content_id("x") != content_id("y")
    assert IOPair.make_id("f", {"a": 1, "b": 2}) == IOPair.make_id("f", {"b": 2, "a": 1})


def test_locked_database_is_a_clear_error(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path).close()
    with _holder(path, read_only=False, seconds=60):
        with pytest.raises(StoreLocked, match="in use by another process"):
            Store(path, read_only=True)


@contextmanager
def _holder(path, read_only: bool, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process with the database open (as `codeio stats` or a build has it), for the
    duration of the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'r'); "
         "print('ok', flush=True); time.sleep(float(sys.argv[3])); c.close()",
         str(path), "r" if read_only else "w", str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_write_waits_for_a_reader_to_close_the_database(tmp_path):
    """A build started while `codeio stats` (or `report`, `export`, a notebook's `load()`)
    reads the database waits for it instead of failing."""
    path = tmp_path / "read.duckdb"
    Store(path).close()
    with _holder(path, read_only=True, seconds=1.5) as holder:
        with Store(path) as store:  # the default wait
            assert store.schema_version() >= 1
            assert holder.poll() == 0  # it opened once the reader had gone


def test_a_reader_that_stays_is_named_in_the_error(tmp_path):
    """Past the wait, the error names the reading process, not a guessed running build."""
    path = tmp_path / "read.duckdb"
    Store(path).close()
    with _holder(path, read_only=True, seconds=60) as holder:
        with pytest.raises(StoreLocked) as caught:
            Store(path, reader_wait_s=0.5)
        message = str(caught.value)
        assert f"in use by another process: process {holder.pid} (`python" in message, message
        assert "has had it open for reading for over 0.5s" in message and "running build" not in message, message
        assert caught.value.holder.startswith(f"process {holder.pid}")


def test_a_writer_is_named_and_not_waited_for(tmp_path):
    """A database another build writes fails at once (builds take hours), naming the writer."""
    path = tmp_path / "written.duckdb"
    Store(path).close()
    with _holder(path, read_only=False, seconds=60) as holder:
        for read_only in (False, True):
            with pytest.raises(StoreLocked, match=f"process {holder.pid} .* has it open for writing; wait"):
                Store(path, read_only=read_only)


def test_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(StoreError):
        Store(bogus)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_cached_calls_finds_exactly_the_known_keys_among_many(store):
    """Keys are looked up a thousand at a time through the ledger's index: asking for more
    than that, with repeats and unknown keys among them, finds each known one once."""
    from storage.models import LLMCall

    known = [content_id("call", i) for i in range(1200)]
    store.add_llm_calls(
        LLMCall(key=k, model="m", stage="answer", content=f"answer {i}", finish_reason="stop")
        for i, k in enumerate(known)
    )
    unknown = [content_id("other", i) for i in range(1300)]
    asked = unknown[:700] + known[::2] + unknown[700:] + known[::2] + known[1::4]
    found = store.cached_calls(asked)
    assert set(found) == set(known[::2]) | set(known[1::4])
    assert found[known[2]]["content"] == "answer 2" and "created_at" not in found[known[2]]
    assert store.cached_calls([]) == {}


def test_a_prediction_task_row_built_in_one_pass_is_the_models_row():
    """The prompts stage builds task rows without the model (messages serialised once): same
    id, same row, for text with escapes and non-ASCII alike."""
    from storage.ids import canonical_json, content_id_of_encoded
    from storage.models import PredictionTask

    messages = [{"role": "user", "content": 'Predict "f"(x)\n\tfor x = ünï\u2028cödé, {"k": [1, 2]}'},
                {"role": "assistant", "content": "\\ok/"}]
    for kind in ("input", "output"):
        model = PredictionTask(id=PredictionTask.make_id("pair-é", kind, messages), pair_id="pair-é",
                               function_id="fn", kind=kind, messages=messages)
        assert PredictionTask.row_of("pair-é", "fn", kind, messages) == model.row()
    parts = ["x", {"b": [1.5, None], "a": "ü"}, 3]
    assert content_id_of_encoded(*(canonical_json(p) for p in parts)) == content_id(*parts)


def test_the_store_can_be_given_its_duckdb_threads(tmp_path):
    with Store(tmp_path / "t.duckdb", threads=1) as store:
        assert store.query("SELECT current_setting('threads')")[0][0] == 1
    with Store(tmp_path / "t.duckdb", read_only=True, threads=2) as store:
        assert store.query("SELECT current_setting('threads')")[0][0] == 2


def test_duckdb_memory_is_bounded_however_large_the_store_grows(tmp_path):
    """DuckDB's own default is 80 % of the machine's RAM, which its caches fill as a store
    grows: the store bounds it (a build's memory stays flat at any scale), leaving room for
    the key indexes (see the next test)."""
    from storage.store import _INDEX_ROOM_STEP, INDEX_BYTES_PER_KEY

    with Store(tmp_path / "m.duckdb") as store:
        limit = store.query("SELECT current_setting('memory_limit')")[0][0]
        assert abs(_bytes(limit) - (512 * 10**6 + _INDEX_ROOM_STEP * INDEX_BYTES_PER_KEY)) < 2**20
    with Store(tmp_path / "m.duckdb", memory_limit="16MB") as store:
        for n in range(60):  # DuckDB holds ~37 MB of these rows without a limit
            rows = [{"id": f"{n:03d}-{j:05d}", "function_id": f"f{n}", "input_json": content_id(n, j) * 3,
                     "output_json": content_id(j), "ordinal": 0} for j in range(2000)]
            store.write_shards([ShardResult(stage="sample_io", config_key="k", rows={"io_pairs": rows},
                                            outcomes=[Outcome(item_id=f"f{n}", status="ok")])])
        assert store.query("SELECT count(*) FROM io_pairs") == [(120000,)]
        assert store.query("SELECT count(DISTINCT input_json) FROM io_pairs") == [(120000,)]
        used = store.query("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")[0][0]
        assert used <= 16 * 2**20


def test_ctrl_c_during_a_query_is_an_interrupt_and_the_store_stays_usable(tmp_path):
    """DuckDB reports a SIGINT that lands mid-statement as its own error and then refuses
    other work on the connection while the statement's result is pending; the store raises
    KeyboardInterrupt, and the run's final status can still be written."""
    import os
    import signal
    import threading

    # One DuckDB thread: the statement runs on this thread, which looks for signals between
    # chunks. With more, a worker may take the whole scan while this thread waits for it
    # without looking, and the interrupt lands only when the scan ends (0.3 s or 30 s).
    with Store(tmp_path / "i.duckdb", threads=1) as store:
        store.start_run("r", {})
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):  # seconds of work: still running at 0.3 s
            store.query_ids("SELECT sum(hash(range)) AS s FROM range(5000000000), _want", ["a"])
        assert store.query("SELECT 42") == [(42,)]
        store.finish_run("r", "failed", {"error": "interrupted"})
        assert store.query("SELECT status FROM runs WHERE run_id = 'r'") == [("failed",)]


def test_a_full_disk_is_a_clear_error_and_keeps_every_committed_shard(tmp_path):
    """The disk under the database fills up during a build: the write that does not fit is a
    one-line StoreFull (the CLI prints it, no traceback), the shards committed before it are
    all there once space is freed, and the one that failed is not there at all."""
    from reliability_helpers import small_disk
    from storage.store import StoreFull

    with small_disk(tmp_path / "small", "1m") as small:
        store = Store(small / "c.duckdb")
        committed = 0
        with pytest.raises(StoreFull) as full:
            for n in range(10_000):
                store.write_shard(_sample_shard("k1", f"f{n:05d}", 40))
                committed += 1
        assert committed > 0  # it failed mid-build, not at the start
        assert str(full.value).startswith("the disk is full: could not write file ")
        assert str(full.value).endswith(": No space left on device; free space there and run again "
                                        "(the work committed before is kept)")
        try:
            store.close()  # folding the log into the file needs space too
        except StoreFull:
            pass
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        with Store(small / "c.duckdb") as again:
            assert again.query("SELECT count(*), count(DISTINCT item_id) FROM stage_outcomes")[0] == (committed, committed)
            assert again.query("SELECT count(*) FROM io_pairs")[0][0] == 40 * committed


def test_the_key_indexes_get_room_beyond_the_memory_limit(tmp_path):
    """DuckDB keeps a table's primary-key index whole in its buffer memory, about 120 bytes a
    key: a ledger of a paper-scale build's ~7M calls needs more than the store's cap on its
    caches, and the commit that crossed it failed ("failed to pin block"). The limit grows with
    the keyed rows, also for a store opened again."""
    import pyarrow as pa

    from storage.store import _INDEX_ROOM_STEP, INDEX_BYTES_PER_KEY

    db = tmp_path / "k.duckdb"
    with Store(db, memory_limit="16MB") as store:  # room for ~140k keys of 64 characters
        for n in range(30):
            keys = [content_id("call", n, j) for j in range(10_000)]
            store.insert_rows("llm_calls", pa.table({
                "key": keys, "model": ["m"] * len(keys), "stage": ["answer"] * len(keys),
                "content": ["x"] * len(keys), "truncated": [False] * len(keys), "latency_s": [0.1] * len(keys),
            }).to_pylist(), upsert=False)
        assert store.query("SELECT count(*) FROM llm_calls") == [(300_000,)]
        assert store.cached_calls([content_id("call", 29, 9_999)]) != {}
    with Store(db, memory_limit="16MB") as store:
        limit = store.query("SELECT current_setting('memory_limit')")[0][0]
        wanted = 16 * 10**6 + (300_000 + _INDEX_ROOM_STEP) * INDEX_BYTES_PER_KEY  # cache cap, index room
        assert abs(_bytes(limit) - wanted) < 2**20
        store.insert_rows("llm_calls", [{"key": "one more", "model": "m", "stage": "answer", "truncated": False,
                                         "latency_s": 0.1}])


def test_a_statement_out_of_memory_is_a_clear_error_and_the_store_stays_usable(tmp_path):
    from storage.store import StoreOutOfMemory

    with Store(tmp_path / "o.duckdb", memory_limit="16MB", threads=1) as store:
        with pytest.raises(StoreOutOfMemory) as caught:
            store.query("SELECT list(i) FROM range(40000000) t(i)")
        assert "\n" not in str(caught.value)
        assert str(caught.value).startswith("the database needed more memory than DuckDB may use here: ")
        assert store.query("SELECT count(*) FROM llm_calls") == [(0,)]
    with pytest.raises(StoreError, match="memory limit '16 apples' is not a size"):
        Store(tmp_path / "o.duckdb", memory_limit="16 apples")


def _bytes(setting: str) -> float:
    """DuckDB's way of showing a memory setting ("45.7 MiB") in bytes."""
    number, unit = setting.split()
    return float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
