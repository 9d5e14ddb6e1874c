"""Sandbox throughput: warm pool (all protections on) against one fresh interpreter per call.

The naive way is what a pipeline without a pool would do: ``python -c`` per call, importing
the same modules (numpy included), running the function and printing its JSON. Both sides
run the same calls with the same concurrency (one per worker). Prints calls/s and the ratio,
and also the CPU time and the page faults per call summed over every process involved (pool,
workers, job processes, children), with ``--calls-per-job`` calls per job and with one: CPU
time is distorted far less than wall-clock rates by other load on the machine, and the page
faults not at all; ``--json PATH`` also writes the figures.

    .venv/bin/python benchmarks/bench_sandbox.py [--calls 2000] [--naive-calls 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import Job, Limits, SandboxPool  # noqa: E402

CODE = """
import math

def main_solution(n, values):
    total = sum(v * v for v in values)
    return {"n": n, "norm": round(math.sqrt(total), 6), "top": sorted(values)[-3:]}
"""

NAIVE = """
import json, sys
import math, itertools, collections, heapq, bisect, functools, re, string, copy, datetime, random
import operator, typing, numpy
from pympler.asizeof import asizeof
request = json.loads(sys.stdin.read())
namespace = {"__name__": "__codeio__"}
exec(request["code"], namespace)
value = namespace["main_solution"](**request["call"])
assert asizeof(value) < 1024
print(json.dumps(value))
"""


def make_calls(count: int) -> list[dict]:
    return [{"n": i, "values": [(i * 7 + k) % 13 for k in range(6)]} for i in range(count)]


def bench_pool(pool: SandboxPool, calls: list[dict], per_job: int) -> tuple[float, int]:
    jobs = [Job(CODE, calls[i : i + per_job]) for i in range(0, len(calls), per_job)]
    start = time.perf_counter()
    results = pool.run_many(jobs)
    elapsed = time.perf_counter() - start
    ok = sum(r.status == "ok" for rs in results for r in rs)
    return len(calls) / elapsed, ok


def cpu_seconds() -> float:
    """CPU time of this process and of every descendant reaped so far."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def page_faults() -> int:
    """Minor page faults of this process and of every descendant reaped so far: a forked job
    process pays one for each page of its worker it writes to (the copy on write). Unlike CPU
    time, the count does not move with the machine's load."""
    return sum(u.ru_minflt for u in (resource.getrusage(resource.RUSAGE_SELF),
                                     resource.getrusage(resource.RUSAGE_CHILDREN)))


def pool_cost_per_call(workers: int | None, calls: list[dict], per_job: int) -> tuple[float, float]:
    """CPU seconds and page faults per call of a whole pool lifetime, less those of an idle
    pool's lifetime (startup)."""
    start, faults = cpu_seconds(), page_faults()
    SandboxPool(workers=workers).close()
    idle, idle_faults = cpu_seconds() - start, page_faults() - faults
    start, faults = cpu_seconds(), page_faults()
    with SandboxPool(workers=workers) as pool:
        bench_pool(pool, calls, per_job)
    return ((cpu_seconds() - start - idle) / len(calls),
            (page_faults() - faults - idle_faults) / len(calls))


def bench_naive(calls: list[dict], workers: int) -> tuple[float, int]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def one(call: dict) -> bool:
        done = subprocess.run([sys.executable, "-c", NAIVE], input=json.dumps({"code": CODE, "call": call}),
                              capture_output=True, text=True, env=env, timeout=60)
        return done.returncode == 0 and bool(done.stdout.strip())

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        ok = sum(executor.map(one, calls))
    return len(calls) / (time.perf_counter() - start), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls through the pool")
    parser.add_argument("--calls-per-job", type=int, default=10, help="calls sharing one program execution")
    parser.add_argument("--naive-calls", type=int, default=40, help="calls through fresh interpreters")
    parser.add_argument("--workers", type=int, default=None, help="pool workers (default: one per core)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    started = time.perf_counter()
    with SandboxPool(workers=args.workers, limits=Limits(cpu_seconds=5.0)) as pool:
        startup = time.perf_counter() - started
        bench_pool(pool, make_calls(4 * pool.workers), args.calls_per_job)  # warm up
        pool_rate, pool_ok = bench_pool(pool, make_calls(args.calls), args.calls_per_job)
        single = max(args.calls // 4, 1)
        single_rate, single_ok = bench_pool(pool, make_calls(single), 1)
        workers = pool.workers
        isolation = pool.isolation
    cpu_start = cpu_seconds()
    naive_rate, naive_ok = bench_naive(make_calls(args.naive_calls), workers)
    naive_cpu = (cpu_seconds() - cpu_start) / args.naive_calls
    pool_cpu, pool_faults = pool_cost_per_call(args.workers, make_calls(args.calls), args.calls_per_job)
    single_cpu, single_faults = pool_cost_per_call(args.workers, make_calls(single), 1)

    figures = {
        "workers": workers,
        "pool_startup_seconds": round(startup, 3),
        "pool_calls": args.calls,
        "calls_per_job": args.calls_per_job,
        "pool_calls_per_second": round(pool_rate, 1),
        "pool_single_call_jobs_per_second": round(single_rate, 1),
        "naive_calls": args.naive_calls,
        "naive_calls_per_second": round(naive_rate, 2),
        "speedup": round(pool_rate / naive_rate, 1),
        "speedup_single_call_jobs": round(single_rate / naive_rate, 1),
        "pool_cpu_ms_per_call": round(pool_cpu * 1000, 3),
        "pool_single_call_jobs_cpu_ms_per_call": round(single_cpu * 1000, 3),
        "naive_cpu_ms_per_call": round(naive_cpu * 1000, 2),
        "pool_page_faults_per_call": round(pool_faults),
        "pool_single_call_jobs_page_faults_per_call": round(single_faults),
        "cpu_speedup": round(naive_cpu / pool_cpu, 1),
        "all_ok": pool_ok == args.calls and single_ok == single and naive_ok == args.naive_calls,
        "isolation": {"network_namespace": isolation.network_namespace,
                      "unprivileged_user": isolation.unprivileged_user,
                      "filesystem_confined": isolation.filesystem_confined,
                      "reads_confined": isolation.reads_confined,
                      "signals_scoped": isolation.signals_scoped},
        "load_average": os.getloadavg()[0],
    }
    print(f"pool   : {pool_rate:8.1f} calls/s  ({args.calls} calls, {args.calls_per_job} per job, {workers} workers)")
    print(f"pool   : {single_rate:8.1f} calls/s  (one call per job)")
    print(f"naive  : {naive_rate:8.2f} calls/s  ({args.naive_calls} fresh interpreters, {workers} at a time)")
    print(f"speedup: {figures['speedup']}x  ({figures['speedup_single_call_jobs']}x with one call per job)")
    print(f"cpu    : {pool_cpu * 1000:.2f} ms/call (pool, all processes) vs {naive_cpu * 1000:.1f} ms/call (naive): "
          f"{figures['cpu_speedup']}x   [load average {figures['load_average']:.1f}]")
    print(f"cpu    : {single_cpu * 1000:.2f} ms/call (pool, one call per job)")
    print(f"faults : {pool_faults:.0f} page faults per call ({args.calls_per_job} per job), {single_faults:.0f} "
          f"with one call per job (all processes; steady where CPU time moves with the load)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
