"""The build_dataset flow under a real (temporary) Prefect server: first run, no-op re-run,
incremental add, and that `codeio stats` accounts for every ingested file."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import shutil
import zlib
from pathlib import Path

import pytest

from flows.config import SAMPLE_CORPUS, BuildConfig
from storage.store import Store

pytestmark = pytest.mark.usefixtures("prefect_harness")

# A few sample files that the offline transform handles, plus one it cannot.
PICK = 6


def _corpus(tmp_path: Path, n: int) -> Path:
    dst = tmp_path / "corpus"
    dst.mkdir(exist_ok=True)
    files = sorted(SAMPLE_CORPUS.glob("*.py"))
    for f in files[:n]:
        shutil.copy(f, dst / f.name)
    return dst


def _cfg(tmp_path: Path, corpus: Path) -> BuildConfig:
    return BuildConfig.model_validate({
        "sources": [{"path": str(corpus), "name": "t", "kind": "mixed"}],
        "db_path": str(tmp_path / "db" / "codeio.duckdb"),
        "output_dir": str(tmp_path / "out"),
        "shard_size": 4,
        "sandbox": {"workers": 2},
        "sampling": {"generator_calls": 200},
    })


def _digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def test_first_run_rerun_and_incremental(tmp_path):
    from flows.build import run_build

    corpus = _corpus(tmp_path, PICK)
    cfg = _cfg(tmp_path, corpus)
    first = run_build(cfg)
    assert first["stages"]["ingest"]["rows_in"] == PICK
    assert first["executions"] > 0
    assert first["llm_calls_sent"] > 0
    assert isinstance(first["llm_calls_sent"], int) and isinstance(first["executions"], int)
    # What became of each stage's rows: every row in is ok or dropped with a reason.
    # (An ok row may carry a reason too, e.g. prompts' input_prompt_shared: it counts as ok.)
    with Store(cfg.db_path, read_only=True) as s:
        outcomes = {(stage, name): n for stage, name, n in s.query(
            "SELECT stage, CASE WHEN status = 'ok' THEN 'ok' ELSE status || ':' || reason END, count(*) "
            "FROM stage_outcomes GROUP BY ALL")}
    for (stage, name), n in outcomes.items():
        assert first["stages"][stage][name] == n, (stage, name)
    # Two tasks per pair, less one per pair whose input-prediction prompt another pair has.
    pairs = sum(n for (stage, _), n in outcomes.items() if stage == "prompts")
    assert first["stages"]["answer"]["rows_in"] == 2 * pairs - first["stages"]["prompts"]["input_prompts_shared"]
    # Where the CPU went, per stage: this process, and the sandbox pool's processes.
    assert first["stages"]["sample_io"]["sandbox_cpu_seconds"] > 0
    assert first["stages"]["prompts"]["sandbox_cpu_seconds"] == 0
    assert all(st["cpu_seconds"] >= 0 for st in first["stages"].values())
    # Every stage reads its pending rows and writes its shards: time the flow spent in the store.
    assert all(0 < st["store_seconds"] < st["seconds"] for st in first["stages"].values() if st["shards"])
    out = Path(cfg.output_dir)
    before = _digest(out)
    assert (out / "codeio.jsonl").stat().st_size > 0
    assert (out / "codeio_pp.jsonl").stat().st_size > 0

    with Store(cfg.db_path, read_only=True) as s:
        verdicts = dict(s.query("SELECT verdict, count(*) FROM attempts GROUP BY ALL"))
        models = {m for (m,) in s.query("SELECT DISTINCT model FROM attempts")}
    assert set(verdicts) == {"correct"}  # offline answers are correct by construction
    assert models and all(m.startswith("offline-") for m in models)

    again = run_build(cfg)
    assert again["task_runs"] == 0
    assert again["llm_calls_sent"] == 0
    assert again["executions"] == 0
    assert _digest(out) == before  # byte-identical export

    extra = sorted(SAMPLE_CORPUS.glob("*.py"))[PICK]
    shutil.copy(extra, corpus / extra.name)
    third = run_build(cfg)
    assert third["stages"]["ingest"]["rows_in"] == 1
    assert third["stages"]["transform"]["rows_in"] == 1
    with Store(cfg.db_path, read_only=True) as s:
        assert s.query("SELECT count(*) FROM ingest_log")[0][0] == PICK + 1
        accounted = s.query(
            "SELECT count(*) FROM raw_files r WHERE EXISTS (SELECT 1 FROM stage_outcomes o "
            "WHERE o.stage = 'transform' AND o.item_id = r.id)"
        )[0][0]
        assert accounted == s.query("SELECT count(*) FROM raw_files")[0][0]


def test_finished_shards_are_visible_cache_hits(tmp_path):
    """A second database built with the same settings is served from Prefect's shard cache:
    the summary says so, nothing is executed or sent, and the export is the same."""
    from flows.build import run_build

    corpus = _corpus(tmp_path, 3)
    # The first build computes every shard (another test's build may have cached some of the
    # same shards in this session's Prefect home), and caches them.
    first_cfg = _cfg(tmp_path / "a", corpus).model_copy(update={"refresh_cache": True})
    first = run_build(first_cfg)
    assert sum(st.get("cached_shards", 0) for st in first["stages"].values()) == 0
    assert first["executions"] > 0
    second_cfg = _cfg(tmp_path / "b", corpus)
    second = run_build(second_cfg)
    assert second["executions"] == 0 and second["llm_calls_sent"] == 0
    cached = sum(st.get("cached_shards", 0) for st in second["stages"].values())
    assert cached == second["task_runs"] > 0, second["stages"]
    assert _digest(Path(second_cfg.output_dir)) == _digest(Path(first_cfg.output_dir))

    # Asked to refresh, a third database runs every shard again (same work, same export).
    third_cfg = _cfg(tmp_path / "c", corpus).model_copy(update={"refresh_cache": True})
    third = run_build(third_cfg)
    assert sum(st.get("cached_shards", 0) for st in third["stages"].values()) == 0, third["stages"]
    assert third["task_runs"] == second["task_runs"]
    assert third["executions"] == first["executions"] and third["llm_calls_sent"] == first["llm_calls_sent"]
    assert _digest(Path(third_cfg.output_dir)) == _digest(Path(first_cfg.output_dir))


def test_shard_results_are_persisted_with_the_plain_pickle_serializer(tmp_path, monkeypatch):
    """Prefect's cache records of a build's shards use the project's serializer (standard
    pickle, compressed, base64 in one line), and each reads back as the ShardResult the flow
    wrote, as does a record of an earlier release (not compressed). The flow takes the results
    of the shards it ran from their tasks, not back from storage; a second build served from
    the cache reads them."""
    from prefect._internal.result_records import ResultRecord
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    import flows.build
    from flows.build import run_build
    from flows.result_cache import scan
    from storage.models import ShardResult

    reads = []
    deserialize = ResultRecord.deserialize.__func__
    monkeypatch.setattr(ResultRecord, "deserialize",
                        classmethod(lambda cls, *a, **k: reads.append(1) or deserialize(cls, *a, **k)))
    corpus = _corpus(tmp_path, 2)
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        summary = run_build(_cfg(tmp_path / "a", corpus))
        assert reads == [] and flows.build._HANDED_OVER == {}
        again = run_build(_cfg(tmp_path / "b", corpus))
    assert len(reads) >= again["task_runs"] == summary["task_runs"]  # (Prefect reads a hit twice)
    monkeypatch.undo()
    records = [ResultRecord.deserialize(p.read_bytes()) for p in (tmp_path / "results").iterdir()]
    assert len(records) == summary["task_runs"] > 0
    assert len(scan(tmp_path / "results").files) == len(records)  # what `codeio cache` counts and clears
    assert {r.metadata.serializer.type for r in records} == {"codeio-shard-pickle"}
    assert all(isinstance(r.result, ShardResult) for r in records)
    assert {r.result.stage for r in records} >= {"ingest", "sample_io", "prompts", "answer"}
    assert all(b"\\n" not in p.read_bytes() for p in (tmp_path / "results").iterdir())
    serializer = flows.build.ShardResultSerializer()
    for path in (tmp_path / "results").iterdir():
        record = ResultRecord.deserialize(path.read_bytes())
        stored = base64.b64decode(json.loads(path.read_bytes())["result"])
        plain = zlib.decompress(stored)
        assert len(stored) < len(plain) and pickle.loads(plain) == record.result  # compressed
        assert serializer.loads(base64.b64encode(plain)) == record.result  # an earlier release's record


def test_without_the_result_cache_nothing_is_persisted_or_reused(tmp_path):
    """result_cache = false: a database built from the same corpus and settings as a cached
    one runs every shard, persists no result, and exports the same."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.build import run_build

    corpus = _corpus(tmp_path, 2)
    results = tmp_path / "results"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: results}):
        cached = run_build(_cfg(tmp_path / "a", corpus))
        records = sorted(p.name for p in results.iterdir())
        assert len(records) == cached["task_runs"] > 0
        uncached_cfg = _cfg(tmp_path / "b", corpus).model_copy(update={"result_cache": False})
        uncached = run_build(uncached_cfg)
    assert sum(st.get("cached_shards", 0) for st in uncached["stages"].values()) == 0, uncached["stages"]
    assert uncached["task_runs"] == cached["task_runs"]
    assert uncached["executions"] > 0
    assert sorted(p.name for p in results.iterdir()) == records  # nothing new persisted
    assert _digest(Path(uncached_cfg.output_dir)) == _digest(tmp_path / "a" / "out")


