"""Stages 1 and 2 for real: scripted LLM transform answers over loopback HTTP, execution in the
sandbox pool, released CodeI/O records re-verified.

The fixtures (tests/data/stage12/) are answers a model could give to the transform prompt: over
30 good ones in varied layouts, and broken ones that each stand for one drop reason. The raw corpus
is one tiny file per answer carrying a marker line; the scripted model finds the marker in the
prompt and replies with that answer. Every good function must end with its cap of pairs, each
reproducing in a plain subprocess; every broken answer must be dropped, with its exact reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flows.config import BuildConfig
from storage.models import RawFile
from tasks.stage import ShardContext

DATA = Path(__file__).parent / "data" / "stage12"
GOOD = {p.stem: p.read_text(encoding="utf-8") for p in sorted((DATA / "functions").glob("*.md"))}
BROKEN = {p.stem: p.read_text(encoding="utf-8") for p in sorted((DATA / "broken").glob("*.md"))}
RELEASED = DATA / "released.jsonl"

# Broken answer -> (stage that drops it, reason recorded in stage_outcomes).
BROKEN_REASONS = {
    "missing_query": ("transform", "missing_section:query"),
    "syntax_error": ("transform", "syntax_error"),
    "no_entry_point": ("transform", "no_entry_point"),
    "entry_without_args": ("transform", "entry_without_args"),
    "generator_loops": ("sample_io", "generator_timeout"),
    "generator_missing_module": ("sample_io", "generator_error"),
    "generator_not_dict": ("sample_io", "no_valid_inputs"),
    "generator_huge": ("sample_io", "no_valid_inputs"),
    "entry_huge": ("sample_io", "too_few_pairs"),
    "returns_none": ("sample_io", "too_few_pairs"),
    "set_order": ("sample_io", "non_deterministic"),
    "clock": ("sample_io", "non_deterministic"),
}
# Pair-level drops that explain the function-level reasons above (the stage's counters).
PAIR_DROPS = ("pair_drop:generator_not_dict", "pair_drop:generator_size_limit",
              "pair_drop:entry_size_limit", "pair_drop:output_none")

# The released records: kept ones with their pair count (cap 4 for that source), dropped ones
# with their reason. rel_mismatch keeps 2 of its 3 recorded pairs (one recorded output is wrong).
RELEASED_CAP = 4
RELEASED_KEPT = {"rel_bits": 4, "rel_grid_path": 4, "rel_roman": 4, "rel_mismatch": 2}
RELEASED_DROPPED = {"rel_nondet": "non_deterministic", "rel_too_few": "too_few_pairs"}

MIXED_CAP = 3
MARKER = re.compile(r"^# codeio-fixture: (\w+)$", re.M)

SANDBOX = {"workers": 2, "cpu_seconds": 1.0}
SAMPLING = {"generator_calls": 200, "function_budget_s": 2.0}


def test_fixture_inventory():
    """The data set is what the tests promise: enough good answers, one per broken reason."""
    assert len(GOOD) >= 30
    assert set(BROKEN) == set(BROKEN_REASONS)
    names = [json.loads(line)["name"] for line in RELEASED.read_text(encoding="utf-8").splitlines()]
    assert sorted(names) == sorted({**RELEASED_KEPT, **RELEASED_DROPPED})


# ---------------------------------------------------------------------------------------------
# The scripted model


def raw_file(name: str) -> str:
    """A tiny distinct raw file; the marker tells the scripted model which answer to give."""
    return f"# codeio-fixture: {name}\n# The body of this file is elided; the model's answer is scripted.\nFIXTURE = {name!r}\n"


ANSWERS = {**GOOD, **BROKEN}


def scripted_model(body: dict) -> str:
    """Transform prompts get the fixture answer named by their marker; prediction prompts get
    a short chain of thought ending in a JSON answer (its correctness does not matter here)."""
    prompt = body["messages"][0]["content"]
    if "Raw file:" in prompt:
        found = MARKER.search(prompt)
        return ANSWERS[found.group(1)] if found else "Sorry, I do not see a file to rewrite."
    if "Here is the output:" in prompt:
        return 'Working backwards from the output, a plausible input is:\n```json\n{"input": {"n": 1}}\n```'
    return 'Tracing the code step by step, the result is:\n```json\n{"output": 0}\n```'


def llm_settings(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "model": "test-model", "api_key_env": None, "max_retries": 1,
            "timeout_s": 30.0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


# ---------------------------------------------------------------------------------------------
# Checking pairs outside the sandbox

_REPLAY = r"""
import json, sys
jobs = json.load(sys.stdin)
results = []
for job in jobs:
    namespace = {"__name__": "replay"}
    exec(compile(job["code"], "<function>", "exec"), namespace)
    entry = namespace[job["entry"]]
    results.append([json.loads(json.dumps(entry(**kwargs))) for kwargs in job["inputs"]])
