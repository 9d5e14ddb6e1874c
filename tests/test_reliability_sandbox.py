"""Verification verdicts do not depend on machine load (issue 9): the same answers, verified
three times with both cores kept busy by other processes, get the same verdicts, including a
call that uses half of its CPU limit and one that loops forever."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from reliability_helpers import busy_cores
from sandbox import Limits, SandboxPool
from tasks.verify import VerifyItem, verify_one

pytestmark = pytest.mark.slow

LINEAR = "def main_solution(x, y):\n    return x * 3 + y\n"
# Spends ~0.5 s of its own CPU time (not wall time), whatever else runs on the machine.
HALF_LIMIT = (
    "import time\n\n\ndef main_solution(n):\n    start = time.process_time()\n"
    "    while time.process_time() - start < 0.5:\n        pass\n    return n * 2\n"
)
FOREVER = "def main_solution(n):\n    while True:\n        n += 1\n"
QUICK = 48
RAISES = "def main_solution(n):\n    return 10 // n\n"


def _item(kind: str, response: str, code: str, args: list[str], given_input: dict, given_output: object) -> VerifyItem:
    return VerifyItem(kind=kind, response=response, code=code, entry="main_solution", arg_names=args,
                      given_input=given_input, given_output=given_output)


def _answer(kind: str, value: object) -> str:
    import json

    return f"Step by step, the answer follows.\n\n{json.dumps({kind: value})}"


def _items() -> list[VerifyItem]:
    items = [
        _item("input", _answer("input", {"n": 21}), HALF_LIMIT, ["n"], {"n": 21}, 42),  # correct, ~0.5 s CPU
        _item("input", _answer("input", {"n": 1}), FOREVER, ["n"], {"n": 1}, 0),  # timeout
        _item("input", _answer("input", {"n": 0}), RAISES, ["n"], {"n": 2}, 5),  # exception
        _item("input", "I do not know.", LINEAR, ["x", "y"], {"x": 1, "y": 1}, 4),  # no answer
        _item("output", _answer("output", 4), LINEAR, ["x", "y"], {"x": 1, "y": 1}, 4),  # correct, no run
        _item("output", _answer("output", 5), LINEAR, ["x", "y"], {"x": 1, "y": 1}, 4),  # wrong, no run
    ]
    for i in range(QUICK):  # many quick runs: a verdict that flips under load shows up here
        y = i - 12
        right = i % 3 != 0
        items.append(_item("input", _answer("input", {"x": 0, "y": y if right else y + 1}), LINEAR,
                           ["x", "y"], {"x": 0, "y": y}, y))
    return items


def test_verdicts_are_identical_under_load():
    limits = Limits(cpu_seconds=1.0)
    items = _items()
    with SandboxPool(workers=2, limits=limits) as pool, busy_cores(2):
        # As the answer stages verify: each answer on its own, from several threads at once.
        with ThreadPoolExecutor(max_workers=4) as ex:
            runs = [[v for v, _ in ex.map(lambda it: verify_one(it, pool, limits), items)] for _ in range(3)]
    summaries = [[(v.verdict, v.extract_status) for v in verdicts] for verdicts in runs]
    expected_head = ["correct", "timeout", "exception", "no_answer", "correct", "wrong"]
    assert [v for v, _ in summaries[0][:6]] == expected_head, summaries[0][:6]
    assert [v for v, _ in summaries[0][6:]] == ["correct" if i % 3 else "wrong" for i in range(QUICK)], [
        (i, v.verdict, v.feedback) for i, v in enumerate(runs[0][6:]) if v.verdict not in ("correct", "wrong")]
    assert summaries[1] == summaries[0] and summaries[2] == summaries[0]
    # The feedback the revision turn would get is the same text every time, too.
    assert all([v.feedback for v in run] == [v.feedback for v in runs[0]] for run in runs[1:])


def test_pool_results_are_identical_under_load():
    """The sampling path (several calls per job, as sample_io runs them): every call of a
    trivial function succeeds with the same value on three runs with both cores busy."""
    from sandbox import Job

    limits = Limits(cpu_seconds=1.0)
    jobs = [Job(LINEAR, [{"x": j, "y": k} for k in range(5)], limits=limits) for j in range(40)]
    # Oversubscribed (two spinners per core): the worker then often falls behind its job
    # process, which is when a result could be read into the wrong call.
    with SandboxPool(workers=2, limits=limits) as pool, busy_cores(2 * (os.cpu_count() or 1)):
        runs = [pool.run_many(jobs) for _ in range(3)]
    for results in runs:
        bad = [(j, k, r.status, r.error_message) for j, rs in enumerate(results) for k, r in enumerate(rs)
               if r.status != "ok" or r.value != j * 3 + k]
        assert not bad, f"{len(bad)} of {5 * len(jobs)} calls went wrong: {bad[:5]}"