def test_shards_finished_together_are_written_together():
    """The window hands back every shard finished by the time it is asked, so the flow writes
    them in one transaction; one still running stays in the window."""
    import threading

    from prefect import flow, task

    from flows.build import _Window

    release = threading.Event()

    @task
    def quick(n: int) -> int:
        return n

    @task
    def slow(n: int) -> int:
        release.wait(30)
        return n

    @flow
    def probe() -> tuple[list[int], int, list[int]]:
        window = _Window(limit=4)
        futures = [quick.submit(n) for n in range(3)]
        for fut in futures:
            fut.wait()
        window.add(slow.submit(99))
        for fut in futures:
            window.add(fut)
        first = sorted(f.result() for f in window.next_done())
        left = len(window.inflight)
        release.set()
        last = [f.result() for f in window.next_done()]
        return first, left, last

    first, left, last = probe()
    assert first == [0, 1, 2] and left == 1 and last == [99]


def test_a_shard_sharing_calls_with_one_in_flight_waits_for_it_and_is_marked():
    """Two shards that would send the same call never run side by side: the second is held
    until the first is written, and is marked so that it looks its cached calls up again."""
    from prefect import flow, task

    from flows.build import _drive

    @task
    def echo(name: str) -> str:
        return name

    log: list[tuple[str, bool, list[str]]] = []
    written: list[str] = []

    @flow
    def probe() -> int:
        shards = iter([
            ("a", [], {"new_calls": {"k1", "k2"}}),
            ("b", [], {"new_calls": {"k2", "k3"}}),
            ("c", [], {"new_calls": {"k4"}}),
        ])

        def submit(shard_id: str, n: int, rows: list, extra: dict) -> object:
            log.append((shard_id, extra.get("waited", False), list(written)))
            return echo.submit(shard_id)

        def on_done(finished: list) -> None:
            written.extend(result for result, _extra in finished)

        return _drive(shards, submit, on_done, 4, lambda x, y: not x["new_calls"].isdisjoint(y["new_calls"]))

    assert probe() == 3
    assert log[0] == ("a", False, [])
    # b shares k2 with a: submitted only once a was written, and marked as having waited
    assert log[1] == ("b", True, ["a"])
    assert log[2][:2] == ("c", False)
    assert sorted(written) == ["a", "b", "c"]


