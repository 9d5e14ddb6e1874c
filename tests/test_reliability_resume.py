"""Reliability of a build against an LLM endpoint (issue 9): killed and resumed, a flaky
endpoint, an endpoint that goes down and comes back. Each is `codeio run` as a subprocess
against the scripted test server; each must end with the export of an uninterrupted build,
byte for byte, without paying twice for an LLM call that had completed."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from llm.testserver import Fault
from storage.stages import STAGE_ORDER
from storage.store import Store
from reliability_helpers import (
    CLIRun,
    RecordingServer,
    ServerLog,
    body_key,
    cli_env,
    export_digest,
    http_config,
    llm_script,
    one_line_error,
    recorded_calls,
    run_cli,
    write_config,
    write_corpus,
)

pytestmark = pytest.mark.slow

FILES = 16
# A 200 answer counts as received by the client when it went out this long before the kill
# (the client journals a response the moment it reads it; the margin covers a busy machine).
# The exact check is the client's own record: calls in the store or a journal after a kill.
DELIVERY_MARGIN_S = 0.25


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "fixture", FILES)


@pytest.fixture(scope="module")
def reference(prefect_harness: str, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted build against a healthy endpoint: the export every other build must match."""
    base = tmp_path_factory.mktemp("reference")
    with RecordingServer() as server:
        cfg = write_config(base / "build.json", http_config(base, corpus, server.base_url))
        rc, out, err = run_cli(["run", "--config", str(cfg), "--json"], cli_env(base / "prefect", prefect_harness),
                               base, "run")
        assert rc == 0, err[-3000:]
        received, _ = server.log.snapshot()
    summary = json.loads(out)
    digest = export_digest(base / "out")
    assert {"codeio.jsonl", "codeio_pp.jsonl", "stats.json"} <= set(digest)
    # The fixture is meant to exercise every turn: some answers are wrong on turn 1.
    assert summary["stages"]["revise1"]["rows_in"] > 0
    assert summary["stages"]["revise2"]["rows_in"] > 0
    assert all(n == 1 for n in received.values()), "a healthy build sends each call once"
    # The ledger names the stage that asked for each call, revision turns apart, so token
    # usage lines up with the funnel's stages.
    with Store(base / "db" / "codeio.duckdb", read_only=True) as store:
        ledger_stages = {stage for (stage,) in store.query("SELECT DISTINCT stage FROM llm_calls")}
    assert {"answer", "revise1", "revise2"} <= ledger_stages <= set(STAGE_ORDER), ledger_stages
    return {"digest": digest, "calls": set(received), "db": base / "db" / "codeio.duckdb", "summary": summary}


# Kill points, in pipeline order: each run is killed at the first of the remaining points its
# log reaches (a resumed run skips what is done, so its log starts where the last one stopped).
KILL_POINTS = [
    ("transform", re.compile(r"transform: shard 1/\d+ written")),
    ("sample_io", re.compile(r"sample_io: shard 1/\d+ written")),
    ("prompts", re.compile(r"prompts: shard [2-9]/\d+ written")),
    ("answer", re.compile(r"answer: shard [3-9]/\d+ written")),
    ("answer-late", re.compile(r"answer: shard 1[0-9]/\d+ written")),
    ("revise1", re.compile(r"revise1: shard [1-9]/\d+ written")),
    ("revise2/export", re.compile(r"revise2: (shard 1/\d+ written|nothing to do)")),
]


