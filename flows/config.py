"""Build configuration: validated data, so a typo is an error at start, not a silent default."""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flows.errors import UserError
from llm.settings import LLMSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO_ROOT / "corpus" / "sample"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """One corpus: a directory or glob of .py files, or JSONL/Parquet files of records."""

    path: str = Field(description="Directory, glob, or .jsonl/.parquet file")
    name: str | None = Field(default=None, description="Source name (defaults to the path's stem)")
    kind: Literal["mixed", "educational", "curated"] = Field(
        default="mixed", description="Decides the default I/O pairs per function (3/6/10)"
    )
    format: Literal["auto", "python", "rows", "unified"] = Field(
        default="auto",
        description="python: .py files; rows: records with a `content` column; "
        "unified: already-transformed records (refcode, ios, ...). auto guesses from the path.",
    )
    pairs_per_function: int | None = Field(
        default=None, ge=1, le=100,
        description="I/O pairs kept per function of this source (default: sampling.pairs_per_kind of its kind)",
    )

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        p = Path(self.path.split("*")[0].rstrip("/") or ".")
        return p.stem or p.name or "corpus"


class SandboxSettings(_Strict):
    workers: int | None = Field(default=None, ge=1, description="Worker processes (default: one per core)")
    cpu_seconds: float = Field(default=5.0, gt=0, description="CPU time per call; decides 'timeout'")
    wall_factor: float = Field(
        default=3.0, ge=1,
        description="Wall-clock watchdog of a call: its CPU limit times this, plus 1 s (catches sleepers)",
    )
    memory_mb: int = Field(
        default=2048, ge=256, description="Address space (RLIMIT_AS) of each sandboxed process, in MiB"
    )


class SamplingSettings(_Strict):
    generator_calls: int = Field(default=1000, ge=1, description="Input generator calls per function")
    function_budget_s: float = Field(default=30.0, gt=0, description="CPU budget for one function's sampling")
    pairs_per_kind: dict[str, int] = Field(
        default_factory=lambda: {"mixed": 3, "educational": 6, "curated": 10},
        description="I/O pairs kept per function, by source kind (a source's pairs_per_function overrides it)",
    )
    min_pairs: int = Field(default=2, ge=1, description="Fewer valid pairs than this drops the function")
    check_determinism: bool = Field(default=True, description="Re-run pairs under another hash seed")
    distinct_outputs_search: int = Field(
        default=4, ge=0, le=100,
        description="Prefer pairs with outputs not seen yet: run up to this many times the cap of "
        "candidates looking for them before repeats fill the cap (0: keep candidates in order)",
    )


class PredictionSettings(_Strict):
    kinds: list[Literal["input", "output"]] = Field(
        default_factory=lambda: ["input", "output"],
        description="Tasks built per I/O pair: output (predict it from the input) and input (predict one "
        "from the output; one task per distinct output of a function)",
    )
    reference_tip: bool = Field(default=True, description="Append the reference code as a tip")
    revision_turns: int = Field(default=1, ge=0, le=2, description="CODEI/O++ revision turns")

    @field_validator("kinds")
    @classmethod
    def _some_kinds_once_each(cls, v: list[str]) -> list[str]:
        # None builds no task at all; a kind named twice made each task twice, and the build
        # stopped at its first answer shard.
        if not v:
            raise ValueError("name at least one of 'input' and 'output'")
        if len(set(v)) != len(v):
            raise ValueError("name each kind once")
        return v


class ExportSettings(_Strict):
    mode: Literal["keep_all", "rejection", "ground_truth"] = Field(
        default="keep_all",
        description="keep_all: every sample; rejection: only samples whose final answer is correct; "
        "ground_truth: every sample, with the correct answer appended to those whose final answer is not",
    )
    decontaminate: list[str] = Field(default_factory=list, description="Benchmark JSONL files")
    decontaminate_field: str = Field(
        default="text", description="JSON field of each benchmark line that holds its text"
    )
    decontaminate_action: Literal["drop", "flag"] = Field(
        default="drop",
        description="drop: leave a contaminated sample out of both sets; flag: keep it with contaminated: true",
    )
    ngram: int = Field(
        default=13, ge=3,
        description="Words per n-gram: a sample sharing one with a benchmark text is contaminated",
    )


def default_output_dir(db_path: str) -> str:
    """Where a build exports when no output_dir is set: ``export/`` beside its database."""
    return str(Path(db_path).parent / "export")


