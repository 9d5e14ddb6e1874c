"""The `codeio` flow behind both deployments: a flat parameter form over ``BuildConfig``.

Prefect renders a ``config: BuildConfig`` parameter as one required nested object of ~50
fields whose defaults (``default_factory``) are missing from the schema, so the UI's run form
starts empty and an untouched ``sources`` list fails validation. This flow exposes the fields
people change (as `codeio run` does on the command line) as flat, typed parameters; the rest
comes from ``config_file``. It then runs the `build-dataset` flow as a subflow, with the task
runner the config asks for.

The flow's signature is the form's one definition (Prefect builds the UI's form from it and
its docstring): a field that sets a BuildConfig setting names it with ``Setting``, and
``form_config`` and ``form_parameters`` read the fields, their defaults and their settings
from it.

Two runs must never write one DuckDB file at once: each run holds a lock file beside the
database, and a Prefect global concurrency slot named after it (limit 1), for as long as it
touches it, so a UI-triggered build and a scheduled ingest on the same store queue instead of
failing (``store_lock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import deployment
from prefect.states import Failed, State
from pydantic import Field

from deployments.serve import name_suffix
from flows.artifacts import key_scope
from flows.config import BuildConfig, default_output_dir, load_config
from flows.errors import UserError, one_line, quiet_interrupts, quiet_user_errors, user_errors

_DEFAULT = BuildConfig()
_ID_CHUNK = 1000
LOCK_POLL_S = 1.0  # how often a run waiting for its database checks the lock file

log = logging.getLogger("codeio")

# A served run's process gets the Ctrl-C of its serve's terminal too (the serve ends the run):
# Prefect logs that stop with the traceback of wherever it landed (waiting for the database,
# say), which the serve's output showed under its own one-line stop.
quiet_interrupts()


@dataclass(frozen=True)
class Setting:
    """Marks a form field that sets one BuildConfig setting, named by its dotted path
    (``llm.model``). With ``empty_is_none`` an empty field sets None: no value
    (``llm.api_key_env``) or the one the config derives (``output_dir``)."""

    path: str
    empty_is_none: bool = False


def form_config(**form: Any) -> BuildConfig:
    """The build config of a form (the `codeio` flow's parameters; a field not given has the
    flow's default): ``config_file`` (if any) with every setting of the form written over it;
    an empty ``corpus`` keeps the file's sources (or the bundled sample), an empty
    ``output_dir`` is ``export/`` beside ``db_path`` (so a form that names another database
    never writes over the export of the one it started with)."""
    bound = inspect.signature(codeio.fn).bind_partial(**form)
    bound.apply_defaults()
    values = bound.arguments
    base = load_config(values["config_file"] or None)
    data = json.loads(base.model_dump_json())
    if values["corpus"]:
        extra = {"format": "unified"} if values["unified"] else {}
        data["sources"] = [{"path": path, "kind": values["kind"], **extra} for path in values["corpus"]]
    for name, setting in form_settings().items():
        *sections, key = setting.path.split(".")
        target = data
        for section in sections:
            target = target[section]
        value = values[name]
        target[key] = None if setting.empty_is_none and value == "" else value
    return load_config(None, data)


def form_parameters(cfg: BuildConfig, config_file: str = "", corpus: list[str] | None = None,
                    kind: str = "mixed", unified: bool = False) -> dict[str, Any]:
    """The form values that reproduce ``cfg`` (the inverse of ``form_config``): what a
    deployment shows, and runs with, until someone edits the form."""
    params: dict[str, Any] = {"corpus": list(corpus or []), "kind": kind, "unified": unified,
                              "config_file": config_file}
    for name, setting in form_settings().items():
        value: Any = cfg
        for part in setting.path.split("."):
            value = getattr(value, part)
        params[name] = "" if setting.empty_is_none and value is None else value
    # Shown empty when it is the default beside the database: it then follows db_path.
    if Path(cfg.output_dir) == Path(default_output_dir(cfg.db_path)):
        params["output_dir"] = ""
    return params


@cache
def form_settings() -> dict[str, Setting]:
    """The fields of the `codeio` flow's form that set a BuildConfig setting, in form order."""
    hints = get_type_hints(codeio.fn, include_extras=True)
    settings = {}
    for name in inspect.signature(codeio.fn).parameters:
        for mark in getattr(hints[name], "__metadata__", ()):
            if isinstance(mark, Setting):
                settings[name] = mark
    return settings


@dataclass(frozen=True)
class PendingWork:
    """What a scan of the sources found: new items, and why a build is due regardless."""

    new_items: int
    reason: str | None  # e.g. 'no build yet', 'last build failed', 'settings changed'

    @property
    def due(self) -> bool:
        return self.new_items > 0 or self.reason is not None


def scan_sources(cfg: BuildConfig) -> PendingWork:
    """Count source items the store has not ingested, without writing anything.

    A build is due when there are new items, or when the store's last run did not complete
    or ran with other settings (its unfinished or outdated work would otherwise wait for the
    next new file).
    """
    from storage.store import Store
    from tasks import ingest as ingest_mod

    if not Path(cfg.db_path).exists():
        return PendingWork(_count_items(cfg), "no store yet")
    with Store(cfg.db_path, read_only=True) as store:
        last = store.query("SELECT status, config_json FROM runs ORDER BY started_at DESC LIMIT 1")
        reason = None
        if not last:
            reason = "no build yet"
        elif last[0][0] == "running":
            reason = "last build interrupted"
        elif last[0][0] != "completed":
            reason = f"last build {last[0][0]}"
        elif _output_settings(last[0][1]) != _output_settings(cfg):
            reason = "settings changed"
        new = 0
        for chunk in _chunked(_ingest_ids(cfg, ingest_mod), _ID_CHUNK):
            new += len(chunk) - len(store.known_ids("ingest_log", chunk))
    return PendingWork(new, reason)


def _output_settings(cfg: BuildConfig | str) -> Any:
    """What a config's outputs depend on: every stage's key (it covers the settings that
    change the stage's rows), the sources, and where and how the export is written. Shard
    sizes, parallelism, the LLM client's timeouts and retries and the like change how a build
    runs, not what it makes (the sandbox's limits do change it: they are in the stage keys)."""
    from tasks.registry import stage_keys

    if isinstance(cfg, str):
        try:
            cfg = BuildConfig.model_validate(json.loads(cfg))
        except (ValueError, TypeError):  # a config of an older shape: treat it as changed
            return None
    return (stage_keys(cfg), [s.model_dump() for s in cfg.sources], cfg.output_dir, cfg.export.model_dump())


def _ingest_ids(cfg: BuildConfig, ingest_mod: Any) -> Iterator[str]:
    for spec in cfg.sources:
        try:
            for item in ingest_mod.iter_source(spec.path, spec.source_name, spec.kind, spec.format):
                yield item.ingest_id
        except (ingest_mod.SourceError, OSError) as exc:
            raise UserError(str(exc)) from None


def _count_items(cfg: BuildConfig) -> int:
    from tasks import ingest as ingest_mod

    return sum(1 for _ in _ingest_ids(cfg, ingest_mod))


def _chunked(items: Iterator[str], size: int) -> Iterator[list[str]]:
    buf: list[str] = []
    for item in items:
        buf.append(item)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def store_lock_name(db_path: str) -> str:
    """The global concurrency limit whose slot shows the run holding a DuckDB file."""
    digest = hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:12]
    return f"codeio-store-{digest}"


