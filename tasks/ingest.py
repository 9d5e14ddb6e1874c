"""Ingestion: read sources, deduplicate by content, reject what cannot be Python source.

Reading and hashing happens in the flow process (it must know what is new before it can shard);
validating (decode, size, parse) is the shard task. Every item seen gets an ingest_log row:
'ok', 'duplicate', or 'rejected' with a reason.
"""

from __future__ import annotations

import ast
import glob
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.ids import bytes_id, canonical_json, content_id
from storage.models import IngestEntry, RawFile

ROW_COLUMNS = ("content", "repo_name", "path", "source")


class SourceError(ValueError):
    """A source cannot be read at all (missing path, wrong columns)."""


@dataclass(frozen=True)
class SourceItem:
    """One candidate file or record, read but not yet validated."""

    source: str
    source_kind: str
    origin: str  # 'raw' (Python source) or 'unified' (already-transformed record)
    locator: str
    data: bytes
    repo_name: str | None = None
    path: str | None = None

    @property
    def ingest_id(self) -> str:
        return content_id("ingest", self.source, self.locator, bytes_id(self.data))

    def as_row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_kind": self.source_kind,
            "origin": self.origin,
            "locator": self.locator,
            "data": self.data,
            "repo_name": self.repo_name,
            "path": self.path,
        }


def _detect_format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.endswith((".jsonl", ".parquet", ".json")):
        return "rows"
    return "python"


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _expand(path: str, suffixes: tuple[str, ...]) -> list[Path]:
    if _is_glob(path):
        files = [Path(p) for p in glob.glob(path, recursive=True)]
        return sorted(p for p in files if p.is_file())
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes)
    if p.is_file():
        return [p]
    raise SourceError(f"corpus path {path} does not exist")


def iter_source(path: str, name: str, kind: str, fmt: str = "auto") -> Iterator[SourceItem]:
    """Yield every item of a source, in a stable order."""
    fmt = _detect_format(path, fmt)
    if fmt == "python":
        files = _expand(path, (".py",))
        if not files:  # most often a mistyped glob or directory: say so rather than build nothing
            raise SourceError(f"corpus path {path} matches no files" if _is_glob(path)
                              else f"corpus path {path} holds no .py files")
        base = Path(path) if Path(path).is_dir() else None
        for f in files:
            rel = str(f.relative_to(base)) if base else str(f)
            yield SourceItem(name, kind, "raw", rel, f.read_bytes(), path=rel)
        return
    files = _expand(path, (".jsonl", ".parquet", ".json"))
    if not files:
        raise SourceError(f"corpus path {path} holds no .jsonl or .parquet files")
    for f in files:
        yield from _iter_records(f, name, kind, fmt)


def _iter_records(f: Path, name: str, kind: str, fmt: str) -> Iterator[SourceItem]:
    if f.suffix == ".parquet":
        import polars as pl

        try:
            schema = pl.read_parquet_schema(f)
        except Exception as exc:  # noqa: BLE001 - polars raises several types for bad files
            raise SourceError(f"{f} is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        wanted = _check_columns(f, list(schema), fmt)
        batches = pl.scan_parquet(f).select(wanted).collect_batches(chunk_size=2000)
        i = 0
        for batch in batches:
            for rec in batch.iter_rows(named=True):
                yield _record_item(rec, f"{f.name}:{i}", name, kind, fmt)
                i += 1
        return
    checked = False
    with f.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            locator = f"{f.name}:{lineno}"
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                # Kept as an item so validation records it: nothing is dropped silently.
                yield SourceItem(name, kind, "bad_record", locator, line)
                continue
            if not checked:
                _check_columns(f, list(rec), fmt)
                checked = True
            yield _record_item(rec, locator, name, kind, fmt)


def _check_columns(f: Path, columns: list[str], fmt: str) -> list[str]:
    if fmt == "unified" or (fmt == "rows" and "refcode" in columns and "content" not in columns):
        missing = [c for c in ("refcode",) if c not in columns]
        if missing:
            raise SourceError(f"{f} has no `refcode` column (needed for unified records)")
        return columns
    if "content" not in columns:
        raise SourceError(
            f"{f} has no `content` column (found: {', '.join(columns[:8]) or 'none'})"
        )
    return [c for c in ROW_COLUMNS if c in columns]


def _record_item(rec: dict[str, Any], locator: str, name: str, kind: str, fmt: str) -> SourceItem:
    if "content" not in rec and "refcode" in rec:
        data = canonical_json(rec).encode("utf-8")
        return SourceItem(name, kind, "unified", locator, data, path=str(rec.get("path") or locator))
    content = rec.get("content")
    if isinstance(content, str):
        data = content.encode("utf-8", errors="surrogatepass")
    elif isinstance(content, (bytes, bytearray)):
        data = bytes(content)
    else:
        data = b""
    return SourceItem(
        name,
        kind,
        "raw",
        locator,
        data,
        repo_name=rec.get("repo_name"),
        path=rec.get("path") or locator,
    )


def validate_items(items: list[dict[str, Any]], max_bytes: int) -> tuple[list[dict], list[dict]]:
    """Validate a shard of items: returns (ingest_log rows, raw_files rows).

    Duplicates within the shard are marked here; duplicates of earlier shards or runs are
    marked by the store when the shard is written.
    """
    log: list[dict] = []
    raws: list[dict] = []
    seen: set[str] = set()
    for it in items:
        data: bytes = it["data"]
        sha = bytes_id(data)
        entry = dict(
            id=content_id("ingest", it["source"], it["locator"], sha),
            source=it["source"],
            locator=it["locator"],
            bytes_sha256=sha,
            size_bytes=len(data),
        )
        reason, detail, text = _check(data, it["origin"], max_bytes)
        if reason:
            log.append(IngestEntry(**entry, status="rejected", reason=reason, detail=detail).row())
            continue
        raw_id = RawFile.make_id(text)
        if raw_id in seen:
            log.append(IngestEntry(**entry, status="duplicate", reason="duplicate_content", raw_id=raw_id).row())
            continue
        seen.add(raw_id)
        log.append(IngestEntry(**entry, status="ok", raw_id=raw_id).row())
        raws.append(
            RawFile(
                id=raw_id,
                source=it["source"],
                source_kind=it["source_kind"],
                origin=it["origin"],
                path=it.get("path") or it["locator"],
                repo_name=it.get("repo_name"),
                content=text,
                size_bytes=len(data),
            ).row()
        )
    return log, raws


def _check(data: bytes, origin: str, max_bytes: int) -> tuple[str | None, str | None, str]:
    if origin == "bad_record":
        return "bad_record", "line is not a JSON object", ""
    if not data.strip():
        return "empty", None, ""
    if len(data) > max_bytes:
        return "too_large", f"{len(data)} bytes > limit {max_bytes}", ""
    if b"\x00" in data:
        return "binary", "contains NUL bytes", ""
    try:
        text = data.decode("utf-8-sig")  # Python accepts a leading byte-order mark
    except UnicodeDecodeError as exc:
        return "not_utf8", f"invalid byte at offset {exc.start}", ""
    if origin == "unified":
        return None, None, text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except SyntaxError as exc:
        return "syntax_error", f"line {exc.lineno}: {exc.msg}", ""
    except (RecursionError, MemoryError, ValueError) as exc:
        return "syntax_error", type(exc).__name__, ""
    return None, None, text