def test_kill_at_any_stage_and_resume(prefect_harness, corpus, reference, tmp_path):
    """SIGKILL `codeio run` at >= 5 points across the stages, then run it to the end: the
    export is byte-identical to an uninterrupted build's, no completed LLM call is sent again,
    and no sandbox process outlives the killed flow process."""
    rng = random.Random(9)
    db = tmp_path / "db" / "codeio.duckdb"
    with RecordingServer() as server:
        log = server.log
        cfg = write_config(tmp_path / "build.json", http_config(tmp_path, corpus, server.base_url))
        env = cli_env(tmp_path / "prefect", prefect_harness)  # the shard cache survives kills
        args = ["run", "--config", str(cfg)]
        kills: list[tuple[str, float]] = []
        survivors: list[str] = []
        answered_in_time: set[str] = set()  # 200s that reached a client that lived on after them
        recorded: set[str] = set()  # cache keys the killed builds had recorded (store + journals)
        resent: list[str] = []  # recorded calls that a later run sent again
        point = 0
        while point < len(KILL_POINTS):
            before, _ = log.snapshot()
            run = CLIRun(args, env, tmp_path, f"killed-{len(kills)}")
            hit: list[int] = []

            def reached(text: str) -> bool:
                for i in range(point, len(KILL_POINTS)):
                    if KILL_POINTS[i][1].search(text):
                        hit.append(i)
                        return True
                return False

            finished = not run.poll_until(reached, timeout=240)
            if not finished:
                time.sleep(rng.uniform(0.0, 0.15))  # seeded jitter: not always right at the log line
                finished = run.proc.poll() is not None
            if finished:
                assert run.wait() == 0, run.stderr()[-3000:]
                break  # it finished before the next kill point: nothing left to kill
            survivors += run.kill()
            kills.append((KILL_POINTS[hit[0]][0], run.killed_at))
            answered_in_time |= log.answered_between(run.started, run.killed_at - DELIVERY_MARGIN_S)
            after, _ = log.snapshot()
            resent += [k for k in after - before if log.ledger_key(k) in recorded]
            recorded |= recorded_calls(db)
            point = hit[0] + 1

        before, _ = log.snapshot()
        final = CLIRun(args, env, tmp_path, "final")
        assert final.wait(timeout=300) == 0, final.stderr()[-3000:]
        received, answered = log.snapshot()
        resent += [k for k in received - before if log.ledger_key(k) in recorded]

    stages = [name for name, _ in kills]
    print(f"kills at {stages}; {sum(received.values())} requests (reference build: {len(reference['calls'])})")
    assert len(kills) >= 5, f"only {len(kills)} kill(s) landed: {stages}"
    assert not resent, f"{len(resent)} call(s) recorded by a killed run were sent again"
    # A call answered before a kill and answered again after it was paid twice across the kill.
    # (Two answers inside one run are a shard retry within that run, not the resume's doing.)
    paid_twice = {
        k[:12]: _when(answered[k], kills)
        for k in answered_in_time
        if received[k] > 1 and _answered_across_a_kill(answered[k], kills)
    }
    assert not paid_twice, f"{len(paid_twice)} answered call(s) sent again after a kill: {paid_twice}"
    assert not survivors, f"processes outlived the killed flow process: {survivors}"
    assert export_digest(tmp_path / "out") == reference["digest"]
    assert set(received) == reference["calls"]  # the same calls, no more, no fewer


def _answered_across_a_kill(times: list[float], kills: list[tuple[str, float]]) -> bool:
    first = min(times)
    later_kills = [at for _, at in kills if at >= first + DELIVERY_MARGIN_S]
    return bool(later_kills) and any(t > later_kills[0] for t in times)


def _when(times: list[float], kills: list[tuple[str, float]]) -> list[str]:
    """Each answer time as 'seconds before kill N (stage)'."""
    out = []
    for t in times:
        after = [(i, name, at) for i, (name, at) in enumerate(kills) if at >= t]
        out.append(f"{after[0][2] - t:.3f}s before kill {after[0][0]} ({after[0][1]})" if after else "after the last kill")
    return out


FLAKY_FAULTS = [
    # One of each first, so every kind is seen whatever the random draws, then ~10% at random.
    Fault("429", times=1, retry_after=0.2),
    Fault("500", times=1),
    Fault("reset", times=1),
    Fault("hang", times=1, hang_s=3.0),
    Fault("429", probability=0.03, retry_after=0.1),
    Fault("500", probability=0.03),
    Fault("reset", probability=0.025),
    Fault("hang", probability=0.025, hang_s=3.0),
]


