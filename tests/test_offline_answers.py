"""Execution traces and the narrated answers built from them (exec in-process; the provider's
candidate inputs alone run in the sandbox)."""

from __future__ import annotations

import json
import linecache
import random
import re
import time
from pathlib import Path

import pytest

from llm.offline.answers import narrate_input_prediction, narrate_output_prediction
from llm.offline.trace import TRACER_ENTRY, TRACER_SOURCE, annotate_trace, tracer_call
from llm.offline.transform import OfflineFunction, offline_transform

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "sample"

LOOP_REFCODE = '''def total_up_to(n: int) -> int:
    total = 0
    for i in range(n):
        if i % 3 == 0:
            total += i
    return total


def main_solution(n):
    return total_up_to(n=n)
'''


def _traced(refcode: str, kwargs: dict, budget: int = 2000, with_source: bool = True) -> dict:
    """Run the tracer the way the sandbox does: refcode + TRACER_SOURCE as one program."""
    namespace: dict = {}
    exec(compile(refcode + TRACER_SOURCE, "<refcode>", "exec"), namespace)
    call = tracer_call(kwargs, budget, refcode if with_source else None)
    return namespace[TRACER_ENTRY](**call)


def _last_json(text: str):
    """The last ```json block of a response, parsed."""
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.S)
    assert blocks, text
    return json.loads(blocks[-1])


def _tokens(text: str) -> float:
    return len(text) / 4


def _corpus_functions() -> list[tuple[str, OfflineFunction]]:
    found = []
    for path in sorted(CORPUS.glob("*.py")):
        result = offline_transform(path.read_text())
        if isinstance(result, OfflineFunction):
            found.append((path.stem, result))
    return found


CORPUS_FUNCTIONS = _corpus_functions()


# ----------------------------------------------------------------------------- tracer


def test_million_iteration_loop_stays_bounded():
    started = time.process_time()
    trace = _traced(LOOP_REFCODE, {"n": 1_000_000})
    elapsed = time.process_time() - started
    assert trace["return_value"] == sum(i for i in range(1_000_000) if i % 3 == 0)
    assert trace["return_exact"] and trace["status"] == "ok"
    assert trace["complete"] is False, "tracing detaches after its counting cap"
    assert len(json.dumps(trace)) < 20_000
    assert elapsed < 5
    loop = next(item for item in trace["loops"] if item["kind"] == "for")
    assert loop["text"] == "for i in range(n):" and loop["iterations"] > 1000
    assert loop["vars"]["i"]["first"][:3] == [0, 1, 2]
    branch = next(item for item in trace["branches"] if item["line"] == 4)
    assert branch["text"] == "if i % 3 == 0:" and branch["first"][:4] == [True, False, False, True]

    text = narrate_output_prediction(trace, {"n": 1_000_000}, "Output:\n  - return value (int)", 400)
    assert _tokens(text) <= 400
    assert _last_json(text) == {"output": trace["return_value"]}
    assert "at least" in text


def test_small_run_is_complete_and_counts_exactly():
    trace = _traced(LOOP_REFCODE, {"n": 10})
    assert trace["complete"] is True
    loop = next(item for item in trace["loops"] if item["kind"] == "for")
    assert loop["iterations"] == 10 and loop["vars"]["i"]["last"] == 9
    branch = next(item for item in trace["branches"] if item["line"] == 4)
    assert (branch["true"], branch["false"]) == (4, 6)
    changes = [c["value"] for c in trace["changes"] if c["var"] == "total"]
    assert changes == [0, 3, 9, 18]
    assert trace["calls"][0] == {"fn": "main_solution", "depth": 1, "args": {"n": 10}, "ret": 18}
    assert trace["calls"][1]["fn"] == "total_up_to"


