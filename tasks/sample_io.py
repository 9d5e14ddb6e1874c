"""Stage 2: function -> verified I/O pairs.

The input generator runs up to ``generator_calls`` times in one sandbox child; distinct inputs
that pass the size check are run through the entry point, each call in a fresh fork; outputs
that pass the size check and are not None are kept up to the source's cap. Pairs whose output
no kept pair has yet come first: a function whose first candidates all return ``false`` would
otherwise teach a constant, so more candidates (up to ``distinct_outputs_search`` times the
cap) are run looking for other outputs before repeated ones fill the cap. Every kept pair is
then re-run in a worker with another hash seed, and a function whose outputs differ is dropped
as non-deterministic. Imported functions bring recorded pairs, which are re-executed the same
way and kept as recorded (repeated outputs too): a recorded output that does not reproduce
drops that pair.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prompts.answers import check_input_keys
from prompts.entry_params import entry_params
from sandbox import Job, canonical_json
from storage.models import IOPair, Outcome, ShardResult, mark_same_output
from tasks.runtime import get_pool, limits_for
from tasks.stage import ShardContext, Stage, non_default

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store

SECOND_SEED = 1


def _settings(cfg: "BuildConfig") -> Any:
    return {"sampling": non_default(cfg.sampling), "sandbox": non_default(cfg.sandbox, exclude={"workers"}),
            "caps": {s.source_name: s.pairs_per_function for s in cfg.sources if s.pairs_per_function}}


def _pending(cfg: "BuildConfig", keys: dict[str, str]) -> tuple[str, list[Any]]:
    return (
        "SELECT f.id FROM functions f WHERE f.config_key = ? AND NOT EXISTS (SELECT 1 FROM "
        "stage_outcomes o WHERE o.stage = 'sample_io' AND o.config_key = ? AND o.item_id = f.id "
        "AND o.status <> 'retry')",
        [keys["transform"], keys["sample_io"]],
    )


def _load(store: "Store", ids: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
    return store.rows_by_ids(
        "functions", ids,
        "id, source, source_kind, refcode, input_generator, arg_names, entry, seed_ios_json",
    )


def program(refcode: str, generator: str | None) -> str:
    """The code a function's calls run: the reference code, then the generator if separate."""
    if generator and generator.strip() and generator.strip() not in refcode:
        return refcode.rstrip() + "\n\n\n" + generator.strip() + "\n"
    return refcode


def cap_for(row: dict[str, Any], cfg: "BuildConfig") -> int:
    for spec in cfg.sources:
        if spec.source_name == row["source"] and spec.pairs_per_function:
            return spec.pairs_per_function
    return cfg.sampling.pairs_per_kind.get(row["source_kind"], 3)


class _Sampling:
    """Per-function working state through its steps (inputs, entry-point rounds, re-run)."""

    def __init__(self, row: dict[str, Any], cfg: "BuildConfig") -> None:
        self.row = row
        self.code = program(row["refcode"], row["input_generator"])
        # Parameters with a default may be left out of an input (prompts.entry_params).
        self.params = entry_params(self.code, row["entry"], json.loads(row["arg_names"]))
        self.cap = cap_for(row, cfg)
        self.seed_ios: list[dict[str, Any]] = json.loads(row["seed_ios_json"]) if row["seed_ios_json"] else []
        self.candidates: list[dict[str, Any]] = []
        self.expected: list[Any] = []  # recorded outputs of imported pairs (None: not recorded)
        self.kept: list[tuple[dict[str, Any], Any]] = []
        self.repeated: list[tuple[int, dict[str, Any], Any]] = []  # (candidate index, input, output)
        self.repeats_kept = 0  # kept pairs whose output another kept pair has too
        self.drops: Counter[str] = Counter()
        self.first_error: str | None = None
        self.fatal: tuple[str, str] | None = None

    def drop(self, reason: str, detail: str | None = None) -> None:
        self.drops[reason] += 1
        if detail and not self.first_error:
            self.first_error = f"{reason}: {detail}"[:300]