json.dump(results, sys.stdout)
"""


def replay(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """Outputs of ``main_solution(**input)`` in a plain Python subprocess (another hash seed,
    nothing of the sandbox), for ``jobs`` of {code, entry, inputs}."""
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run([sys.executable, "-c", _REPLAY], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=120, env=env, check=True)
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------------------------
# Stage functions called directly (fast; no Prefect)


def _raw_row(name: str, content: str, origin: str, source: str, kind: str = "mixed") -> dict[str, Any]:
    return {"id": RawFile.make_id(content), "source": source, "source_kind": kind, "origin": origin,
            "path": name, "content": content}


def _released_rows() -> dict[str, dict[str, Any]]:
    rows = {}
    for line in RELEASED.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        rows[rec["name"]] = _raw_row(rec["name"], json.dumps(rec, sort_keys=True), "unified", "released")
    return rows


def _direct_cfg(tmp_path: Path, base_url: str | None = None) -> BuildConfig:
    data: dict[str, Any] = {
        "sources": [{"path": str(tmp_path), "name": "fixtures", "kind": "mixed"},
                    {"path": str(RELEASED), "name": "released", "pairs_per_function": RELEASED_CAP}],
        "db_path": str(tmp_path / "db.duckdb"),
        "sandbox": SANDBOX,
        "sampling": SAMPLING,
    }
    if base_url:
        data.update(provider="http", llm=llm_settings(base_url))
    return BuildConfig.model_validate(data)


def _run_stages(rows: list[dict[str, Any]], cfg: BuildConfig):
    from tasks import sample_io, transform

    ctx = ShardContext(config_key="k-transform")
    transformed = transform.run_shard(rows, cfg, ctx)
    functions = transformed.rows["functions"]
    sampled = sample_io.run_shard(functions, cfg, ShardContext(config_key="k-sample"))
    return transformed, sampled


def _by_raw(outcomes, ids: dict[str, str]) -> dict[str, Any]:
    """Outcomes keyed by fixture name, given item id -> name."""
    return {ids[o.item_id]: o for o in outcomes if o.item_id in ids}


def test_released_records_are_imported_and_reverified(tmp_path):
    rows = _released_rows()
    cfg = _direct_cfg(tmp_path)
    transformed, sampled = _run_stages(list(rows.values()), cfg)

    raw_names = {r["id"]: n for n, r in rows.items()}
    assert {n: o.status for n, o in _by_raw(transformed.outcomes, raw_names).items()} == dict.fromkeys(rows, "ok")
    fn_names = {f["id"]: raw_names[f["raw_id"]] for f in transformed.rows["functions"]}
    assert all(f["origin"] == "import" for f in transformed.rows["functions"])

    outcomes = _by_raw(sampled.outcomes, fn_names)
    assert {n: o.reason for n, o in outcomes.items() if o.status == "dropped"} == RELEASED_DROPPED
    pairs: dict[str, list[dict[str, Any]]] = {}
    for p in sampled.rows["io_pairs"]:
        pairs.setdefault(fn_names[p["function_id"]], []).append(p)
    assert {n: len(v) for n, v in pairs.items()} == RELEASED_KEPT
    # One recorded output did not reproduce: that pair alone is gone, and it was counted.
    assert sampled.counters["pair_drop:recorded_output_mismatch"] == 1
    assert outcomes["rel_too_few"].detail.startswith("1 valid; entry_error: ZeroDivisionError")

    # Recorded pairs that reproduce come first and are kept as recorded.
    records = {json.loads(r["content"])["name"]: json.loads(r["content"]) for r in rows.values()}
    for name in ("rel_bits", "rel_roman", "rel_grid_path"):
        kept = [(json.loads(p["input_json"]), json.loads(p["output_json"])) for p in pairs[name]]
        recorded = [(io["input"], io["output"]) for io in records[name]["ios"]][:RELEASED_CAP]
        assert kept[: len(recorded)] == recorded
    mismatch = records["rel_mismatch"]["ios"]
    kept_inputs = [json.loads(p["input_json"]) for p in pairs["rel_mismatch"]]
    assert kept_inputs == [mismatch[0]["input"], mismatch[2]["input"]]


def test_broken_answers_are_dropped_with_their_reason(tmp_path):
    from llm.testserver import serve

    rows = {n: _raw_row(n, raw_file(n), "raw", "fixtures") for n in BROKEN}
    with serve(scripted_model) as server:
        cfg = _direct_cfg(tmp_path, server.base_url)
        transformed, sampled = _run_stages(list(rows.values()), cfg)
        assert len(server.requests) == len(BROKEN)

    raw_names = {r["id"]: n for n, r in rows.items()}
    fn_names = {f["id"]: raw_names[f["raw_id"]] for f in transformed.rows["functions"]}
    got = {n: ("transform", o.reason) for n, o in _by_raw(transformed.outcomes, raw_names).items() if o.status != "ok"}
    got.update({n: ("sample_io", o.reason) for n, o in _by_raw(sampled.outcomes, fn_names).items() if o.status != "ok"})
    assert got == BROKEN_REASONS
    assert not sampled.rows["io_pairs"]
    for reason in PAIR_DROPS:
        assert sampled.counters.get(reason, 0) > 0, (reason, sampled.counters)
    details = {fn_names[o.item_id]: o.detail or "" for o in sampled.outcomes}
    assert "generator_not_dict" in details["generator_not_dict"]
    assert "ModuleNotFoundError" in details["generator_missing_module"]


def test_a_file_too_long_for_the_models_context_is_dropped_as_prompt_too_long(tmp_path):
    from llm.testserver import Fault, serve
    from tasks import transform

    long_name, other = sorted(GOOD)[:2]
    rows = {n: _raw_row(n, raw_file(n), "raw", "fixtures") for n in (long_name, other)}
    vllm_400 = {"message": "This model's maximum context length is 8192 tokens. However, you requested 12288 "
                           "tokens (8192 in the messages, 4096 in the completion). Please reduce the length of "
                           "the messages or completion.", "type": "BadRequestError", "code": 400}
    too_long = Fault("400", error=vllm_400,
                     match=lambda body: f"codeio-fixture: {long_name}\n" in body["messages"][-1]["content"])
    with serve(scripted_model, faults=[too_long]) as server:
        transformed = transform.run_shard(
            list(rows.values()), _direct_cfg(tmp_path, server.base_url), ShardContext(config_key="k"))
    outcomes = _by_raw(transformed.outcomes, {r["id"]: n for n, r in rows.items()})
    assert (outcomes[long_name].status, outcomes[long_name].reason) == ("dropped", "prompt_too_long")
    assert "maximum context length is 8192 tokens" in outcomes[long_name].detail
    assert outcomes[other].status == "ok"


# ---------------------------------------------------------------------------------------------
# The whole flow, through Prefect, against the scripted server


@pytest.fixture(scope="module")
def built(prefect_harness, tmp_path_factory):
    """One build over all fixtures: the raw corpus (good + broken answers) and the released
    records. Yields (report, db path, server handle)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.build import run_build
    from llm.testserver import serve

    root = tmp_path_factory.mktemp("stage12")
    corpus = root / "corpus"
    corpus.mkdir()
    for n in ANSWERS:
        (corpus / f"{n}.py").write_text(raw_file(n), encoding="utf-8")
    with serve(scripted_model) as server:
        cfg = BuildConfig.model_validate({
            "sources": [{"path": str(corpus), "name": "fixtures", "kind": "mixed"},
                        {"path": str(RELEASED), "name": "released", "pairs_per_function": RELEASED_CAP}],
            "db_path": str(root / "db" / "codeio.duckdb"),
            "output_dir": str(root / "out"),
            "shard_size": 64,
            "provider": "http",
            "llm": llm_settings(server.base_url),
            "sandbox": SANDBOX,
            "sampling": SAMPLING,
            "prediction": {"revision_turns": 1},
        })
        # Prefect persists shard results (cache keyed by stage config and shard content) under
        # ~/.prefect/storage by default: a private store keeps an earlier session's results from
        # standing in for this run's LLM calls and executions.
        with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: root / "prefect-results"}):
            report = run_build(cfg)
        yield report, cfg.db_path, server


