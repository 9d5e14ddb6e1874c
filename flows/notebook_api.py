"""Notebook use: run a build and get its results back as polars tables.

    from flows.notebook_api import build
    result = build(sources=[{"path": "corpus/sample", "kind": "educational"}],
                   db_path="work/codeio.duckdb", output_dir="work/export")
    result              # a summary, the funnel and the response types
    result.samples      # the exported CODEI/O++ samples

``build`` runs the same Prefect flow as `codeio run` (so a re-run does only missing work) and
then reads the store and the export directory; ``load`` does only the reading, for a build
that already ran.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Offline by default, as for the CLI; set before Prefect is first imported. Prefect's per-shard
# INFO lines would fill a notebook: set PREFECT_LOGGING_LEVEL=INFO beforehand to see them.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The temporary Prefect server can take longer than Prefect's 20 s to start on a busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import polars as pl  # noqa: E402 - after the environment defaults above

from flows.config import BuildConfig, default_output_dir  # noqa: E402

SAMPLES_FILE = "codeio_pp.parquet"


@dataclass(frozen=True, repr=False)
class BuildResult:
    """A finished build: its config, the flow's summary and the statistics as polars tables."""

    config: BuildConfig
    keys: dict[str, str]
    summary: dict[str, Any]
    funnel: pl.DataFrame
    response_types: pl.DataFrame
    tokens: pl.DataFrame
    samples: pl.DataFrame
    pairs_per_function: pl.DataFrame

    @property
    def export_dir(self) -> Path:
        """Where the build's files are: where its run wrote them (``load`` without an
        output_dir reads the run's own), else the config's output_dir."""
        written = self.summary.get("exports", {}).get(SAMPLES_FILE)
        return Path(written).parent if written else Path(self.config.output_dir)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the HTML report (default: ``report.html`` in the export directory)."""
        from flows.report import write_report
        from storage.store import Store

        target = Path(path) if path is not None else self.export_dir / "report.html"
        with Store(self.config.db_path, read_only=True) as store:
            return write_report(store, self.keys, target)

    def headline(self) -> str:
        """One line: rows kept per stage, samples, time and cost."""
        kept = _kept(self.funnel)
        chain = " → ".join(
            f"{kept[stage]:,} {unit}"
            for stage, unit in (("ingest", "files"), ("transform", "functions"), ("sample_io", "functions with I/O"),
                                ("prompts", "I/O pairs"))
            if stage in kept
        )
        parts = [chain or "nothing built", f"{self.samples.height:,} CODEI/O++ samples"]
        s = self.summary
        if "seconds" in s:
            from flows.artifacts import calls_text

            parts.append(f"{s['seconds']:.1f} s, {calls_text(s)}, "
                         f"{int(s.get('executions', 0)):,} executions")
        return " · ".join(parts)

    def __repr__(self) -> str:
        lines = [f"BuildResult({self.headline()})", f"  store:  {self.config.db_path}", f"  export: {self.export_dir}"]
        if self.response_types.height:
            lines.append("  correct at turn 1: " + _correct_share(self.response_types))
        lines.append("  tables: .funnel .response_types .tokens .samples .pairs_per_function; .report() writes HTML")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        from flows.report import funnel_svg, response_types_svg

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>{escape(v)}</td></tr>"
            for k, v in (
                ("built", self.headline()),
                ("store", self.config.db_path),
                ("export", str(self.export_dir)),
                ("correct at turn 1", _correct_share(self.response_types) if self.response_types.height else "–"),
            )
        )
        return (
            f"<div><b>BuildResult</b><table>{rows}</table>"
            f"<h4>Funnel per stage</h4>{funnel_svg(self.funnel)}"
            f"<h4>Response types per turn</h4>{response_types_svg(self.response_types)}"
            "<p><code>.funnel .response_types .tokens .samples .pairs_per_function</code> are polars "
            "DataFrames; <code>.report()</code> writes the HTML report.</p></div>"
        )


def build(config: BuildConfig | dict[str, Any] | None = None, **overrides: Any) -> BuildResult:
    """Run the build flow and return its results.

    ``config`` is a BuildConfig, a dict of its fields, or None for the defaults (the bundled
    sample corpus, offline provider); ``overrides`` are BuildConfig fields applied on top, dicts
    merged into dicts (``sampling={"generator_calls": 200}`` keeps the other sampling settings).
    """
    from flows.build import preflight, run_build
    from flows.errors import quiet_user_errors

    cfg = make_config(config, **overrides)
    preflight(cfg)  # a wrong path fails here, not after a Prefect server has started
    with quiet_user_errors():  # the exception raised here says it: no traceback logged before it
        summary = run_build(cfg)
    return load(cfg, summary=summary)


def load(
    config: BuildConfig | dict[str, Any] | None = None, *, summary: dict[str, Any] | None = None, **overrides: Any
) -> BuildResult:
    """Read the results of a build that already ran (no flow run): the store and the export.

    Without ``summary``, the summary of the store's last completed run is used.
    """
    from flows.report import pairs_per_function
    from storage.stats import funnel, response_types, token_usage
    from storage.store import Store
    from tasks.registry import build_keys

    cfg = make_config(config, **overrides)
    keys = build_keys(cfg)
    with Store(cfg.db_path, read_only=True) as store:
        if summary is None:
            summary = _last_summary(store)
        result = BuildResult(
            config=cfg,
            keys=keys,
            summary=summary,
            funnel=funnel(store, keys),
            response_types=response_types(store, keys),
            tokens=token_usage(store),
            samples=_samples(cfg, summary),
            pairs_per_function=pairs_per_function(store, keys),
        )
    return result


def make_config(config: BuildConfig | dict[str, Any] | None = None, **overrides: Any) -> BuildConfig:
    """A validated BuildConfig from a config, a dict or None, with ``overrides`` merged in."""
    if isinstance(config, BuildConfig):
        base = config.model_dump(mode="json")
    elif config is None:
        base = {}
    elif isinstance(config, dict):
        base = dict(config)
    else:
        raise TypeError(f"config must be a BuildConfig, a dict or None, not {type(config).__name__}")
    overrides = _plain(overrides)
    if "db_path" in overrides and "output_dir" not in overrides and _derived_output_dir(base):
        # The base exports beside its own database (it set no output_dir of its own): so does
        # the new one, beside the new database, instead of over the first build's files.
        base.pop("output_dir", None)
    from pydantic import ValidationError

    from flows.config import validation_summary
    from flows.errors import UserError

    try:
        return BuildConfig.model_validate(_merge(_plain(base), overrides))
    except ValidationError as exc:  # one line, as the CLI says it: what to fix, and where
        raise UserError(f"invalid config: {validation_summary(exc)}") from None


def _derived_output_dir(base: dict[str, Any]) -> bool:
    """Whether ``base`` exports where a config without an output_dir would: ``export/`` beside
    its database (the default database's included)."""
    out = base.get("output_dir")
    if out is None:
        return True
    db = base.get("db_path") or BuildConfig.model_fields["db_path"].default
    return Path(os.fspath(out)) == Path(default_output_dir(os.fspath(db)))


def _plain(value: Any) -> Any:
    """Paths (``work / "codeio.duckdb"``) as the strings the config holds, in dicts and lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _samples(cfg: BuildConfig, summary: dict[str, Any]) -> pl.DataFrame:
    path = Path(summary.get("exports", {}).get(SAMPLES_FILE) or Path(cfg.output_dir) / SAMPLES_FILE)
    return pl.read_parquet(path) if path.is_file() else pl.DataFrame()


def _last_summary(store: Any) -> dict[str, Any]:
    rows = store.query(
        "SELECT summary_json FROM runs WHERE status = 'completed' ORDER BY started_at DESC LIMIT 1"
    )
    if not rows or not rows[0][0]:
        return {}
    try:
        value = json.loads(rows[0][0])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kept(funnel: pl.DataFrame) -> dict[str, int]:
    if not funnel.height:
        return {}
    ok = funnel.filter(pl.col("status") == "ok").group_by("stage").agg(pl.col("count").sum())
    return {stage: int(n) for stage, n in ok.iter_rows()}


def _correct_share(types: pl.DataFrame) -> str:
    first = types.filter(pl.col("turn") == 1)
    total = int(first["count"].sum())
    correct = int(first.filter(pl.col("type") == "correct")["count"].sum())
    return f"{correct / total * 100:.1f}% of {total:,}" if total else "–"