def _gather_inputs(s: _Sampling, cfg: "BuildConfig") -> int:
    """Recorded inputs first, then generated ones; returns the number of executions."""
    seen: set[str] = set()
    for io in s.seed_ios:
        # A recorded input meets the rule generated ones do: run with the wrong keys it could
        # only raise, and its drop would read as the function's error (entry_error).
        problem = check_input_keys(io["input"], s.params)
        if problem:
            s.drop("recorded_wrong_keys", problem)
            continue
        k = canonical_json(io["input"])
        if k not in seen:
            seen.add(k)
            s.candidates.append(io["input"])
            s.expected.append(io["output"])
    if not s.row["input_generator"] and "def input_generator" not in s.row["refcode"]:
        return 0
    pool = get_pool(cfg.sandbox)
    for _attempt in range(2):
        gen = pool.generate(
            s.code, entry="input_generator", count=cfg.sampling.generator_calls,
            budget_seconds=cfg.sampling.function_budget_s / 2,
        )
        # A crashed child may be the code's doing or the machine's (a worker lost to the OOM
        # killer): one more try keeps a passing infrastructure failure from becoming a drop.
        if gen.status != "crashed" or gen.values:
            break
    if gen.status not in ("ok",) and not gen.values:
        s.fatal = (f"generator_{gen.status}", (gen.error or "")[:300])
        return 1
    if gen.error and not s.first_error:
        s.first_error = f"generator: {gen.error}"[:300]
    for v in gen.values:
        if not isinstance(v, dict):
            s.drop("generator_not_dict", type(v).__name__)
            continue
        problem = check_input_keys(v, s.params)
        if problem:
            s.drop("generator_wrong_keys", problem)
            continue
        k = canonical_json(v)
        if k in seen:
            continue
        seen.add(k)
        s.candidates.append(v)
        s.expected.append(_NOT_RECORDED)
    for reason, n in (gen.failures or {}).items():
        s.drops[f"generator_{reason}"] += n
    return 1


_NOT_RECORDED = object()


def _run_with_retry(pool: Any, job: Job, hash_seed: int | None = None) -> list[Any]:
    """A job's results, with the calls that came back ``crashed`` run once more, each alone."""
    results = pool.run(job.code, job.calls, job.entry, job.limits, hash_seed)
    for k, r in enumerate(results):
        if r.status == "crashed":
            (results[k],) = pool.run(job.code, [job.calls[k]], job.entry, job.limits, hash_seed)
    return results


def _sample(s: _Sampling, cfg: "BuildConfig", pool: Any, limits: Any) -> int:
    """One function through all its steps; returns the number of executions.

    Functions go through their steps independently of each other (a thread each, up to one
    per worker of either hash seed), so the determinism re-runs of some functions overlap
    with the first runs of others and no core waits for a phase of the whole shard to end.
    """
    executions = _gather_inputs(s, cfg)
    if s.fatal is not None or not s.candidates:
        return executions

    # The entry point on candidates, in rounds until the function has its cap of pairs with
    # distinct outputs, or has its cap with repeats and the search for new outputs is spent.
    offset = 0
    chosen: list[tuple[int, dict[str, Any], Any]] = []  # first pair of each output
    outputs: set[str] = set()
    search = s.cap * cfg.sampling.distinct_outputs_search
    while True:
        need = s.cap - len(chosen)
        if need <= 0 or offset >= len(s.candidates):
            break
        if len(chosen) + len(s.repeated) >= s.cap and offset >= search:
            break
        take = s.candidates[offset : offset + max(need * 2, need + 2)]
        if s.seed_ios and offset == 0:
            take = s.candidates[: max(len(s.seed_ios), need * 2)]
        start = offset
        offset += len(take)
        results = _run_with_retry(pool, Job(code=s.code, calls=take, entry=s.row["entry"], limits=limits))
        executions += len(take)
        for i, (inp, r) in enumerate(zip(take, results)):
            recorded = s.expected[start + i]
            if r.status != "ok":
                s.drop(f"entry_{r.status}", f"{r.error_type}: {r.error_message}" if r.error_type else None)
                continue
            if r.value is None:
                s.drop("output_none", f"input {canonical_json(inp)[:100]} returned None")
                continue
            if recorded is not _NOT_RECORDED and canonical_json(recorded) != canonical_json(r.value):
                s.drop("recorded_output_mismatch")
                continue
            key = canonical_json(r.value)
            # A recorded pair (an imported function's) is kept as recorded, repeat or not.
            if key in outputs and cfg.sampling.distinct_outputs_search and recorded is _NOT_RECORDED:
                s.repeated.append((start + i, inp, r.value))
            elif len(chosen) < s.cap:
                outputs.add(key)
                chosen.append((start + i, inp, r.value))
    # Repeats fill what new outputs could not, earliest first; pairs keep candidate order.
    fill = s.repeated[: max(0, s.cap - len(chosen))]
    s.kept = [(inp, out) for _, inp, out in sorted(chosen + fill, key=lambda c: c[0])]
    s.repeats_kept = len(s.kept) - len({canonical_json(out) for _, out in s.kept})

    # Determinism under another hash seed, in another worker.
    if cfg.sampling.check_determinism and len(s.kept) >= cfg.sampling.min_pairs:
        job = Job(code=s.code, calls=[i for i, _ in s.kept], entry=s.row["entry"], limits=limits)
        results = _run_with_retry(pool, job, hash_seed=SECOND_SEED)
        executions += len(job.calls)
        for (inp, out), r in zip(s.kept, results):
            if r.status != "ok":
                # A second run that fails where the first succeeded is not proof of
                # non-determinism of the output: record what happened instead.
                s.fatal = (f"recheck_{r.status}", f"input {canonical_json(inp)[:120]}: {r.error_type or ''} {r.error_message or ''}".strip())
                break
            if canonical_json(r.value) != canonical_json(out):
                s.fatal = ("non_deterministic", f"input {canonical_json(inp)[:120]}: output differs under another hash seed")
                break
    return executions