@contextmanager
def store_lock(db_path: str, logger: Any = log) -> Iterator[None]:
    """Hold the database while the block runs: its lock file, then its Prefect slot.

    The lock file (beside the database) is what runs wait for: the kernel lets go of it when
    its holder ends, however it ends. The slot (limit 1, created on first use) shows the
    holder in the UI, but a run that dies holding it (SIGKILL, an OOM kill, a reboot) leaves
    it taken until the server takes its lease back, and a server restarted meanwhile has
    forgotten the lease (Prefect keeps leases in memory): every later run on the database
    would wait for it for good. A run holding the file finds the slot taken only then, and
    frees it.
    """
    with _lock_file(store_lock_path(db_path), logger):
        name = store_lock_name(db_path)
        _free_left_slot(name, logger)
        # A build runs for hours; a transient API error while renewing the lease must not kill it.
        with concurrency(name, occupy=1, strict=True, raise_on_lease_renewal_failure=False):
            yield


def store_lock_path(db_path: str) -> Path:
    """The lock file that runs on a database take one at a time (``store_lock``)."""
    path = Path(db_path).resolve()
    return path.with_name(path.name + ".lock")


@contextmanager
def _lock_file(path: Path, logger: Any) -> Iterator[None]:
    """Hold ``path`` locked (flock), waiting while another process holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.open("a")
    except OSError as exc:
        raise UserError(f"cannot create the database's lock file {path}: {exc.strerror or exc}") from None
    with lock:  # closing it lets go of the lock
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    logger.info("another run holds %s; waiting for it to finish", path.with_suffix(""))
                    waiting = True
                time.sleep(LOCK_POLL_S)
        yield


def _free_left_slot(name: str, logger: Any) -> None:
    """Create the slot's limit, or free its slot if a run that died left it taken (called
    with the lock file held, so no live run holds the slot)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
        if client.read_global_concurrency_limit_by_name(name).active_slots:
            logger.warning("concurrency slot %s was left taken by a run that ended without giving it back; "
                           "freed", name)
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))


