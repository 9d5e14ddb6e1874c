"""Stage 3: I/O pair -> prediction tasks (one input- and one output-prediction prompt by
default; either kind can be switched off). Pure text work: no LLM call, no execution."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from prompts.render import render_prediction
from storage.models import Outcome, PredictionTask, ShardResult
from tasks.stage import ShardContext, Stage

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store


def _settings(cfg: "BuildConfig") -> Any:
    return {"kinds": sorted(cfg.prediction.kinds), "reference_tip": cfg.prediction.reference_tip}


def _pending(cfg: "BuildConfig", keys: dict[str, str]) -> tuple[str, list[Any]]:
    return (
        "SELECT p.id FROM io_pairs p WHERE p.config_key = ? AND NOT EXISTS (SELECT 1 FROM "
        "stage_outcomes o WHERE o.stage = 'prompts' AND o.config_key = ? AND o.item_id = p.id)",
        [keys["sample_io"], keys["prompts"]],
    )


def _load(store: "Store", ids: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
    return store.query_ids(
        "SELECT p.id, p.function_id, p.input_json, p.output_json, f.query, f.io_description, "
        "f.refcode, f.arg_names FROM io_pairs p JOIN _want w ON p.id = w.id "
        "JOIN functions f ON f.id = p.function_id WHERE p.config_key = ? ORDER BY p.id",
        ids, [keys["sample_io"]],
    )


def run_shard(rows: list[dict[str, Any]], cfg: "BuildConfig", ctx: ShardContext) -> ShardResult:
    tasks: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for row in rows:
        arg_names = json.loads(row["arg_names"])
        for kind in sorted(cfg.prediction.kinds):
            given = json.loads(row["input_json"] if kind == "output" else row["output_json"])
            messages = render_prediction(
                kind, row["query"], row["io_description"], given,
                row["refcode"] if cfg.prediction.reference_tip else None, arg_names,
            )
            tasks.append(PredictionTask.row_of(row["id"], row["function_id"], kind, messages))
        outcomes.append(Outcome(item_id=row["id"], status="ok"))
    return ShardResult(stage="prompts", config_key=ctx.config_key, rows={"prediction_tasks": tasks}, outcomes=outcomes)


PROMPTS = Stage(
    name="prompts",
    version="1",
    settings=_settings,
    pending_sql=_pending,
    load_rows=_load,
    run_shard=run_shard,
    upstream="sample_io",
)
