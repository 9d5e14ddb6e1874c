"""Build configuration: validated data, so a typo is an error at start, not a silent default."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.errors import UserError
from llm.settings import LLMSettings
from storage.ids import content_id

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
    pairs_per_function: int | None = Field(default=None, ge=1, le=100)

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        p = Path(self.path.split("*")[0].rstrip("/") or ".")
        return p.stem or p.name or "corpus"


class SandboxSettings(_Strict):
    workers: int | None = Field(default=None, ge=1, description="Worker processes (default: one per core)")
    cpu_seconds: float = Field(default=5.0, gt=0, description="CPU time per call; decides 'timeout'")
    wall_factor: float = Field(default=3.0, ge=1)
    memory_mb: int = Field(default=2048, ge=256)


class SamplingSettings(_Strict):
    generator_calls: int = Field(default=1000, ge=1, description="Input generator calls per function")
    function_budget_s: float = Field(default=30.0, gt=0, description="CPU budget for one function's sampling")
    pairs_per_kind: dict[str, int] = Field(
        default_factory=lambda: {"mixed": 3, "educational": 6, "curated": 10}
    )
    min_pairs: int = Field(default=2, ge=1, description="Fewer valid pairs than this drops the function")
    check_determinism: bool = Field(default=True, description="Re-run pairs under another hash seed")


class PredictionSettings(_Strict):
    kinds: list[Literal["input", "output"]] = Field(default_factory=lambda: ["input", "output"])
    reference_tip: bool = Field(default=True, description="Append the reference code as a tip")
    revision_turns: int = Field(default=1, ge=0, le=2, description="CODEI/O++ revision turns")


class ExportSettings(_Strict):
    mode: Literal["keep_all", "rejection", "ground_truth"] = Field(
        default="keep_all",
        description="keep_all: every response; rejection: drop wrong; ground_truth: replace wrong "
        "answers with the ground truth",
    )
    decontaminate: list[str] = Field(default_factory=list, description="Benchmark JSONL files")
    decontaminate_field: str = Field(default="text")
    decontaminate_action: Literal["drop", "flag"] = "drop"
    ngram: int = Field(default=13, ge=3)


class BuildConfig(_Strict):
    """Everything a build depends on. Unknown keys are errors."""

    sources: list[SourceSpec] = Field(default_factory=lambda: [SourceSpec(path=str(SAMPLE_CORPUS), name="sample", kind="educational")])
    db_path: str = Field(default="codeio-out/codeio.duckdb")
    output_dir: str = Field(default="codeio-out/export")
    shard_size: int = Field(default=200, ge=1, le=100_000)
    max_parallel_shards: int = Field(default=2, ge=1, le=256)
    max_file_bytes: int = Field(default=200_000, ge=1)
    provider: Literal["offline", "http"] = "offline"
    llm: LLMSettings = Field(default_factory=LLMSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    prediction: PredictionSettings = Field(default_factory=PredictionSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    dask_address: str | None = Field(
        default=None, description="Dask scheduler address, or 'local' for a local cluster"
    )
    task_retries: int = Field(default=2, ge=0, le=10)
    refresh_cache: bool = Field(
        default=False,
        description="Run every shard this build submits instead of taking a result Prefect cached "
        "for the same stage, settings and rows (by this or another database on the machine)",
    )

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: list[SourceSpec]) -> list[SourceSpec]:
        if not v:
            raise ValueError("at least one source is required")
        return v

    def model_name(self) -> str:
        from llm.offline.provider import OFFLINE_MODEL

        return OFFLINE_MODEL if self.provider == "offline" else self.llm.model

    def key_of(self, *parts: Any) -> str:
        return content_id(*parts)[:16]


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read a TOML or JSON config file (optional) and apply overrides; one-line errors."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file {path} not found")
        try:
            text = p.read_text(encoding="utf-8")
            data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"config file {path} cannot be parsed: {exc}") from None
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown setting"
        raise UserError(f"invalid config: {where}: {msg} ({exc.error_count()} error(s))") from None