def test_trace_without_source_is_annotated_afterwards():
    raw = _traced(LOOP_REFCODE, {"n": 10}, with_source=False)
    assert raw["summarized"] is False and "edges" in raw
    annotated = annotate_trace(raw, LOOP_REFCODE)
    direct = _traced(LOOP_REFCODE, {"n": 10})
    assert annotated["branches"] == direct["branches"]
    assert annotated["loops"] == direct["loops"]
    assert annotate_trace(annotated, LOOP_REFCODE) is annotated


def test_trace_reads_source_from_linecache_when_registered():
    program = LOOP_REFCODE + TRACER_SOURCE
    filename = "<refcode-linecache-test>"
    linecache.cache[filename] = (len(program), None, program.splitlines(True), filename)
    try:
        namespace: dict = {}
        exec(compile(program, filename, "exec"), namespace)
        trace = namespace[TRACER_ENTRY](json.dumps({"n": 5}), 500)
    finally:
        linecache.cache.pop(filename, None)
    assert trace["summarized"] is True and trace["loops"]


def test_deep_recursion_and_hostile_values_stay_bounded():
    refcode = '''
class Weird:
    def __repr__(self):
        raise RuntimeError("no repr for you")


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main_solution(n, text):
    junk = [Weird(), "x" * 10_000, 10 ** 400, list(range(1000))]
    return [fib(n), len(text)]
'''
    trace = _traced(refcode, {"n": 22, "text": "y" * 5000})
    assert trace["return_value"] == [17711, 5000]
    assert trace["call_counts"]["fib"] > 20_000
    assert len(json.dumps(trace)) < 20_000
    junk = next(c["value"] for c in trace["changes"] if c["var"] == "junk")
    assert junk[0] == {"__repr__": "<Weird>"} and len(junk[1]) <= 40
    text = narrate_output_prediction(trace, {"n": 22, "text": "y" * 5000}, "", 300)
    assert _tokens(text) <= 300 and _last_json(text) == {"output": [17711, 5000]}


def test_trace_of_failing_code_records_the_error():
    refcode = "def main_solution(x):\n    return 10 // x\n"
    trace = _traced(refcode, {"x": 0})
    assert trace["status"] == "error" and trace["error"].startswith("ZeroDivisionError")
    with pytest.raises(ValueError):
        narrate_output_prediction(trace, {"x": 0}, "", 200)
    assert _last_json(narrate_output_prediction(trace, {"x": 0}, "", 200, output=5)) == {"output": 5}


def test_object_addresses_do_not_leak_into_traces():
    refcode = "class Box:\n    pass\n\ndef main_solution(n):\n    box = Box()\n    return n\n"
    first, second = _traced(refcode, {"n": 1}), _traced(refcode, {"n": 1})
    assert first == second
    assert " at 0x" not in json.dumps(first)


# ----------------------------------------------------------------------------- narrations


def test_untraced_fallback_still_answers():
    text = narrate_output_prediction({"return": [1, 2], "untraced": "timeout"}, {"a": 1}, "", 100)
    assert _last_json(text) == {"output": [1, 2]}


@pytest.mark.parametrize(("name", "function"), CORPUS_FUNCTIONS, ids=[n for n, _ in CORPUS_FUNCTIONS])
def test_corpus_narrations_are_correct_and_bounded(name, function):
    sampler: dict = {}
    exec(compile(function.refcode + "\n\n" + function.input_generator, "<refcode>", "exec"), sampler)
    random.seed(name)
    draws = [sampler["input_generator"]() for _ in range(5)]
    outputs = [json.loads(json.dumps(sampler["main_solution"](**kwargs))) for kwargs in draws]

    for kwargs, output in zip(draws[:2], outputs[:2]):
        trace = _traced(function.refcode, kwargs)
        assert trace["return_value"] == output
        assert len(json.dumps(trace)) < 20_000
        text = narrate_output_prediction(trace, kwargs, function.io_description, 500)
        assert _tokens(text) <= 500
        assert _last_json(text) == {"output": output}
        assert narrate_output_prediction(trace, kwargs, function.io_description, 500) == text

    chosen, target = draws[0], outputs[0]
    candidates = list(zip(draws, outputs))
    random.Random(name).shuffle(candidates)
    text = narrate_input_prediction(target, candidates, chosen, function.io_description, 450)
    assert _tokens(text) <= 450
    answer = _last_json(text)["input"]
    assert answer == chosen
    reproduced = json.loads(json.dumps(sampler["main_solution"](**answer)))
    assert reproduced == target