def test_flaky_endpoint_gives_the_same_export(prefect_harness, corpus, reference, tmp_path):
    """10% of requests fail (429 with Retry-After, 500, connection resets, timeouts): the build
    completes with the export of a healthy endpoint."""
    with RecordingServer(faults=FLAKY_FAULTS) as server:
        cfg = write_config(tmp_path / "build.json",
                           http_config(tmp_path, corpus, server.base_url, llm={"timeout_s": 1.0}))
        rc, _out, err = run_cli(["run", "--config", str(cfg)], cli_env(tmp_path / "prefect", prefect_harness),
                                tmp_path, "run")
        counts = server.counts
    assert rc == 0, err[-3000:]
    for kind in ("429", "500", "reset", "hang"):
        assert counts[kind] >= 1, counts
    assert sum(counts[k] for k in ("429", "500", "reset", "hang")) >= 8, counts
    assert export_digest(tmp_path / "out") == reference["digest"]


def test_endpoint_down_stops_cleanly_and_resumes(prefect_harness, corpus, reference, tmp_path):
    """The endpoint stops answering mid-build: the run stops with a one-line error and a
    non-zero exit (no traceback), keeps what it finished, and resumes to the same export once
    the endpoint is back."""
    log = ServerLog()
    server = RecordingServer(log=log).start()
    cfg = write_config(tmp_path / "build.json", http_config(
        tmp_path, corpus, server.base_url, llm={"max_consecutive_failures": 10, "backoff_max_s": 0.2},
    ))
    env = cli_env(tmp_path / "prefect", prefect_harness)
    args = ["run", "--config", str(cfg)]
    run = CLIRun(args, env, tmp_path, "down")
    try:
        assert run.poll_until(lambda text: "answer: shard 2/" in text, timeout=240), run.stderr()[-3000:]
    finally:
        server.stop()
    stopped_at = time.monotonic()
    rc = run.wait(timeout=180)
    down_err = run.stderr()
    assert rc == 1, down_err[-3000:]
    assert any(ln.startswith("codeio: error: endpoint") and "run again to resume" in ln
               for ln in down_err.splitlines()), down_err[-3000:]

    rc, out, err = run_cli(["stats", "--config", str(cfg), "--json"], env, tmp_path, "stats")
    assert rc == 0, err
    funnel = {(r["stage"], r["status"]): r["count"] for r in json.loads(out)["funnel"]}
    assert funnel.get(("answer", "ok"), 0) > 0  # finished shards are recorded
    assert funnel.get(("answer", "ok"), 0) < reference["summary"]["stages"]["answer"]["rows_in"]

    answered_before_outage = log.answered_between(run.started, stopped_at - DELIVERY_MARGIN_S)
    recorded = recorded_calls(tmp_path / "db" / "codeio.duckdb")
    before, _ = log.snapshot()
    with RecordingServer(port=server.port, log=log):
        rc, _out, err = run_cli(args, env, tmp_path, "resumed")
    assert rc == 0, err[-3000:]
    assert export_digest(tmp_path / "out") == reference["digest"]
    received, _ = log.snapshot()
    assert not [k for k in received - before if log.ledger_key(k) in recorded], "recorded calls were sent again"
    assert not [k for k in answered_before_outage if received[k] > 1], "answered calls were sent again"

    # Last, so the resume above is checked whatever the error output looks like.
    assert "Traceback" not in down_err, "traceback on stderr:\n" + down_err[down_err.index("Traceback") - 300 :][:2000]
    assert one_line_error(down_err).startswith("codeio: error: endpoint"), (
        "stderr does not end with the one-line error:\n" + down_err[-1500:])


def _poisoned(body: dict) -> str | dict:
    """The test script's answers, except that one request in five fails (HTTP 500) every time."""
    if int(body_key(body)[:8], 16) % 5 == 0:
        return {"error": "this request fails every time"}
    return llm_script(body)


