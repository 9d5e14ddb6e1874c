"""The DuckDB store: the system of record.

One process writes (the flow process); every shard is written in one transaction, so a shard
is either fully recorded or not at all. Schema changes go through numbered SQL migrations in
``storage/migrations``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from storage.models import LLMCall, Outcome, ShardResult

# Tables whose rows are produced by a stage under a config key: replaced on re-write, so the
# row always names the latest config that produced it. The others are first-write-wins.
_CONFIG_KEYED = {"functions", "io_pairs", "prediction_tasks", "attempts"}
_FIRST_WINS = {"ingest_log", "raw_files", "llm_calls"}


class StoreError(RuntimeError):
    """The database cannot be used (unreadable, not a DuckDB file, failed migration)."""


class StoreLocked(StoreError):
    """Another process holds the database open for writing."""


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        m = re.match(r"^(\d+)_.*\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Store:
    """A DuckDB file holding every record and every per-row stage outcome."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"database {self.path} does not exist (run `codeio run` first)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                raise StoreLocked(
                    f"database {self.path} is in use by another process (a running build?); "
                    "wait for it to finish or use another --db"
                ) from None
            raise StoreError(f"cannot open database {self.path}: {msg.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {str(exc).splitlines()[0]}") from None
        if not read_only:
            self.migrate()
        elif self.schema_version() == 0:
            raise StoreError(f"{self.path} is not a codeio database (no schema)")
        self._columns: dict[str, list[str]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()[0][0]
        if not exists:
            return 0
        return self.con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]

    def migrate(self) -> int:
        """Apply every migration newer than the file's version; returns the new version."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
        )
        current = self.schema_version()
        for version, name, sql in _migrations():
            if version <= current:
                continue
            try:
                self.con.execute("BEGIN TRANSACTION")
                self.con.execute(sql)
                self.con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [version, name, datetime.now(timezone.utc).replace(tzinfo=None)],
                )
                self.con.execute("COMMIT")
            except duckdb.Error as exc:
                self.con.execute("ROLLBACK")
                raise StoreError(f"migration {name} failed: {exc}") from None
            current = version
        return current

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    # -- writes ----------------------------------------------------------------------------

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            rows = self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
            if not rows:
                raise StoreError(f"unknown table {table}")
            self._columns[table] = [r[0] for r in rows if r[0] != "created_at"]
        return self._columns[table]

    def insert_rows(self, table: str, rows: Sequence[dict[str, Any]], upsert: bool = True) -> int:
        """Upsert rows (idempotent): config-keyed tables replace, the others keep the first.

        ``upsert=False`` is a plain insert (faster: no conflict handling), for callers that
        know the rows are new and retry with an upsert when they were not.
        """
        if not rows:
            return 0
        cols = self.columns(table)
        data = pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in cols})
        verb = "INSERT OR REPLACE" if table in _CONFIG_KEYED else "INSERT OR IGNORE"
        if table not in _CONFIG_KEYED | _FIRST_WINS and table != "stage_outcomes":
            raise StoreError(f"table {table} is not writable through insert_rows")
        if table == "stage_outcomes":
            verb = "INSERT OR REPLACE"
        if not upsert:
            verb = "INSERT"
        col_list = ", ".join(cols)
        self.con.register("_incoming", data)
        try:
            self.con.execute(f"{verb} INTO {table} ({col_list}) SELECT {col_list} FROM _incoming")
        finally:
            try:
                self.con.unregister("_incoming")
            except duckdb.TransactionException:  # the failed insert aborted the transaction
                pass
        return len(rows)

    def record_outcomes(self, stage: str, config_key: str, outcomes: Iterable[Outcome]) -> int:
        rows = [
            {"stage": stage, "config_key": config_key, **o.model_dump()} for o in outcomes
        ]
        return self.insert_rows("stage_outcomes", rows)

    def write_shard(self, result: ShardResult) -> None:
        """Write one shard's rows and outcomes in a single transaction.

        A stage writes only rows that were pending, so the rows are almost always new: they go
        in with plain inserts, and only a shard that meets an existing row is written again as
        an upsert (same result, slower path).
        """
        try:
            self._write_shard(result, upsert=False)
        except duckdb.ConstraintException:
            self._write_shard(result, upsert=True)

    def _write_shard(self, result: ShardResult, upsert: bool) -> None:
        with self.transaction():
            for table, rows in result.rows.items():
                if table in _CONFIG_KEYED:
                    rows = [{**r, "config_key": result.config_key} for r in rows]
                self.insert_rows(table, rows, upsert=upsert)
            outcome_rows = [
                {"stage": result.stage, "config_key": result.config_key, **o.model_dump()}
                for o in result.outcomes
            ]
            self.insert_rows("stage_outcomes", outcome_rows, upsert=upsert)

    def write_ingest(self, result: ShardResult) -> dict[str, int]:
        """Write an ingest shard; content already stored under another locator is a duplicate."""
        log_rows = result.rows.get("ingest_log", [])
        raw_rows = result.rows.get("raw_files", [])
        with self.transaction():
            existing = self.known_ids("raw_files", [r["id"] for r in raw_rows])
            if existing:
                raw_rows = [r for r in raw_rows if r["id"] not in existing]
                for r in log_rows:
                    if r["status"] == "ok" and r["raw_id"] in existing:
                        r["status"], r["reason"] = "duplicate", "duplicate_content"
            self.insert_rows("ingest_log", log_rows)
            self.insert_rows("raw_files", raw_rows)
        counts: dict[str, int] = {}
        for r in log_rows:
            k = r["status"] if r["status"] == "ok" else f"{r['status']}:{r['reason']}"
            counts[k] = counts.get(k, 0) + 1
        return counts

    def known_ids(self, table: str, ids: Sequence[str], column: str = "id") -> set[str]:
        """The subset of ``ids`` already present in ``table``."""
        if not ids:
            return set()
        self.con.register("_ids", pa.table({"id": list(ids)}))
        try:
            rows = self.query(f"SELECT t.{column} FROM {table} t JOIN _ids i ON t.{column} = i.id")
        finally:
            self.con.unregister("_ids")
        return {r[0] for r in rows}

    def add_llm_calls(self, calls: Iterable[LLMCall]) -> int:
        rows = [c.model_dump() for c in calls]
        with self.transaction():
            return self.insert_rows("llm_calls", rows)

    # -- reads -----------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def query_ids(self, sql: str, ids: Sequence[str], params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` with the table ``_want(id)`` holding ``ids`` (for joins on many ids)."""
        if not ids:
            return []
        self.con.register("_want", pa.table({"id": list(ids)}))
        try:
            return self.query_dicts(sql, params)
        finally:
            self.con.unregister("_want")

    def rows_by_ids(self, table: str, ids: Sequence[str], columns: str = "*") -> list[dict[str, Any]]:
        """Rows of ``table`` whose id is in ``ids``, in id order."""
        cols = ", ".join(f"t.{c.strip()}" for c in columns.split(",")) if columns != "*" else "t.*"
        return self.query_ids(f"SELECT {cols} FROM {table} t JOIN _want w ON t.id = w.id ORDER BY t.id", ids)

    def cached_calls(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows for the given call keys."""
        if not keys:
            return {}
        data = pa.table({"key": list(keys)})
        self.con.register("_keys", data)
        try:
            rows = self.query_dicts(
                "SELECT c.* EXCLUDE (created_at) FROM llm_calls c JOIN _keys k USING (key)"
            )
        finally:
            self.con.unregister("_keys")
        return {r["key"]: r for r in rows}

    def outcome_counts(self, stage: str, config_key: str | None = None) -> dict[tuple[str, str | None], int]:
        sql = "SELECT status, reason, count(*) FROM stage_outcomes WHERE stage = ?"
        params: list[Any] = [stage]
        if config_key is not None:
            sql += " AND config_key = ?"
            params.append(config_key)
        sql += " GROUP BY ALL"
        return {(s, r): n for s, r, n in self.query(sql, params)}

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, run_id: str, config: dict[str, Any]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, 'running', ?, NULL)",
                [run_id, _now(), json.dumps(config, sort_keys=True, default=str)],
            )

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.transaction():
            self.con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary_json = ? WHERE run_id = ?",
                [_now(), status, json.dumps(summary, sort_keys=True, default=str), run_id],
            )


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