def _fixture_name(content: str) -> str:
    found = MARKER.search(content)
    return found.group(1) if found else json.loads(content)["name"]


def _store_view(db_path: str) -> dict[str, Any]:
    from storage.store import Store

    with Store(db_path, read_only=True) as s:
        raws = {r["id"]: _fixture_name(r["content"]) for r in s.query_dicts("SELECT id, content FROM raw_files")}
        functions = s.query_dicts("SELECT id, raw_id, refcode, input_generator, entry FROM functions")
        pairs = s.query_dicts("SELECT function_id, input_json, output_json, ordinal FROM io_pairs ORDER BY function_id, ordinal")
        outcomes = s.query_dicts("SELECT stage, item_id, status, reason, detail FROM stage_outcomes "
                                 "WHERE stage IN ('transform', 'sample_io')")
        from storage.stats import funnel

        frame = funnel(s)
    return {"raws": raws, "functions": functions, "pairs": pairs, "outcomes": outcomes, "funnel": frame}


@pytest.mark.slow
def test_full_flow_pairs_and_drops(built):
    from tasks.sample_io import program

    report, db_path, server = built
    view = _store_view(db_path)
    raws = view["raws"]
    fn_name = {f["id"]: raws[f["raw_id"]] for f in view["functions"]}
    assert sorted(raws.values()) == sorted([*ANSWERS, *RELEASED_KEPT, *RELEASED_DROPPED])

    # One transform call per raw file, and none for the imported records.
    transform_calls = [b for b in server.requests if "Raw file:" in b["messages"][0]["content"]]
    assert len(transform_calls) == len(ANSWERS)

    # Every row of both stages is accounted for, with its exact reason.
    by_stage: dict[str, dict[str, tuple[str, str | None]]] = {"transform": {}, "sample_io": {}}
    for o in view["outcomes"]:
        name = raws[o["item_id"]] if o["stage"] == "transform" else fn_name[o["item_id"]]
        by_stage[o["stage"]][name] = (o["status"], o["reason"])
    assert set(by_stage["transform"]) == set(raws.values())
    dropped = {n: (stage, reason) for stage, rows in by_stage.items() for n, (status, reason) in rows.items()
               if status != "ok"}
    assert dropped == {**BROKEN_REASONS, **{n: ("sample_io", r) for n, r in RELEASED_DROPPED.items()}}

    # Every good function has its cap of pairs; every pair reproduces outside the sandbox.
    pairs: dict[str, list[dict[str, Any]]] = {}
    for p in view["pairs"]:
        pairs.setdefault(fn_name[p["function_id"]], []).append(p)
    expected = {**dict.fromkeys(GOOD, MIXED_CAP), **RELEASED_KEPT}
    assert {n: len(v) for n, v in pairs.items()} == expected
    functions = {fn_name[f["id"]]: f for f in view["functions"]}
    names = sorted(pairs)
    jobs = [{"code": program(functions[n]["refcode"], functions[n]["input_generator"]), "entry": functions[n]["entry"],
             "inputs": [json.loads(p["input_json"]) for p in pairs[n]]} for n in names]
    for n, outputs in zip(names, replay(jobs)):
        assert outputs == [json.loads(p["output_json"]) for p in pairs[n]], n
        inputs = [p["input_json"] for p in pairs[n]]
        assert len(set(inputs)) == len(inputs), n  # distinct inputs

    # The funnel (storage.stats) shows the same counts per reason.
    funnel = {(r["stage"], r["status"], r["reason"]): r["count"]
              for r in view["funnel"].iter_rows(named=True) if r["stage"] in ("transform", "sample_io")}
    want: dict[tuple[str, str, str | None], int] = {
        ("transform", "ok", None): len(GOOD) + len(RELEASED_KEPT) + len(RELEASED_DROPPED)
        + sum(1 for stage, _ in BROKEN_REASONS.values() if stage == "sample_io"),
        ("sample_io", "ok", None): len(GOOD) + len(RELEASED_KEPT),
    }
    for stage, reason in [*BROKEN_REASONS.values(), *(("sample_io", r) for r in RELEASED_DROPPED.values())]:
        want[(stage, "dropped", reason)] = want.get((stage, "dropped", reason), 0) + 1
    assert funnel == want

    # The stage counters carry the pair-level drops, including the released record's wrong pair.
    counters = report["stages"]["sample_io"]
    assert counters["pair_drop:recorded_output_mismatch"] == 1
    for reason in PAIR_DROPS:
        assert counters.get(reason, 0) > 0, reason
    # The later stages ran on the kept pairs against the same server.
    # (Two tasks per pair, less the input-prediction prompts pairs with one output share.)
    shared = report["stages"]["prompts"].get("input_prompts_shared", 0)
    assert report["stages"]["answer"]["rows_in"] == 2 * sum(expected.values()) - shared


