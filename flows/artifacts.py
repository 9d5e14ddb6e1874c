"""Prefect artifacts of a build: live progress per stage, and a summary when it ends (the
funnel with drop reasons, the response types per turn of the paper's figure 7, LLM tokens
and cost).

Observability must never cost a build: outside a flow or task run every function is a no-op,
and an API error is logged once and swallowed. Only the flow process calls these (it owns the
store); shard tasks do not.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import polars as pl

from storage.stats import RESPONSE_TYPES, funnel, funnel_markdown, response_types, token_usage
from storage.store import Store


def calls_text(summary: dict[str, Any]) -> str:
    """How a run summary's answers were obtained, in a few words: LLM calls sent, or answers
    from the offline provider (which is not an LLM), and the shards taken from the cache."""
    n = int(summary.get("llm_calls_sent", 0))
    text = (f"{n:,} answer(s) from the offline provider (no LLM)" if summary.get("provider") == "offline"
            else f"{n:,} LLM call(s) sent")
    # Shards another build of the same rows and settings computed (Prefect's result cache):
    # no call was sent and no code run for them, which the counts alone would not say.
    cached = int(sum(st.get("cached_shards", 0) for st in summary.get("stages", {}).values()))
    return text + (f" ({cached:,} shard(s) taken from Prefect's result cache)" if cached else "")

log = logging.getLogger("codeio")

KEY_PREFIX = "codeio"
# The name of the database's deployments (`codeio serve --name`), when a run of them is going:
# artifact keys are per Prefect server, so each served database gets keys of its own.
_key_scope: list[str | None] = [None]
_lock = threading.Lock()
_progress_ids: dict[tuple[str, str], UUID] = {}  # (flow run id, stage) -> artifact id
_warned = False


def artifact_key(name: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) under the codeio prefix, and
    under the deployments' name when a run of named deployments is going (``key_scope``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    scope = _key_scope[0]
    return f"{KEY_PREFIX}-{scope}-{slug}" if scope else f"{KEY_PREFIX}-{slug}"


@contextmanager
def key_scope(scope: str | None) -> Iterator[None]:
    """Artifact keys of the block's builds carry ``scope`` (None: the plain keys)."""
    _key_scope[0] = scope
    try:
        yield
    finally:
        _key_scope[0] = None


def _run_id() -> str | None:
    """The id of the flow run this code runs in (or of the task run's flow run); None outside."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return str(flow_ctx.flow_run.id)
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    return None


def _failed(what: str, exc: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("could not publish the %s artifact (the build goes on): %s", what, exc)


def publish_stage_progress(stage: str, done: int, total: int) -> UUID | None:
    """Create, then update, the progress artifact of ``stage`` in the current flow run:
    ``done`` of ``total`` shards written. Returns the artifact id (None outside a run)."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    run_id = _run_id()
    if run_id is None:
        return None
    percent = 100.0 if total <= 0 else max(0.0, min(100.0, 100.0 * done / total))
    description = f"{stage}: {done} of {total} shard(s) written"
    try:
        with _lock:
            artifact_id = _progress_ids.get((run_id, stage))
            if artifact_id is None:
                artifact_id = create_progress_artifact(
                    percent, key=artifact_key(f"{stage}-progress"), description=description
                )
                _progress_ids[(run_id, stage)] = artifact_id
            else:
                update_progress_artifact(artifact_id, percent, description=description)
        return artifact_id
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _failed("progress", exc)
        return None


