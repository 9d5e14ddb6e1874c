"""Export of CODEI/O and CODEI/O++ sets from a small real store: shapes, modes, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from storage.export import GROUND_TRUTH_NOTE, export_datasets
from storage.models import Outcome, ShardResult
from storage.store import Store
from test_export_fixtures import FEEDBACK, KEYS, PROMPTS, RESPONSES, build_store

BASE_COLUMNS = ["id", "kind", "prompt", "turn_1", "feedback_1", "turn_2", "feedback_2",
                "verdict", "model", "function_id", "pair_id"]
EXPORTED = ["task-a", "task-b", "task-c", "task-d"]
FILES = ["codeio.jsonl", "codeio.messages.jsonl", "codeio.parquet",
         "codeio_pp.jsonl", "codeio_pp.messages.jsonl", "codeio_pp.parquet", "stats.json"]


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = build_store(tmp_path / "codeio.duckdb")
    yield s
    s.close()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_id(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(path)}


def responses(path: Path) -> list[str]:
    return [r["messages"][1]["content"] for r in read_jsonl(path)]


def test_codeio_jsonl_has_the_released_shape_and_turn_1_only(store, tmp_path):
    out = tmp_path / "out"
    result = export_datasets(store, KEYS, out)
    rows = read_jsonl(out / "codeio.jsonl")
    assert [list(r) for r in rows] == [BASE_COLUMNS] * 4
    assert [r["id"] for r in rows] == EXPORTED  # ordered by task id; other config and failed call left out
    rows = {r["id"]: r for r in rows}
    assert rows["task-b"] == {
        "id": "task-b", "kind": "input", "prompt": PROMPTS["task-b"],  # last user message, not the system one
        "turn_1": RESPONSES[("task-b", 1)], "feedback_1": FEEDBACK["wrong"],
        "turn_2": None, "feedback_2": None, "verdict": "wrong", "model": "model-x",
        "function_id": "fn-1", "pair_id": "pair-task-b",
    }
    assert [r["verdict"] for r in rows.values()] == ["correct", "wrong", "wrong", "no_answer"]
    assert responses(out / "codeio.messages.jsonl") == [RESPONSES[(t, 1)] for t in EXPORTED]
    assert result.counts == {f: 4 for f in FILES if f != "stats.json"}
    assert set(result.paths) == set(FILES)
    assert result.stats["samples"]["skipped_no_response"] == 1  # task-e: its turn-1 call failed


def test_codeio_pp_concatenates_turns_and_feedbacks(store, tmp_path):
    from prompts.render import assemble_multiturn

    out = tmp_path / "out"
    export_datasets(store, KEYS, out)
    rows = by_id(out / "codeio_pp.jsonl")
    # correct first turn: success feedback, no turn 2
    assert rows["task-a"]["turn_2"] is None and rows["task-a"]["feedback_1"] == FEEDBACK["correct"]
    # wrong then correct
    b = rows["task-b"]
    assert (b["turn_1"], b["feedback_1"], b["turn_2"], b["feedback_2"], b["verdict"]) == (
        RESPONSES[("task-b", 1)], FEEDBACK["wrong"], RESPONSES[("task-b", 2)], FEEDBACK["correct"], "correct")
    # wrong twice (turn 3 is not used with one revision turn)
    assert (rows["task-c"]["verdict"], rows["task-c"]["feedback_2"]) == ("wrong", FEEDBACK["wrong"])
    assert "turn_3" not in rows["task-c"]
    # no answer, and the revision call failed: turn 1 + feedback 1 only
    assert (rows["task-d"]["turn_2"], rows["task-d"]["verdict"]) == (None, "no_answer")

    got = dict(zip(EXPORTED, responses(out / "codeio_pp.messages.jsonl")))
    assert got["task-b"] == assemble_multiturn(
        [RESPONSES[("task-b", 1)], RESPONSES[("task-b", 2)]], [FEEDBACK["wrong"], FEEDBACK["correct"]])
    assert got["task-a"] == assemble_multiturn([RESPONSES[("task-a", 1)]], [FEEDBACK["correct"]])
    assert got["task-d"] == assemble_multiturn([RESPONSES[("task-d", 1)]], [FEEDBACK["no_answer"]])
    # the parts appear in order: turn 1, feedback 1, turn 2, feedback 2
    text, at = got["task-b"], 0
    for part in (RESPONSES[("task-b", 1)], FEEDBACK["wrong"], RESPONSES[("task-b", 2)], FEEDBACK["correct"]):
        at = text.index(part, at) + len(part)
    assert text.endswith(FEEDBACK["correct"])


def test_messages_files_load_as_alternating_chat(store, tmp_path):
    out = tmp_path / "out"
    export_datasets(store, KEYS, out)
    for name in ("codeio", "codeio_pp"):
        path = out / f"{name}.messages.jsonl"
        frame = pl.read_ndjson(path)
        assert frame.columns == ["id", "messages"] and frame.height == 4
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert list(record) == ["id", "messages"]
            roles = [m["role"] for m in record["messages"]]
            assert len(roles) % 2 == 0
            assert roles == [("user", "assistant")[i % 2] for i in range(len(roles))]
            assert all(isinstance(m["content"], str) and m["content"].strip() for m in record["messages"])
        # line i of the messages file is sample i of the dataset file
        samples = read_jsonl(out / f"{name}.jsonl")
        assert [r["messages"][0]["content"] for r in read_jsonl(path)] == [r["prompt"] for r in samples]
        assert [r["id"] for r in read_jsonl(path)] == [r["id"] for r in samples]


def test_parquet_has_the_jsonl_columns_and_rows(store, tmp_path):
    out = tmp_path / "out"
    export_datasets(store, KEYS, out, batch_rows=3)
    for name in ("codeio", "codeio_pp"):
        table = pq.read_table(out / f"{name}.parquet")
        assert table.column_names == BASE_COLUMNS
        assert table.to_pylist() == read_jsonl(out / f"{name}.jsonl")
        assert pq.ParquetFile(out / f"{name}.parquet").metadata.num_row_groups == 2  # 3 + 1 rows


def test_reexport_is_byte_identical(store, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    export_datasets(store, KEYS, first)
    store.close()
    with Store(tmp_path / "codeio.duckdb", read_only=True) as again:
        export_datasets(again, KEYS, second)
        export_datasets(again, KEYS, first)  # over the previous files
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert sorted(p.name for p in first.iterdir()) == sorted(FILES)  # no temp files left


def test_batch_size_does_not_change_jsonl(store, tmp_path):
    export_datasets(store, KEYS, tmp_path / "big")
    export_datasets(store, KEYS, tmp_path / "small", batch_rows=1)
    for name in FILES:
        if not name.endswith(".parquet"):
            assert (tmp_path / "big" / name).read_bytes() == (tmp_path / "small" / name).read_bytes()


def test_rejection_keeps_only_correct_final_answers(store, tmp_path):
    out = tmp_path / "out"
    result = export_datasets(store, KEYS, out, mode="rejection")
    assert [r["id"] for r in read_jsonl(out / "codeio.jsonl")] == ["task-a"]  # turn-1 verdict decides
    assert [r["id"] for r in read_jsonl(out / "codeio_pp.jsonl")] == ["task-a", "task-b"]
    assert len(read_jsonl(out / "codeio_pp.messages.jsonl")) == 2
    assert pq.read_table(out / "codeio_pp.parquet").num_rows == 2
    assert result.stats["samples"]["codeio.rejected"] == 3
    assert result.stats["samples"]["codeio_pp.rejected"] == 2
    assert result.stats["mode"] == "rejection"
    # What the files hold, by kind and final verdict (only correct ones in this mode)...
    exported = result.stats["exported_verdicts"]
    for name in ("codeio", "codeio_pp"):
        rows = read_jsonl(out / f"{name}.jsonl")
        expected: dict[str, dict[str, int]] = {}
        for r in rows:
            expected.setdefault(r["kind"], {}).setdefault(r["verdict"], 0)
            expected[r["kind"]][r["verdict"]] += 1
        assert exported[name] == expected and {v for kind in expected.values() for v in kind} == {"correct"}
    # ...and every attempt of the build, whatever the mode kept.
    assert sum(r["count"] for r in result.stats["build_response_types"] if r["turn"] == 1) > len(
        read_jsonl(out / "codeio.jsonl"))


def test_ground_truth_appends_the_recorded_answer(store, tmp_path):
    from prompts.answers import extract_answer

    out = tmp_path / "out"
    result = export_datasets(store, KEYS, out, mode="ground_truth")
    codeio = by_id(out / "codeio.jsonl")
    assert list(codeio["task-a"])[-1] == "ground_truth_appended"
    assert codeio["task-a"]["ground_truth_appended"] is False
    assert codeio["task-a"]["turn_1"] == RESPONSES[("task-a", 1)]
    b = codeio["task-b"]  # input prediction: the pair's input
    assert b["ground_truth_appended"] is True and b["feedback_1"] is None and b["verdict"] == "wrong"
    assert b["turn_1"] == (RESPONSES[("task-b", 1)] + "\n\n" + GROUND_TRUTH_NOTE
                           + '\n```json\n{"input": {"nums": [5, 6, 7, 8]}}\n```')
    assert extract_answer(b["turn_1"], "input").value == {"nums": [5, 6, 7, 8]}
    # output prediction: the pair's output; a no_answer turn gets one too
    assert extract_answer(codeio["task-c"]["turn_1"], "output").value == 3
    assert extract_answer(codeio["task-d"]["turn_1"], "input").value == {"s": "a b"}

    pp = by_id(out / "codeio_pp.jsonl")
    assert pp["task-b"]["ground_truth_appended"] is False  # fixed by its revision
    c = pp["task-c"]
    assert c["turn_1"] == RESPONSES[("task-c", 1)] and c["feedback_1"] == FEEDBACK["wrong"]
    assert c["turn_2"].startswith(RESPONSES[("task-c", 2)]) and c["feedback_2"] is None
    last = dict(zip(EXPORTED, responses(out / "codeio_pp.messages.jsonl")))["task-c"]
    assert last.endswith('{"output": 3}\n```')  # the wrong turn's feedback is left out
    assert extract_answer(last, "output").value == 3
    assert result.stats["samples"]["codeio.ground_truth_appended"] == 3
    assert result.stats["samples"]["codeio_pp.ground_truth_appended"] == 2
    assert pq.read_table(out / "codeio_pp.parquet").to_pylist() == read_jsonl(out / "codeio_pp.jsonl")


def test_two_revision_turns_add_turn_3(store, tmp_path):
    from prompts.render import assemble_multiturn

    out = tmp_path / "out"
    export_datasets(store, KEYS, out, revision_turns=2)
    pp = by_id(out / "codeio_pp.jsonl")
    assert list(pp["task-a"]) == BASE_COLUMNS[:7] + ["turn_3", "feedback_3"] + BASE_COLUMNS[7:]
    c = pp["task-c"]
    assert (c["turn_3"], c["feedback_3"], c["verdict"]) == (RESPONSES[("task-c", 3)], FEEDBACK["correct"], "correct")
    assert pp["task-b"]["turn_3"] is None  # correct at turn 2: no third turn
    got = dict(zip(EXPORTED, responses(out / "codeio_pp.messages.jsonl")))["task-c"]
    assert got == assemble_multiturn([RESPONSES[("task-c", t)] for t in (1, 2, 3)],
                                     [FEEDBACK["wrong"], FEEDBACK["wrong"], FEEDBACK["correct"]])
    assert pq.read_table(out / "codeio_pp.parquet").column_names == list(pp["task-a"])
    # codeio is unaffected apart from its columns
    assert [r["turn_3"] for r in read_jsonl(out / "codeio.jsonl")] == [None] * 4


def test_zero_revision_turns_give_turn_1_and_feedback(store, tmp_path):
    out = tmp_path / "out"
    result = export_datasets(store, KEYS, out, revision_turns=0)
    pp = by_id(out / "codeio_pp.jsonl")
    assert all(r["turn_2"] is None for r in pp.values())
    assert pp["task-b"]["verdict"] == "wrong"
    assert [r["turn"] for r in result.stats["build_response_types"]] == [1] * 8  # only the turns exported


def test_failed_export_leaves_previous_files_intact(store, tmp_path, monkeypatch):
    import storage.export as export_module

    out = tmp_path / "out"
    export_datasets(store, KEYS, out)
    before = {name: (out / name).read_bytes() for name in FILES}

    real, calls = export_module._json_line, []

    def failing(value):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(value)

    monkeypatch.setattr(export_module, "_json_line", failing)
    with pytest.raises(OSError, match="No space left"):
        export_datasets(store, KEYS, out, mode="rejection")
    assert {name: (out / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)

    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(OSError):
        export_datasets(store, KEYS, fresh)
    assert list(fresh.iterdir()) == []


def test_bad_arguments_are_errors(store, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        export_datasets(store, KEYS, tmp_path, mode="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="revision_turns"):
        export_datasets(store, KEYS, tmp_path, revision_turns=3)
    with pytest.raises(ValueError, match="answer"):
        export_datasets(store, {"prompts": "k-prompts"}, tmp_path)


def test_empty_build_writes_empty_files(store, tmp_path):
    out = tmp_path / "out"
    result = export_datasets(store, {**KEYS, "prompts": "k-nothing"}, out)
    assert result.counts == {f: 0 for f in FILES if f != "stats.json"}
    assert (out / "codeio.jsonl").read_bytes() == b""
    assert pq.read_table(out / "codeio_pp.parquet").column_names == BASE_COLUMNS


def test_duplicate_attempts_give_one_sample(store, tmp_path):
    # a second turn-1 attempt for task-a under the same key (another call): the smaller id wins
    row = store.query_dicts("SELECT * EXCLUDE (created_at) FROM attempts WHERE task_id = 'task-a'")[0]
    with store.transaction():
        store.insert_rows("attempts", [{**row, "id": "0-first", "response": "duplicate response"}])
    out = tmp_path / "out"
    export_datasets(store, KEYS, out, batch_rows=2)
    rows = read_jsonl(out / "codeio.jsonl")
    assert [r["id"] for r in rows] == EXPORTED
    assert rows[0]["turn_1"] == "duplicate response"


def test_build_without_revisions(store, tmp_path):
    keys = {k: v for k, v in KEYS.items() if k not in ("revise1", "revise2")}
    out = tmp_path / "out"
    export_datasets(store, keys, out)
    assert all(r["turn_2"] is None for r in read_jsonl(out / "codeio_pp.jsonl"))


def test_a_prompt_asked_twice_gives_one_sample(store, tmp_path):
    # Two functions that differ only in their input generator give their shared inputs the
    # same prompts (and, the call being cached by its text, the same answers): one sample, the
    # task with the smaller id; the other is counted and named in stats.json. The same text
    # for the other kind is another sample, and a copy without a turn-1 response (its call
    # failed) does not push out the task that has one.
    by_id = {r["id"]: r for r in store.query_dicts("SELECT * EXCLUDE (created_at) FROM prediction_tasks")}
    copies = [
        {**by_id["task-a"], "id": "task-a-copy", "function_id": "fn-2"},
        {**by_id["task-a"], "id": "task-a-input", "kind": "input"},
        {**by_id["task-b"], "id": "task-0-failed"},
    ]
    turn1 = {r["task_id"]: r for r in store.query_dicts(
        "SELECT * EXCLUDE (created_at) FROM attempts WHERE config_key = 'k-answer' AND turn = 1")}
    attempts = [{**turn1["task-a"], "id": "att-copy", "task_id": "task-a-copy"},
                {**turn1["task-a"], "id": "att-input", "task_id": "task-a-input"},
                {**turn1["task-e"], "id": "att-failed", "task_id": "task-0-failed"}]
    store.write_shard(ShardResult(stage="prompts", config_key=KEYS["prompts"], rows={"prediction_tasks": copies},
                                  outcomes=[Outcome(item_id=f"extra-{i}", status="ok") for i in range(3)]))
    store.write_shard(ShardResult(stage="answer", config_key=KEYS["answer"], rows={"attempts": attempts},
                                  outcomes=[Outcome(item_id=a["task_id"], status="ok") for a in attempts]))
    out = tmp_path / "out"
    result = export_datasets(store, KEYS, out, batch_rows=2)
    for name in ("codeio", "codeio_pp"):
        assert [r["id"] for r in read_jsonl(out / f"{name}.jsonl")] == ["task-a", "task-a-input", *EXPORTED[1:]]
    assert result.stats["samples"]["duplicate_prompt"] == 1
    assert result.stats["duplicate_examples"] == {"task-a-copy": "task-a"}
    assert result.stats["samples"]["skipped_no_response"] == 2  # task-e and the failed copy of task-b


def test_a_line_of_the_files_is_a_sample_however_it_is_split(store, tmp_path):
    # Code and model output now and then carry U+2028, U+2029 or U+0085, which JSON may leave
    # raw but str.splitlines() breaks lines at: they are written escaped.
    odd = "Step 1\u2028step 2\u2029step 3\x85done.\n```json\n{\"output\": 3}\n```"
    store.con.execute("UPDATE attempts SET response = ? WHERE task_id = 'task-a' AND turn = 1", [odd])
    out = tmp_path / "out"
    export_datasets(store, KEYS, out)
    for name in ("codeio.jsonl", "codeio.messages.jsonl", "codeio_pp.jsonl", "codeio_pp.messages.jsonl"):
        text = (out / name).read_text(encoding="utf-8")
        lines = text.splitlines()
        assert len(lines) == len(EXPORTED), name
        assert lines == text.split("\n")[:-1]
    assert read_jsonl(out / "codeio.jsonl")[0]["turn_1"] == odd
    assert read_jsonl(out / "codeio.messages.jsonl")[0]["messages"][1]["content"] == odd
