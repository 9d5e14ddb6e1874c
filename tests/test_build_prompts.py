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
    "arg_names": json.dumps(["n"]),
}


def _tasks(prediction: dict) -> list[dict]:
    cfg = BuildConfig.model_validate({"prediction": prediction})
    res = run_shard([ROW], cfg, ShardContext(config_key="k", upstream_keys={}))
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