def test_tight_budget_drops_detail_but_not_the_answer():
    trace = _traced(LOOP_REFCODE, {"n": 30})
    roomy = narrate_output_prediction(trace, {"n": 30}, "", 2000)
    tight = narrate_output_prediction(trace, {"n": 30}, "", 60)
    assert len(tight) < len(roomy)
    assert _tokens(tight) <= 60
    assert _last_json(tight) == _last_json(roomy) == {"output": trace["return_value"]}
    minimal = narrate_output_prediction(trace, {"n": 30}, "", 5)
    assert _last_json(minimal) == {"output": trace["return_value"]}


def test_input_narration_rejects_misses_with_reasons():
    candidates = [({"n": 3}, 3), ({"n": 30}, 135), ({"n": 10}, 18), ({"n": 12}, 18)]
    text = narrate_input_prediction(18, candidates, {"n": 10}, "Input:\n  - `n` (int)\nOutput:\n  - return value (int)", 800)
    assert "too small by 15" in text and "too large by 117" in text
    assert "not unique" in text  # n = 12 also gives 18
    assert _last_json(text) == {"input": {"n": 10}}
    squeezed = narrate_input_prediction(18, candidates * 5, {"n": 10}, "", 120)
    assert _tokens(squeezed) <= 120 and _last_json(squeezed) == {"input": {"n": 10}}


def test_input_narration_explains_with_the_chosen_trace():
    trace = _traced(LOOP_REFCODE, {"n": 10})
    text = narrate_input_prediction(18, [({"n": 10}, 18)], {"n": 10}, "", 500, chosen_trace=trace)
    assert "for i in range(n):" in text or "if i % 3 == 0:" in text
    assert _last_json(text) == {"input": {"n": 10}}


def test_phrasing_varies_between_inputs():
    openings = set()
    for n in range(25):
        trace = _traced(LOOP_REFCODE, {"n": n})
        text = narrate_output_prediction(trace, {"n": n}, "", 400)
        openings.add(text.split(" ", 3)[:3].__str__())
        assert _last_json(text) == {"output": trace["return_value"]}
    assert len(openings) > 1


def test_a_wrong_boolean_is_said_once():
    from llm.offline.answers import _why_different

    # Read after "It produces true, and true ...": the value is not repeated.
    assert _why_different(True, False) == "is not the false we need"
    assert _why_different(3, 5) == "is too small by 2"


def test_generated_inputs_that_leave_out_a_default_are_candidates():
    """The provider's candidate inputs follow the rule sampling used (prompts.entry_params):
    a generated input without the defaulted ``mod`` is one the function takes."""
    from llm.offline.provider import CANDIDATES, OfflineProvider
    from llm.types import ChatRequest
    from sandbox import SandboxPool

    code = ("def main_solution(n, mod=97):\n    return n % mod\n\n\n"
            "_n = [0]\n\n\ndef input_generator():\n    _n[0] += 1\n    return {\"n\": _n[0]}\n")
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], context={
        "task": "predict", "kind": "input", "code": code, "entry": "main_solution", "arg_names": ["n", "mod"],
        "input": {"n": 200}, "output": 6, "io_description": "n: int"})
    with SandboxPool(workers=1) as pool:
        (candidates,) = OfflineProvider(pool)._input_candidates([request])
    assert len(candidates) == CANDIDATES and ({"n": 200}, 6) in candidates
    assert all(set(inp) == {"n"} and out == inp["n"] % 97 for inp, out in candidates)
