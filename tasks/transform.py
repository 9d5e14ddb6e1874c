"""Stage 1: raw file -> function in the unified format.

Raw Python goes to the LLM with the transform prompt (or, with the offline provider, through
the ``ast``-based transform, which sends what it cannot handle to ``needs_llm``). Records that
are already unified (the released CodeI/O shape) are imported without a transform; their
recorded pairs are re-verified by the next stage.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from llm.types import ChatRequest
from prompts.render import render_transform
from prompts.transform_parse import TransformRejected, entry_arg_names, parse_transform, remove_example_usage
from storage.models import Function, Outcome, ShardResult
from tasks.bundled_tests import strip_bundled_tests
from tasks.docstrings import strip_doctest_examples
from tasks.example_comments import strip_example_comments
from tasks.llm_calls import complete, request_key
from tasks.stage import ShardContext, Stage

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store

OFFLINE_TRANSFORM_MODEL = "offline-ast-v1"


def _settings(cfg: "BuildConfig") -> Any:
    if cfg.provider == "offline":
        return {"provider": "offline"}
    s = {"model": cfg.llm.model, "temperature": cfg.llm.temperature, "max_tokens": cfg.llm.max_tokens}
    if cfg.llm.extra_body:  # it changes the calls (top_p, a chat template's enable_thinking, ...)
        s["extra_body"] = cfg.llm.extra_body
    return s


def _pending(cfg: "BuildConfig", keys: dict[str, str]) -> tuple[str, list[Any]]:
    return (
        "SELECT r.id FROM raw_files r WHERE NOT EXISTS (SELECT 1 FROM stage_outcomes o "
        "WHERE o.stage = 'transform' AND o.config_key = ? AND o.item_id = r.id AND o.status <> 'retry')",
        [keys["transform"]],
    )


def _load(store: "Store", ids: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
    return store.rows_by_ids(
        "raw_files", ids, "id, source, source_kind, origin, path, content"
    )


def _request(row: dict[str, Any], cfg: "BuildConfig") -> ChatRequest:
    return ChatRequest(
        messages=render_transform(row["content"]),
        temperature=cfg.llm.temperature,
        max_tokens=cfg.llm.max_tokens,
        stage="transform",
    )


def _call_keys(rows: list[dict[str, Any]], cfg: "BuildConfig") -> list[str]:
    if cfg.provider == "offline":
        return []
    return [request_key(_request(r, cfg), cfg) for r in rows if r["origin"] == "raw"]


def _function(row: dict[str, Any], origin: str, model: str, refcode: str, generator: str | None,
              io_description: str, query: str, arg_names: list[str], entry: str = "main_solution",
              seed_ios: list[dict[str, Any]] | None = None, counters: Counter[str] | None = None,
              original: str | None = None) -> dict[str, Any]:
    # The reference code is shown in every prompt: the worked examples of its docstrings,
    # comments and unit tests would state inputs and outputs outright (tasks.docstrings,
    # tasks.example_comments, tasks.bundled_tests). ``original`` names the function an offline
    # entry point wraps.
    shown = strip_doctest_examples(refcode)
    if shown != refcode and counters is not None:
        counters["doctest_examples_removed"] += 1
    uncommented = strip_example_comments(shown, ("main_solution", "input_generator", entry, original))
    if uncommented != shown and counters is not None:
        counters["example_comments_removed"] += 1
    untested = strip_bundled_tests(uncommented, keep=(entry, "input_generator"))
    if untested != uncommented and counters is not None:
        counters["test_code_removed"] += 1
    refcode = untested
    return Function(
        id=Function.make_id(refcode, generator, io_description, query),
        raw_id=row["id"],
        source=row["source"],
        source_kind=row["source_kind"],
        origin=origin,
        model=model,
        refcode=refcode,
        input_generator=generator,
        io_description=io_description,
        query=query,
        arg_names=arg_names,
        entry=entry,
        seed_ios=seed_ios,
    ).row()


def import_unified(row: dict[str, Any], counters: Counter[str] | None = None) -> tuple[dict[str, Any] | None, Outcome]:
    """A record in the released CodeI/O shape becomes a function without a transform."""
    try:
        rec = json.loads(row["content"])
    except ValueError:
        return None, Outcome(item_id=row["id"], status="dropped", reason="bad_record")
    refcode = rec.get("refcode")
    entry = rec.get("funcname") or "main_solution"
    if not isinstance(refcode, str) or not refcode.strip():
        return None, Outcome(item_id=row["id"], status="dropped", reason="missing_refcode")
    try:
        tree = ast.parse(refcode)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return None, Outcome(item_id=row["id"], status="dropped", reason="syntax_error", detail=str(exc)[:200])
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry]
    if not defs:
        return None, Outcome(item_id=row["id"], status="dropped", reason="no_entry_point", detail=entry)
    try:  # the rule a transformed function's entry point meets; Python keeps the last def
        arg_names = list(entry_arg_names(defs[-1]))
    except TransformRejected as exc:
        return None, Outcome(item_id=row["id"], status="dropped", reason=exc.reason, detail=exc.detail)
    ios = rec.get("ios") or []
    seed = [io for io in ios if isinstance(io, dict) and isinstance(io.get("input"), dict) and "output" in io]
    generator = rec.get("input_generator") or rec.get("inputs_generator")
    if not seed and not generator:
        return None, Outcome(item_id=row["id"], status="dropped", reason="no_ios_or_generator")
    generator = generator if isinstance(generator, str) else None
    # The same cleaning as a transformed function's: a worked call in the reference code
    # (``print(main_solution(7))  # 140``, a __main__ block) states a pair in every prompt.
    refcode, examples = remove_example_usage(refcode, entry)
    if generator is not None:
        generator, generator_examples = remove_example_usage(generator, entry)
        examples += generator_examples
    if examples and counters is not None:
        counters["example_statements_removed"] += 1
    fields = _function(
        row, "import", str(rec.get("model") or "imported"), refcode, generator,
        str(rec.get("io_requirements") or ""), str(rec.get("problem_description") or ""),
        arg_names, entry=entry, seed_ios=seed, counters=counters,
    )
    return fields, Outcome(item_id=row["id"], status="ok")


def run_shard(rows: list[dict[str, Any]], cfg: "BuildConfig", ctx: ShardContext) -> ShardResult:
    functions: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    llm_rows: list[dict[str, Any]] = []
    counters: Counter[str] = Counter()
    raw_rows = []
    for row in rows:
        if row["origin"] == "unified":
            fn, outcome = import_unified(row, counters)
            outcomes.append(outcome)
            if fn:
                functions.append(fn)
        else:
            raw_rows.append(row)

    if cfg.provider == "offline":
        from llm.offline.transform import NeedsLLM, offline_transform

        for row in raw_rows:
            got = offline_transform(row["content"])
            if isinstance(got, NeedsLLM):
                outcomes.append(Outcome(item_id=row["id"], status="dropped", reason="needs_llm", detail=got.reason))
                continue
            functions.append(
                _function(row, "offline", OFFLINE_TRANSFORM_MODEL, got.refcode, got.input_generator,
                          got.io_description, got.query, list(got.arg_names), counters=counters,
                          original=got.entry)
            )
            outcomes.append(Outcome(item_id=row["id"], status="ok"))
    elif raw_rows:
        results, llm_rows, call_counters = complete([_request(r, cfg) for r in raw_rows], cfg, ctx)
        counters.update(call_counters)
        for row, res in zip(raw_rows, results):
            if res.content is None:  # a transient failure is tried again by the next run
                outcomes.append(Outcome(item_id=row["id"], status="retry" if res.retryable else "dropped",
                                        reason=res.failure or "call_failed", detail=(res.error or "")[:200]))
                continue
            if res.truncated:
                outcomes.append(Outcome(item_id=row["id"], status="dropped", reason="truncated_response",
                                        detail=f"finish_reason: {res.finish_reason}"))
                continue
            try:
                parsed = parse_transform(res.content)
            except TransformRejected as exc:
                outcomes.append(Outcome(item_id=row["id"], status="dropped", reason=exc.reason, detail=(exc.detail or "")[:200]))
                continue
            if parsed.example_statements_removed:
                counters["example_statements_removed"] += 1
            functions.append(
                _function(row, "llm", res.model, parsed.refcode, parsed.input_generator,
                          parsed.io_description, parsed.query, list(parsed.arg_names), counters=counters)
            )
            outcomes.append(Outcome(item_id=row["id"], status="ok"))
    table_rows = {"functions": functions}
    if llm_rows:
        table_rows["llm_calls"] = llm_rows
    return ShardResult(stage="transform", config_key=ctx.config_key, rows=table_rows, outcomes=outcomes, counters=counters)


TRANSFORM = Stage(
    name="transform",
    # 2: doctest examples removed from the reference code's docstrings; 3: and example calls;
    # 4: an imported record's entry point meets the transformed one's rule (no positional-only)
    # 5: a reasoning model's thinking (<think>...</think>) is not read for sections, and a
    # truncated_response names its finish reason (length, content_filter); 6: an imported
    # record's example calls and __main__ blocks are removed as a transformed function's are;
    # 7: worked examples in comments are removed (tasks.example_comments); 8: and unit tests
    version="8",
    settings=_settings,
    pending_sql=_pending,
    load_rows=_load,
    run_shard=run_shard,
    call_keys=_call_keys,
    upstream="ingest",
    templates=("transform.txt",),
)
