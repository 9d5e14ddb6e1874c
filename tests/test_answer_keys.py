"""The flow asks each answer shard for its call keys before submitting it; those keys must be
the keys of the requests the shard then sends, or cached calls would be missed or sent twice."""

from __future__ import annotations

import json

import pytest

from flows.config import BuildConfig
from tasks.answer import ANSWER, REVISE1, _request
from tasks.llm_calls import request_key


def _row(i: int, history: list[dict] | None = None) -> dict:
    messages = [{"role": "user", "content": f"Predict the output of program {i} for x={i}. ünïcode \u2028 ok"}]
    row = {
        "id": f"t{i}", "kind": "output" if i % 2 else "input", "messages_json": json.dumps(messages),
        "input_json": json.dumps({"x": i}), "output_json": json.dumps(i * 2),
        "refcode": "def main_solution(x):\n    return 2 * x\n", "input_generator": None,
        "entry": "main_solution", "arg_names": json.dumps(["x"]), "io_description": "x: int",
    }
    if history is not None:
        row["history"] = history
    return row


@pytest.mark.parametrize("provider,extra", [("http", {}), ("http", {"top_p": 0.9, "seed": 3}), ("offline", {})])
def test_call_keys_are_the_keys_of_the_requests_sent(provider: str, extra: dict) -> None:
    cfg = BuildConfig.model_validate({
        "sources": [{"path": "corpus", "name": "t"}], "db_path": "unused.duckdb", "provider": provider,
        "llm": {"model": "m", "temperature": 0.3, "max_tokens": 777, "extra_body": extra},
    })
    rows = [_row(i) for i in range(4)]
    assert ANSWER.call_keys(rows, cfg) == [request_key(_request(r, cfg, 1), cfg) for r in rows]
    history = [{"task_id": "t", "turn": 1, "response": "I think 5", "feedback": "The output was 4, not 5."}]
    revised = [_row(i, history) for i in range(4)]
    assert REVISE1.call_keys(revised, cfg) == [request_key(_request(r, cfg, 2), cfg) for r in revised]
    assert len(set(ANSWER.call_keys(rows, cfg)) | set(REVISE1.call_keys(revised, cfg))) == 8


def test_a_key_computed_by_the_flow_is_taken_and_kept_per_model() -> None:
    from llm.types import ChatRequest

    req = ChatRequest(messages=[{"role": "user", "content": "q"}])
    computed = req.key("m", {"seed": 1})
    fresh = ChatRequest(messages=[{"role": "user", "content": "q"}])
    fresh.know_key("m", {"seed": 1}, computed)
    assert fresh.key("m", {"seed": 1}) == computed
    # another model or extra body is another call: computed, not taken from the memo
    assert fresh.key("m2", {"seed": 1}) == req.key("m2", {"seed": 1}) != computed
    assert fresh.key("m", None) != computed


def test_a_revision_sends_back_the_answer_of_a_turn_not_its_thinking() -> None:
    cfg = BuildConfig.model_validate({"provider": "http", "llm": {"model": "deepseek-reasoner"}})
    turn_1 = '<think>\nA long thinking. Maybe {"output": 3}.\n</think>\n\nSo {"output": 5}'
    row = _row(1, [{"task_id": "t1", "turn": 1, "response": turn_1, "feedback": "The output was 2, not 5."}])
    messages = _request(row, cfg, 2).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == 'So {"output": 5}'