class BuildConfig(_Strict):
    """Everything a build depends on. Unknown keys are errors."""

    sources: list[SourceSpec] = Field(
        default_factory=lambda: [SourceSpec(path=str(SAMPLE_CORPUS), name="sample", kind="educational")],
        description="Corpora to read (default: the bundled sample corpus)",
    )
    db_path: str = Field(
        default="codeio-out/codeio.duckdb",
        description="DuckDB file: the system of record, and what makes re-runs do only missing work",
    )
    output_dir: str = Field(
        default="codeio-out/export", description="Where the export files go (default: export/ beside db_path)"
    )
    shard_size: int = Field(default=200, ge=1, le=100_000, description="Rows per shard task")
    max_parallel_shards: int = Field(
        default=2, ge=1, le=256,
        description="Shard tasks running at once (threads, or the workers of a local Dask cluster)",
    )
    max_file_bytes: int = Field(
        default=200_000, ge=1, description="Larger source files and rows are rejected at ingest (too_large)"
    )
    provider: Literal["offline", "http"] = Field(
        default="offline",
        description="offline: no LLM, the bundled stand-in; http: the OpenAI-compatible endpoint of llm",
    )
    llm: LLMSettings = Field(
        default_factory=LLMSettings, description="LLM endpoint, sampling parameters and call limits"
    )
    sandbox: SandboxSettings = Field(
        default_factory=SandboxSettings,
        description="Sandbox that runs the sampled code and checks predicted inputs",
    )
    sampling: SamplingSettings = Field(default_factory=SamplingSettings, description="How I/O pairs are sampled")
    prediction: PredictionSettings = Field(
        default_factory=PredictionSettings, description="Prediction tasks, and the CODEI/O++ revision turns"
    )
    export: ExportSettings = Field(
        default_factory=ExportSettings, description="Which samples are written, and benchmark decontamination"
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler address, or 'local' for a local cluster"
    )
    task_retries: int = Field(
        default=2, ge=0, le=10,
        description="Prefect retries of a failed stage shard task (none for errors no retry can fix)",
    )
    refresh_cache: bool = Field(
        default=False,
        description="Run every shard this build submits instead of taking a result Prefect cached "
        "for the same stage, settings and rows (by this or another database on the machine)",
    )
    result_cache: bool = Field(
        default=True,
        description="Keep each finished shard's result in Prefect's result storage "
        "(PREFECT_LOCAL_STORAGE_PATH, compressed), where another database built from the same corpus and settings "
        "finds it; it takes about two fifths of the database's disk space, until `codeio cache --clear`",
    )

    @model_validator(mode="before")
    @classmethod
    def _export_beside_the_database(cls, data: Any) -> Any:
        """Without its own output_dir, a build exports next to its database (``export/`` in
        the database's directory): two builds with their own --db do not share one export."""
        if isinstance(data, dict) and data.get("db_path") and data.get("output_dir") is None:
            return {**data, "output_dir": default_output_dir(data["db_path"])}
        return data

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: list[SourceSpec]) -> list[SourceSpec]:
        if not v:
            raise ValueError("at least one source is required")
        return v

    def model_name(self) -> str:
        from llm.offline.provider import OFFLINE_MODEL

        return OFFLINE_MODEL if self.provider == "offline" else self.llm.model


MAX_REPORTED_ERRORS = 5  # an error line names this many problems, then "and N more"
ACCEPTED_FORMATS = "only TOML (.toml) and JSON (.json) configs are accepted"


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read a TOML or JSON config file (optional) and apply overrides; one-line errors."""
    data: dict[str, Any] = _read_config(path) if path else {}
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid config: {validation_summary(exc)}") from None


def _read_config(path: str) -> dict[str, Any]:
    """A .toml file is TOML; any other file is read as JSON, as it always was, and one that
    is not JSON is told which formats are accepted."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {path} not found")
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} cannot be parsed: {exc}") from None
    except json.JSONDecodeError as exc:
        if p.suffix.lower() == ".json":
            raise UserError(f"config file {path} cannot be parsed: {exc}") from None
        data = _not_json(path, text, exc)
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold an object of settings, not {_json_kind(data)}")
    return data


def _not_json(path: str, text: str, exc: json.JSONDecodeError) -> dict[str, Any]:
    """A file that is neither .toml nor JSON: TOML if it is named .TOML, else the error."""
    p = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    if data is not None and p.suffix.lower() == ".toml":
        return data
    msg = f"config file {path}: {ACCEPTED_FORMATS}"
    if data:  # not an empty or comments-only file, which any format reads
        msg += f"; it reads as TOML, so name it {p.stem}.toml"
    elif text.lstrip().startswith(("{", "[")):
        msg += f"; read as JSON it fails: {exc}"
    raise UserError(msg)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def validation_summary(exc: ValidationError) -> str:
    """Every error on one line, unknown keys first: a misspelt key is often why a required
    one is missing, and the cap must not hide it."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    parts = list(dict.fromkeys(_describe(e) for e in errors))
    if len(parts) > MAX_REPORTED_ERRORS:
        parts = [*parts[:MAX_REPORTED_ERRORS], f"and {len(parts) - MAX_REPORTED_ERRORS} more"]
    return "; ".join(parts)


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    where = ".".join(_loc_part(x) for x in loc) or "config"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown setting{_did_you_mean(loc)}"
    msg = " ".join(error["msg"].removeprefix("Value error, ").split())  # one line, whatever it said
    return f"{where}: {msg}"


def _loc_part(part: Any) -> str:
    return str(part) if isinstance(part, int) or re.fullmatch(r"[\w-]+", part) else json.dumps(part)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """' (did you mean ...?)' for an unknown key close to a setting of its section, or a part
    of one's name (``parallel_shards``), or named like a setting of a section below it
    (``model`` for ``llm.model``)."""
    key, model = loc[-1], _model_at(loc[:-1])
    if model is None or not isinstance(key, str):
        return ""
    fields = list(model.model_fields)
    norm = key.strip().lower().replace("-", "_").replace(" ", "_")
    found = [norm] if norm in fields else difflib.get_close_matches(norm, fields, n=1)
    if not found and len(norm) >= 2:  # a part of a name: parallel_shards, db, size
        found = [f for f in fields if f"_{norm}" in f"_{f}"]
        found = found if len(found) <= 2 else []
    if not found:
        found = [f"{name}.{norm}" for name in fields
                 if norm in getattr(_as_model(model.model_fields[name].annotation), "model_fields", {})][:2]
    return f" (did you mean {' or '.join(repr(f) for f in found)}?)" if found else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings model an error location points into (``sources.0`` is a SourceSpec)."""
    tp: Any = BuildConfig
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif isinstance(part, int) and get_origin(tp) in (list, tuple):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _as_model(tp)


def _as_model(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``: the one member a key or index can lead into."""
    if get_origin(tp) in (Union, type(int | None)):
        members = [a for a in get_args(tp) if a is not type(None)]
        return members[0] if len(members) == 1 else tp
    return tp