@flow(name="codeio", validate_parameters=True, log_prints=False)
def codeio(
    corpus: list[str] = [],  # noqa: B006 - never mutated; a list default renders as one in the UI
    kind: Literal["mixed", "educational", "curated"] = "mixed",
    unified: bool = False,
    config_file: str = "",
    db_path: Annotated[str, Setting("db_path")] = _DEFAULT.db_path,
    output_dir: Annotated[str, Setting("output_dir", empty_is_none=True)] = "",
    provider: Annotated[Literal["offline", "http"], Setting("provider")] = _DEFAULT.provider,
    base_url: Annotated[str, Setting("llm.base_url")] = _DEFAULT.llm.base_url,
    model: Annotated[str, Setting("llm.model")] = _DEFAULT.llm.model,
    api_key_env: Annotated[str, Setting("llm.api_key_env", empty_is_none=True)] = _DEFAULT.llm.api_key_env or "",
    revision_turns: Annotated[int, Field(ge=0, le=2), Setting("prediction.revision_turns")] = (
        _DEFAULT.prediction.revision_turns),
    export_mode: Annotated[Literal["keep_all", "rejection", "ground_truth"], Setting("export.mode")] = (
        _DEFAULT.export.mode),
    shard_size: Annotated[int, Field(ge=1, le=100_000), Setting("shard_size")] = _DEFAULT.shard_size,
    max_parallel_shards: Annotated[int, Field(ge=1, le=256), Setting("max_parallel_shards")] = (
        _DEFAULT.max_parallel_shards),
    refresh_cache: Annotated[bool, Setting("refresh_cache")] = _DEFAULT.refresh_cache,
    result_cache: Annotated[bool, Setting("result_cache")] = _DEFAULT.result_cache,
    only_if_new: bool = False,
) -> dict[str, Any] | State:
    """Build CODEI/O and CODEI/O++ data; only new or unfinished work is done.

    Args:
        corpus: Directories, globs, or .jsonl/.parquet files to read. Empty: the sources of
            the config file, or the bundled sample corpus.
        kind: Kind of the corpus above; decides I/O pairs per function (mixed 3, educational
            6, curated 10).
        unified: The corpus above holds already-unified records (refcode, ios, ...).
        config_file: TOML or JSON build config on the serving machine for every other
            setting (sampling, sandbox, LLM limits, decontamination). The fields of this
            form override the same settings in it.
        db_path: DuckDB file: the system of record, and what makes re-runs incremental.
        output_dir: Where the CODEI/O and CODEI/O++ JSONL, chat JSONL and Parquet files go.
            Empty: export/ beside the database.
        provider: offline (no LLM; the bundled stand-in) or http (an OpenAI-compatible endpoint).
        base_url: OpenAI-compatible endpoint for provider http, e.g. http://127.0.0.1:8000/v1.
        model: Model name at the endpoint.
        api_key_env: Environment variable (of the serving process) holding the API key;
            empty for none. The key itself never goes into a parameter.
        revision_turns: CODEI/O++ revision turns with execution feedback (0 to 2).
        export_mode: keep_all (every sample), rejection (only samples whose final answer is
            correct), or ground_truth (every sample; the correct answer is appended to those
            whose final answer is not).
        shard_size: Rows per shard task.
        max_parallel_shards: Shard tasks running at once.
        refresh_cache: Run every shard this build submits, even those Prefect's result cache
            holds from an earlier build on this machine (of this or another database).
        result_cache: Keep each finished shard's result in Prefect's result storage, where a
            build of another database from the same corpus and settings finds it. It takes
            about two fifths of the database's disk space (compressed), until `codeio cache --clear`.
        only_if_new: Scan the sources first and skip the build when nothing is new and the
            last build completed with these settings (the scheduled ingest sets this).
    """
    form = dict(locals())  # the parameters, as nothing else is bound yet
    logger = get_run_logger()
    try:
        with quiet_user_errors():
            cfg = form_config(**form)
            with store_lock(cfg.db_path, logger), key_scope(name_suffix(deployment.name)):
                return build_unless_idle(cfg, only_if_new, logger)
    except user_errors() as exc:
        # What to fix, in one line: the run's state message and its log's last line, not a
        # traceback of the engine's frames per flow (the run fails all the same).
        logger.error(one_line(exc))
        return Failed(message=one_line(exc))


def build_unless_idle(cfg: BuildConfig, only_if_new: bool, logger: Any) -> dict[str, Any]:
    """The build, or with ``only_if_new`` a skip when nothing is new or the database is busy."""
    from flows.build import run_build
    from storage.store import StoreLocked

    try:
        if only_if_new:
            pending = scan_sources(cfg)
            if not pending.due:
                logger.info("nothing new in %d source(s); build skipped", len(cfg.sources))
                return {"skipped": True, "new_items": 0, "db_path": cfg.db_path}
            logger.info("%d new item(s)%s; building", pending.new_items,
                        f" ({pending.reason})" if pending.reason else "")
        summary = run_build(cfg)
    except StoreLocked as exc:
        if not only_if_new:
            raise
        # A build outside the served deployments (`codeio run`) holds the database: a
        # scheduled ingest waits for its next turn rather than failing.
        logger.warning("%s; this scheduled ingest is skipped, the next one catches up", exc)
        return {"skipped": True, "busy": True, "db_path": cfg.db_path}
    return {"skipped": False, **summary}
