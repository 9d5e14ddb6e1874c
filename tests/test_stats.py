"""Funnel, response types (figure 7) and token usage, checked to the exact numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.stats import format_report, funnel, funnel_markdown, response_types, token_usage
from storage.store import Store
from test_export_fixtures import KEYS, build_store


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = build_store(tmp_path / "codeio.duckdb")
    yield s
    s.close()


CURRENT_FUNNEL = [
    ("ingest", "ok", None, 3),
    ("ingest", "duplicate", "duplicate_content", 1),
    ("ingest", "rejected", "too_large", 1),
    ("transform", "ok", None, 2),
    ("transform", "dropped", "parse_failure", 1),
    ("sample_io", "ok", None, 1),
    ("sample_io", "dropped", "non_deterministic", 1),
    ("prompts", "ok", None, 5),
    ("answer", "ok", None, 5),  # four tasks + the other config's task, all under the current answer key
    ("answer", "dropped", "call_failed", 1),
    ("revise1", "ok", None, 2),
    ("revise1", "dropped", "call_failed", 1),
    ("revise2", "ok", None, 1),
]


def test_funnel_for_the_current_keys(store):
    frame = funnel(store, KEYS)
    assert frame.columns == ["stage", "status", "reason", "count"]
    assert frame.rows() == CURRENT_FUNNEL


def test_funnel_without_keys_counts_every_config(store):
    rows = funnel(store).rows()
    assert ("transform", "dropped", "not_executable", 1) in rows  # the older transform config
    assert len(rows) == len(CURRENT_FUNNEL) + 1


def test_funnel_with_only_ingest_key(store):
    assert funnel(store, {"ingest": "k-ingest"}).rows() == CURRENT_FUNNEL[:3]


def test_response_types_per_turn_and_kind(store):
    frame = response_types(store, KEYS)
    assert frame.columns == ["turn", "kind", "type", "count", "share"]
    got = {(t, k, ty): (n, s) for t, k, ty, n, s in frame.rows()}
    # turn 1: input = task-b wrong, task-d no_answer; output = task-a correct, task-c wrong,
    # task-e call_failed (error). The other config's task is not counted.
    assert got[(1, "input", "correct")] == (0, 0.0)
    assert got[(1, "input", "wrong")] == (1, 0.5)
    assert got[(1, "input", "no_answer")] == (1, 0.5)
    assert got[(1, "input", "error")] == (0, 0.0)
    assert got[(1, "output", "correct")] == (1, pytest.approx(1 / 3))
    assert got[(1, "output", "wrong")] == (1, pytest.approx(1 / 3))
    assert got[(1, "output", "error")] == (1, pytest.approx(1 / 3))
    # turn 2: input = task-b correct, task-d call_failed; output = task-c wrong
    assert got[(2, "input", "correct")] == (1, 0.5)
    assert got[(2, "input", "error")] == (1, 0.5)
    assert got[(2, "output", "wrong")] == (1, 1.0)
    # turn 3: task-c correct
    assert got[(3, "output", "correct")] == (1, 1.0)
    assert len(frame) == 5 * 4  # five (turn, kind) groups, four types each
    assert [r[:3] for r in frame.rows()[:4]] == [(1, "input", t) for t in ("correct", "wrong", "no_answer", "error")]


def test_response_types_for_unknown_keys_is_empty(store):
    assert response_types(store, {"prompts": "nope", "answer": "nope"}).height == 0
    assert response_types(store, {}).height == 0


def test_token_usage_per_stage(store):
    assert token_usage(store).rows() == [
        ("transform", 1, 100, 50, 0, 0),
        ("answer", 2, 22, 4126, 1, 0),
    ]


def test_calls_without_usage_are_counted_and_their_cost_is_unknown(store):
    from flows.artifacts import usage_table
    from llm.settings import LLMSettings
    from storage.models import LLMCall

    store.add_llm_calls([LLMCall(key="k-bare", model="m", stage="answer", content="x", finish_reason="stop",
                                 prompt_tokens=None, completion_tokens=None)])
    assert token_usage(store).rows() == [
        ("transform", 1, 100, 50, 0, 0),
        ("answer", 3, 22, 4126, 1, 1),
    ]
    assert any(line.split() == ["total", "4", "122", "4176", "1", "1"]
               for line in format_report(store, KEYS).splitlines())
    priced = LLMSettings(price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
    rows = {r["stage"]: r for r in usage_table(store, priced)}
    assert rows["transform"]["cost_usd"] == 0.2
    assert rows["answer"]["cost_usd"] == rows["total"]["cost_usd"] == "unknown"
    assert rows["total"]["usage_unknown"] == 1


def test_format_report_and_markdown(store):
    report = format_report(store, KEYS)
    lines = report.splitlines()
    assert lines[0].startswith("Funnel")
    assert any(line.split() == ["transform", "total", "2", "kept", "of", "3", "3"] for line in lines)
    # Each drop reason comes with an example: where the row is, and its recorded detail.
    assert any(line.split() == ["dropped", "non_deterministic", "1", "fn-2"] for line in lines)
    assert any(line.split() == ["rejected", "too_large", "1", "big.py"] for line in lines)
    assert any(line.split() == ["ok", "-", "3"] for line in lines)  # no example for kept rows
    assert any(line.split()[:3] == ["1", "input", "2"] and "50.0% (1)" in line for line in lines)
    assert any(line.split() == ["total", "3", "122", "4176", "1", "0"] for line in lines)

    # Rows a stage has still to do (an interrupted run, or rows left to retry) are counted in
    # its total and shown on a line of their own; a stage with nothing done yet is listed too.
    lines = format_report(store, KEYS, {"revise1": 4, "revise2": 0, "transform": 0}).splitlines()
    assert any(line.split() == ["revise1", "total", "2", "kept", "of", "7", "7"] for line in lines)
    assert any(line.split()[:3] == ["pending", "-", "4"] for line in lines)

    md = funnel_markdown(store, KEYS).splitlines()
    assert md[:2] == ["| stage | status | reason | count |", "|---|---|---|---:|"]
    assert md[2] == "| ingest | ok |  | 3 |"
    assert "| transform | dropped | parse_failure | 1 |" in md
    assert len(md) == 2 + len(CURRENT_FUNNEL)


def test_drop_examples_name_the_row_and_its_detail(tmp_path):
    from storage.models import IngestEntry, Outcome, RawFile, ShardResult
    from storage.stats import drop_examples

    with Store(tmp_path / "d.duckdb") as store:
        entries = [IngestEntry(id=f"i{n}", source="s", locator=f"c.jsonl:{n}", bytes_sha256=f"h{n}", size_bytes=1,
                               status="rejected", reason="bad_record", detail=f"line {n} is not a JSON object").row()
                   for n in (7, 3)]
        store.write_ingest(ShardResult(stage="ingest", config_key="k-ingest", rows={"ingest_log": entries}))
        raw = RawFile(id="raw-a", source="s", source_kind="mixed", path="pkg/a.py", content="x", size_bytes=1)
        store.write_ingest(ShardResult(stage="ingest", config_key="k-ingest", rows={"raw_files": [raw.row()]}))
        store.write_shard(ShardResult(stage="transform", config_key="k-t", rows={}, outcomes=[
            Outcome(item_id="raw-b", status="dropped", reason="syntax_error", detail="line 2"),
            Outcome(item_id="raw-a", status="dropped", reason="syntax_error", detail="line 9")]))
        store.write_shard(ShardResult(stage="prompts", config_key="k-p", rows={}, outcomes=[
            Outcome(item_id="pair-a", status="ok"),
            Outcome(item_id="pair-b", status="ok", reason="input_prompt_shared", detail="same output as pair-a")]))
        examples = drop_examples(store, {"ingest": "k-ingest", "transform": "k-t", "prompts": "k-p"})
        assert examples == {("ingest", "rejected", "bad_record"): "c.jsonl:3: line 3 is not a JSON object",
                            ("transform", "dropped", "syntax_error"): "pkg/a.py (raw-a): line 9",
                            ("prompts", "ok", "input_prompt_shared"): "pair-b: same output as pair-a"}
        assert drop_examples(store, {"transform": "other-key"}) == {
            ("ingest", "rejected", "bad_record"): "c.jsonl:3: line 3 is not a JSON object"}


def test_empty_store(tmp_path):
    with Store(tmp_path / "empty.duckdb") as store:
        assert funnel(store, KEYS).height == 0
        assert token_usage(store).height == 0
        report = format_report(store, KEYS)
        assert "(no attempts)" in report and "(no LLM calls)" in report


def test_files_rewritten_into_one_function_are_counted_as_such(tmp_path):
    """Two raw files the LLM rewrote into the same function make one functions row: the other
    file is ok with reason same_function, so transform's ok rows match sample_io's input."""
    from storage.models import Function, Outcome, ShardResult

    fn = Function(id="fn-1", raw_id="raw-b", source="s", source_kind="mixed", origin="llm", model="m",
                  refcode="def main_solution(x):\n    return x\n", input_generator=None, io_description="d",
                  query="q", arg_names=["x"])
    with Store(tmp_path / "d.duckdb") as store:
        store.write_shard(ShardResult(stage="transform", config_key="k-t", rows={"functions": [fn.row()]}, outcomes=[
            Outcome(item_id="raw-a", status="ok"), Outcome(item_id="raw-b", status="ok"),
            Outcome(item_id="raw-c", status="dropped", reason="syntax_error")]))
        rows = {(r["status"], r["reason"]): r["count"] for r in funnel(store, {"transform": "k-t"}).to_dicts()}
    assert rows == {("ok", None): 1, ("ok", "same_function"): 1, ("dropped", "syntax_error"): 1}


@pytest.mark.parametrize("revision_turns, turns", [(2, {1, 2, 3}), (1, {1, 2}), (0, {1})])
def test_stats_and_the_retry_check_cover_the_turns_the_settings_run(tmp_path, monkeypatch, capsys,
                                                                    revision_turns, turns):
    """revision_turns is not part of a turn's key, so after a build with two revision turns the
    store keeps those rows under the same keys when the setting goes down: `codeio stats` (as
    stats.json does) counts only the turns the settings run, and a revise2 row left to retry
    does not fail every later build, which never runs revise2 again."""
    import json

    from flows.build import _left_to_retry
    from flows.cli import main
    from flows.config import load_config
    from storage.models import Outcome, ShardResult
    from tasks.registry import build_keys

    with build_store(tmp_path / "codeio.duckdb") as store:
        store.write_shard(ShardResult(stage="revise2", config_key=KEYS["revise2"],
                                      outcomes=[Outcome(item_id="task-d", status="retry", reason="call_failed")]))
    monkeypatch.setattr("tasks.registry.stage_keys", lambda cfg: dict(KEYS))
    config = tmp_path / "build.json"
    config.write_text(json.dumps({"db_path": str(tmp_path / "codeio.duckdb"),
                                  "prediction": {"revision_turns": revision_turns}}))
    assert main(["stats", "--json", "--config", str(config)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["turn"] for r in out["response_types"]} == turns
    stages = {"revise1": 2, "revise2": 3}
    assert {r["stage"] for r in out["funnel"]} & set(stages) == {s for s, t in stages.items() if t in turns}
    with Store(tmp_path / "codeio.duckdb", read_only=True) as store:
        left = _left_to_retry(store, build_keys(load_config(str(config))))
    assert (left is not None) == (revision_turns == 2)
