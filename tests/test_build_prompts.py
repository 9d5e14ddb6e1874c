"""The prompts stage and its ablation switches: task kinds and the reference-code tip."""

from __future__ import annotations

import json

from flows.config import BuildConfig
from storage.models import Function, IOPair, Outcome, ShardResult, mark_same_output
from tasks.build_prompts import _load, run_shard
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
    first = {**ROW, "same_output_as": None}
    second = {**ROW, "id": "pair2", "input_json": json.dumps({"n": 6}), "same_output_as": "pair1"}
    other = {**ROW, "id": "pair3", "input_json": json.dumps({"n": 4}), "output_json": "24", "same_output_as": None}
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


def _pairs_of(fid: str, outputs: list[int], start: int = 0) -> list[dict]:
    return [IOPair(id=IOPair.make_id(fid, {"n": start + n}), function_id=fid, input={"n": start + n},
                   output=out, ordinal=n).row() for n, out in enumerate(outputs)]


def _expected_first(pairs: list[dict]) -> dict[str, str]:
    """Pair id -> the smallest id of its function's pairs with its output (the rule)."""
    def same(p: dict, q: dict) -> bool:
        return (q["function_id"], q["output_json"]) == (p["function_id"], p["output_json"])

    return {p["id"]: min(q["id"] for q in pairs if same(p, q)) for p in pairs}


def test_load_gives_each_pair_the_first_pair_with_its_output(store):
    # sample_io records same_output_as with the pairs; loaded a few at a time, as shards, each
    # pair names the first pair of its function with its output, often in another shard.
    fns = [Function(id=f"fn{i}", raw_id=f"raw{i}", source="s", source_kind="mixed", origin="offline", model="m",
                    refcode=ROW["refcode"], input_generator=None, io_description="io", query=f"q{i}", arg_names=["n"])
           for i in range(3)]
    store.write_shard(ShardResult(stage="transform", config_key="kt", rows={"functions": [f.row() for f in fns]},
                                  outcomes=[Outcome(item_id=f.raw_id, status="ok") for f in fns]))
    pairs = mark_same_output(_pairs_of("fn0", [1, 2, 1, 1]) + _pairs_of("fn1", [3, 4]) + _pairs_of("fn2", [5, 6, 5, 5, 6]))
    store.write_shard(ShardResult(stage="sample_io", config_key="ks", rows={"io_pairs": pairs},
                                  outcomes=[Outcome(item_id=f.id, status="ok") for f in fns]))
    # The same function's pairs under another sample_io key do not count.
    other = next(p for p in (_pairs_of("fn2", [5], start=s)[0] for s in range(10, 200))
                 if p["id"] < min(q["id"] for q in pairs if q["function_id"] == "fn2"))
    store.write_shard(ShardResult(stage="sample_io", config_key="k-other", rows={"io_pairs": mark_same_output([other])},
                                  outcomes=[Outcome(item_id="fn2", status="ok")]))

    expected = _expected_first(pairs)
    assert len(set(expected.values())) == 6  # fn0's output 1 and fn2's 5 and 6 repeat
    assert store.query("SELECT count(*) FROM io_pairs WHERE same_output_as IS NULL") == [(6 + 1,)]
    ids = sorted(expected)
    rows = [r for i in range(0, len(ids), 3) for r in _load(store, ids[i : i + 3], {"sample_io": "ks"})]
    assert [r["id"] for r in rows] == ids
    assert {r["id"]: r["same_output_as"] or r["id"] for r in rows} == expected
    assert all(r["query"] == f"q{r['function_id'][-1]}" for r in rows)

    res = run_shard(rows, BuildConfig.model_validate({}), ShardContext(config_key="kp"))
    shared = {o.item_id: o.detail for o in res.outcomes if o.reason == "input_prompt_shared"}
    assert shared.keys() == {i for i, first in expected.items() if first != i}
    assert all(expected[i] in detail for i, detail in shared.items())
    assert res.counters == {"input_prompts_shared": len(ids) - 6}
