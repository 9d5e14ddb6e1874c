"""The `build_dataset` flow: ingest, then every built stage over shards, then export.

Only this process writes DuckDB, one transaction per shard. Shard tasks are pure (rows in,
rows out) and may run on threads here or on Dask workers elsewhere.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import pickle
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.context import TaskRunContext, get_run_context
from prefect.exceptions import TerminationSignal
from prefect.futures import as_completed
from prefect.serializers import Serializer
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import opaque

from flows.artifacts import publish_stage_progress, publish_summary
from flows.config import BuildConfig
from flows.doctor import stop_if_prompts_are_cut
from flows.errors import RowsLeftToRetry, UserError, disk_full
from flows.preflight import preflight
from flows.result_cache import shard_cache_key
from storage.ids import content_id
from storage.models import ShardResult
from storage.store import Store
from tasks import ingest as ingest_mod
from tasks.llm_calls import cancel_run
from tasks.registry import STAGES, build_keys, stage_keys
from tasks.runtime import close_other_pools, sandbox_cpu_seconds
from tasks.stage import ShardContext, Stage

log = logging.getLogger("codeio")


def _fatal(exc: BaseException) -> bool:
    """Errors no retry can fix: a bad setting, bad input, a machine the sandbox cannot use, a
    full disk."""
    from llm.errors import ConfigError, RunCancelled
    from sandbox import SandboxUnavailable

    return isinstance(exc, (ConfigError, UserError, SandboxUnavailable, RunCancelled)) or disk_full(exc)


def _retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we only classify it
        return not _fatal(exc)
    return True


def _shard_cache_key(_ctx: Any, params: dict[str, Any]) -> str:
    return shard_cache_key(params["stage_name"], params["ctx"].config_key, params["shard_id"])


# zlib's fastest level: a fifth of the pickle's bytes for shard results (prompts, code and
# answers repeat a lot), at about 6 ms of CPU per MB of pickle.
RESULT_COMPRESSION_LEVEL = 1


class ShardResultSerializer(Serializer):
    """How Prefect persists a shard's result (its cache): the standard pickle, compressed with
    zlib, base64 in one line. Prefect's default, cloudpickle with base64 broken into
    76-character lines, took twice the CPU for the few MB of an answer shard (about 33 against
    16 ms): cloudpickle pickles plain data through Python-level hooks, and every line break
    becomes an escape in the record's JSON. Shard results are plain data (models and dicts of
    strings and numbers). Records of earlier releases, whose pickle is not compressed, still
    load: a pickle starts with its PROTO opcode (0x80), a zlib stream with 0x78."""

    type: Literal["codeio-shard-pickle"] = "codeio-shard-pickle"

    def dumps(self, obj: Any) -> bytes:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return base64.b64encode(zlib.compress(data, RESULT_COMPRESSION_LEVEL))

    def loads(self, blob: bytes) -> Any:
        data = base64.b64decode(blob)
        return pickle.loads(zlib.decompress(data) if data[:1] == b"\x78" else data)


# What both shard tasks share: cached by shard, results persisted (the cache) but not kept in
# memory (the flow reads each result once and writes it to the store; Prefect's in-memory
# cache of its 1000 most recent results would hold every shard of a build until the end),
# retried with backoff and jitter.
_SHARD_TASK = dict(
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_shard_cache_key),
    persist_result=True,
    result_serializer=ShardResultSerializer(),
    cache_result_in_memory=False,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
)


@task(name="shard", retry_condition_fn=_retry_condition, task_run_name="{stage_name}-{shard_no}", **_SHARD_TASK)
def stage_shard(
    stage_name: str, shard_id: str, shard_no: int, rows: list[dict], cfg: BuildConfig, ctx: ShardContext
) -> ShardResult:
    """Run one stage over one shard of rows (pure: the flow writes the result)."""
    stage = _stage_by_name(stage_name)
    with _shard_running(ctx.run_id):
        return _hand_over(stage.run_shard(rows, cfg, ctx).model_copy(update={"run_id": ctx.run_id}))


@task(name="ingest-shard", task_run_name="ingest-{shard_no}", **_SHARD_TASK)
def ingest_shard(
    stage_name: str, shard_id: str, shard_no: int, rows: list[dict], max_bytes: int, ctx: ShardContext
) -> ShardResult:
    with _shard_running(ctx.run_id):
        log_rows, raw_rows = ingest_mod.validate_items(rows, max_bytes)
    return _hand_over(ShardResult(
        stage="ingest",
        config_key=ctx.config_key,
        rows={"ingest_log": log_rows, "raw_files": raw_rows},
        run_id=ctx.run_id,
    ))


# Shard tasks running in this process, by run id. An interrupted build (a notebook's Interrupt,
# which is SIGINT to the kernel) stops its flow, but Prefect's thread pool cannot stop a shard
# that is running: it finishes, and after a second interrupt it finishes in the background,
# still sending its LLM calls. A build started next in the same process would send those calls
# again (they are not in the ledger yet) and fold the journal the shard still writes to, so it
# waits for them first (``_wait_for_earlier_shards``).
_RUNNING_LOCK = threading.Condition()
_RUNNING: dict[str, int] = {}


@contextmanager
def _shard_running(run_id: str) -> Iterator[None]:
    with _RUNNING_LOCK:
        _RUNNING[run_id] = _RUNNING.get(run_id, 0) + 1
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING[run_id] -= 1
            if not _RUNNING[run_id]:
                del _RUNNING[run_id]
            _RUNNING_LOCK.notify_all()


def _running_shards(exclude: str = "", only: str | None = None) -> int:
    with _RUNNING_LOCK:
        return sum(n for run, n in _RUNNING.items() if run != exclude and (only is None or run == only))


def _wait_for_earlier_shards(run_id: str, logger: Any, poll_s: float = 1.0) -> None:
    """Wait until no shard of another build runs in this process (see _RUNNING)."""
    n = _running_shards(exclude=run_id)
    if not n:
        return
    logger.warning("waiting for %d shard(s) of an interrupted build, still running in this process, to finish "
                   "(their LLM calls are kept, not sent again)", n)
    with _RUNNING_LOCK:
        while any(run != run_id for run in _RUNNING):
            _RUNNING_LOCK.wait(poll_s)  # a timeout, so that an interrupt is handled at once


# Shard results handed straight to a flow running in this process, by task run id. Prefect
# persists each result (its cache) and keeps none in memory (see _SHARD_TASK), so the flow
# would read every result back from storage right after the task wrote it: about 13 ms of the
# flow thread's CPU for an answer shard. Only builds that registered their run id here take
# part, so shards run by Dask worker processes leave nothing behind in them.
_HANDED_OVER: dict[Any, ShardResult] = {}
_HANDOVER_RUNS: set[str] = set()


def _hand_over(result: ShardResult) -> ShardResult:
    if result.run_id in _HANDOVER_RUNS:
        run = TaskRunContext.get()
        if run is not None and run.task_run is not None:
            _HANDED_OVER[run.task_run.id] = result
    return result


def _result_of(fut: Any) -> ShardResult:
    """A finished shard's result: the one its task handed over in this process when the
    task run completed, else read through Prefect (a cache hit, another process, a failure)."""
    handed = _HANDED_OVER.pop(getattr(fut, "task_run_id", None), None)
    if handed is not None:
        fut.wait()
        if fut.state.is_completed():
            return handed
    return fut.result()


def _stage_by_name(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass
class StageReport:
    name: str
    shards: int = 0
    rows_in: int = 0
    counters: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (all its threads) while the stage ran
    sandbox_cpu_seconds: float = 0.0  # CPU time of this process's sandbox pools meanwhile
    store_seconds: float = 0.0  # time in the store's reads and writes (the flow waits for them)


@dataclass
class BuildReport:
    run_id: str
    db_path: str
    provider: str = "http"
    stages: dict[str, StageReport] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def counter(self, name: str) -> float:
        return sum(s.counters.get(name, 0) for s in self.stages.values())

    @property
    def task_runs(self) -> int:
        return sum(s.shards for s in self.stages.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "db_path": self.db_path,
            "provider": self.provider,
            "seconds": round(self.seconds, 3),
            "task_runs": self.task_runs,
            "llm_calls_sent": _count(self.counter("llm_calls_sent")),
            "executions": _count(self.counter("executions")),
            "stages": {
                k: {"shards": v.shards, "rows_in": v.rows_in, "seconds": round(v.seconds, 3),
                    "cpu_seconds": round(v.cpu_seconds, 3),
                    "sandbox_cpu_seconds": round(v.sandbox_cpu_seconds, 3),
                    "store_seconds": round(v.store_seconds, 3),
                    **{name: _count(n) for name, n in v.counters.items()}}
                for k, v in self.stages.items()
            },
            "exports": self.exports,
        }


def _count(n: float) -> int | float:
    """Counters add up as floats (tokens, calls); a whole number is reported as one."""
    return int(n) if float(n).is_integer() else n


# A stage's progress artifact is updated at most this often (and once at the end): each update
# is a call to the Prefect API, and a large build finishes several shards a second.
PROGRESS_INTERVAL_S = 2.0


class _Every:
    """``due()`` is true at most once per ``interval`` seconds; ``due(final=True)`` always."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last: float | None = None

    def __call__(self, final: bool = False) -> bool:
        now = self.clock()
        if final or self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