def run_shard(rows: list[dict[str, Any]], cfg: "BuildConfig", ctx: ShardContext) -> ShardResult:
    pool = get_pool(cfg.sandbox)
    limits = limits_for(cfg.sandbox)
    states = [_Sampling(r, cfg) for r in rows]
    with ThreadPoolExecutor(max_workers=2 * max(1, pool.workers), thread_name_prefix="sample") as ex:
        executions = sum(ex.map(lambda s: _sample(s, cfg, pool, limits), states))

    pairs: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    counters: Counter[str] = Counter(executions=executions)
    for s in states:
        fid = s.row["id"]
        for reason, n in s.drops.items():
            counters[f"pair_drop:{reason}"] += n
        if s.repeats_kept:  # pairs kept although another kept pair has their output
            counters["pairs_repeating_an_output"] += s.repeats_kept
        if s.fatal:
            outcomes.append(Outcome(item_id=fid, status="dropped", reason=s.fatal[0], detail=s.fatal[1] or None))
            continue
        if not s.candidates:
            outcomes.append(Outcome(item_id=fid, status="dropped", reason="no_valid_inputs", detail=s.first_error))
            continue
        if len(s.kept) < cfg.sampling.min_pairs:
            outcomes.append(Outcome(item_id=fid, status="dropped", reason="too_few_pairs",
                                    detail=f"{len(s.kept)} valid; {s.first_error or ''}"[:300]))
            continue
        for n, (inp, out) in enumerate(s.kept):
            pairs.append(IOPair(id=IOPair.make_id(fid, inp), function_id=fid, input=inp, output=out, ordinal=n).row())
        outcomes.append(Outcome(item_id=fid, status="ok", detail=f"{len(s.kept)} pairs"))
    # The prompts stage gives one input-prediction task per distinct output of a function: a
    # pair records the first pair of its function with its output, when that is another pair.
    mark_same_output(pairs)
    return ShardResult(stage="sample_io", config_key=ctx.config_key, rows={"io_pairs": pairs},
                       outcomes=outcomes, counters=counters)


SAMPLE_IO = Stage(
    name="sample_io",
    version="3",  # 2: pairs with outputs not seen yet come first; 3: inputs may leave out defaulted params
    settings=_settings,
    pending_sql=_pending,
    load_rows=_load,
    run_shard=run_shard,
    upstream="transform",
)
