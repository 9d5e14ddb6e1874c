"""Verification of predicted answers: every verdict kind, floats, and the feedback each earns."""

from __future__ import annotations

import pytest

from sandbox import Limits, SandboxPool
from tasks.verify import VerifyItem, verify_one


def verify_all(items: list[VerifyItem], pool, limits: Limits) -> tuple[list, int]:
    """Verdicts in item order and the executions they took, one answer at a time (what an
    answer stage does per answer: check_without_running, then run_predicted_input)."""
    results = [verify_one(it, pool, limits) for it in items]
    return [v for v, _ in results], sum(n for _, n in results)

CODE = '''
import math

def main_solution(x, scale):
    if x < 0:
        raise ValueError("x must be non-negative")
    if x == 999:
        while True:
            pass
    return round(math.sqrt(x) * scale, 6)
'''


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1) as p:
        yield p


def item(kind: str, response: str | None, given_input=None, given_output=None) -> VerifyItem:
    return VerifyItem(
        kind=kind, response=response, code=CODE, entry="main_solution", arg_names=["x", "scale"],
        given_input=given_input or {"x": 2, "scale": 1.5}, given_output=given_output,
    )


def test_every_verdict_kind(pool):
    out = 2.12132  # sqrt(2) * 1.5 = 2.1213203...
    items = [
        item("output", 'Reasoning... {"output": 2.1213}', given_output=out),            # float within 1e-3
        item("output", '{"output": 2.5}', given_output=out),                            # wrong
        item("output", "I am not sure.", given_output=out),                             # no answer
        item("input", '{"input": {"x": 8, "scale": 0.75}}', given_output=out),           # another input, same output
        item("input", '{"input": {"x": 9, "scale": 1.0}}', given_output=out),            # runs, wrong output
        item("input", '{"input": {"x": -1, "scale": 1.0}}', given_output=out),           # raises
        item("input", '{"input": {"x": 999, "scale": 1.0}}', given_output=out),          # never ends
        item("input", '{"input": {"x": 4}}', given_output=out),                         # missing key
        item("input", None, given_output=out),                                          # the call failed
    ]
    verdicts, executions = verify_all(items, pool, Limits(cpu_seconds=0.5))
    assert [v.verdict for v in verdicts] == [
        "correct", "wrong", "no_answer", "correct", "wrong", "exception", "timeout", "bad_format", "call_failed",
    ]
    assert executions == 4  # only well-formed input predictions are executed
    assert verdicts[4].actual_output == 3.0
    assert "3.0" in verdicts[4].feedback  # input prediction feedback shows what the input produced
    assert "2.1213" not in verdicts[1].feedback  # output feedback never reveals the expected output
    assert "ValueError" in verdicts[5].feedback and "non-negative" in verdicts[5].feedback
    assert "scale" in verdicts[7].feedback  # names the expected argument names


DEFAULTS_CODE = '''
def main_solution(n, mod=1000, *, offset=0, **unused):
    return (n * n + offset) % mod
'''


def test_a_predicted_input_may_leave_out_parameters_with_a_default(pool):
    """The rule sampling used: an input without ``mod`` (or the keyword-only ``offset``) runs
    with their defaults; a required key must be there; ``**unused`` takes further keys."""

    def defaults_item(answer: str, given_output: int) -> VerifyItem:
        return VerifyItem(kind="input", response=answer, code=DEFAULTS_CODE, entry="main_solution",
                          arg_names=["n", "mod", "offset"], given_input={"n": 40}, given_output=given_output)

    items = [
        defaults_item('{"input": {"n": 40}}', 600),                        # both defaults used
        defaults_item('{"input": {"n": 40, "mod": 1000, "offset": 0}}', 600),  # every key given
        defaults_item('{"input": {"n": 40, "mod": 7}}', 600),              # runs, another output
        defaults_item('{"input": {"n": 40, "note": "x"}}', 600),           # **unused takes it
        defaults_item('{"input": {"mod": 1000}}', 600),                    # n is required
    ]
    verdicts, executions = verify_all(items, pool, Limits(cpu_seconds=0.5))
    assert [v.verdict for v in verdicts] == ["correct", "correct", "wrong", "correct", "bad_format"]
    assert executions == 4
    assert "missing keys: n" in verdicts[4].feedback
    assert '"n" and optionally "mod", "offset"' in verdicts[4].feedback