COUNTING_GENERATOR = '''
_n = [0]


def input_generator():
    _n[0] += 1
    return {"x": _n[0]}
'''


def test_pairs_with_new_outputs_come_first(tmp_path):
    # Candidates x = 1, 2, 3, ... in order; only every fifth gives "big". Taken in order, the
    # cap of three would be three "small"s: a function that teaches a constant.
    record = {"refcode": 'def main_solution(x):\n    return "big" if x % 5 == 0 else "small"\n',
              "funcname": "main_solution", "problem_description": "q", "io_requirements": "io",
              "input_generator": COUNTING_GENERATOR}
    row = _raw_row("sizes", json.dumps(record), "unified", "fixtures")

    def kept(search: int) -> tuple[list[tuple[int, str]], dict[str, float]]:
        base = _direct_cfg(tmp_path)
        sampling = base.sampling.model_copy(update={"distinct_outputs_search": search, "pairs_per_kind": {"mixed": 3}})
        cfg = base.model_copy(update={"sampling": sampling})
        _, sampled = _run_stages([row], cfg)
        pairs = sorted(sampled.rows["io_pairs"], key=lambda p: p["ordinal"])
        # Each pair names the first (smallest id) of the pairs with its output, for the prompts.
        first = {p["id"]: min(q["id"] for q in pairs if q["output_json"] == p["output_json"]) for p in pairs}
        assert all(p["same_output_as"] == (first[p["id"]] if first[p["id"]] != p["id"] else None) for p in pairs)
        assert any(p["same_output_as"] is not None for p in pairs)
        return [(json.loads(p["input_json"])["x"], json.loads(p["output_json"])) for p in pairs], sampled.counters

    pairs, counters = kept(4)
    # x = 5 is found; one repeat fills the cap; pairs stay in candidate order.
    assert pairs == [(1, "small"), (2, "small"), (5, "big")]
    assert counters["pairs_repeating_an_output"] == 1
    assert counters["executions"] == 1 + 12 + 3  # generator, 4 x cap candidates, determinism re-run
    in_order, counters = kept(0)
    assert in_order == [(1, "small"), (2, "small"), (3, "small")]
    assert counters["pairs_repeating_an_output"] == 2