def test_shards_loaded_in_batches_get_the_rows_a_load_per_shard_gives():
    """The flow loads several shards' rows with one query and hands each shard exactly the
    rows (in the stage's order) that loading that shard alone would give, missing ones too."""
    import pyarrow as pa

    from flows.build import LOAD_BATCH_SHARDS, _load_in_batches
    from tasks.stage import Stage

    calls: list[int] = []

    def load(_store, ids, _keys):
        calls.append(len(ids))
        # a stage's own order (here: reversed), and ids whose upstream row is gone (every 7th)
        return [{"id": i, "n": int(i[1:])} for i in sorted(ids, reverse=True) if int(i[1:]) % 7]

    stage = Stage(name="s", version="1", settings=lambda c: {}, pending_sql=lambda c, k: ("", []),
                  load_rows=load, run_shard=lambda r, c, x: None)
    pending = sorted(f"i{n:04d}" for n in range(1, 3 * LOAD_BATCH_SHARDS * 10 + 5))
    got = list(_load_in_batches(None, stage, {}, pending, 10))
    expected = [(pending[i : i + 10], load(None, pending[i : i + 10], {})) for i in range(0, len(pending), 10)]
    assert got == expected
    assert calls[:4] == [LOAD_BATCH_SHARDS * 10] * 3 + [4]
    # The flow keeps the ids in an Arrow column (Store.query_column), whose chunks need not
    # line up with the batches: the same shards and rows.
    column = pa.chunked_array([pending[:37], pending[37:38], pending[38:]])
    assert list(_load_in_batches(None, stage, {}, column, 10)) == expected


def test_the_load_batch_grows_with_the_stage_and_stays_bounded():
    """Every load scans the store's input tables once, so a big stage loads in fewer, larger
    batches: at least LOAD_BATCH_SHARDS shards, at most LOAD_BATCH_MAX_ROWS rows."""
    from flows.build import LOAD_BATCH_MAX_ROWS, LOAD_BATCH_SHARDS, load_batch_shards

    assert load_batch_shards(1_000, 200) == LOAD_BATCH_SHARDS  # small stages as before
    assert load_batch_shards(100_000, 500) == LOAD_BATCH_SHARDS
    assert load_batch_shards(1_000_000, 200) * 200 == 10_000  # a hundredth of the pending rows
    assert load_batch_shards(7_000_000, 200) * 200 == LOAD_BATCH_MAX_ROWS  # paper scale: capped
    assert load_batch_shards(7_000_000, 50_000) == 1  # a shard larger than the cap loads alone


def test_progress_is_published_at_most_every_interval_and_always_at_the_end():
    from flows.build import _Every

    now = [100.0]
    due = _Every(2.0, clock=lambda: now[0])
    seen = []
    for step in range(10):  # a shard finished every 0.5 s
        seen.append(due(final=step == 9))
        now[0] += 0.5
    assert seen == [True, False, False, False, True, False, False, False, True, True]
