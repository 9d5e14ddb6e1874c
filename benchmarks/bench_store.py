"""Store write throughput: io_pairs rows written shard by shard through ``Store.write_shards``
(as the flow writes them), then the funnel read. Goal: >= 200k rows/s.

    .venv/bin/python benchmarks/bench_store.py                      # 1000 shards x 1000 rows
    .venv/bin/python benchmarks/bench_store.py --rows 200000 --explore --json out.json

Two write patterns: one shard per commit (the flow's writer keeps up with the shard tasks) and
``--group`` shards per commit (it fell behind, and writes every shard finished meanwhile in one
transaction; the flow's window holds at most 2 x max_parallel_shards = 4 shards by default).
Each pattern ends with a ``CHECKPOINT`` (DuckDB folds its write-ahead log into the file, as it
does on its own inside the commit that takes the log past the store's ``CHECKPOINT_THRESHOLD``,
about every 750k rows here, and when the store is closed): its time is part of the write rate,
since every row written pays it once. Without it the figure depended on whether the run
happened to cross the threshold. Reported: rows/s over the whole run (with the closing
checkpoint, and before it) and per tenth of it (does the rate fall as the table grows? a tenth
holding a checkpoint shows it), the rate of writing stored shards again (the replace path), the
funnel read time, the memory DuckDB holds after it (against the store's limit), and where a
write's time goes (cProfile of a sample). ``--explore`` times the same appends on
scratch DuckDB files with the keyed schema the store had before (a VARCHAR primary key on the
ids), to show what dropping the keys bought.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.models import Outcome, ShardResult, mark_same_output  # noqa: E402
from storage.stats import funnel  # noqa: E402
from storage.store import Store  # noqa: E402

CONFIG_KEY = "0123456789abcdef"
PAIRS_PER_FUNCTION = 3


def make_shard(n: int, rows: int) -> ShardResult:
    """Shard ``n``: ``rows`` io_pairs of functions with 3 pairs each, one outcome per function.

    The flow cuts a stage's sorted pending ids into consecutive shards, so shard ``n``'s
    function ids all sort after shard ``n - 1``'s: a shard-number prefix does the same here.
    """
    pairs, outcomes = [], []
    for j in range(rows):
        digest = hashlib.sha256(f"function {n} {j // PAIRS_PER_FUNCTION}".encode()).hexdigest()
        function_id = f"{n:08x}{digest[8:]}"
        pairs.append({
            "id": hashlib.sha256(f"pair {n} {j}".encode()).hexdigest(),
            "function_id": function_id,
            "input_json": json.dumps({"nums": [j % 17, n % 13, 7], "k": j % 5}),
            "output_json": json.dumps([j % 17, 7]),
            "ordinal": j % PAIRS_PER_FUNCTION,
        })
        if j % PAIRS_PER_FUNCTION == 0:
            outcomes.append(Outcome(item_id=function_id, status="ok", detail="3 pairs"))
    mark_same_output(pairs)  # as sample_io writes them
    return ShardResult(stage="sample_io", config_key=CONFIG_KEY, rows={"io_pairs": pairs}, outcomes=outcomes)


def bench_writes(store: Store, shards: int, rows: int, group: int, first: int = 0) -> dict[str, Any]:
    """Write shards ``first`` .. ``first + shards - 1``, ``group`` per transaction."""
    total, marks = 0.0, []
    lap_rows, lap_time, tenth = 0, 0.0, max(group, (shards // 10) // group * group)
    for n in range(0, shards, group):
        batch = [make_shard(first + k, rows) for k in range(n, min(n + group, shards))]  # not timed
        start = time.perf_counter()
        store.write_shards(batch)
        took = time.perf_counter() - start
        total += took
        lap_rows += rows * len(batch)
        lap_time += took
        if (n + len(batch)) % tenth == 0 or n + len(batch) == shards:
            marks.append({"rows_stored": (first + n + len(batch)) * rows, "rows_per_s": round(lap_rows / lap_time)})
            print(f"  {(first + n + len(batch)) * rows:>9} rows stored: {lap_rows / lap_time:>9.0f} rows/s", flush=True)
            lap_rows, lap_time = 0, 0.0
    start = time.perf_counter()
    store.con.execute("CHECKPOINT")
    fold = time.perf_counter() - start
    print(f"  checkpoint (the log folded into the file): {fold:.2f} s", flush=True)
    return {"rows": shards * rows, "shards_per_commit": group, "seconds": round(total + fold, 2),
            "rows_per_s": round(shards * rows / (total + fold)), "checkpoint_s": round(fold, 2),
            "commits_rows_per_s": round(shards * rows / total), "by_tenth": marks}


def bench_rewrite(store: Store, shards: int, rows: int, sample: int) -> dict[str, Any]:
    """Write shards that are already stored again: their items' rows and outcomes are replaced."""
    picks = [round(i * (shards - 1) / max(1, sample - 1)) for i in range(sample)]
    total = 0.0
    for n in picks:
        shard = make_shard(n, rows)
        start = time.perf_counter()
        store.write_shard(shard)
        total += time.perf_counter() - start
    return {"rows": sample * rows, "seconds": round(total, 2), "rows_per_s": round(sample * rows / total)}