DEFAULTS_GENERATOR = '''
_n = [0]


def input_generator():
    _n[0] += 1
    return {"n": _n[0]}
'''


def _unified(name: str, refcode: str, generator: str) -> dict[str, Any]:
    record = {"refcode": refcode, "funcname": "main_solution", "problem_description": "q",
              "io_requirements": "io", "input_generator": generator}
    return _raw_row(name, json.dumps(record), "unified", "fixtures")


def test_inputs_may_leave_out_parameters_with_a_default(tmp_path):
    # A generator that gives only the required n: mod, offset (keyword-only) take their
    # defaults; **extra takes keys beyond the named ones; *args takes none.
    rows = {
        "defaults": _unified("defaults", "def main_solution(n, mod=7, *, offset=0):\n    return (n + offset) % mod\n",
                             DEFAULTS_GENERATOR),
        "kwargs": _unified("kwargs", "def main_solution(n, **extra):\n    return n + len(extra)\n",
                           DEFAULTS_GENERATOR.replace('{"n": _n[0]}', '{"n": _n[0], "tag": "t"}')),
        "missing": _unified("missing", "def main_solution(n, k, mod=7):\n    return (n * k) % mod\n",
                            DEFAULTS_GENERATOR),
        "unexpected": _unified("unexpected", "def main_solution(k, *args, mod=7):\n    return k % mod\n",
                               DEFAULTS_GENERATOR.replace('{"n": _n[0]}', '{"k": _n[0], "args": [1]}')),
    }
    transformed, sampled = _run_stages(list(rows.values()), _direct_cfg(tmp_path))
    raw_names = {r["id"]: n for n, r in rows.items()}
    fn_names = {f["id"]: raw_names[f["raw_id"]] for f in transformed.rows["functions"]}
    outcomes = _by_raw(sampled.outcomes, fn_names)
    pairs: dict[str, list[tuple[Any, Any]]] = {}
    for p in sorted(sampled.rows["io_pairs"], key=lambda p: p["ordinal"]):
        pairs.setdefault(fn_names[p["function_id"]], []).append((json.loads(p["input_json"]), json.loads(p["output_json"])))

    assert pairs["defaults"] == [({"n": 1}, 1), ({"n": 2}, 2), ({"n": 3}, 3)]
    assert pairs["kwargs"] == [({"n": 1, "tag": "t"}, 2), ({"n": 2, "tag": "t"}, 3), ({"n": 3, "tag": "t"}, 4)]
    # Rejected inputs leave their reason: which required key is missing, which key is unknown.
    assert {n: (o.status, o.reason) for n, o in outcomes.items() if n in ("missing", "unexpected")} == {
        "missing": ("dropped", "no_valid_inputs"), "unexpected": ("dropped", "no_valid_inputs")}
    assert outcomes["missing"].detail == "generator_wrong_keys: missing keys: k"
    assert outcomes["unexpected"].detail == "generator_wrong_keys: unexpected keys: args"
    assert sampled.counters["pair_drop:generator_wrong_keys"] > 0