class _Window:
    """Keeps at most ``limit`` shard futures in flight and hands back finished ones in order
    of completion, so memory stays bounded however many shards a stage has."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight: list[Any] = []

    def full(self) -> bool:
        return len(self.inflight) >= self.limit

    def add(self, fut: Any) -> None:
        self.inflight.append(fut)

    def next_done(self) -> list[Any]:
        """Wait for one shard to finish; return it with every other one finished by then, so
        a writer that fell behind catches up in one transaction."""
        for fut in as_completed(list(self.inflight)):
            ready = [fut] + [f for f in self.inflight if f is not fut and _finished(f)]
            for f in ready:
                self.inflight.remove(f)
            return ready
        raise RuntimeError("no shard in flight")


def _finished(fut: Any) -> bool:
    """Whether a Prefect future's task has finished, without a call to the Prefect API."""
    wrapped = getattr(fut, "wrapped_future", None)
    done = getattr(wrapped, "done", None)
    return bool(done()) if callable(done) else False


def _drive(
    shards: Iterator[tuple[str, list[dict], dict[str, Any]]],
    submit: Callable[[str, int, list[dict], dict[str, Any]], Any],
    on_done: Callable[[list[tuple[ShardResult, dict[str, Any]]]], None],
    limit: int,
    conflicts: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
) -> int:
    """Submit shards through a bounded window and hand results to ``on_done`` as they
    complete, all those finished by then together.

    A shard that ``conflicts`` with one in flight waits until that one is written, so what it
    reads from the store (cached LLM calls) does not depend on the order shards finish in.
    """
    window = _Window(limit)
    meta: dict[int, dict[str, Any]] = {}
    n = 0
    held: tuple[str, list[dict], dict[str, Any]] | None = None
    while True:
        while not window.full():
            if held is None:
                held = next(shards, None)
                if held is None:
                    break
            if conflicts is not None and any(conflicts(held[2], meta[id(f)]) for f in window.inflight):
                held[2]["waited"] = True
                break
            shard_id, rows, extra = held
            held = None
            fut = submit(shard_id, n, rows, extra)
            meta[id(fut)] = extra
            window.add(fut)
            n += 1
        if not window.inflight:
            return n
        on_done([(_result_of(fut), meta.pop(id(fut))) for fut in window.next_done()])