def profile_writes(store: Store, first: int, count: int, rows: int) -> list[dict[str, Any]]:
    """cProfile of one write of ``count`` shards: the functions where the time goes."""
    shards = [make_shard(first + i, rows) for i in range(count)]
    profiler = cProfile.Profile()
    profiler.enable()
    store.write_shards(shards)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "write_shards")  # type: ignore[attr-defined]
    rows_out = []
    for (file, line, name), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if cumtime >= 0.02 * total:
            rows_out.append({"function": f"{Path(file).name}:{line}({name})", "own_s": round(tottime, 3),
                             "cumulative_s": round(cumtime, 3), "share": round(cumtime / total, 3)})
    return sorted(rows_out, key=lambda r: -r["cumulative_s"])[:12]


# -- alternatives, on scratch files -------------------------------------------------------------

_COLUMNS = "id, config_key, function_id, input_json, output_json, ordinal"
_DDL = ("CREATE TABLE io_pairs (id VARCHAR {pk}, config_key VARCHAR NOT NULL, function_id VARCHAR NOT NULL, "
        "input_json VARCHAR NOT NULL, output_json VARCHAR NOT NULL, ordinal INTEGER NOT NULL, "
        "created_at TIMESTAMP DEFAULT current_timestamp)")
VARIANTS = {  # name: (primary key clause, statement, shards per commit)
    "keyed (schema 1): VARCHAR PRIMARY KEY, 1 shard/commit": ("PRIMARY KEY", "INSERT OR REPLACE", 1),
    "keyed (schema 1): VARCHAR PRIMARY KEY, 4 shards/commit": ("PRIMARY KEY", "INSERT OR REPLACE", 4),
    "append-only (schema 2), 1 shard/commit": ("", "INSERT", 1),
    "append-only (schema 2), 4 shards/commit": ("", "INSERT", 4),
}


def explore(rows_total: int, rows: int) -> dict[str, int]:
    """rows/s of io_pairs appends alone (no outcomes, no checks) under each variant."""
    import duckdb
    import pyarrow as pa

    shards = rows_total // rows
    tables = []
    for n in range(shards):
        pairs = make_shard(n, rows).rows["io_pairs"]
        tables.append(pa.table({
            "id": [p["id"] for p in pairs], "config_key": [CONFIG_KEY] * rows,
            "function_id": [p["function_id"] for p in pairs], "input_json": [p["input_json"] for p in pairs],
            "output_json": [p["output_json"] for p in pairs], "ordinal": [p["ordinal"] for p in pairs],
        }))
    results = {}
    for name, (pk, verb, group) in VARIANTS.items():
        folder = tempfile.mkdtemp(prefix="codeio-bench-store-")
        con = duckdb.connect(os.path.join(folder, "x.duckdb"))
        try:
            con.execute(_DDL.format(pk=pk))
            sql = f"{verb} INTO io_pairs ({_COLUMNS}) SELECT {_COLUMNS} FROM _incoming"
            start = time.perf_counter()
            for i in range(0, shards, group):
                con.execute("BEGIN TRANSACTION")
                con.register("_incoming", pa.concat_tables(tables[i : i + group]))
                con.execute(sql)
                con.unregister("_incoming")
                con.execute("COMMIT")
            results[name] = round(shards * rows / (time.perf_counter() - start))
        finally:
            con.close()
            shutil.rmtree(folder, ignore_errors=True)
        print(f"  {name:<56} {results[name]:>9} rows/s", flush=True)
    return results