def test_an_imported_entry_point_meets_the_transformed_ones_rule():
    """Released records go through the entry-point rule an LLM-transformed function meets:
    positional-only or no parameters are dropped with that reason, and the names are the last
    definition's (the one Python keeps)."""
    from tasks.transform import import_unified

    def imported(refcode: str):
        record = {"refcode": refcode, "ios": [{"input": {"a": 1}, "output": 1}]}
        return import_unified({"id": "r", "source": "released", "source_kind": "curated", "content": json.dumps(record)})

    fn, outcome = imported("def main_solution(a, /, b):\n    return a\n")
    assert fn is None and (outcome.status, outcome.reason) == ("dropped", "positional_only_args")
    fn, outcome = imported("def main_solution():\n    return 1\n")
    assert fn is None and outcome.reason == "entry_without_args"
    fn, outcome = imported("def main_solution(x):\n    return x\n\ndef main_solution(a, *, k=2):\n    return a\n")
    assert outcome.status == "ok" and json.loads(fn["arg_names"]) == ["a", "k"]


def test_recorded_inputs_with_wrong_keys_are_dropped_before_running(tmp_path):
    # A released record whose recorded input names a parameter the entry point does not take:
    # that pair is dropped for its keys, not run (where it could only raise, as entry_error).
    rec = {
        "name": "rel_keys",
        "refcode": "def main_solution(n, mod=7):\n    return n % mod\n",
        "funcname": "main_solution",
        "ios": [{"input": {"n": 10}, "output": 3}, {"input": {"m": 4}, "output": 4},
                {"input": {"n": 12, "mod": 5}, "output": 2}],
    }
    row = _raw_row("rel_keys", json.dumps(rec, sort_keys=True), "unified", "released")
    _, sampled = _run_stages([row], _direct_cfg(tmp_path))
    assert sampled.counters["pair_drop:recorded_wrong_keys"] == 1
    assert "pair_drop:entry_error" not in sampled.counters
    kept = [json.loads(p["input_json"]) for p in sampled.rows["io_pairs"]]
    assert kept == [{"n": 10}, {"n": 12, "mod": 5}]


