"""Stage 3: I/O pair -> prediction tasks (one input- and one output-prediction prompt by
default; either kind can be switched off). Pure text work: no LLM call, no execution.

An input-prediction prompt shows the function and the output only, so two pairs of one
function with the same output would give the same prompt twice: the same task, the same
(cached) answer, and the same sample twice in the export. Only the pair with the smallest id
among them gets the input-prediction task; the others get their output-prediction task and
an ``ok`` outcome with reason ``input_prompt_shared`` (``codeio stats`` counts them)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from prompts.entry_params import entry_params
from prompts.render import render_prediction
from storage.models import Outcome, PredictionTask, ShardResult
from tasks.sample_io import program
from tasks.stage import ShardContext, Stage

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store


def _settings(cfg: "BuildConfig") -> Any:
    return {"kinds": sorted(cfg.prediction.kinds), "reference_tip": cfg.prediction.reference_tip}


def _pending(cfg: "BuildConfig", keys: dict[str, str]) -> tuple[str, list[Any]]:
    return (
        "SELECT p.id FROM io_pairs p WHERE p.config_key = ? AND NOT EXISTS (SELECT 1 FROM "
        "stage_outcomes o WHERE o.stage = 'prompts' AND o.config_key = ? AND o.item_id = p.id "
        "AND o.status <> 'retry')",
        [keys["sample_io"], keys["prompts"]],
    )


def _load(store: "Store", ids: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
    # same_output_as (the first pair of the function with this output, when it is another
    # pair) comes with the pair: sample_io records it, as it writes all of a function's pairs
    # together, so no shard groups the pairs of its functions, a scan that grew with the table.
    return store.query_ids(
        "SELECT p.id, p.function_id, p.input_json, p.output_json, f.query, f.io_description, "
        "f.refcode, f.input_generator, f.entry, f.arg_names, p.same_output_as "
        "FROM io_pairs p JOIN _want w ON p.id = w.id "
        "JOIN functions f ON f.id = p.function_id WHERE p.config_key = ? ORDER BY p.id",
        ids, [keys["sample_io"]],
    )


def run_shard(rows: list[dict[str, Any]], cfg: "BuildConfig", ctx: ShardContext) -> ShardResult:
    tasks: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    shared = 0
    for row in rows:
        # Input prompts list the parameters with a default as optional (prompts.render).
        params = entry_params(program(row["refcode"], row["input_generator"]), row["entry"],
                              json.loads(row["arg_names"]))
        first = row.get("same_output_as") or row["id"]
        for kind in sorted(cfg.prediction.kinds):
            if kind == "input" and first != row["id"]:
                continue
            given = json.loads(row["input_json"] if kind == "output" else row["output_json"])
            messages = render_prediction(
                kind, row["query"], row["io_description"], given,
                row["refcode"] if cfg.prediction.reference_tip else None, params,
            )
            tasks.append(PredictionTask.row_of(row["id"], row["function_id"], kind, messages))
        if "input" in cfg.prediction.kinds and first != row["id"]:
            shared += 1
            outcomes.append(Outcome(item_id=row["id"], status="ok", reason="input_prompt_shared",
                                    detail=f"same output as pair {first}: its input-prediction task is that pair's"))
        else:
            outcomes.append(Outcome(item_id=row["id"], status="ok"))
    return ShardResult(stage="prompts", config_key=ctx.config_key, rows={"prediction_tasks": tasks},
                       outcomes=outcomes, counters={"input_prompts_shared": shared} if shared else {})


PROMPTS = Stage(
    name="prompts",
    version="3",  # 2: one input-prediction task per distinct output of a function; 3: optional keys named
    settings=_settings,
    pending_sql=_pending,
    load_rows=_load,
    run_shard=run_shard,
    upstream="sample_io",
    templates=("predict_input.txt", "predict_output.txt", "reference_tip.txt"),
)
