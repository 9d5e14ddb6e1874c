"""Build statistics: the per-stage funnel with drop reasons, the response types per turn (the
paper's figure 7), and LLM token usage; as polars tables and as a plain-text report.

``keys`` maps stage name -> config key, as for the export. The funnel accounts for every input
row: ingest from ``ingest_log`` (which has no config key, so it always counts every ingested
entry), every other stage from ``stage_outcomes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from storage.stages import STAGE_ORDER, TURN_STAGES
from storage.store import Store

# Statuses sort in this order, stages in STAGE_ORDER; one not listed follows in name order.
_STATUS_ORDER = ("ok", "duplicate", "rejected", "dropped", "retry")

# Verdict -> response type of figure 7. A verdict not listed is counted as 'other'.
RESPONSE_TYPES = ("correct", "wrong", "no_answer", "error")
_VERDICT_TYPE = {
    "correct": "correct",
    "wrong": "wrong",
    "no_answer": "no_answer",
    "bad_format": "no_answer",
    "exception": "error",
    "timeout": "error",
    "call_failed": "error",
}
_FUNNEL_SCHEMA = {"stage": pl.String, "status": pl.String, "reason": pl.String, "count": pl.Int64}
_RESPONSE_SCHEMA = {
    "turn": pl.Int64,
    "kind": pl.String,
    "type": pl.String,
    "count": pl.Int64,
    "share": pl.Float64,
}
_TOKEN_SCHEMA = {
    "stage": pl.String,
    "calls": pl.Int64,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "truncated": pl.Int64,
    "usage_unknown": pl.Int64,
}


def funnel(store: Store, keys: dict[str, str] | None = None) -> pl.DataFrame:
    """Rows (stage, status, reason, count): how many input rows each stage kept or dropped, why.

    With ``keys``, only the outcomes recorded under each stage's config key count; with None,
    every outcome in the store does. Ordered by pipeline stage, status (ok first), count
    (largest first), reason.
    """
    rows = [
        ("ingest", status, reason, n)
        for status, reason, n in store.query("SELECT status, reason, count(*) FROM ingest_log GROUP BY ALL")
    ]
    where = outcomes_condition(keys)
    if where is not None:
        # Two raw files the LLM rewrote into the same function make one function row: the
        # file whose row it is not is shown as ok with reason same_function, so the counts of
        # transform and sample_io add up.
        rows += store.query(f"SELECT stage, status, reason, count(*) FROM stage_outcomes WHERE {where[0]} "
                            "GROUP BY ALL", where[1])
        rows = _same_function(store, keys, rows)
    return _funnel_frame(rows)


def _same_function(store: Store, keys: dict[str, str] | None, rows: list[tuple]) -> list[tuple]:
    """``rows`` with the transform's plain ok rows whose raw file has no function row of its
    own (another file was rewritten into the same function) moved to reason same_function."""
    if keys is not None and not keys.get("transform"):
        return rows
    key_filter, params = ("AND o.config_key = ?", [keys["transform"]]) if keys is not None else ("", [])
    (shared,) = store.query(
        "SELECT count(*) FROM stage_outcomes o ANTI JOIN functions f ON f.raw_id = o.item_id "
        f"WHERE o.stage = 'transform' AND o.status = 'ok' AND o.reason IS NULL {key_filter}", params)[0]
    if not shared:
        return rows
    out = [(st, status, reason, n - shared) if (st, status, reason) == ("transform", "ok", None) else (st, status, reason, n)
           for st, status, reason, n in rows]
    return [r for r in out if r[3]] + [("transform", "ok", "same_function", shared)]


def outcomes_condition(keys: dict[str, str] | None) -> tuple[str, list[Any]] | None:
    """The stage_outcomes condition (and its parameters) for the stages' config keys: every
    outcome with None, none (None returned) when no stage but ingest has a key."""
    if keys is None:
        return "true", []
    pairs = sorted((stage, key) for stage, key in keys.items() if stage != "ingest" and key)
    if not pairs:
        return None
    return ("(" + " OR ".join("(stage = ? AND config_key = ?)" for _ in pairs) + ")",
            [v for pair in pairs for v in pair])


def _funnel_frame(rows: list[tuple]) -> pl.DataFrame:
    rows = sorted(
        rows,
        key=lambda r: (_rank(STAGE_ORDER, r[0]), r[0], _rank(_STATUS_ORDER, r[1]), r[1], -r[3], r[2] or ""),
    )
    return pl.DataFrame(rows, schema=_FUNNEL_SCHEMA, orient="row")


def response_types(store: Store, keys: dict[str, str]) -> pl.DataFrame:
    """Per turn and task kind: count and share of correct / wrong / no_answer / error responses.

    no_answer = no_answer + bad_format; error = exception + timeout + call_failed. Turn t's
    attempts are those under the config key of 'answer' (1), 'revise1' (2), 'revise2' (3) for
    the tasks of keys['prompts']; one attempt per task and turn (the export's choice). Every
    type appears for each (turn, kind) that has attempts; share is count / attempts of that
    (turn, kind).
    """
    turns = [(turn, keys[name]) for turn, name in TURN_STAGES.items() if keys.get(name)]
    if not turns:
        return pl.DataFrame([], schema=_RESPONSE_SCHEMA, orient="row")
    task_filter, params = "", []
    if keys.get("prompts"):
        task_filter, params = "AND t.config_key = ?", [keys["prompts"]]
    where = " OR ".join("(a.turn = ? AND a.config_key = ?)" for _ in turns)
    params += [v for pair in turns for v in pair]
    sql = f"""
        SELECT turn, kind, verdict, count(*) FROM (
            SELECT a.turn, t.kind, a.verdict FROM attempts a
            JOIN prediction_tasks t ON t.id = a.task_id {task_filter}
            WHERE {where}
            QUALIFY row_number() OVER (PARTITION BY a.task_id, a.turn ORDER BY a.id) = 1
        ) GROUP BY ALL
    """
    counts: dict[tuple[int, str], dict[str, int]] = {}
    for turn, kind, verdict, n in store.query(sql, params):
        per_type = counts.setdefault((turn, kind), dict.fromkeys(RESPONSE_TYPES, 0))
        kind_of = _VERDICT_TYPE.get(verdict, "other")
        per_type[kind_of] = per_type.get(kind_of, 0) + n
    rows = []
    for (turn, kind), per_type in sorted(counts.items()):
        total = sum(per_type.values())
        for type_name, n in per_type.items():
            rows.append((turn, kind, type_name, n, n / total))
    return pl.DataFrame(rows, schema=_RESPONSE_SCHEMA, orient="row")


def token_usage(store: Store) -> pl.DataFrame:
    """Per LLM stage: calls, prompt tokens, completion tokens, truncated responses, and calls
    whose server did not say how many tokens they took (``usage_unknown``: the sums leave them
    out) (the ledger)."""
    rows = store.query(
        "SELECT stage, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
        "count_if(truncated), count_if(prompt_tokens IS NULL OR completion_tokens IS NULL) "
        "FROM llm_calls GROUP BY stage"
    )
    rows = sorted(rows, key=lambda r: (_rank(STAGE_ORDER, r[0]), r[0]))
    return pl.DataFrame(rows, schema=_TOKEN_SCHEMA, orient="row")


def drop_examples(store: Store, keys: dict[str, str] | None = None) -> dict[tuple[str, str, str | None], str]:
    """One example per (stage, status, reason) that is not a plain ok (a drop, or a kept row
    with a reason such as prompts' input_prompt_shared), so a reader can find the rows behind
    a count: where it is (the file and line for ingest, the file and raw id for transform,
    the item id otherwise) and the recorded detail. The example is the first by location or
    id, so it is stable."""
    found = {
        ("ingest", status, reason): where + (f": {detail}" if detail else "")
        for status, reason, where, detail in store.query(
            "SELECT status, reason, min(locator), min_by(detail, locator) FROM ingest_log "
            "WHERE status <> 'ok' GROUP BY ALL")
    }
    where = outcomes_condition(keys)
    if where is None:
        return found
    rows = store.query(
        "SELECT stage, status, reason, min(item_id), min_by(detail, item_id) FROM stage_outcomes "
        f"WHERE (status <> 'ok' OR reason IS NOT NULL) AND {where[0]} GROUP BY ALL", where[1])
    # A transform item is a raw file: its path says more than its id.
    raw = [item for stage, _s, _r, item, _d in rows if stage == "transform"]
    paths = dict(store.query("SELECT id, min(path) FROM raw_files WHERE list_contains(?, id) GROUP BY id", [raw])) if raw else {}
    for stage, status, reason, item, detail in rows:
        place = f"{paths[item]} ({item[:16]})" if item in paths else item[:16]
        found[(stage, status, reason)] = place + (f": {detail}" if detail else "")
    return found


def format_report(store: Store, keys: dict[str, str] | None, pending: dict[str, int] | None = None) -> str:
    """The plain-text report of `codeio stats`: funnel with drop reasons (and an example of
    each), the rows each stage has still to do (``pending``, when given), response types,
    tokens."""
    sections = ["Funnel (rows per stage and status; drop reasons, each with an example)",
                _funnel_text(funnel(store, keys), drop_examples(store, keys), pending or {})]
    sections.append("Response types (per turn and task kind; share of that turn's attempts)")
    types = response_types(store, keys or {})
    sections.append(_response_text(types) if types.height else "  (no attempts)")
    sections.append("LLM usage (all calls in the ledger)")
    tokens = token_usage(store)
    sections.append(_tokens_text(tokens) if tokens.height else "  (no LLM calls)")
    return "\n".join(sections) + "\n"


def funnel_markdown(store: Store, keys: dict[str, str] | None = None) -> str:
    """The funnel as a markdown table (for Prefect artifacts)."""
    frame = funnel(store, keys)
    rows = [[r["stage"], r["status"], r["reason"] or "", str(r["count"])] for r in frame.iter_rows(named=True)]
    lines = ["| stage | status | reason | count |", "|---|---|---|---:|"]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _funnel_text(frame: pl.DataFrame, examples: dict[tuple[str, str, str | None], str],
                 pending: dict[str, int]) -> str:
    rows = []
    stages = list(frame["stage"].unique(maintain_order=True))
    stages += [st for st, n in pending.items() if n and st not in stages]
    stages.sort(key=lambda st: (_rank(STAGE_ORDER, st), st))
    for stage in stages:
        part = frame.filter(pl.col("stage") == stage)
        total = int(part["count"].sum())
        kept = int(part.filter(pl.col("status") == "ok")["count"].sum())
        # Rows left to retry are pending too: count them once, as pending.
        waiting = pending.get(stage, 0)
        retry = int(part.filter(pl.col("status") == "retry")["count"].sum())
        total += waiting - min(retry, waiting)
        rows.append([stage, "total", f"{kept} kept of {total}", str(total), ""])
        for r in part.iter_rows(named=True):
            example = " ".join(examples.get((stage, r["status"], r["reason"]), "").split())
            example = example if len(example) <= EXAMPLE_CHARS else example[: EXAMPLE_CHARS - 3] + "..."
            rows.append(["", r["status"], r["reason"] or "-", str(r["count"]), example])
        if waiting > retry:
            rows.append(["", "pending", "-", str(waiting - retry), "not done yet: the next run takes them up"])
    return _text_table(["stage", "status", "reason", "count", "example"], rows, right=(3,))


EXAMPLE_CHARS = 80  # an example's detail is cut to this (the store holds it whole)


def _response_text(frame: pl.DataFrame) -> str:
    types = list(RESPONSE_TYPES) + (["other"] if "other" in frame["type"].to_list() else [])
    rows = []
    for (turn, kind), part in frame.group_by(["turn", "kind"], maintain_order=True):
        by_type = {r["type"]: r for r in part.iter_rows(named=True)}
        total = int(part["count"].sum())
        cells = [str(turn), kind, str(total)]
        for t in types:
            r = by_type.get(t)
            cells.append(f"{r['share'] * 100:5.1f}% ({r['count']})" if r else "-")
        rows.append(cells)
    return _text_table(["turn", "kind", "attempts", *types], rows, right=tuple(range(2, 3 + len(types))))


def _tokens_text(frame: pl.DataFrame) -> str:
    rows = [[str(v) for v in r] for r in frame.iter_rows()]
    totals = frame.select(pl.exclude("stage")).sum().row(0)
    rows.append(["total", *(str(v) for v in totals)])
    return _text_table(list(frame.columns), rows, right=(1, 2, 3, 4, 5))


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return ("  " + "  ".join(out)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rank(order: Sequence[str], value: str) -> int:
    return order.index(value) if value in order else len(order)
