"""The offline provider: answers prediction requests without a network, from real execution.

It serves the same interface as the HTTP client, so stages do not know which one they use.
Output prediction: the function runs once under a tracer in the sandbox and the trace is
narrated. Input prediction: candidate inputs from the function's own generator run in the
sandbox, and the narration explains which one reproduces the given output. Every answer is
correct by construction, and every record says so through its model name (``offline-...``).
It is a way to run the whole pipeline on a fresh machine, not a substitute for an LLM.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llm.offline.answers import narrate_input_prediction, narrate_output_prediction
from llm.offline.trace import TRACER_SOURCE
from llm.types import ChatRequest, ChatResult
from prompts.answers import check_input_keys
from prompts.entry_params import entry_params
from sandbox import Job, Limits, SandboxPool, canonical_json, outputs_match

OFFLINE_MODEL = "offline-trace-v1"
TRACE_EVENTS = 20_000
CANDIDATES = 6


class OfflineProvider:
    """Answers chat requests that carry a prediction ``context`` (see ``tasks.answer``)."""

    model = OFFLINE_MODEL
    extra_body = None

    def __init__(self, pool: SandboxPool, max_tokens: int = 4096, cpu_seconds: float = 5.0) -> None:
        self.pool = pool
        self.max_tokens = max_tokens
        self.trace_limits = Limits(cpu_seconds=cpu_seconds * 4, check_size=False, output_bytes=512 * 1024)
        self.run_limits = Limits(cpu_seconds=cpu_seconds, check_size=False, output_bytes=64 * 1024)

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return await asyncio.to_thread(self._complete, requests)

    def _complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        texts: list[str | None] = [None] * len(requests)
        errors: list[str | None] = [None] * len(requests)
        outs = [i for i, r in enumerate(requests) if r.context.get("kind") == "output"]
        ins = [i for i, r in enumerate(requests) if r.context.get("kind") == "input"]
        for i, r in enumerate(requests):
            if r.context.get("task") != "predict":
                errors[i] = "unsupported: the offline provider answers prediction requests only"
        if outs:
            jobs = [
                Job(
                    code=requests[i].context["code"] + "\n\n" + TRACER_SOURCE,
                    calls=[{"kwargs_json": canonical_json(requests[i].context["input"]), "budget_events": TRACE_EVENTS}],
                    entry="__codeio_trace__",
                    limits=self.trace_limits,
                )
                for i in outs
            ]
            for i, res in zip(outs, self.pool.run_many(jobs)):
                ctx = requests[i].context
                trace = res[0].value if res[0].status == "ok" else None
                if not isinstance(trace, dict):
                    trace = {"return": ctx["output"], "untraced": res[0].status}
                texts[i] = narrate_output_prediction(
                    trace, ctx["input"], ctx["io_description"], self.max_tokens, output=ctx["output"]
                )
        if ins:
            for i, cands in zip(ins, self._input_candidates([requests[i] for i in ins])):
                ctx = requests[i].context
                chosen = next((inp for inp, out in cands if outputs_match(ctx["output"], out)), ctx["input"])
                texts[i] = narrate_input_prediction(ctx["output"], cands, chosen, ctx["io_description"], self.max_tokens)
        results = []
        for i, r in enumerate(requests):
            text = texts[i]
            prompt_chars = sum(len(m.get("content", "")) for m in r.messages)
            results.append(
                ChatResult(
                    key=r.key(self.model),
                    model=self.model,
                    stage=r.stage,
                    content=text,
                    finish_reason="stop" if text is not None else None,
                    prompt_tokens=prompt_chars // 4,
                    completion_tokens=len(text or "") // 4,
                    error=errors[i] if text is None else None,
                )
            )
        return results

    def _input_candidates(self, requests: list[ChatRequest]) -> list[list[tuple[dict[str, Any], Any]]]:
        """For each request: a few generated inputs with their real outputs, plus the true one."""
        drafts: list[list[dict[str, Any]]] = []
        for r in requests:
            ctx = r.context
            gen = self.pool.generate(ctx["code"], entry="input_generator", count=CANDIDATES * 3, budget_seconds=2.0)
            seen = {canonical_json(ctx["input"])}
            params = entry_params(ctx["code"], ctx["entry"], ctx["arg_names"])  # the rule sampling used
            picks = []
            for v in gen.values if gen.status == "ok" or gen.values else []:
                if check_input_keys(v, params) is None and canonical_json(v) not in seen:
                    seen.add(canonical_json(v))
                    picks.append(v)
                if len(picks) >= CANDIDATES - 1:
                    break
            # The true input goes in at a position that depends on the request, not always last.
            pos = int(r.key(self.model)[:4], 16) % (len(picks) + 1)
            picks.insert(pos, ctx["input"])
            drafts.append(picks)
        jobs = [Job(code=r.context["code"], calls=d, entry=r.context["entry"], limits=self.run_limits)
                for r, d in zip(requests, drafts)]
        out: list[list[tuple[dict[str, Any], Any]]] = []
        for r, d, res in zip(requests, drafts, self.pool.run_many(jobs)):
            pairs = []
            for inp, cr in zip(d, res):
                if cr.status == "ok":
                    pairs.append((inp, cr.value))
                elif inp is r.context["input"]:
                    pairs.append((inp, r.context["output"]))
            out.append(pairs)
        return out
