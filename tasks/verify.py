"""Verification of predicted answers, by execution, outside the untrusted code.

Output prediction: the extracted output is compared with the recorded one. Input prediction:
the predicted input is executed in the sandbox (fresh fork) and its output compared with the
given one. The comparison runs here, in the parent, never next to the untrusted code.
Exceptions, timeouts and malformed answers are verdicts with feedback, not crashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prompts.answers import check_input_keys, extract_answer
from prompts.render import render_feedback
from sandbox import Job, Limits, SandboxPool, outputs_match


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


def verify_batch(items: list[VerifyItem], pool: SandboxPool, limits: Limits) -> tuple[list[Verdict], int]:
    """Verdicts in item order, and the number of executions it took."""
    verdicts: list[Verdict | None] = [None] * len(items)
    to_run: list[tuple[int, Any]] = []
    for i, it in enumerate(items):
        if it.response is None:
            verdicts[i] = Verdict("call_failed", None, "call_failed", render_feedback("no_answer"))
            continue
        ex = extract_answer(it.response, it.kind)  # type: ignore[arg-type]
        if ex.status != "ok":
            verdict = "no_answer" if ex.status == "no_answer" else "bad_format"
            verdicts[i] = Verdict(ex.status, None, verdict, _feedback(verdict, it, detail=ex.detail))
            continue
        if it.kind == "output":
            ok = outputs_match(it.given_output, ex.value)
            v = "correct" if ok else "wrong"
            verdicts[i] = Verdict("ok", ex.value, v, _feedback(v, it))
            continue
        problem = check_input_keys(ex.value, it.arg_names)
        if problem:
            verdicts[i] = Verdict("bad_format", ex.value, "bad_format", _feedback("bad_format", it, detail=problem))
            continue
        to_run.append((i, ex.value))
    if to_run:
        jobs = [Job(code=items[i].code, calls=[value], entry=items[i].entry, limits=limits) for i, value in to_run]
        results = pool.run_many(jobs)
        for (i, value), res in zip(to_run, results):
            r = res[0]
            it = items[i]
            if r.status == "ok":
                ok = outputs_match(it.given_output, r.value)
                v = "correct" if ok else "wrong"
                verdicts[i] = Verdict("ok", value, v, _feedback(v, it, actual=r.value), actual_output=r.value)
            elif r.status == "timeout":
                verdicts[i] = Verdict("ok", value, "timeout", _feedback("timeout", it))
            else:
                etype = r.error_type or r.status
                verdicts[i] = Verdict("ok", value, "exception",
                                      _feedback("exception", it, error_type=etype, error_message=r.error_message or ""))
    return [v for v in verdicts if v is not None], len(to_run)


def _feedback(verdict: str, it: VerifyItem, **details: Any) -> str:
    if verdict == "wrong" and it.kind == "input":
        details.setdefault("actual", None)
        return render_feedback("wrong", kind="input", actual_output=details.pop("actual"), **details)
    if verdict == "wrong":
        return render_feedback("wrong", kind="output", **details)
    if verdict == "bad_format":
        return render_feedback("bad_format", kind=it.kind, arg_names=it.arg_names, **details)
    return render_feedback(verdict, kind=it.kind, **details)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