def test_an_unknown_key_is_a_format_error_without_kwargs(pool):
    code = "def main_solution(n, mod=1000):\n    return n % mod\n"
    it = VerifyItem(kind="input", response='{"input": {"n": 5, "base": 2}}', code=code, entry="main_solution",
                    arg_names=["n", "mod"], given_input={"n": 5}, given_output=5)
    (verdict,), executions = verify_all([it], pool, Limits(cpu_seconds=0.5))
    assert (verdict.verdict, executions) == ("bad_format", 0)
    assert "unexpected keys: base" in verdict.feedback


def test_float_and_structure_comparison(pool):
    items = [
        item("output", '{"output": [1.0, 2.0004]}', given_output=[1, 2.0]),
        item("output", '{"output": [1.0, 2.01]}', given_output=[1, 2.0]),
        item("output", '{"output": true}', given_output=1),
        item("output", "```json\n{\"output\": {\"a\": NaN}}\n```", given_output={"a": float("nan")}),
    ]
    verdicts, _ = verify_all(items, pool, Limits(cpu_seconds=0.5))
    assert [v.verdict for v in verdicts] == ["correct", "wrong", "wrong", "correct"]


def test_verdicts_do_not_depend_on_order(pool):
    items = [item("input", '{"input": {"x": %d, "scale": 1.0}}' % x, given_output=2.0) for x in (4, 5, -3, 4)]
    first, _ = verify_all(items, pool, Limits(cpu_seconds=0.5))
    second, _ = verify_all(list(reversed(items)), pool, Limits(cpu_seconds=0.5))
    assert [v.verdict for v in first] == [v.verdict for v in reversed(second)] == ["correct", "wrong", "exception", "correct"]


@pytest.mark.parametrize("depth", [600, 900])
def test_an_answer_nested_too_deep_is_a_format_error_not_a_failed_shard(pool, depth):
    """A response the answer parser reads (JSON nests that deep) but the sandbox's JSON policy
    cannot take once raised from verification, failing the shard on every retry."""
    deep = "[" * depth + "1" + "]" * depth
    items = [item("output", '{"output": %s}' % deep, given_output=1.0),
             item("input", '{"input": {"x": %s, "scale": 1}}' % deep, given_output=1.0)]
    verdicts, executions = verify_all(items, pool, Limits(cpu_seconds=0.5))
    assert [v.verdict for v in verdicts] == ["bad_format", "bad_format"] and executions == 0


def test_a_truncated_response_is_no_answer_even_when_it_holds_an_answer(tmp_path):
    """finish_reason "length": an answer-like object written before the cut (a first guess
    the model was about to check) is not the final answer; the answer stage must not judge it
    correct (it would be exported as a correct sample that ends mid-sentence)."""
    import json

    from flows.config import BuildConfig
    from llm.testserver import serve
    from prompts.render import render_prediction
    from tasks.answer import ANSWER
    from tasks.stage import ShardContext

    ref = "def main_solution(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n"
    messages = render_prediction("output", "How many vowels?", "s: str -> int", {"s": "banana"}, ref, ["s"])
    row = {"id": "t1", "kind": "output", "input_json": '{"s": "banana"}', "output_json": "3", "refcode": ref,
           "input_generator": None, "entry": "main_solution", "arg_names": '["s"]',
           "io_description": "s: str -> int", "messages_json": json.dumps(messages)}
    cut = 'A first estimate is {"output": 3}, but let me check each letter: b is a consonant, a is'
    complete = 'Counting the vowels a, a, a gives {"output": 3}'
    for content, finish, verdict in ((cut, "length", "no_answer"), (complete, "stop", "correct")):
        with serve(lambda body, c=content, f=finish: {"content": c, "finish_reason": f}) as server:
            cfg = BuildConfig.model_validate({
                "provider": "http", "db_path": str(tmp_path / "db.duckdb"), "sandbox": {"workers": 1},
                "llm": {"base_url": server.base_url, "model": "test-model", "api_key_env": None, "max_retries": 0},
            })
            result = ANSWER.run_shard([row], cfg, ShardContext(config_key="k"))
        (attempt,) = result.rows["attempts"]
        assert attempt["truncated"] == (finish == "length")
        assert attempt["verdict"] == verdict, (finish, attempt)