def test_calls_that_keep_failing_are_left_to_the_next_run(prefect_harness, corpus, reference, tmp_path):
    """Some requests fail (HTTP 500) on every attempt of a run: their rows are not dropped but
    left to retry; the run writes and exports everything else and ends with a one-line error
    and a non-zero exit; the next run, against a healthy endpoint, sends only those calls and
    ends with the export of an uninterrupted build."""
    log = ServerLog()
    env = cli_env(tmp_path / "prefect", prefect_harness)
    with RecordingServer(script=_poisoned, log=log) as server:
        cfg = write_config(tmp_path / "build.json", http_config(
            tmp_path, corpus, server.base_url, llm={"max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05}))
        args = ["run", "--config", str(cfg), "--json"]
        rc, out, err = run_cli(args, env, tmp_path, "poisoned")
        port = server.port
    assert rc == 1, err[-3000:]
    assert one_line_error(err).startswith("codeio: error:") and "left to retry" in one_line_error(err), err[-2000:]
    assert "Traceback" not in err
    first = json.loads(out)  # the summary is printed before the error
    assert sum(v for st in first["stages"].values() for k, v in st.items() if k == "retry:call_failed") > 0
    rc, stats, err = run_cli(["stats", "--config", str(cfg), "--json"], env, tmp_path, "stats")
    assert rc == 0, err
    funnel = {(r["stage"], r["status"], r["reason"]) for r in json.loads(stats)["funnel"]}
    assert ("answer", "retry", "call_failed") in funnel or ("transform", "retry", "call_failed") in funnel
    assert not {f for f in funnel if f[1] == "dropped" and f[2] == "call_failed"}, "a failing call dropped its row"
    assert sum(json.loads(stats)["pending"].values()) > 0  # what the next run will take up

    answered, _ = log.snapshot()
    answered_ok = set(log.answered)
    with RecordingServer(port=port, log=log):
        rc, _out, err = run_cli(args, env, tmp_path, "retried")
    assert rc == 0, err[-3000:]
    assert export_digest(tmp_path / "out") == reference["digest"]
    received, _ = log.snapshot()
    sent_again = [k for k in answered_ok if received[k] > answered[k]]
    assert not sent_again, f"{len(sent_again)} answered call(s) sent again"


def test_a_call_that_fails_every_run_is_given_up(prefect_harness, corpus, tmp_path):
    """A request the endpoint never answers (HTTP 500 on every attempt of every run) keeps
    its row pending for ``llm.give_up_after_runs`` runs; the run that reaches the limit drops
    the row with reason call_failed and the count in its detail, and ends with exit 0, so a
    scheduled ingest does not fail forever on it. Nothing else is sent twice."""
    log = ServerLog()
    env = cli_env(tmp_path / "prefect", prefect_harness)
    with RecordingServer(script=_poisoned, log=log) as server:
        cfg = write_config(tmp_path / "build.json", http_config(
            tmp_path, corpus, server.base_url,
            llm={"max_retries": 0, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "give_up_after_runs": 2}))
        args = ["run", "--config", str(cfg), "--json"]
        rc, _out, err = run_cli(args, env, tmp_path, "first")
        assert rc == 1 and "left to retry" in one_line_error(err), err[-2000:]
        after_first, _ = log.snapshot()
        answered = set(log.answered)
        rc, out, err = run_cli(args, env, tmp_path, "second")
        assert rc == 0, err[-3000:]
        received, _ = log.snapshot()
    summary = json.loads(out)
    dropped = sum(st.get("dropped:call_failed", 0) for st in summary["stages"].values())
    assert dropped > 0
    assert not any(st.get("retry:call_failed") for st in summary["stages"].values())
    assert not [k for k in answered if received[k] > after_first[k]], "an answered call was sent again"
    with Store(tmp_path / "db" / "codeio.duckdb", read_only=True) as store:
        rows = store.query("SELECT status, failed_runs, detail FROM stage_outcomes WHERE reason = 'call_failed'")
    assert rows and all(s == "dropped" and n == 2 and "2 runs" in d for s, n, d in rows), rows[:3]
    rc, stats, err = run_cli(["stats", "--config", str(cfg), "--json"], env, tmp_path, "stats")
    assert rc == 0, err
    assert sum(json.loads(stats)["pending"].values()) == 0