def publish_summary(
    store: Store, keys: dict[str, str], report: dict[str, Any], llm: Any | None = None
) -> dict[str, UUID]:
    """Publish the build summary as one markdown artifact and three tables (funnel, response
    types, LLM usage). ``report`` is ``BuildReport.as_dict()``; ``llm`` (LLMSettings) prices
    the tokens when it has prices. Returns artifact ids by key ({} outside a run)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    run_id = _run_id()
    if run_id is None:
        return {}
    with _lock:  # the run's progress artifacts are final now
        for k in [k for k in _progress_ids if k[0] == run_id]:
            del _progress_ids[k]
    try:
        funnel_rows = funnel(store, keys).to_dicts()
        types_rows = response_table(store, keys)
        usage_rows = usage_table(store, llm)
        markdown = summary_markdown(store, keys, report, types_rows, usage_rows)
        tables = {
            "funnel": (funnel_rows, "Rows per stage and status, with drop reasons"),
            "response-types": (types_rows, "Per turn and task kind: share of correct / wrong / no_answer / error (%)"),
            "llm-usage": (usage_rows, "LLM calls, tokens and cost per stage (all calls in the ledger)"),
        }
        ids = {artifact_key("summary"): create_markdown_artifact(
            markdown, key=artifact_key("summary"), description="codeio build summary")}
        for name, (rows, description) in tables.items():
            if rows:
                ids[artifact_key(name)] = create_table_artifact(rows, key=artifact_key(name), description=description)
        return ids
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _failed("summary", exc)
        return {}


def response_table(store: Store, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Figure 7 as rows: turn, kind, attempts, then the percentage of each response type."""
    frame = response_types(store, keys)
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for r in frame.iter_rows(named=True):
        row = rows.setdefault((r["turn"], r["kind"]), {"turn": r["turn"], "kind": r["kind"], "attempts": 0})
        row["attempts"] += r["count"]
        row[f"{r['type']} %"] = round(100.0 * r["share"], 1)
    for row in rows.values():
        for t in RESPONSE_TYPES:
            row.setdefault(f"{t} %", 0.0)
    return [rows[k] for k in sorted(rows)]


def usage_table(store: Store, llm: Any | None = None) -> list[dict[str, Any]]:
    """Per LLM stage: calls, tokens, truncated responses and cost (None without prices,
    "unknown" when a call's server did not say how many tokens it took)."""
    from llm.usage import Usage

    rows = []
    for r in token_usage(store).iter_rows(named=True):
        usage = Usage(calls=r["calls"], prompt_tokens=r["prompt_tokens"], completion_tokens=r["completion_tokens"],
                      usage_unknown=r["usage_unknown"])
        rows.append({**r, "cost_usd": _rounded(usage.cost_usd(llm))})
    if rows:
        total: dict[str, Any] = {"stage": "total"}
        for col in ("calls", "prompt_tokens", "completion_tokens", "truncated", "usage_unknown"):
            total[col] = sum(r[col] for r in rows)
        usage = Usage(prompt_tokens=total["prompt_tokens"], completion_tokens=total["completion_tokens"],
                      usage_unknown=total["usage_unknown"])
        total["cost_usd"] = _rounded(usage.cost_usd(llm))
        rows.append(total)
    return rows


def _rounded(cost: float | str | None) -> float | str | None:
    return round(cost, 4) if isinstance(cost, float) else cost


def summary_markdown(
    store: Store,
    keys: dict[str, str],
    report: dict[str, Any],
    types_rows: list[dict[str, Any]],
    usage_rows: list[dict[str, Any]],
) -> str:
    """The summary artifact's text: totals, kept-of-total per stage, the funnel table, the
    response types and the LLM usage."""
    parts = [
        "# codeio build",
        f"{report.get('seconds', 0):.1f} s, {report.get('task_runs', 0)} shard task(s), "
        f"{calls_text(report)}, {int(report.get('executions', 0))} "
        f"execution(s); database `{report.get('db_path', '')}`",
        "",
        "## Funnel",
    ]
    frame = funnel(store, keys)
    for stage in frame["stage"].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("stage") == stage)
        kept = int(part.filter(pl.col("status") == "ok")["count"].sum())
        parts.append(f"- **{stage}**: {kept} kept of {int(part['count'].sum())}")
    parts += ["", funnel_markdown(store, keys), "## Response types (paper figure 7)"]
    if types_rows:
        cols = ["turn", "kind", "attempts", *(f"{t} %" for t in RESPONSE_TYPES)]
        cols += sorted({c for r in types_rows for c in r} - set(cols))
        parts.append(_markdown_table(cols, [[r.get(c, "") for c in cols] for r in types_rows]))
    else:
        parts.append("(no attempts)\n")
    parts.append("## LLM usage (all calls in the ledger)")
    if usage_rows:
        cols = list(usage_rows[0])
        parts.append(_markdown_table(cols, [["n/a" if r[c] is None else r[c] for c in cols] for r in usage_rows]))
    else:
        parts.append("(no LLM calls)\n")
    exports = report.get("exports") or {}
    if exports:
        parts.append("## Exports")
        parts += [f"- {name}: `{path}`" for name, path in sorted(exports.items())]
    return "\n".join(parts) + "\n"


def _markdown_table(cols: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