def test_an_imported_records_example_usage_is_removed():
    """A record imported in the unified shape is cleaned as a transformed function is: a worked
    call in its reference code (``print(main_solution(7))  # 140``, a __main__ block) would
    state a pair's input and output in every prompt, the pair's own included."""
    from tasks.transform import import_unified

    refcode = (
        "def square_sum(n):\n    return sum(i * i for i in range(1, n + 1))\n\n\n"
        "print(square_sum(7))  # 140\nresult = square_sum(n=12)\nassert result == 650\n\n"
        "if __name__ == \"__main__\":\n    print(square_sum(n=20))  # 2870\n"
    )
    generator = "import random\n\ndef input_generator():\n    return {'n': random.randint(1, 50)}\n\nprint(input_generator())\n"
    record = {"refcode": refcode, "funcname": "square_sum", "input_generator": generator,
              "ios": [{"input": {"n": 7}, "output": 140}, {"input": {"n": 12}, "output": 650}]}
    counters: Counter[str] = Counter()
    fn, outcome = import_unified({"id": "r", "source": "released", "source_kind": "curated",
                                  "content": json.dumps(record)}, counters)
    assert outcome.status == "ok"
    assert fn["refcode"] == "def square_sum(n):\n    return sum(i * i for i in range(1, n + 1))\n"
    assert "print" not in fn["input_generator"] and "def input_generator" in fn["input_generator"]
    assert counters["example_statements_removed"] == 1
    # code with nothing to remove is kept byte for byte
    clean = {**record, "refcode": "def square_sum(n):\n    return n\n\n\n\nX = 1\n", "input_generator": None}
    fn, _ = import_unified({"id": "r", "source": "released", "source_kind": "curated", "content": json.dumps(clean)})
    assert fn["refcode"] == clean["refcode"]
