"""The response cache = ledger: no completed call is paid twice, even across a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from llm.http import HTTPProvider
from llm.ledger import CachedProvider, JournalLedger, MemoryLedger, read_journal
from llm.settings import LLMSettings
from llm.testserver import Fault, serve
from llm.types import ChatRequest, ChatResult
from llm.usage import summarize_usage

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-ledger-test-1a2b3c4d5e-DO-NOT-LOG"


def make_settings(base_url: str, **overrides) -> LLMSettings:
    values = dict(
        base_url=base_url, model="test-model", api_key_env=None, max_concurrency=8,
        backoff_base_s=0.01, backoff_max_s=0.1, timeout_s=5.0,
    )
    values.update(overrides)
    return LLMSettings(**values)


def make_requests(tags: list[str], stage: str = "answer") -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": tag}], stage=stage) for tag in tags]


def result(key: str, content: str = "x", stage: str = "answer", **fields) -> ChatResult:
    return ChatResult(key=key, model="m", stage=stage, content=content, **{"finish_reason": "stop", **fields})


class FakeProvider:
    """Answers without a network, each request after a per-message delay."""

    model = "m"

    def __init__(self, delays: dict[str, float] | None = None) -> None:
        self.delays = delays or {}

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for request in requests:
            await asyncio.sleep(self.delays.get(request.messages[0]["content"], 0.0))
            out.append(result(request.key(self.model), stage=request.stage))
        return out


def sent_counts(server) -> Counter[str]:
    return Counter(body["messages"][-1]["content"] for body in server.requests if isinstance(body, dict))


def run_cached(settings: LLMSettings, ledger, batches: list[list[ChatRequest]]) -> list[list[ChatResult]]:
    return run_cached_counting(settings, ledger, batches)[0]


def run_cached_counting(settings: LLMSettings, ledger, batches: list[list[ChatRequest]]):
    async def go() -> tuple[list[list[ChatResult]], CachedProvider]:
        async with HTTPProvider(settings) as http:
            cached = CachedProvider(http, ledger)
            return [await cached.complete(batch) for batch in batches], cached

    return asyncio.run(go())


def test_cached_calls_are_never_resent() -> None:
    with serve() as server:
        first = make_requests(["a", "b", "c", "d"])
        mixed = make_requests(["a", "b", "e", "f"])
        out, cached = run_cached_counting(make_settings(server.base_url), MemoryLedger(), [first, first, mixed])
        counts = sent_counts(server)
    assert counts == Counter({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1})
    assert (cached.hits, cached.sent) == (6, 6)
    assert [r.content for r in out[1]] == [r.content for r in out[0]]
    assert [r.content for r in out[2]] == ["echo: a", "echo: b", "echo: e", "echo: f"]


def test_a_cached_answer_is_relabelled_with_the_asking_stage() -> None:
    with serve() as server:
        out = run_cached(
            make_settings(server.base_url),
            MemoryLedger(),
            [make_requests(["a"], stage="answer"), make_requests(["a"], stage="revise")],
        )
        assert len(server.requests) == 1
    assert out[1][0].stage == "revise" and out[1][0].content == out[0][0].content


def test_duplicates_in_one_batch_are_sent_once() -> None:
    with serve() as server:
        (out,) = run_cached(make_settings(server.base_url), MemoryLedger(), [make_requests(["a", "a", "b"])])
        assert sent_counts(server) == Counter({"a": 1, "b": 1})
    assert out[0] == out[1] and out[2].content == "echo: b"


def test_failed_results_are_not_cached_and_truncated_ones_are() -> None:
    faults = [Fault("400", times=1, match=lambda b: b["messages"][0]["content"] == "bad"),
              Fault("length", times=1, match=lambda b: b["messages"][0]["content"] == "long")]
    ledger = MemoryLedger()
    with serve(faults=faults) as server:
        batch = make_requests(["bad", "long", "ok"])
        first, second = run_cached(make_settings(server.base_url), ledger, [batch, batch])
        counts = sent_counts(server)
    assert first[0].error is not None and second[0].error is None  # tried again, then fine
    assert first[1].truncated and second[1] == first[1]  # truncated: recorded, not re-paid
    assert counts == Counter({"bad": 2, "long": 1, "ok": 1})


def test_a_provider_whose_keys_disagree_is_refused() -> None:
    class WrongKeys(FakeProvider):
        extra_body = {"top_p": 0.5}  # keys must include it, but FakeProvider's results do not

    with pytest.raises(ValueError, match="returned key"):
        asyncio.run(CachedProvider(WrongKeys(), MemoryLedger()).complete(make_requests(["a"])))


def test_results_are_journaled_as_they_complete(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"

    async def go() -> int:
        with JournalLedger(journal) as ledger:
            cached = CachedProvider(FakeProvider({"slow": 0.3}), ledger)
            batch = asyncio.ensure_future(cached.complete(make_requests(["fast", "slow"])))
            await asyncio.sleep(0.15)
            lines_mid_batch = len(read_journal(journal))
            await batch
            return lines_mid_batch

    assert asyncio.run(go()) == 1  # "fast" was on disk while "slow" was still running
    assert len(read_journal(journal)) == 2


def test_journal_reopens_with_its_contents_and_preloads(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with JournalLedger(path) as ledger:
        ledger.append(result("k1"))
        ledger.append(result("k2", truncated=True, finish_reason="length"))
    with JournalLedger(path, preloaded={"k0": result("k0")}) as ledger:
        assert set(ledger.get_many(["k0", "k1", "k2", "k3"])) == {"k0", "k1", "k2"}
        assert ledger.get_many(["k2"])["k2"].truncated
    assert [r.key for r in read_journal(path)] == ["k1", "k2"]  # preloaded rows are not rewritten


def test_torn_last_line_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with JournalLedger(path) as ledger:
        ledger.append(result("k1"))
    with open(path, "ab") as file:
        file.write(result("k2").model_dump_json().encode()[:25])  # crash mid-write
    assert [r.key for r in read_journal(path)] == ["k1"]
    with JournalLedger(path) as ledger:
        ledger.append(result("k3"))
    assert [r.key for r in read_journal(path)] == ["k1", "k3"]


def test_corrupt_line_inside_the_journal_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    good = [result(key).model_dump_json().encode() for key in ("k1", "k2")]
    path.write_bytes(good[0] + b"\nnot json\n" + good[1] + b"\n")
    with pytest.raises(ValueError, match="line 2"):
        read_journal(path)


def test_a_journal_has_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with JournalLedger(path):
        with pytest.raises(RuntimeError, match="already open for writing"):
            JournalLedger(path)


def test_fsync_is_batched_and_a_returned_batch_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_sizes: list[int] = []  # the journal's size at each fsync: what it made durable
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced_sizes.append(os.fstat(fd).st_size), real_fsync(fd)))
    path = tmp_path / "j.jsonl"
    with JournalLedger(path, fsync_every=20, fsync_interval_s=3600) as ledger:
        for i in range(45):
            ledger.append(result(f"k{i}"))
        ledger.sync()
        assert 1 <= len(synced_sizes) <= 3 and synced_sizes[-1] == path.stat().st_size
        asyncio.run(CachedProvider(FakeProvider(), ledger).complete(make_requests(["a"])))
        assert synced_sizes[-1] == path.stat().st_size  # complete() synced before returning


def test_the_fsync_does_not_stall_the_appending_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow disk (a busy or network file system): fsync takes 0.2 s. append runs on the LLM
    # client's event loop, which must not wait for it; a line is with the OS (it survives a
    # SIGKILL) the moment append returns, and sync() waits until the lines are on disk.
    fsync_threads: list[str] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        fsync_threads.append(threading.current_thread().name)
        time.sleep(0.2)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = tmp_path / "j.jsonl"
    with JournalLedger(path, fsync_every=5, fsync_interval_s=3600) as ledger:
        started = time.perf_counter()
        for i in range(20):
            ledger.append(result(f"k{i}"))
            assert [r.key for r in read_journal(path)][-1] == f"k{i}"  # another process could read it
        appending = time.perf_counter() - started
        ledger.sync()
    assert appending < 0.15, f"append waited {appending:.2f} s for fsync"
    assert fsync_threads and threading.current_thread().name not in fsync_threads
    assert [r.key for r in read_journal(path)] == [f"k{i}" for i in range(20)]


def test_usage_is_summed_per_stage_with_cost() -> None:
    settings = LLMSettings(model="m", price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
    results = [
        result("a", stage="answer", prompt_tokens=1000, completion_tokens=500),
        result("b", stage="answer", prompt_tokens=1000, completion_tokens=500, truncated=True),
        result("c", stage="revise", prompt_tokens=500, completion_tokens=0),
        ChatResult(key="d", model="m", stage="revise", content=None, finish_reason=None, error="bad_request: x"),
    ]
    usage = summarize_usage(results, settings)
    assert usage["by_stage"]["answer"] == {
        "calls": 2, "failed": 0, "truncated": 1, "prompt_tokens": 2000, "completion_tokens": 1000, "usage_unknown": 0,
        "cost_usd": 4.0,
    }
    assert usage["by_stage"]["revise"]["failed"] == 1
    assert usage["total"]["cost_usd"] == pytest.approx(4.5)
    assert summarize_usage(results)["total"]["cost_usd"] is None


RUN_BATCH = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from llm.http import HTTPProvider
    from llm.ledger import CachedProvider, JournalLedger, read_journal
    from llm.settings import LLMSettings

    logging.basicConfig(level=logging.DEBUG)
    base_url, journal, preload, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = LLMSettings(base_url=base_url, model="test-model", api_key_env="TEST_LLM_KEY",
                           max_concurrency=4, backoff_base_s=0.01, backoff_max_s=0.1)
    preloaded = {r.key: r for r in read_journal(preload)} if preload != "-" else None
    requests = [settings.request([{"role": "user", "content": f"task {i}"}], stage="answer") for i in range(n)]

    async def main():
        async with HTTPProvider(settings) as http:
            with JournalLedger(journal, preloaded) as ledger:
                results = await CachedProvider(http, ledger).complete(requests)
        print(json.dumps({"errors": sum(r.error is not None for r in results)}))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_killed_run_restarts_without_paying_twice(tmp_path: Path) -> None:
    script = tmp_path / "run_batch.py"
    script.write_text(RUN_BATCH)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TEST_LLM_KEY": SECRET}
    journal1, journal2, n = tmp_path / "run1.jsonl", tmp_path / "run2.jsonl", 40
    with serve(latency_s=0.2, api_key=SECRET) as server:
        args = [sys.executable, str(script), server.base_url]
        first = subprocess.Popen([*args, str(journal1), "-", str(n)], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not journal1.exists() or journal1.read_bytes().count(b"\n") < 8:
            assert first.poll() is None and time.monotonic() < deadline, "first run ended early"
            time.sleep(0.01)
        first.kill()  # SIGKILL, midway
        _, first_log = first.communicate(timeout=10)
        completed = {r.key: r for r in read_journal(journal1)}
        assert 8 <= len(completed) < n
        time.sleep(0.1)  # let anything the killed client wrote reach the server
        sent_by_first = len(server.requests)

        second = subprocess.run(
            [*args, str(journal2), str(journal1), str(n)], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 0, second.stderr[-2000:]
        assert json.loads(second.stdout.strip().splitlines()[-1]) == {"errors": 0}
        sends = sent_counts(server)
        assert len(server.requests) - sent_by_first == n - len(completed)  # run 2 sent only the rest

    settings = LLMSettings(model="test-model")
    key_of = {
        settings.request([{"role": "user", "content": f"task {i}"}], stage="answer").key("test-model"): f"task {i}"
        for i in range(n)
    }
    resumed = {r.key for r in read_journal(journal2)}
    assert set(completed) | resumed == set(key_of)  # everything done once across both runs
    assert not set(completed) & resumed
    assert {key_of[key]: sends[key_of[key]] for key in completed} == {key_of[key]: 1 for key in completed}
    assert SECRET not in first_log and SECRET not in second.stderr and "DEBUG" in second.stderr


def test_results_are_handed_over_as_they_arrive_cached_first() -> None:
    """``on_result`` sees every request exactly once: cached answers before any call is sent,
    each fresh answer when it arrives (a slow call does not hold the fast ones back), and a
    request repeated in the batch under its own index."""
    requests = make_requests(["cached", "slow", "fast", "fast"])
    inner = FakeProvider({"slow": 0.3})
    ledger = MemoryLedger({requests[0].key("m"): result(requests[0].key("m"), "from the ledger")})
    seen: list[tuple[int, str, float]] = []
    start = time.perf_counter()

    async def go() -> list[ChatResult]:
        return await CachedProvider(inner, ledger).complete(
            requests, lambda i, r: seen.append((i, r.content or "", time.perf_counter() - start)))

    results = asyncio.run(go())
    assert sorted(i for i, _, _ in seen) == [0, 1, 2, 3]
    assert seen[0][:2] == (0, "from the ledger")
    when = {i: t for i, _, t in seen}
    assert max(when[2], when[3]) < when[1] and when[1] >= 0.3
    assert [r.key for r in results] == [q.key("m") for q in requests]


def test_a_full_disk_under_the_journal_names_the_journal(tmp_path) -> None:
    """Writing the journal on a full disk raises an OSError that names the journal (the
    CLI's error line says which file), on append and on close, and a next run reads what
    was written before the disk filled."""
    import errno

    from reliability_helpers import small_disk

    with small_disk(tmp_path / "small", "4k") as small:
        journal = JournalLedger(small / "j.jsonl")
        appended = 0
        with pytest.raises(OSError) as full:
            for i in range(100):
                journal.append(ChatResult(key=f"k{i}", model="m", stage="answer", content="x" * 500,
                                          finish_reason="stop"))
                appended += 1
        assert full.value.errno == errno.ENOSPC and full.value.filename == str(small / "j.jsonl")
        with pytest.raises(OSError) as at_close:
            journal.close()
        assert at_close.value.errno == errno.ENOSPC and at_close.value.filename == str(small / "j.jsonl")
        assert [r.key for r in read_journal(small / "j.jsonl")] == [f"k{i}" for i in range(appended)]
