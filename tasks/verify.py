"""Verification of predicted answers, by execution, outside the untrusted code.

Output prediction: the extracted output is compared with the recorded one. Input prediction:
the predicted input is executed in the sandbox (fresh fork) and its output compared with the
given one. The comparison runs here, in the parent, never next to the untrusted code.
Exceptions, timeouts and malformed answers are verdicts with feedback, not crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prompts.answers import check_input_keys, extract_answer
from prompts.entry_params import EntryParams, entry_params
from prompts.render import render_feedback
from sandbox import Limits, NotJSONError, SandboxPool, outputs_match, to_json_value


@dataclass
class Verdict:
    extract_status: str
    answer: Any
    verdict: str
    feedback: str
    actual_output: Any = None


@dataclass
class VerifyItem:
    """One answer to check: the task kind, the response text and the ground truth."""

    kind: str
    response: str | None
    code: str
    entry: str
    arg_names: list[str]
    given_input: dict[str, Any]
    given_output: Any
    # The response was cut off at max_tokens (finish_reason "length"): whatever answer-like
    # object it holds was written before the model finished reasoning, not as its final answer.
    truncated: bool = False


def check_without_running(it: VerifyItem) -> Verdict | dict[str, Any]:
    """The verdict when no execution is needed; otherwise the predicted input to run."""
    if it.response is None:
        return Verdict("call_failed", None, "call_failed", render_feedback("no_answer"))
    if it.truncated:
        return Verdict("truncated", None, "no_answer", render_feedback("no_answer"))
    ex = extract_answer(it.response, it.kind)  # type: ignore[arg-type]
    if ex.status == "no_answer":
        return Verdict("no_answer", None, "no_answer", render_feedback("no_answer"))
    if ex.status != "ok":
        return Verdict(ex.status, None, "bad_format", _bad_format(it, ex.detail or "unreadable answer"))
    # An answer the sandbox's JSON policy cannot take (nested hundreds of levels deep) is a
    # format error of that answer: raising here would fail the whole shard, on every retry.
    if it.kind == "output":
        try:
            matched = outputs_match(it.given_output, ex.value)
        except NotJSONError as exc:
            return Verdict("bad_format", None, "bad_format", _bad_format(it, f"the answer is not usable: {exc}"))
        if matched:
            return Verdict("ok", ex.value, "correct", render_feedback("correct"))
        return Verdict("ok", ex.value, "wrong", render_feedback("wrong", kind="output", predicted=ex.value))
    # The rule the sampled inputs passed: a parameter with a default may be left out.
    problem = check_input_keys(ex.value, _params(it))
    if problem:
        return Verdict("bad_format", ex.value, "bad_format", _bad_format(it, problem))
    try:
        to_json_value(ex.value)
    except NotJSONError as exc:
        return Verdict("bad_format", None, "bad_format", _bad_format(it, f"the input is not usable: {exc}"))
    return ex.value


def verify_one(it: VerifyItem, pool: SandboxPool, limits: Limits) -> tuple[Verdict, int]:
    """One answer's verdict, and the executions it took (0 or 1): ``check_without_running``,
    then ``run_predicted_input`` when there is an input to run (the answer stages call the two
    apart, deciding the first on the event loop). Safe to call from many threads at once: each
    input prediction runs as a job of its own."""
    checked = check_without_running(it)
    if isinstance(checked, Verdict):
        return checked, 0
    return run_predicted_input(it, checked, pool, limits)


def run_predicted_input(it: VerifyItem, value: dict[str, Any], pool: SandboxPool, limits: Limits) -> tuple[Verdict, int]:
    """The verdict on a predicted input that ``check_without_running`` handed back, by running
    it (one execution)."""
    (result,) = pool.run(it.code, [value], entry=it.entry, limits=limits)
    return _input_verdict(it, value, result), 1


def _input_verdict(it: VerifyItem, value: dict[str, Any], r: Any) -> Verdict:
    if r.status == "ok":
        if outputs_match(it.given_output, r.value):
            return Verdict("ok", value, "correct", render_feedback("correct"), actual_output=r.value)
        fb = render_feedback("wrong", kind="input", predicted=value, actual_output=r.value,
                             given_output=it.given_output)
        return Verdict("ok", value, "wrong", fb, actual_output=r.value)
    if r.status == "timeout":
        return Verdict("ok", value, "timeout", render_feedback("timeout", predicted=value))
    fb = render_feedback("exception", predicted=value, error_type=r.error_type or r.status,
                         error_message=r.error_message or r.status)
    return Verdict("ok", value, "exception", fb)


def _params(it: VerifyItem) -> EntryParams:
    return entry_params(it.code, it.entry, it.arg_names)


def _bad_format(it: VerifyItem, detail: str) -> str:
    if it.kind == "input":
        return render_feedback("bad_format", kind="input", detail=detail, arg_names=_params(it))
    return render_feedback("bad_format", kind="output", detail=detail)