def _whole(cfg: BuildConfig, value: Any) -> Any:
    """A shard task's argument, marked so that Prefect's thread runner passes it as it is
    instead of walking every row (and every cached call) in search of futures: that walk cost
    the flow process about a seventh of its CPU. The Dask runner does not unwrap the mark on
    its workers, so there the argument goes as it is."""
    return value if cfg.dask_address else opaque(value)


# Shards whose rows the flow loads with one query. A load joins the stage's input tables, which
# it scans whole (the output tables have no index, and their ids are hashes, so no zonemap
# narrows a lookup by id): a load costs about the size of the store plus its own rows. One query
# per shard would cost the flow the size of the store for every shard; a batch of shards pays it
# once. The batch grows with the stage's pending rows (a hundredth of them), so the loads of a
# big stage stay few: measured on a store of 1M pairs, a prompts load took 150 ms for 1,600 rows
# and 410 ms for 20,000 (94 against 20 us a row). What a batch holds stays bounded: at least
# LOAD_BATCH_SHARDS shards, at most LOAD_BATCH_MAX_ROWS rows (or one shard, if larger).
LOAD_BATCH_SHARDS = 8
LOAD_BATCH_MAX_ROWS = 20_000


def load_batch_shards(pending: int, shard_size: int) -> int:
    """Shards per load for a stage with ``pending`` rows in shards of ``shard_size``."""
    rows = min(max(pending // 100, LOAD_BATCH_SHARDS * shard_size), LOAD_BATCH_MAX_ROWS)
    return max(1, rows // shard_size)


def _load_in_batches(
    store: Store, stage: Stage, keys: dict[str, str], pending: Sequence[str] | pa.ChunkedArray, shard_size: int
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """(ids, rows) per shard of ``pending`` (a list, or the Arrow column the flow keeps them
    in), the rows as ``stage.load_rows`` gives them for those ids (in its order), loaded
    ``load_batch_shards`` shards at a time."""
    batch = shard_size * load_batch_shards(len(pending), shard_size)
    for start in range(0, len(pending), batch):
        ids = pending[start : start + batch]
        ids = ids.to_pylist() if isinstance(ids, pa.ChunkedArray) else list(ids)
        shard_ids = [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]
        owner = {item: n for n, part in enumerate(shard_ids) for item in part}
        per_shard: list[list[dict[str, Any]]] = [[] for _ in shard_ids]
        for row in stage.load_rows(store, ids, keys):
            per_shard[owner[row["id"]]].append(row)
        yield from zip(shard_ids, per_shard)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for it in items:
        buf.append(it)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def run_ingest(store: Store, cfg: BuildConfig, report: BuildReport, key: str) -> None:
    logger = _logger()
    rep = report.stages.setdefault("ingest", StageReport("ingest"))
    t0, c0, b0 = time.perf_counter(), time.process_time(), store.busy_s
    task_fn = ingest_shard.with_options(**_cache_options(cfg))

    def items() -> Iterator[ingest_mod.SourceItem]:
        for spec in cfg.sources:
            try:
                yield from ingest_mod.iter_source(spec.path, spec.source_name, spec.kind, spec.format)
            except (ingest_mod.SourceError, OSError) as exc:
                raise UserError(str(exc)) from None

    def shards() -> Iterator[tuple[str, list[dict], dict[str, Any]]]:
        for chunk in _chunks(items(), cfg.shard_size):
            ids = {it.ingest_id: it for it in chunk}
            known = store.known_ids("ingest_log", list(ids))
            new = [it for i, it in ids.items() if i not in known]
            if new:
                yield content_id(sorted(it.ingest_id for it in new)), [it.as_row() for it in new], {}

    def submit(shard_id: str, n: int, rows: list[dict], _extra: dict[str, Any]) -> Any:
        rep.rows_in += len(rows)
        ctx = ShardContext(config_key=key, run_id=report.run_id)
        return task_fn.submit("ingest", shard_id, n, _whole(cfg, rows), cfg.max_file_bytes, _whole(cfg, ctx))

    def on_done(finished: list[tuple[ShardResult, dict[str, Any]]]) -> None:
        for result, _extra in finished:
            if getattr(result, "run_id", "") != report.run_id:
                rep.counters["cached_shards"] += 1
            counts = store.write_ingest(result)
            rep.counters.update(counts)
            logger.info("ingest: shard written (%s)", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    rep.shards += _drive(shards(), submit, on_done, cfg.max_parallel_shards * 2)
    rep.seconds += time.perf_counter() - t0
    rep.cpu_seconds += time.process_time() - c0
    rep.store_seconds += store.busy_s - b0


def _cache_options(cfg: BuildConfig, refresh: bool = False) -> dict[str, Any]:
    """The shard tasks' caching options. ``refresh_cache`` (or ``refresh``) runs every shard
    and caches the new results; otherwise Prefect's setting decides (PREFECT_TASKS_REFRESH_CACHE,
    off by default). With ``result_cache`` off nothing is looked up or persisted: results reach
    the flow through the hand-over, or with the task's final state from a Dask worker."""
    if not cfg.result_cache:
        return {"cache_policy": NO_CACHE, "persist_result": False}
    return {"refresh_cache": True if (refresh or cfg.refresh_cache) else None}


def run_stage(store: Store, cfg: BuildConfig, stage: Stage, keys: dict[str, str], report: BuildReport) -> None:
    logger = _logger()
    rep = report.stages.setdefault(stage.name, StageReport(stage.name))
    t0, c0, s0, b0 = time.perf_counter(), time.process_time(), sandbox_cpu_seconds(), store.busy_s
    key = keys[stage.name]
    sql, params = stage.pending_sql(cfg, keys)
    # An Arrow column, not a list of str (see Store.query_column): 0.37 GB less for the 7M
    # prediction tasks of a paper-scale build.
    pending = store.query_column(f"SELECT id FROM ({sql}) ORDER BY id", params)
    if not len(pending):
        logger.info("%s: nothing to do", stage.name)
        return
    total = (len(pending) + cfg.shard_size - 1) // cfg.shard_size
    logger.info("%s: %d rows pending in %d shard(s)", stage.name, len(pending), total)
    publish_stage_progress(stage.name, 0, total)
    journal_dir = Path(cfg.db_path).parent / "ledger"
    task_fn = stage_shard.with_options(retries=cfg.task_retries, **_cache_options(cfg))
    # Rows a run left to retry (their LLM calls failed on transient errors) are pending again.
    # A shard holding any of them runs again even if Prefect has its result cached: that
    # result is the one that left them to retry.
    failed_before: dict[str, int] = dict(store.query(
        "SELECT item_id, coalesce(failed_runs, 1) FROM stage_outcomes WHERE stage = ? AND config_key = ? "
        "AND status = 'retry'", [stage.name, key]))
    retry_ids = failed_before.keys()
    rerun_fn = stage_shard.with_options(retries=cfg.task_retries, **_cache_options(cfg, refresh=True))

    def shards() -> Iterator[tuple[str, list[dict], dict[str, Any]]]:
        for ids, rows in _load_in_batches(store, stage, keys, pending, cfg.shard_size):
            extra: dict[str, Any] = {"rerun": bool(retry_ids) and not retry_ids.isdisjoint(ids)}
            if stage.call_keys is not None:
                call_keys = stage.call_keys(rows, cfg)
                cached = store.cached_calls(call_keys)
                extra.update(call_keys=call_keys, cached=cached, new_calls=set(call_keys) - cached.keys())
            yield content_id(ids), rows, extra

    def submit(shard_id: str, n: int, rows: list[dict], extra: dict[str, Any]) -> Any:
        rep.rows_in += len(rows)
        cached: dict[str, dict[str, Any]] = {}
        journal = None
        call_keys: tuple[str, ...] = ()
        if stage.call_keys is not None:
            call_keys = tuple(extra.pop("call_keys"))
            cached = extra.pop("cached")
            if extra.pop("waited", False):
                # It waited for a shard that sends some of the same calls: those are in the
                # store now. (A shard that did not wait is submitted right after its lookup.)
                cached = store.cached_calls(call_keys)
            journal_dir.mkdir(parents=True, exist_ok=True)
            path = journal_dir / f"{stage.name}-{shard_id[:16]}.jsonl"
            path.touch()  # a shard appends only to a journal it sees (tasks.llm_calls._shard_ledger)
            journal = str(path)
            extra["journal"] = journal
        ctx = ShardContext(config_key=key, cached_calls=cached, journal_path=journal, run_id=report.run_id,
                           call_keys=call_keys)
        fn = rerun_fn if extra.pop("rerun", False) else task_fn
        return fn.submit(stage.name, shard_id, n, _whole(cfg, rows), cfg, _whole(cfg, ctx))

    done = 0
    progress_due = _Every(PROGRESS_INTERVAL_S)

    def on_done(finished: list[tuple[ShardResult, dict[str, Any]]]) -> None:
        nonlocal done
        for result, _extra in finished:
            _count_failed_runs(result, failed_before, cfg.llm.give_up_after_runs)
        store.write_shards([result for result, _extra in finished])  # one commit for all of them
        for result, extra in finished:
            if extra.get("journal"):
                Path(extra["journal"]).unlink(missing_ok=True)
            done += 1
            # A shard served from Prefect's result cache did no work in this run: its counters
            # (calls sent, executions) belong to the run that computed it.
            if getattr(result, "run_id", "") != report.run_id:
                rep.counters["cached_shards"] += 1
            else:
                rep.counters.update(result.counters)
            # What became of the rows, for the run's summary.
            ok = sum(o.status == "ok" for o in result.outcomes)
            rep.counters.update(f"{o.status}:{o.reason}" for o in result.outcomes if o.status != "ok")
            rep.counters["ok"] += ok
            logger.info(
                "%s: shard %d/%d written (%d ok, %d dropped)",
                stage.name, done, total, ok, len(result.outcomes) - ok,
            )
        if progress_due(final=done == total):
            publish_stage_progress(stage.name, done, total)

    def shares_calls(a: dict[str, Any], b: dict[str, Any]) -> bool:
        # Two shards that would send the same call: the later one waits and reuses the answer.
        return not a.get("new_calls", set()).isdisjoint(b.get("new_calls", set()))

    rep.shards += _drive(shards(), submit, on_done, cfg.max_parallel_shards * 2, shares_calls)
    rep.seconds += time.perf_counter() - t0
    rep.cpu_seconds += time.process_time() - c0
    rep.sandbox_cpu_seconds += sandbox_cpu_seconds() - s0
    rep.store_seconds += store.busy_s - b0


def _count_failed_runs(result: ShardResult, failed_before: dict[str, int], give_up_after: int) -> None:
    """Number the runs in a row that have left each of ``result``'s rows to retry, and drop a
    row (reason unchanged, the count in its detail) once that reaches ``give_up_after``."""
    if not any(o.status == "retry" for o in result.outcomes):
        return
    outcomes = []
    for o in result.outcomes:
        if o.status == "retry":
            runs = failed_before.get(o.item_id, 0) + 1
            if runs >= give_up_after:
                detail = f"failed in {runs} runs in a row, given up (llm.give_up_after_runs); last: {o.detail or ''}"
                o = o.model_copy(update={"status": "dropped", "detail": detail[:300], "failed_runs": runs})
            else:
                o = o.model_copy(update={"failed_runs": runs})
        outcomes.append(o)
    result.outcomes = outcomes


def merge_journals(store: Store, cfg: BuildConfig) -> int:
    """Fold LLM responses that a killed run journaled but never wrote into the ledger table."""
    from llm.ledger import read_journal
    from storage.models import LLMCall

    journal_dir = Path(cfg.db_path).parent / "ledger"
    if not journal_dir.is_dir():
        return 0
    n = 0
    for path in sorted(journal_dir.glob("*.jsonl")):
        with _writer_gone(path):
            calls = [
                # A result is the ledger's call plus how it failed: the call's fields are the row.
                LLMCall(**{name: getattr(r, name) for name in LLMCall.model_fields})
                for r in read_journal(path)
                if r.error is None and r.content is not None
            ]
            n += store.add_llm_calls(calls)
            path.unlink()
    return n


# While the flow waits for a journal's writer (below), it says so again this often.
JOURNAL_WAIT_LOG_S = 60.0
_JOURNAL_POLL_S = 0.25


@contextmanager
def _writer_gone(path: Path) -> Iterator[None]:
    """Hold the journal's lock (JournalLedger's), waiting for a shard still writing it to end.
    A killed flow's shards go on running on the Dask workers; a journal folded and removed while
    one of them appends to it would lose the calls it completes after that, and they would be
    sent again. A shard takes as long as its LLM calls (minutes, hours with a slow endpoint), so
    the wait has no time limit; it is logged every JOURNAL_WAIT_LOG_S, so a build that waits is
    not taken for a hung one."""
    with open(path, "rb") as fh:
        started = time.monotonic()
        next_log = started
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= next_log:
                    waited = f" (waited {now - started:.0f} s)" if next_log > started else ""
                    _logger().warning("ledger: waiting for a shard of an interrupted run, still running (on a "
                                      "Dask worker), to finish its journal %s%s; stopping that run's Dask workers "
                                      "ends the wait", path.name, waited)
                    next_log = now + JOURNAL_WAIT_LOG_S
                time.sleep(_JOURNAL_POLL_S)
        yield


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a flow run (plain function use)
        return log


def _task_runner(cfg: BuildConfig) -> Any:
    if cfg.dask_address:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise UserError("dask_address is set but prefect-dask is not installed "
                            "(pip install -e '.[dask]' in the project)") from None
        if cfg.dask_address == "local":
            return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.max_parallel_shards, "threads_per_worker": 1})
        return DaskTaskRunner(address=cfg.dask_address)
    return ThreadPoolTaskRunner(max_workers=cfg.max_parallel_shards)


def build(cfg: BuildConfig) -> BuildReport:
    """The body of the flow: usable from the flow or (with a task runner) from tests."""
    from tasks.export import export_all

    logger = _logger()
    t0 = time.perf_counter()
    try:
        run_id = str(get_run_context().flow_run.id)
    except Exception:  # noqa: BLE001
        run_id = uuid.uuid4().hex
    preflight(cfg)
    stop_if_prompts_are_cut(cfg)
    _wait_for_earlier_shards(run_id, logger)
    close_other_pools(cfg.sandbox)  # no other build's shard runs here now: their pools are idle
    # One DuckDB thread: the flow's queries are per shard and small, and the export streams;
    # with one thread per core they used more CPU for the same work (bench_store.py,
    # --threads), taken from the sandbox, which runs on every core.
    store = Store(cfg.db_path, threads=1, logger=logger)  # it waits for readers (`codeio stats`...)
    report = BuildReport(run_id=run_id, db_path=cfg.db_path, provider=cfg.provider)
    _HANDOVER_RUNS.add(run_id)
    try:
        store.start_run(run_id, json.loads(cfg.model_dump_json()))
        recovered = merge_journals(store, cfg)
        if recovered:
            logger.info("ledger: recovered %d completed LLM call(s) from an interrupted run", recovered)
        keys = stage_keys(cfg)
        run_ingest(store, cfg, report, keys["ingest"])
        for stage in STAGES:
            run_stage(store, cfg, stage, keys, report)
        # The turns this build runs: an earlier build's extra revision turns keep their keys.
        built = build_keys(cfg)
        report.exports = export_all(store, cfg, built)
        report.seconds = time.perf_counter() - t0
        publish_summary(store, built, report.as_dict(), cfg.llm if cfg.provider == "http" else None)
        left = _left_to_retry(store, built)
        if left is not None:  # the run fails (a scheduled ingest runs it again), nothing is lost
            raise RowsLeftToRetry(*left, summary=report.as_dict())
        store.finish_run(run_id, "completed", report.as_dict())
        return report
    except BaseException as exc:
        report.seconds = time.perf_counter() - t0
        try:
            store.finish_run(run_id, "failed", {"error": str(exc)[:500], **report.as_dict()})
        except Exception as unrecorded:  # noqa: BLE001 - a full disk, say: the error that stopped the run is the one to raise
            logger.warning("could not record the run's end in the database: %s", str(unrecorded)[:300])
        running = _running_shards(only=run_id)
        # Ctrl-C, or SIGTERM, which Prefect's engine raises in the flow as TerminationSignal
        # (`kill`, `docker stop`, a run cancelled from the UI): stop the running shards' LLM
        # calls, so the run ends now and not when its shards would (minutes, in a notebook,
        # whose kernel lives on): calls not sent are not sent, completed ones are in the
        # ledger, and the shards end with RunCancelled.
        if isinstance(exc, (KeyboardInterrupt, TerminationSignal)):
            cancel_run(run_id)
            cancel_on_dask_workers(_dask_client(), run_id)
            if running:
                logger.warning("interrupted: stopping the %d running shard(s); the LLM calls they completed "
                               "are kept (interrupt again not to wait for their code runs to end; the "
                               "next build in this process waits for them)", running)
        raise
    finally:
        _HANDOVER_RUNS.discard(run_id)
        for task_run_id in [k for k, v in list(_HANDED_OVER.items()) if v.run_id == run_id]:
            _HANDED_OVER.pop(task_run_id, None)
        store.close()


def _dask_client() -> Any:
    """The Dask client of this flow run's task runner, if it has connected to a cluster."""
    try:
        runner = get_run_context().task_runner
    except Exception:  # noqa: BLE001 - outside a flow run
        return None
    return getattr(runner, "_client", None)


def cancel_on_dask_workers(client: Any, run_id: str) -> int:
    """``cancel_run`` on every Dask worker: a shard running there when the build is interrupted
    would go on sending its LLM calls after the flow stopped (Dask does not stop a running
    task when its client goes away). Returns how many workers were told."""
    if client is None:
        return 0
    try:
        return len(client.run(cancel_run, run_id, on_error="ignore"))
    except Exception:  # noqa: BLE001 - best effort: the interrupt goes on either way
        return 0


def _left_to_retry(store: Store, keys: dict[str, str]) -> tuple[int, str] | None:
    """Rows of this build whose outcome is ``retry``, and one of their details."""
    from storage.stats import outcomes_condition

    where = outcomes_condition(keys)
    if where is None:
        return None
    n, example = store.query(
        f"SELECT count(*), min_by(stage || ' ' || item_id[:12] || ': ' || coalesce(detail, ''), item_id) "
        f"FROM stage_outcomes WHERE status = 'retry' AND {where[0]}", where[1])[0]
    return (n, example) if n else None


@flow(name="build-dataset", log_prints=False, validate_parameters=True)
def build_dataset(config: BuildConfig) -> dict[str, Any]:
    """Build CODEI/O and CODEI/O++ training data from the configured sources."""
    return build(config).as_dict()


def run_build(cfg: BuildConfig) -> dict[str, Any]:
    """Run the flow with the task runner the config asks for."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    flow_fn = build_dataset.with_options(task_runner=_task_runner(cfg))
    if PREFECT_API_URL.value():
        return flow_fn(cfg)
    # No Prefect server configured: start the temporary one here rather than let Prefect start
    # it on first use, for two reasons. Dask workers are other processes, and with no API URL
    # each would start a server of its own; handing them this one's (loopback) URL avoids that
    # (workers on other machines need PREFECT_API_URL set to a real server). And signals to
    # the build's process group (Ctrl-C, `timeout`) do not reach this one: a server killed by
    # them left the stopped flow retrying its last state reports for minutes.
    server = temporary_server()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return flow_fn(cfg)


_SERVERS: list[Any] = []  # the temporary Prefect servers this process started (at most one runs)


def temporary_server() -> Any:
    """A temporary Prefect server for this process, started once. Only a deliberate stop ends
    it (``stop_temporary_servers``, at exit), or this process's death: see
    ``flows.prefect_server`` for why it runs in a session of its own."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    for server in _SERVERS:
        if server.running:
            return server

    class TiedServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> Any:
            # Prefect's settings and flags for its temporary server, run through
            # flows.prefect_server.
            parent = os.getpid() if threading.current_thread() is threading.main_thread() else 0
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1",
                   **get_current_settings().to_environment_variables(exclude_unset=True)}
            return subprocess.Popen([sys.executable, "-m", "flows.prefect_server", str(parent), str(self.port)],
                                    env=env, stdin=subprocess.DEVNULL, start_new_session=True)

        def stop(self) -> None:
            # SIGINT: the server ignores SIGTERM while this process lives (Prefect's stop sends
            # SIGTERM, then SIGKILL after 5 s).
            if self.server_process is not None and self.server_process.poll() is None:
                self.server_process.send_signal(signal.SIGINT)
            super().stop()

    with socket.socket() as probe:  # a port of its own: Prefect keeps servers by port, and the
        probe.bind(("127.0.0.1", 0))  # unnamed one may be someone else's (a test harness's)
        port = probe.getsockname()[1]
    server = TiedServer(port=port)
    try:
        server.start()
    except BaseException:
        # Interrupted (a notebook's Interrupt, Ctrl-C) or failed while waiting for the server
        # to answer: its process is already running, and nothing else would stop it before
        # this process exits; the next build would start another one beside it.
        server.stop()
        raise
    _SERVERS.append(server)
    return server


def stop_temporary_servers() -> None:
    """Stop the temporary Prefect servers this process started (and only those)."""
    while _SERVERS:
        _SERVERS.pop().stop()
