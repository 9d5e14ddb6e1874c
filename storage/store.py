"""The DuckDB store: the system of record.

One process writes (the flow process); every shard is written in one transaction, so a shard
is either fully recorded or not at all. Schema changes go through numbered SQL migrations in
``storage/migrations``.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import duckdb
import pyarrow as pa

from storage.models import LLMCall, ShardResult

# The stage output tables: append-only (no key), one set of rows per (stage, config key, input
# item), versioned by config key. The column that names each row's input item, so that a shard
# written again replaces exactly its items' earlier rows.
_APPEND_ONLY = {"io_pairs": "function_id", "prediction_tasks": "pair_id", "attempts": "task_id"}
# Keyed by id. Functions are replaced on re-write (two raw files can give the same function);
# the others keep their first row.
_REPLACED = {"functions"}
_FIRST_WINS = {"ingest_log", "raw_files", "llm_calls"}
# Keys per IN list of an index lookup: below DuckDB's index_scan_max_count (2048), above which
# it scans the table instead of probing the index.
_INDEX_LOOKUP_KEYS = 1000

CHECKPOINT_THRESHOLD = "256MB"
# DuckDB's buffer memory per connection. Its own default is 80 % of the machine's RAM, which a
# store as large as a paper-scale build's fills through its caches: this bound keeps the caches
# flat however large the store grows (past it DuckDB evicts and checkpoints earlier).
MEMORY_LIMIT = "512MB"
# DuckDB keeps a table's primary-key index (an ART) whole in that memory: about 120 bytes per
# key of 64 hex characters (measured with DuckDB 2.0; a longer key takes more). The cap above
# is for caches, so the indexes get room on top of it: without it, once the keyed tables held
# ~4M rows (a paper-scale ledger has ~7M calls), the index alone filled the cap and every
# commit failed ("could not allocate block").
INDEX_BYTES_PER_KEY = 160
_KEYED = ("functions", "ingest_log", "raw_files", "llm_calls")
# The limit is raised ahead of the keys, by room for this many more at a time.
_INDEX_ROOM_STEP = 100_000
_BYTE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
# How long a write open waits for processes that have the file open for reading (`codeio
# stats`, `report`, `export`, a notebook's `load()`: seconds, as a rule) before it gives up.
READER_WAIT_S = 60.0
_LOCK_POLL_S = 0.2

log = logging.getLogger("codeio")


def _timed(method: Any) -> Any:
    """Add the time a call of ``method`` takes to the store's ``busy_s``, once however the
    timed methods call each other (a write looks ids up through ``query``)."""

    @functools.wraps(method)
    def timed(self: "Store", *args: Any, **kwargs: Any) -> Any:
        if self._timing:
            return method(self, *args, **kwargs)
        self._timing = True
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._timing = False
            self.busy_s += time.perf_counter() - start

    return timed


class StoreError(RuntimeError):
    """The database cannot be used (unreadable, not a DuckDB file, failed migration)."""


class StoreFull(StoreError):
    """The disk holding the database (its file, write-ahead log or temporary files) is full.
    What was committed before stays; the statement that failed is rolled back."""


class StoreOutOfMemory(StoreError):
    """A statement needed more memory than DuckDB may use here. What was committed before
    stays; the statement that failed is rolled back."""


class StoreLocked(StoreError):
    """Another process holds the database (open for writing, or for reading while this one
    would write); ``holder`` says which, when it can be told."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        m = re.match(r"^(\d+)_.*\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Store:
    """A DuckDB file holding every record and every per-row stage outcome."""

    def __init__(self, path: str | Path, read_only: bool = False, threads: int | None = None,
                 memory_limit: str = MEMORY_LIMIT, reader_wait_s: float = READER_WAIT_S,
                 logger: Any = log) -> None:
        """``threads``: DuckDB's worker threads for this database (default: one per core);
        ``memory_limit``: DuckDB's buffer memory, e.g. "2GB"; ``reader_wait_s``: how long an
        open for writing waits for other processes reading the file to close it."""
        self.path = Path(path)
        self.read_only = read_only
        self._cache_bytes = _parse_bytes(memory_limit)
        # Seconds spent in the store's reads and writes, for the build's figures (one thread
        # uses a store: only the flow touches it).
        self.busy_s = 0.0
        self._timing = False
        if read_only and not self.path.exists():
            raise StoreError(f"database {self.path} does not exist (run `codeio run` first)")
        if self.path.is_dir():
            raise StoreError(f"database {self.path} is a directory; name the database file in it (codeio.duckdb?)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con: Any = _Connection(self._connect(0.0 if read_only else reader_wait_s, logger))
        if not read_only:
            # DuckDB checkpoints (folds the write-ahead log into the file) when the log reaches
            # this size. At the default 16 MB a build checkpoints every few shards, and shard
            # writes spent half their time there (benchmarks/bench_store.py); a larger log
            # costs only a longer replay when a killed build's file is next opened.
            self.con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        self._memory_bytes = 0
        self.con.execute("SET memory_limit = ?", [memory_limit])
        if not read_only:
            self.migrate()
        elif self.schema_version() == 0:
            raise StoreError(f"{self.path} is not a codeio database (no schema)")
        self._columns: dict[str, list[str]] = {}
        self._keys = self.con.execute(
            "SELECT " + " + ".join(f"(SELECT count(*) FROM {table})" for table in _KEYED)).fetchall()[0][0]
        self._fit_memory()

    def _fit_memory(self) -> None:
        """Raise DuckDB's memory limit to the cache cap plus room for the key indexes, ahead
        of the keys (``INDEX_BYTES_PER_KEY``)."""
        if self._cache_bytes + self._keys * INDEX_BYTES_PER_KEY <= self._memory_bytes:
            return
        wanted = self._cache_bytes + (self._keys + _INDEX_ROOM_STEP) * INDEX_BYTES_PER_KEY
        self.con.execute(f"SET memory_limit = '{wanted // 1024}KiB'")
        self._memory_bytes = wanted

    def _connect(self, reader_wait_s: float, logger: Any) -> Any:
        """Open the file; while only readers hold it (their commands take seconds), an open
        for writing waits up to ``reader_wait_s`` for them to close it."""
        deadline = time.monotonic() + reader_wait_s
        waiting = False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=self.read_only)
            except duckdb.IOException as exc:
                msg = str(exc)
                if "lock" not in msg.lower():
                    raise StoreError(f"cannot open database {self.path}: {msg.splitlines()[0]}") from None
                holder = lock_holder(self.path, msg)
                if not (holder.reading and time.monotonic() < deadline):
                    raise self._locked(holder, reader_wait_s if waiting else 0.0) from None
                if not waiting:
                    logger.warning("database %s is open for reading by %s; waiting up to %gs for it to close it",
                                   self.path, holder, reader_wait_s)
                    waiting = True
                time.sleep(_LOCK_POLL_S)
            except duckdb.Error as exc:
                if "different configuration" in str(exc):
                    # DuckDB shares one database per file in a process: a connection this process
                    # holds (say, a notebook's duckdb.connect) decides how the file may be opened.
                    fix = ("close that connection, or open it with read_only=True" if self.read_only
                           else "close that connection before a build")
                    raise StoreLocked(
                        f"database {self.path} cannot be opened {'read-only' if self.read_only else 'for writing'}: "
                        f"this process already has it open with other settings (a duckdb.connect() in a "
                        f"notebook?); {fix}", "this process"
                    ) from None
                raise StoreError(f"cannot open database {self.path}: {str(exc).splitlines()[0]}") from None

    def _locked(self, holder: "LockHolder", waited_s: float) -> StoreLocked:
        if holder.reading:
            how = f"has had it open for reading for over {waited_s:g}s" if waited_s else "has it open for reading"
            fix = ("let that command finish (or close the notebook's connection) and run again, "
                   "or use another database (--db, or db_path in a notebook)")
        else:
            how = "has it open for writing" if holder.writing else "has it open"
            fix = "wait for it to finish or use another database (--db, or db_path in a notebook)"
        return StoreLocked(f"database {self.path} is in use by another process: {holder} {how}; {fix}",
                           str(holder))

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
            self._abandon()
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

    @_timed
    def insert_rows(self, table: str, rows: Sequence[dict[str, Any]], upsert: bool = True) -> int:
        """Insert rows in one statement. Keyed tables are upserted (idempotent): ``functions``
        replaces, the others keep the first row. ``upsert=False`` is a plain insert (faster),
        for callers that know the rows are new and retry with an upsert when they were not.
        The append-only tables take plain inserts: their idempotency is ``write_shards``'.
        """
        if not rows:
            return 0
        cols = self.columns(table)
        self._insert(table, pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in cols}), upsert)
        return len(rows)

    def _insert(self, table: str, data: pa.Table, upsert: bool) -> None:
        if table in _KEYED:  # counted as new whether or not they are: the room errs on the large side
            self._keys += data.num_rows
            self._fit_memory()
        if table in _APPEND_ONLY or table == "stage_outcomes":
            verb = "INSERT"
        elif table in _REPLACED:
            verb = "INSERT OR REPLACE" if upsert else "INSERT"
        elif table in _FIRST_WINS:
            verb = "INSERT OR IGNORE" if upsert else "INSERT"
        else:
            raise StoreError(f"table {table} is not writable through insert_rows")
        col_list = ", ".join(data.column_names)
        self.con.execute_over(f"{verb} INTO {table} ({col_list}) SELECT {col_list} FROM _arrow", None, data)

    def write_shard(self, result: ShardResult) -> None:
        """Write one shard's rows and outcomes in a single transaction (see ``write_shards``)."""
        self.write_shards([result])

    @_timed
    def write_shards(self, results: Sequence[ShardResult]) -> None:
        """Write shard results in a single transaction, one insert per table for all of them.

        The flow hands over every shard that finished while it was writing the previous ones,
        so a busy writer commits several shards at a time (group commit) while each shard
        stays all-or-nothing. Each (stage, config key, input item) is written once: an item
        that already has an outcome under the same stage and key (a shard written again) has
        its earlier rows and outcome replaced, which makes writing idempotent without an index.
        Keyed tables go in with plain inserts first and are upserted only on a conflict.
        """
        if not results:
            return
        tables = {table: self._columnar(table, results) for table in sorted({t for r in results for t in r.rows})}
        outcomes = pa.Table.from_pydict({
            "stage": [r.stage for r in results for _ in r.outcomes],
            "config_key": [r.config_key for r in results for _ in r.outcomes],
            "item_id": [o.item_id for r in results for o in r.outcomes],
            "status": [o.status for r in results for o in r.outcomes],
            "reason": [o.reason for r in results for o in r.outcomes],
            "detail": [o.detail for r in results for o in r.outcomes],
            "failed_runs": pa.array([o.failed_runs for r in results for o in r.outcomes], pa.int32()),
        })
        items: dict[tuple[str, str], list[str]] = {}
        for r in results:
            items.setdefault((r.stage, r.config_key), []).extend(o.item_id for o in r.outcomes)
        try:
            self._write_batch(tables, outcomes, items, upsert=False)
        except duckdb.ConstraintException:
            self._write_batch(tables, outcomes, items, upsert=True)

    def _columnar(self, table: str, results: Sequence[ShardResult]) -> pa.Table:
        """One table's rows of all ``results`` as Arrow columns; config-keyed tables get the
        key of the shard that produced each row."""
        columns: dict[str, list[Any]] = {c: [] for c in self.columns(table)}
        keyed = table in _APPEND_ONLY or table in _REPLACED
        for result in results:
            rows = result.rows.get(table, ())
            for c, values in columns.items():
                if keyed and c == "config_key":
                    values.extend([result.config_key] * len(rows))
                else:
                    values.extend([r.get(c) for r in rows])
        return pa.Table.from_pydict(columns)

    def _write_batch(self, tables: dict[str, pa.Table], outcomes: pa.Table,
                     items: dict[tuple[str, str], list[str]], upsert: bool) -> None:
        with self.transaction():
            self._forget_written(items)
            for table, data in tables.items():
                if data.num_rows:
                    self._insert(table, data, upsert)
            if outcomes.num_rows:
                self._insert("stage_outcomes", outcomes, upsert)

    def _forget_written(self, groups: dict[tuple[str, str], list[str]]) -> None:
        """Delete the outcomes and output rows of the items (per stage and config key) that
        were written before under the same stage and key, so the batch replaces them."""
        for (stage, key), items in groups.items():
            if not items:
                continue
            wanted = set(items)
            if len(wanted) != len(items):
                dup = next(i for i, n in Counter(items).items() if n > 1)
                raise StoreError(f"{stage}: item {dup} appears twice in one write")
            # Outcomes are appended stage by stage, and a stage's shards are consecutive ranges
            # of its sorted item ids: filtering on the stage, key and id range lets DuckDB skip
            # (by their min/max) the row groups that cannot hold these items, so the check
            # reads a row group or two however large the table has grown.
            in_range = self.query("SELECT item_id FROM stage_outcomes WHERE stage = ? AND config_key = ? "
                                  "AND item_id BETWEEN ? AND ?", [stage, key, min(items), max(items)])
            written = [r[0] for r in in_range if r[0] in wanted]
            if not written:
                continue
            self.con.register("_written", pa.table({"id": written}))
            try:
                self.con.execute("DELETE FROM stage_outcomes WHERE stage = ? AND config_key = ? "
                                 "AND item_id IN (SELECT id FROM _written)", [stage, key])
                # A config key belongs to one stage, so this deletes only that stage's rows.
                for table, item_column in _APPEND_ONLY.items():
                    self.con.execute(f"DELETE FROM {table} WHERE config_key = ? "
                                     f"AND {item_column} IN (SELECT id FROM _written)", [key])
            finally:
                self.con.unregister("_written")

    @_timed
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

    @_timed
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

    @_timed
    def add_llm_calls(self, calls: Iterable[LLMCall]) -> int:
        rows = [c.model_dump() for c in calls]
        with self.transaction():
            return self.insert_rows("llm_calls", rows)

    # -- reads -----------------------------------------------------------------------------

    @_timed
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            return self.con.execute(sql, params or []).fetchall()
        except BaseException:
            self._abandon()
            raise

    @_timed
    def query_column(self, sql: str, params: Sequence[Any] | None = None) -> pa.ChunkedArray:
        """The first column of ``sql``'s result, in Arrow. For a long list of ids: Arrow holds
        each in its bytes plus a 4-byte offset (~68 for a 64-character id), a Python list ~121
        (the str object and its slot), and fetchall a tuple per row besides."""
        try:
            table = self.con.sql(sql, params=list(params or [])).to_arrow_table()
        except (RuntimeError, duckdb.Error) as exc:
            self._abandon()
            self.con._reraise(exc)
        except BaseException:
            self._abandon()
            raise
        return table.column(0)

    @_timed
    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        try:
            cur = self.con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Drop what is left of a statement's result after it was interrupted (Ctrl-C, an
        error while fetching): until then DuckDB refuses any other work on the connection, so
        the rollback or the run's final status would fail in place of the interruption."""
        try:
            self.con.abort()
        except Exception:  # noqa: BLE001 - nothing pending, or the connection is gone
            pass

    @_timed
    def query_ids(self, sql: str, ids: Sequence[str], params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` with the table ``_want(id)`` holding ``ids`` (for joins on many ids)."""
        if not ids:
            return []
        self.con.register("_want", pa.table({"id": list(ids)}))
        try:
            return self.query_dicts(sql, params)
        finally:
            self.con.unregister("_want")

    @_timed
    def rows_by_ids(self, table: str, ids: Sequence[str], columns: str = "*") -> list[dict[str, Any]]:
        """Rows of ``table`` whose id is in ``ids``, in id order."""
        cols = ", ".join(f"t.{c.strip()}" for c in columns.split(",")) if columns != "*" else "t.*"
        return self.query_ids(f"SELECT {cols} FROM {table} t JOIN _want w ON t.id = w.id ORDER BY t.id", ids)

    @_timed
    def cached_calls(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Ledger rows for the given call keys.

        Looked up through the table's key index, each key once and up to a thousand at a
        time: the cost is per key asked, where a join with the keys would scan the whole
        ledger, which grows with every call a build makes."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), _INDEX_LOOKUP_KEYS):
            part = wanted[i : i + _INDEX_LOOKUP_KEYS]
            marks = ",".join("?" * len(part))
            for row in self.query_dicts(f"SELECT * EXCLUDE (created_at) FROM llm_calls WHERE key IN ({marks})", part):
                found[row["key"]] = row
        return found

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, run_id: str, config: dict[str, Any]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, 'running', ?, NULL)",
                [run_id, _now(), json.dumps(config, sort_keys=True, default=str)],
            )

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        self._abandon()  # it may follow an interruption anywhere
        with self.transaction():
            self.con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary_json = ? WHERE run_id = ?",
                [_now(), status, json.dumps(summary, sort_keys=True, default=str), run_id],
            )


@dataclass(frozen=True)
class LockHolder:
    """The process holding a DuckDB file's lock, as far as it can be told."""

    pid: int | None
    command: str  # its command line (shortened), or the executable DuckDB names
    mode: str  # "read", "write", or "" when unknown

    @property
    def reading(self) -> bool:
        return self.mode == "read"

    @property
    def writing(self) -> bool:
        return self.mode == "write"

    def __str__(self) -> str:
        if self.pid is None:
            return "a process" + (f" ({self.command})" if self.command else "")
        return f"process {self.pid}" + (f" (`{self.command}`)" if self.command else "")


_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
_COMMAND_CHARS = 100


def lock_holder(path: Path, duckdb_message: str) -> LockHolder:
    """Who holds ``path``, from DuckDB's lock error (which names the holder's executable and
    pid) and, on Linux, the holder's command line and the kind of its lock (/proc)."""
    m = _HOLDER.search(duckdb_message)
    if not m:
        return LockHolder(None, "", "")
    pid = int(m.group(2))
    return LockHolder(pid, _command_line(pid) or m.group(1), _lock_mode(path, pid))


def _command_line(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return ""
    words = [os.path.basename(argv[0].decode(errors="replace"))] + [a.decode(errors="replace") for a in argv[1:]]
    line = " ".join(words)
    return line if len(line) <= _COMMAND_CHARS else line[:_COMMAND_CHARS - 3] + "..."


def _lock_mode(path: Path, pid: int) -> str:
    """The POSIX lock ``pid`` holds on the file, "read" or "write" ("" if unknown), from
    /proc/locks: reading it, unlike asking fcntl, opens nothing (closing any descriptor of a
    file drops every POSIX lock this process holds on it)."""
    try:
        inode = path.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  READ 30569 fe:00:2286340 0 EOF"; waiters have "->" after the number.
        if len(fields) < 6 or fields[1] == "->":
            continue
        if fields[4] == str(pid) and fields[5].rsplit(":", 1)[-1] == str(inode):
            return fields[3].lower() if fields[3] in ("READ", "WRITE") else ""
    return ""


class _Connection:
    """A DuckDB connection whose calls raise a Ctrl-C as KeyboardInterrupt.

    DuckDB turns a SIGINT that arrives during any of its calls into an exception of its own
    (a RuntimeError "Query interrupted"; InterruptException for ``interrupt()``), and then
    refuses other work on the connection while that statement's result is pending. Callers
    (the flow, Prefect, the CLI) stop on KeyboardInterrupt as on any Ctrl-C, and the store's
    cleanup (rollback, the run's final status) must still work, so the pending result is
    dropped first. Cursors it hands out are wrapped the same way."""

    __slots__ = ("_con",)

    def __init__(self, con: Any) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._con, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                out = attr(*args, **kwargs)
            except (RuntimeError, duckdb.Error) as exc:
                self._reraise(exc)
            if out is self._con:  # execute() returns the connection itself
                return self
            return _Connection(out) if isinstance(out, duckdb.DuckDBPyConnection) else out

        return call

    def execute_over(self, sql: str, params: Sequence[Any] | None, _arrow: pa.Table) -> None:
        """Execute ``sql``, which reads the Arrow table ``_arrow`` by that name.

        DuckDB finds the name among the locals of the frame that calls ``execute`` (a
        replacement scan), which spares the register and unregister calls: about a third of
        a shard's insert time."""
        try:
            self._con.execute(sql, params)
        except (RuntimeError, duckdb.Error) as exc:
            self._reraise(exc)

    def _reraise(self, exc: BaseException) -> NoReturn:
        if isinstance(exc, duckdb.InterruptException) or (
                type(exc) is RuntimeError and str(exc) == "Query interrupted"):
            try:
                self._con.abort()
            except Exception:  # noqa: BLE001 - nothing pending
                pass
            raise KeyboardInterrupt("interrupted during a database statement") from exc
        if isinstance(exc, duckdb.OutOfMemoryException) or "could not allocate block" in str(exc) \
                or "failed to pin block" in str(exc):
            raise StoreOutOfMemory(
                f"the database needed more memory than DuckDB may use here: {_duckdb_detail(exc)} (the limit "
                "is storage.store.MEMORY_LIMIT plus room for the key indexes; the work committed before is kept)"
            ) from exc
        if _NO_SPACE in str(exc):
            raise StoreFull(f"the disk is full: {_duckdb_detail(exc)}; free space there and run again "
                            "(the work committed before is kept)") from exc
        raise exc


_NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as DuckDB quotes the OS


def _parse_bytes(text: str) -> int:
    """A memory size as DuckDB takes it ("512MB", "2 GiB", "1000000B") in bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = (match.group(2) or "B").upper() if match else ""
    if match is None or unit not in _BYTE_UNITS:
        raise StoreError(f"memory limit {text!r} is not a size such as 512MB or 2GiB")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def _duckdb_detail(exc: BaseException) -> str:
    """DuckDB's message without its error-class prefixes ("TransactionContext Error: Failed
    to commit: Could not write file ..." -> "could not write file ...")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^(\w+ Error: )+", "", text)
    text = re.sub(r"^Failed to commit: ", "", text)
    return text[:1].lower() + text[1:]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
