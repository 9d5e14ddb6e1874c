"""The prompts stage and its ablation switches: task kinds and the reference-code tip."""

from __future__ import annotations

import json

from flows.config import BuildConfig
from tasks.build_prompts import run_shard
from tasks.stage import ShardContext

ROW = {
    "id": "pair1",
    "function_id": "fn1",
    "input_json": json.dumps({"n": 5}),
    "output_json": json.dumps(120),
    "query": "What is the factorial of `n`?",
    "io_description": "n (int): a small non-negative integer. Returns an int.",
    "refcode": "def main_solution(n):\n    return 1 if n < 2 else n * main_solution(n - 1)\n",
    "input_generator": None,
    "entry": "main_solution",
    "arg_names": json.dumps(["n"]),
}


def _tasks(prediction: dict) -> list[dict]:
    cfg = BuildConfig.model_validate({"prediction": prediction})
    res = run_shard([ROW], cfg, ShardContext(config_key="k"))
    assert [o.item_id for o in res.outcomes] == ["pair1"]
    return res.rows["prediction_tasks"]


def test_one_task_per_kind_with_the_given_side():
    tasks = {t["kind"]: json.loads(t["messages_json"])[-1]["content"] for t in _tasks({})}
    assert set(tasks) == {"input", "output"}
    assert '"n": 5' in tasks["output"] and "120" in tasks["input"]
    assert all("main_solution(n - 1)" in text for text in tasks.values())  # the reference tip


def test_kind_and_tip_switches():
    only_input = _tasks({"kinds": ["input"]})
    assert [t["kind"] for t in only_input] == ["input"]
    no_tip = _tasks({"reference_tip": False})
    assert all("main_solution(n - 1)" not in json.loads(t["messages_json"])[-1]["content"] for t in no_tip)
    assert {t["id"] for t in no_tip}.isdisjoint({t["id"] for t in _tasks({})})  # other prompts, other ids


def test_pairs_with_the_same_output_share_one_input_prediction_task():
    # Input prediction shows the output only: a second pair with the same output would ask the
    # same question again (same prompt, same cached answer, the same sample twice).
    first = {**ROW, "first_of_output": "pair1"}
    second = {**ROW, "id": "pair2", "input_json": json.dumps({"n": 6}), "first_of_output": "pair1"}
    other = {**ROW, "id": "pair3", "input_json": json.dumps({"n": 4}), "output_json": "24", "first_of_output": "pair3"}
    cfg = BuildConfig.model_validate({})
    res = run_shard([first, second, other], cfg, ShardContext(config_key="k"))
    kinds = sorted((t["pair_id"], t["kind"]) for t in res.rows["prediction_tasks"])
    assert kinds == [("pair1", "input"), ("pair1", "output"), ("pair2", "output"), ("pair3", "input"), ("pair3", "output")]
    outcome = {o.item_id: o for o in res.outcomes}
    assert all(o.status == "ok" for o in res.outcomes)
    assert outcome["pair2"].reason == "input_prompt_shared" and "pair1" in outcome["pair2"].detail
    assert outcome["pair1"].reason is None and outcome["pair3"].reason is None
    assert res.counters == {"input_prompts_shared": 1}
    # With input prediction switched off nothing is shared.
    only_output = run_shard([first, second], BuildConfig.model_validate({"prediction": {"kinds": ["output"]}}),
                            ShardContext(config_key="k"))
    assert all(o.reason is None for o in only_output.outcomes) and only_output.counters == {}


def test_input_prompts_name_the_parameters_with_a_default_as_optional():
    row = {**ROW, "arg_names": json.dumps(["n", "base"]),
           "refcode": "def main_solution(n, base=10):\n    return len(str(n)) if base == 10 else n\n"}
    res = run_shard([row], BuildConfig.model_validate({"prediction": {"kinds": ["input"]}}), ShardContext(config_key="k"))
    (task,) = res.rows["prediction_tasks"]
    assert '("n" and optionally "base")' in json.loads(task["messages_json"])[-1]["content"]
