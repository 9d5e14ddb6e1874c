"""Shards running at once in one process share one LLM provider on one event loop: the
endpoint sees the configured concurrency bound for the whole build, and what the client
learns about the endpoint (its limit, its failures) carries over from shard to shard of a
build."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flows.config import BuildConfig
from llm.testserver import Fault, serve
from llm.types import ChatRequest
from tasks import llm_calls
from tasks.stage import ShardContext


def _cfg(tmp_path: Path, base_url: str, **llm: object) -> BuildConfig:
    return BuildConfig.model_validate({
        "sources": [{"path": str(tmp_path), "name": "t"}], "db_path": str(tmp_path / "db.duckdb"),
        "provider": "http",
        "llm": {"base_url": base_url, "model": "test-model", "api_key_env": None, "backoff_base_s": 0.01,
                "backoff_max_s": 0.05, **llm},
    })


def _requests(tag: str, n: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"{tag}-{i}"}], stage="answer") for i in range(n)]


@pytest.fixture(autouse=True)
def fresh_providers():
    llm_calls.close_providers()
    yield
    llm_calls.close_providers()


def test_two_shards_at_once_stay_within_one_concurrency_bound(tmp_path: Path) -> None:
    with serve(latency_s=0.05) as server:
        cfg = _cfg(tmp_path, server.base_url, max_concurrency=6)
        results: dict[str, list] = {}

        def shard(tag: str) -> None:
            ctx = ShardContext(config_key="k", run_id="run")
            results[tag] = llm_calls.complete(_requests(tag, 30), cfg, ctx)[0]

        threads = [threading.Thread(target=shard, args=(tag,)) for tag in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.content is not None for tag in ("a", "b") for r in results[tag])
        assert len(server.requests) == 60
        # two shards of 30 calls each, but never more than the build's bound in flight
        assert 3 <= server.max_in_flight <= 6


def test_the_limit_learned_from_overload_carries_over_to_the_next_shard(tmp_path: Path) -> None:
    with serve(faults=[Fault("429", times=40)]) as server:
        cfg = _cfg(tmp_path, server.base_url, max_concurrency=32, max_retries=20)
        ctx = ShardContext(config_key="k", run_id="run-1")
        first, _rows, _counters = llm_calls.complete(_requests("a", 40), cfg, ctx)
        assert all(r.content is not None for r in first)

        async def limit(run_id: str) -> int:
            return llm_calls._runtime.provider(cfg, run_id).concurrency_limit

        learned = llm_calls._runtime.run(limit("run-1"))
        assert learned < 32  # halved on the 429s, and not forgotten when the shard ended
        # another build starts from the configured bound, as a new process would
        assert llm_calls._runtime.run(limit("run-2")) == 32


def test_waiting_on_the_loop_from_the_loop_is_an_error_not_a_deadlock() -> None:
    async def inner() -> None:
        return None

    async def nested() -> str:
        coro = inner()
        try:
            llm_calls._runtime.run(coro)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "own event loop" in llm_calls._runtime.run(nested())


def test_a_request_asked_twice_in_a_shard_is_sent_and_counted_once(tmp_path: Path) -> None:
    with serve() as server:
        cfg = _cfg(tmp_path, server.base_url)
        ctx = ShardContext(config_key="k", run_id="run")
        requests = _requests("a", 5) + _requests("a", 3)  # a-0, a-1, a-2 asked twice
        results, rows, counters = llm_calls.complete(requests, cfg, ctx)
        assert [r.content for r in results[5:]] == [r.content for r in results[:3]]
        assert len(server.requests) == 5
        assert counters["llm_calls_sent"] == 5 and counters["llm_calls_cached"] == 3
        assert sorted(r["key"] for r in rows) == sorted({r.key for r in results})
        assert counters["prompt_tokens"] == sum(r.prompt_tokens for r in results[:5])


def test_an_interrupted_run_stops_its_calls_and_keeps_the_completed_ones(tmp_path: Path) -> None:
    """cancel_run (a build interrupted in a notebook, whose kernel lives on): the shard waiting
    on its calls gets RunCancelled at once instead of when its calls would end, the calls not
    sent yet are never sent, the completed ones are in the shard's journal, and a shard that
    starts later for that run sends nothing; another run is not affected."""
    import time

    from llm.errors import RunCancelled
    from llm.ledger import read_journal

    with serve(latency_s=3.0) as server:
        cfg = _cfg(tmp_path, server.base_url, max_concurrency=2)
        journal = tmp_path / "answer-shard.jsonl"
        journal.touch()  # as the flow does before it submits the shard
        ctx = ShardContext(config_key="k", run_id="run-1", journal_path=str(journal))
        outcome: dict[str, object] = {}

        def shard() -> None:
            started = time.monotonic()
            try:
                llm_calls.complete(_requests("x", 20), cfg, ctx)
            except RunCancelled:
                outcome["cancelled_after"] = time.monotonic() - started

        thread = threading.Thread(target=shard)
        thread.start()
        deadline = time.monotonic() + 20
        while len(server.requests) < 4 and time.monotonic() < deadline:  # two answered, two out
            time.sleep(0.05)
        assert llm_calls.cancel_run("run-1") == 1
        thread.join(10)
        assert not thread.is_alive() and "cancelled_after" in outcome
        assert outcome["cancelled_after"] < 20 * 3.0 / 2  # far from all calls' time
        time.sleep(0.5)
        sent = len(server.requests)
        assert sent < 20
        assert len(read_journal(journal)) >= 2  # the completed calls are kept
        with pytest.raises(RunCancelled):
            llm_calls.complete(_requests("y", 2), cfg, ctx)
        other = ShardContext(config_key="k", run_id="run-2")
        results = llm_calls.complete(_requests("z", 1), cfg, other)[0]
        assert results[0].content is not None
        assert len(server.requests) == sent + 1


def test_a_shard_journals_only_into_the_journal_the_flow_created(tmp_path: Path) -> None:
    """A shard on a Dask worker of another machine gets the journal path of the flow's machine.
    There it must not create that directory and file: the flow would never read the journal
    (nor remove it), and where the directory cannot be made the shard would fail. Its calls go
    through a ledger in memory instead; where the flow's file is there, they are journaled."""
    from llm.ledger import read_journal

    flow_dir = tmp_path / "flow-machine" / "db"
    journal = flow_dir / "ledger" / "answer-0.jsonl"
    with serve() as server:
        cfg = _cfg(tmp_path, server.base_url)
        ctx = ShardContext(config_key="k", run_id="run-remote", journal_path=str(journal))
        results, rows, counters = llm_calls.complete(_requests("w", 3), cfg, ctx)
        assert [r.content is not None for r in results] == [True] * 3
        assert len(rows) == 3 and counters["llm_calls_sent"] == 3
        assert not (tmp_path / "flow-machine").exists()

        journal.parent.mkdir(parents=True)
        journal.touch()
        llm_calls.complete(_requests("v", 2), cfg, ctx)
        assert len(read_journal(journal)) == 2
