"""Stages 4-5: chain-of-thought answers (turn 1), verification, and CODEI/O++ revision turns.

Turn 1 answers every prediction task. A revision turn answers the tasks whose previous turn
was not correct, with the conversation so far plus the execution feedback, and is verified
the same way. Each turn is one stage, so a resumed run picks up exactly where it stopped.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from llm.types import ChatRequest, ChatResult, chat_key
from prompts.reasoning import answer_part
from prompts.render import render_revision
from storage.models import Attempt, Outcome, ShardResult
from storage.stages import TURN_STAGES
from tasks.llm_calls import complete, key_model_and_extra
from tasks.runtime import get_pool, limits_for
from tasks.sample_io import program
from tasks.stage import ShardContext, Stage, non_default
from tasks.verify import Verdict, VerifyItem, check_without_running, run_predicted_input

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store


def _settings(cfg: "BuildConfig") -> Any:
    s = {"provider": cfg.provider, "sandbox": non_default(cfg.sandbox, exclude={"workers"})}
    if cfg.provider == "http":
        s.update(model=cfg.llm.model, temperature=cfg.llm.temperature, max_tokens=cfg.llm.max_tokens,
                 extra_body=cfg.llm.extra_body)
    return s


def _pending_for(turn: int):
    def pending(cfg: "BuildConfig", keys: dict[str, str]) -> tuple[str, list[Any]]:
        stage = TURN_STAGES[turn]
        if turn == 1:
            return (
                "SELECT t.id FROM prediction_tasks t WHERE t.config_key = ? AND NOT EXISTS (SELECT 1 "
                "FROM stage_outcomes o WHERE o.stage = 'answer' AND o.config_key = ? AND o.item_id = t.id "
                "AND o.status <> 'retry')",
                [keys["prompts"], keys["answer"]],
            )
        if cfg.prediction.revision_turns < turn - 1:
            return "SELECT NULL::VARCHAR AS id WHERE false", []
        prev = TURN_STAGES[turn - 1]
        return (
            "SELECT a.task_id AS id FROM attempts a JOIN prediction_tasks t ON t.id = a.task_id "
            "WHERE t.config_key = ? AND a.config_key = ? AND a.turn = ? AND a.verdict <> 'correct' "
            "AND NOT EXISTS (SELECT 1 FROM stage_outcomes o WHERE o.stage = ? AND o.config_key = ? "
            "AND o.item_id = a.task_id AND o.status <> 'retry')",
            [keys["prompts"], keys[prev], turn - 1, stage, keys[stage]],
        )

    return pending


def _load_for(turn: int):
    def load(store: "Store", ids: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
        rows = store.query_ids(
            "SELECT t.id, t.kind, t.messages_json, p.input_json, p.output_json, f.refcode, "
            "f.input_generator, f.entry, f.arg_names, f.io_description FROM prediction_tasks t "
            "JOIN _want w ON t.id = w.id JOIN io_pairs p ON p.id = t.pair_id AND p.config_key = ? "
            "JOIN functions f ON f.id = t.function_id WHERE t.config_key = ? ORDER BY t.id",
            ids, [keys["sample_io"], keys["prompts"]],
        )
        if turn > 1:
            prev_keys = [keys[TURN_STAGES[k]] for k in range(1, turn)]
            history = store.query_ids(
                "SELECT a.task_id, a.turn, a.response, a.feedback FROM attempts a JOIN _want w "
                "ON a.task_id = w.id WHERE a.turn < ? AND list_contains(?, a.config_key) "
                "ORDER BY a.task_id, a.turn",
                ids, [turn, prev_keys],
            )
            by_task: dict[str, list[dict[str, Any]]] = {}
            for h in history:
                by_task.setdefault(h["task_id"], []).append(h)
            for r in rows:
                r["history"] = by_task.get(r["id"], [])
        return rows

    return load


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = list(json.loads(row["messages_json"]))
    for h in row.get("history", []):
        # A reasoning model's earlier thinking is not sent back (DeepSeek's guidance for
        # multi-turn chats, and what R1's and Qwen3's chat templates do): only its answer.
        messages.append({"role": "assistant", "content": answer_part(h["response"] or "")})
        messages.append(render_revision(h["feedback"]))
    return messages


def _request(row: dict[str, Any], cfg: "BuildConfig", turn: int) -> ChatRequest:
    return ChatRequest(
        messages=_messages(row),
        temperature=cfg.llm.temperature,
        max_tokens=cfg.llm.max_tokens,
        stage=TURN_STAGES[turn],  # the ledger counts usage per stage: revise1 and revise2 apart
        context={
            "task": "predict",
            "kind": row["kind"],
            "code": program(row["refcode"], row["input_generator"]),
            "entry": row["entry"],
            "arg_names": json.loads(row["arg_names"]),
            "input": json.loads(row["input_json"]),
            "output": json.loads(row["output_json"]),
            "io_description": row["io_description"],
            "turn": turn,
        },
    )


def _call_keys_for(turn: int):
    def call_keys(rows: list[dict[str, Any]], cfg: "BuildConfig") -> list[str]:
        # The keys of the requests _request builds, without building them (the flow asks
        # for every shard's keys before it submits the shard).
        model, extra = key_model_and_extra(cfg)
        return [chat_key(model, _messages(r), cfg.llm.temperature, cfg.llm.max_tokens, 0, extra) for r in rows]

    return call_keys


def _run_for(turn: int):
    def run_shard(rows: list[dict[str, Any]], cfg: "BuildConfig", ctx: ShardContext) -> ShardResult:
        stage = TURN_STAGES[turn]
        requests = [_request(r, cfg, turn) for r in rows]
        if len(ctx.call_keys) == len(rows):  # the flow's keys for these rows: not hashed twice
            model, extra = key_model_and_extra(cfg)
            for req, call_key in zip(requests, ctx.call_keys):
                req.know_key(model, extra, call_key)
        pool, limits = get_pool(cfg.sandbox), limits_for(cfg.sandbox)
        checks: list[Future[tuple[Verdict, int]] | None] = [None] * len(rows)
        # Each answer is verified as soon as it arrives, while the shard's other calls are
        # still out, so the sandbox does not wait for the slowest call of the shard.
        with ThreadPoolExecutor(max_workers=pool.workers, thread_name_prefix="verify") as executor:

            def on_result(i: int, res: ChatResult) -> None:
                req = requests[i]
                item = VerifyItem(
                    kind=rows[i]["kind"], response=res.content, code=req.context["code"], entry=rows[i]["entry"],
                    arg_names=req.context["arg_names"], given_input=req.context["input"],
                    given_output=req.context["output"], truncated=res.truncated,
                )
                # What needs no execution (output predictions, unreadable answers) is decided
                # here and now; only a predicted input goes to a verify thread, to be run.
                decided: Future[tuple[Verdict, int]] = Future()
                try:
                    checked = check_without_running(item)
                    if isinstance(checked, Verdict):
                        decided.set_result((checked, 0))
                    else:
                        decided = executor.submit(run_predicted_input, item, checked, pool, limits)
                except Exception as exc:  # noqa: BLE001 - raised where the verdicts are read
                    decided.set_exception(exc)
                checks[i] = decided

            try:
                results, llm_rows, counters = complete(requests, cfg, ctx, on_result)
            except BaseException:
                executor.shutdown(wait=True, cancel_futures=True)
                raise
            checked = [c.result() for c in checks if c is not None]
        if len(checked) != len(rows):
            raise RuntimeError(f"{stage}: {len(rows) - len(checked)} answer(s) were never handed to verification")
        verdicts = [v for v, _ in checked]
        counters["executions"] = sum(n for _, n in checked)
        counters.update(Counter(f"verdict:{r['kind']}:{v.verdict}" for r, v in zip(rows, verdicts)))
        attempts: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        for r, req, res, v in zip(rows, requests, results, verdicts):
            if res.content is None:  # a transient failure is tried again by the next run
                outcomes.append(Outcome(item_id=r["id"], status="retry" if res.retryable else "dropped",
                                        reason=res.failure or "call_failed", detail=(res.error or "")[:200]))
                continue
            attempts.append(
                Attempt(
                    id=Attempt.make_id(r["id"], turn, res.key), task_id=r["id"], turn=turn, call_key=res.key,
                    model=res.model, response=res.content, truncated=res.truncated,
                    extract_status=v.extract_status, answer=v.answer, verdict=v.verdict,
                    feedback=v.feedback, actual_output=v.actual_output,
                ).row()
            )
            outcomes.append(Outcome(item_id=r["id"], status="ok", detail=v.verdict))
        table_rows: dict[str, list[dict[str, Any]]] = {"attempts": attempts}
        if llm_rows:
            table_rows["llm_calls"] = llm_rows
        return ShardResult(stage=stage, config_key=ctx.config_key, rows=table_rows, outcomes=outcomes, counters=counters)

    return run_shard


def _stage(turn: int) -> Stage:
    upstream = "prompts" if turn == 1 else TURN_STAGES[turn - 1]
    return Stage(
        name=TURN_STAGES[turn],
        # 2: a response cut off at max_tokens is no_answer, whatever it holds; 3: a predicted
        # input may leave out parameters with a default; 4: an answer in a reasoning model's
        # thinking (<think>...</think>) is a draft, not the answer, and a revision is sent the
        # earlier turns' answers without their thinking
        version="4",
        settings=_settings,
        pending_sql=_pending_for(turn),
        load_rows=_load_for(turn),
        run_shard=_run_for(turn),
        call_keys=_call_keys_for(turn),
        upstream=upstream,
        # feedback.txt words the verdicts each turn stores; revise.txt asks for the next turn
        templates=("feedback.txt", "revise.txt") if turn > 1 else ("feedback.txt",),
    )


ANSWER = _stage(1)
REVISE1 = _stage(2)
REVISE2 = _stage(3)