def bench_ledger(rows: int, batch: int = 20_000) -> dict[str, Any]:
    """``rows`` llm_calls rows through ``Store.insert_rows``, ``batch`` per commit, on a
    scratch file with the store's default memory limit. DuckDB holds the table's key index
    whole in its memory: does a paper-scale ledger (~7M calls) fit, and at what limit and RSS?"""
    folder = tempfile.mkdtemp(prefix="codeio-bench-ledger-")
    written, start = 0, time.perf_counter()
    try:
        with Store(Path(folder) / "ledger.duckdb") as store:
            print(f"writing {rows} ledger rows, {batch} per commit")
            for first in range(0, rows, batch):
                keys = [hashlib.sha256(f"call {i}".encode()).hexdigest() for i in range(first, min(first + batch, rows))]
                with store.transaction():
                    store.insert_rows("llm_calls", [{"key": k, "model": "m", "stage": "answer", "content": "x" * 200,
                                                     "truncated": False, "latency_s": 0.1} for k in keys], upsert=False)
                written += len(keys)
            limit = store.query("SELECT current_setting('memory_limit')")[0][0]
            index = store.query("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'ART_INDEX'")[0][0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    figures = {"rows": written, "seconds": round(seconds, 1), "rows_per_s": round(written / seconds),
               "memory_limit": limit, "index_mb": round(index / 2**20), "index_bytes_per_key": round(index / written),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(f"ledger: {written} rows in {seconds:.0f} s ({figures['rows_per_s']} rows/s); key index "
          f"{figures['index_mb']} MB ({figures['index_bytes_per_key']} bytes a key); DuckDB's memory limit "
          f"grew to {limit}; peak RSS of this process {figures['peak_rss_mb']} MB")
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="io_pairs rows to write per pattern")
    p.add_argument("--shard-rows", type=int, default=1000, help="rows per shard")
    p.add_argument("--group", type=int, default=4, help="shards per commit when the writer is behind")
    p.add_argument("--rewrite-shards", type=int, default=20, help="stored shards to write again")
    p.add_argument("--profile-shards", type=int, default=4)
    p.add_argument("--explore", action="store_true", help="also time the previous keyed schema")
    p.add_argument("--explore-rows", type=int, default=200_000)
    p.add_argument("--threads", type=int, default=1,
                   help="DuckDB threads (the flow's store uses 1: the cores belong to the sandbox)")
    p.add_argument("--ledger", type=int, default=0, metavar="N",
                   help="also write N LLM ledger rows (a keyed table) at the default memory limit")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="codeio-bench-store-")
    report: dict[str, Any] = {"benchmark": "store", "goal_rows_per_s": 200_000, "shard_rows": args.shard_rows}
    shards = args.rows // args.shard_rows
    try:
        for name, group in (("write_one_per_commit", 1), ("write_grouped", args.group)):
            path = Path(folder) / f"{name}.duckdb"
            store = Store(path, threads=args.threads)
            print(f"writing {shards * args.shard_rows} io_pairs rows in {shards} shards of {args.shard_rows}, "
                  f"{group} shard(s) per commit")
            report[name] = bench_writes(store, shards, args.shard_rows, group)
            if group == 1:
                report["rewrite"] = bench_rewrite(store, shards, args.shard_rows, args.rewrite_shards)
                start = time.perf_counter()
                frame = funnel(store, {"sample_io": CONFIG_KEY})
                report["funnel"] = {"seconds": round(time.perf_counter() - start, 3),
                                    "outcomes": int(frame["count"].sum())}
                report["profile"] = profile_writes(store, shards, args.profile_shards, args.shard_rows)
                report["duckdb_memory_mb"] = round(
                    store.query("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")[0][0] / 2**20, 1)
                report["duckdb_memory_limit"] = store.query("SELECT current_setting('memory_limit')")[0][0]
            store.close()
            report[f"{name}_db_mb"] = round(os.path.getsize(path) / 2**20, 1)
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    one, grouped = report["write_one_per_commit"], report["write_grouped"]
    print(f"write (checkpoint included): {one['rows_per_s']} rows/s one shard per commit, {grouped['rows_per_s']} "
          f"rows/s {args.group} per commit, over {one['rows']} rows (goal 200000); before the closing checkpoint "
          f"{one['commits_rows_per_s']} and {grouped['commits_rows_per_s']} rows/s; stored shards written again: "
          f"{report['rewrite']['rows_per_s']} rows/s; funnel read: {report['funnel']['seconds']} s "
          f"({report['funnel']['outcomes']} outcomes); database {report['write_one_per_commit_db_mb']} MB, "
          f"DuckDB's memory after the funnel {report['duckdb_memory_mb']} MB (limit {report['duckdb_memory_limit']})")
    print("where a write goes (cProfile; DuckDB's own calls are not visible to it and count as "
          "the own time of the store method that makes them):")
    for row in report["profile"]:
        print(f"  {row['share']:6.1%}  cumulative {row['cumulative_s']:7.3f} s  own {row['own_s']:7.3f} s  "
              f"{row['function']}")
    if args.ledger:
        report["ledger"] = bench_ledger(args.ledger)
    if args.explore:
        print(f"io_pairs appends alone ({args.explore_rows} rows, shards of {args.shard_rows}, scratch files):")
        report["explore"] = explore(args.explore_rows, args.shard_rows)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
