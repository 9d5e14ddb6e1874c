"""End-to-end build cost: `codeio run` over N prediction tasks against a local LLM stand-in.

The corpus is synthetic functions in the released unified shape (refcode + recorded ios), so
no transform call is needed: each function brings ``--pairs`` recorded pairs (re-verified in
the sandbox), each pair gives an input- and an output-prediction task, and the test server
(``llm.testserver`` with the reliability suite's script, fixed latency) answers every task,
wrong on turn 1 for about a third of them, so the revision turn runs too. Each build runs in
its own `codeio run` process against one shared Prefect server. Reported per size: wall time,
time per task, peak RSS of the flow process, Prefect task runs, LLM calls, executions, stage
seconds, the time the flow spent in the store, and an estimate of the orchestration overhead.

    .venv/bin/python benchmarks/bench_pipeline.py                     # 1k and 10k tasks
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 1000,10000,100000 --json out.json

Overhead estimate: per stage, what it took beyond its floor, plus the flow's time outside
the stages and the process's start-up and shut-down. A stage's floor is the larger of the
ideal endpoint time (latency x calls / requests in flight) and the time executing code needs
at least: the CPU seconds the sandbox pool used during the stage (reported by the build)
plus the LLM stand-in's CPU for the stage's calls (the endpoint's work, remote in
production), over the cores the sandbox may use. What is left is Prefect, the store, prompt
rendering, the LLM and sandbox clients, answer parsing and the glue between them, and idle
time. As a cross-check the script also prints the overhead with sandbox floors from the
pool's calls per second, measured apart on the same functions right before the build (as
in earlier versions of this script; noisier, since it is a separate two-second sample).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from llm.testserver import serve  # noqa: E402
from reliability_helpers import FAMILIES, FAMILY_ORDER, PrefectServer, cli_env, llm_script  # noqa: E402

CODEIO = str(Path(sys.executable).parent / "codeio")


def _function(i: int, pairs: int, rng: random.Random) -> dict[str, Any]:
    """Function ``i`` in the released CodeI/O shape, with ``pairs`` recorded input/output pairs."""
    family = FAMILY_ORDER[i % len(FAMILY_ORDER)]
    k = 1 + i % 5 if family == "topk" else i + 2
    refcode = f"# variant {i}\n" + FAMILIES[family][0].format(k=k)
    namespace: dict[str, Any] = {}
    exec(refcode, namespace)  # our own synthetic code: computes the recorded outputs
    inputs: dict[str, dict] = {}
    while len(inputs) < pairs:
        if family == "linear":
            args = {"x": rng.randint(-50, 50), "y": rng.randint(-50, 50)}
        elif family == "reverse":
            args = {"word": "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))}
        else:
            args = {"nums": [rng.randint(-9, 30) for _ in range(rng.randint(1, 7))]}
        inputs[json.dumps(args, sort_keys=True)] = args
    return {
        "refcode": refcode,
        "funcname": "main_solution",
        "problem_description": f"Function {i} of the {family} family: given its arguments, what does it return?",
        "io_requirements": "Input: the arguments of main_solution (small ints, short words or short lists).\n"
                           "Output: its JSON-serializable return value.",
        "ios": [{"input": args, "output": namespace["main_solution"](**args)} for args in inputs.values()],
    }


def write_corpus(path: Path, tasks: int, pairs: int, seed: int = 0) -> int:
    """A JSONL file of unified records giving ``tasks`` prediction tasks; returns functions."""
    functions = max(1, tasks // (2 * pairs))
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(functions):
            fh.write(json.dumps(_function(i, pairs, rng)) + "\n")
    return functions


def _hwm_kb(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of a live process (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _machine_busy_s() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def sandbox_rates(pairs: int, workers: int | None, seconds: float = 2.0) -> dict[str, float]:
    """Calls per second of a pool as wide as the build's on the benchmark's functions, as the stages run
    them: one job per function with its pairs (sample_io, the pool's own hash seed), the same
    under the second hash seed (the determinism check, as many workers), and one call per
    job (verifying input predictions)."""
    from sandbox import Job, Limits, SandboxPool

    rng = random.Random(1)
    records = [_function(i, pairs, rng) for i in range(100)]
    per_function = [Job(r["refcode"], [io["input"] for io in r["ios"]], limits=Limits()) for r in records]
    single = [Job(r["refcode"], [io["input"]], limits=Limits()) for r in records for io in r["ios"][:2]]
    rates = {}
    with SandboxPool(workers=workers) as pool:
        for name, jobs, seed in (("sample", per_function, None), ("second_seed", per_function, 1),
                                 ("verify", single, None)):
            pool.run_many(jobs[:4], hash_seed=seed)  # warm (starts the second-seed worker)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                pool.run_many(jobs, hash_seed=seed)
                calls += sum(len(j.calls) for j in jobs)
            rates[name] = calls / (time.perf_counter() - start)
    return rates


def sandbox_seconds(stage: str, st: dict[str, Any], rates: dict[str, float]) -> float:
    """Estimated sandbox time of one stage from its execution counter: sample_io's are half
    first runs and half determinism re-runs; the answer stages' are single-call verifications."""
    n = st.get("executions", 0)
    if stage == "sample_io":
        return n / 2 / rates["sample"] + n / 2 / rates["second_seed"]
    return n / rates["verify"]


def endpoint_seconds(st: dict[str, Any], latency: float, concurrency: int, parallel: int) -> float:
    """Ideal time waiting on the endpoint: every call takes ``latency``, and as many are in
    flight as the build's concurrency bound and the shards running at once allow (each shard
    sends at most its own rows)."""
    sent = st.get("llm_calls_sent", 0)
    shards = max(1, st.get("shards", 1))
    per_shard = max(1, st.get("rows_in", 0) // shards)
    return latency * sent / min(concurrency, per_shard * min(parallel, shards))


def run_build(tasks: int, args: argparse.Namespace, base_url: str, prefect_url: str, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "functions.jsonl"
    functions = write_corpus(corpus, tasks, args.pairs)
    config = {
        "sources": [{"path": str(corpus), "name": "bench", "kind": "curated", "format": "unified",
                     "pairs_per_function": args.pairs}],
        "db_path": str(work / "db" / "codeio.duckdb"),
        "output_dir": str(work / "out"),
        "shard_size": args.shard_size,
        "max_parallel_shards": args.parallel_shards,
        "provider": "http",
        "llm": {"base_url": base_url, "model": "bench-model", "api_key_env": None,
                "max_concurrency": args.concurrency, "timeout_s": 120.0},
        "sandbox": {"workers": args.sandbox_workers},
        "prediction": {"revision_turns": 1},
    }
    (work / "build.json").write_text(json.dumps(config, indent=2))
    env = cli_env(work / "prefect-home", prefect_url)
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    start = time.perf_counter()
    busy_start, self_start = _machine_busy_s(), time.process_time()
    with open(work / "stdout.json", "wb") as out, open(work / "stderr.log", "wb") as err:
        proc = subprocess.Popen([CODEIO, "run", "--config", str(work / "build.json"), "--json"],
                                stdout=out, stderr=err, env=env, cwd=work)
        peak, flow_cpu = 0, (0.0, 0.0)
        while proc.poll() is None:
            peak = max(peak, _hwm_kb(proc.pid) or 0)
            flow_cpu = _cpu_s(proc.pid) or flow_cpu
            time.sleep(0.1)
    wall = time.perf_counter() - start
    cpu = {"flow_process_s": sum(flow_cpu),
           "flow_process_system_s": flow_cpu[1],
           "benchmark_process_s": time.process_time() - self_start,  # the LLM stand-in, mostly
           "machine_busy_s": _machine_busy_s() - busy_start,
           "machine_capacity_s": wall * (os.cpu_count() or 1)}
    if proc.returncode != 0:
        raise RuntimeError(f"build of {tasks} tasks failed: {(work / 'stderr.log').read_text()[-2000:]}")
    summary = json.loads((work / "stdout.json").read_text())
    return {"tasks_requested": tasks, "functions": functions, "wall_s": wall, "peak_rss_mb": peak / 1024,
            "cpu": cpu, "summary": summary, "sandbox_workers": config["sandbox"]["workers"],
            # Disk: the database, and the shard results Prefect keeps as its cache (result_cache).
            "db_mb": _tree_mb(work / "db"), "result_cache_mb": _tree_mb(work / "prefect-home" / "storage")}


def _tree_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def figures(run: dict[str, Any], latency: float, concurrency: int, parallel: int,
            rates: dict[str, float]) -> dict[str, Any]:
    """The figures of one build. Per stage the floor is the larger of its ideal endpoint time
    and its estimated sandbox time (shards in parallel overlap the two); the overhead estimate
    is what the stages took beyond their floors, plus the flow time outside any stage (the
    export and the glue), plus process start-up and shut-down (Prefect client, flow run)."""
    s = run["summary"]
    stages = s["stages"]
    tasks = stages.get("answer", {}).get("rows_in", 0)
    endpoint = {k: endpoint_seconds(v, latency, concurrency, parallel) for k, v in stages.items()}
    cores = min(os.cpu_count() or 1, run["sandbox_workers"] or os.cpu_count() or 1)
    calls = max(1.0, sum(v.get("llm_calls_sent", 0) for v in stages.values()))
    stand_in = run["cpu"]["benchmark_process_s"]
    # Executing code takes at least the sandbox's CPU time spread over its cores; the LLM
    # stand-in's CPU is the endpoint's work (remote in production), shared out by calls.
    sandbox = {k: (v.get("sandbox_cpu_seconds", 0.0) + stand_in * v.get("llm_calls_sent", 0) / calls) / cores
               for k, v in stages.items()}
    from_rates = {k: sandbox_seconds(k, v, rates) for k, v in stages.items()}
    in_stages = sum(v.get("seconds", 0.0) for v in stages.values())
    beyond_floor = sum(max(0.0, v.get("seconds", 0.0) - max(endpoint[k], sandbox[k])) for k, v in stages.items())
    outside_stages = max(0.0, s["seconds"] - in_stages)
    startup = run["wall_s"] - s["seconds"]
    overhead = beyond_floor + outside_stages + startup
    return {
        "tasks": tasks,
        "functions": run["functions"],
        "wall_s": round(run["wall_s"], 2),
        "flow_s": s["seconds"],
        "ms_per_task": round(1000 * run["wall_s"] / max(1, tasks), 3),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "db_mb": round(run["db_mb"], 1),
        "result_cache_mb": round(run["result_cache_mb"], 1),
        "task_runs": s["task_runs"],
        "llm_calls_sent": int(s["llm_calls_sent"]),
        "executions": int(s["executions"]),
        "stage_seconds": {k: v.get("seconds", 0.0) for k, v in stages.items()},
        "stage_floor_s": {k: round(max(endpoint[k], sandbox[k]), 2) for k in stages},
        "stage_flow_cpu_s": {k: v.get("cpu_seconds", 0.0) for k, v in stages.items()},
        # The flow's time in the database (pending rows, shard inputs, ledger look-ups, commits),
        # part of the overhead: how much the store's speed weighs on a build.
        "stage_store_s": {k: v.get("store_seconds", 0.0) for k, v in stages.items()},
        "store_s": round(sum(v.get("store_seconds", 0.0) for v in stages.values()), 2),
        "store_share_of_wall": round(sum(v.get("store_seconds", 0.0) for v in stages.values()) / run["wall_s"], 4),
        "ideal_endpoint_s": round(sum(endpoint.values()), 2),
        "sandbox_floor_s": round(sum(sandbox.values()), 2),
        "sandbox_cpu_s": round(sum(v.get("sandbox_cpu_seconds", 0.0) for v in stages.values()), 1),
        "sandbox_estimate_from_rates_s": round(sum(from_rates.values()), 2),
        "overhead_share_with_rate_floors": round(
            (run["wall_s"] - s["seconds"] + outside_stages
             + sum(max(0.0, v.get("seconds", 0.0) - max(endpoint[k], from_rates[k])) for k, v in stages.items()))
            / run["wall_s"], 3),
        "stages_beyond_floor_s": round(beyond_floor, 2),
        "outside_stages_s": round(outside_stages, 2),
        "startup_and_shutdown_s": round(startup, 2),
        "orchestration_overhead_s": round(overhead, 2),
        "overhead_share": round(overhead / run["wall_s"], 3),
        "overhead_ms_per_task_run": round(1000 * beyond_floor / max(1, s["task_runs"]), 1),
        # Where the machine's CPU went: the flow process (Prefect, the store, prompts, the LLM
        # client, the sandbox pool's client side), the benchmark process (the LLM stand-in) and
        # the rest (sandbox workers and their children, the Prefect server, other load).
        "cpu_s": {k: round(v, 1) for k, v in run["cpu"].items()},
        "flow_cpu_ms_per_task": round(1000 * run["cpu"]["flow_process_s"] / max(1, tasks), 3),
        "flow_cpu_share_of_machine": round(run["cpu"]["flow_process_s"] / run["cpu"]["machine_capacity_s"], 3),
        "machine_busy_share": round(run["cpu"]["machine_busy_s"] / run["cpu"]["machine_capacity_s"], 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="prediction tasks per build, comma-separated "
                   "(100k: --sizes 1000,10000,100000)")
    p.add_argument("--latency", type=float, default=0.05, help="seconds the test server waits per answer")
    p.add_argument("--concurrency", type=int, default=64, help="LLM requests in flight (the build's bound)")
    p.add_argument("--shard-size", type=int, default=500)
    p.add_argument("--parallel-shards", type=int, default=2)
    p.add_argument("--pairs", type=int, default=5, help="recorded pairs per function")
    p.add_argument("--sandbox-workers", type=int, default=None,
                   help="sandbox worker processes per hash seed (default: the pool's, one per core)")
    p.add_argument("--prefect-api-url", help="use this Prefect server instead of starting one")
    p.add_argument("--keep", action="store_true", help="keep the build directories")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    prefect_url = args.prefect_api_url or PrefectServer.shared().api_url
    results = []
    root = Path(tempfile.mkdtemp(prefix="codeio-bench-pipeline-"))
    with serve(llm_script, latency_s=args.latency) as server:
        for n in sizes:
            rates = sandbox_rates(args.pairs, args.sandbox_workers)  # right before the build: the machine's load varies
            run = run_build(n, args, server.base_url, prefect_url, root / f"n{n}")
            fig = figures(run, args.latency, args.concurrency, args.parallel_shards, rates)
            fig["sandbox_calls_per_s"] = {k: round(v, 1) for k, v in rates.items()}
            results.append(fig)
            print(f"{fig['tasks']:>7} tasks: wall {fig['wall_s']:7.1f} s ({fig['ms_per_task']:.2f} ms/task; flow "
                  f"{fig['flow_s']:.1f} s), peak RSS {fig['peak_rss_mb']:.0f} MB, {fig['task_runs']} task runs, "
                  f"{fig['llm_calls_sent']} LLM calls, {fig['executions']} executions", flush=True)
            print(f"         overhead estimate {fig['orchestration_overhead_s']:.1f} s "
                  f"({fig['overhead_share']:.0%} of wall): stages beyond their floor {fig['stages_beyond_floor_s']:.1f} s "
                  f"({fig['overhead_ms_per_task_run']:.0f} ms/task run), outside stages {fig['outside_stages_s']:.1f} s, "
                  f"start-up/shut-down {fig['startup_and_shutdown_s']:.1f} s; floors: endpoint "
                  f"{fig['ideal_endpoint_s']:.1f} s, sandbox {fig['sandbox_floor_s']:.1f} s "
                  f"({fig['sandbox_cpu_s']:.0f} CPU-s); with floors from pool rates measured apart "
                  f"({fig['sandbox_estimate_from_rates_s']:.1f} s): {fig['overhead_share_with_rate_floors']:.0%}",
                  flush=True)
            print("         stage seconds (floor; flow CPU): " + ", ".join(
                f"{k} {v:.1f} ({fig['stage_floor_s'][k]:.1f}; {fig['stage_flow_cpu_s'][k]:.1f})"
                for k, v in fig["stage_seconds"].items()))
            print(f"         store (reads and commits, in the stages): {fig['store_s']:.1f} s = "
                  f"{fig['store_share_of_wall']:.1%} of wall; on disk: database {fig['db_mb']:.0f} MB, "
                  f"Prefect's result cache {fig['result_cache_mb']:.0f} MB", flush=True)
            c = fig["cpu_s"]
            print(f"         CPU: machine busy {fig['machine_busy_share']:.0%} of {c['machine_capacity_s']:.0f} core-s; "
                  f"flow process {c['flow_process_s']:.1f} s ({c['flow_process_system_s']:.1f} system; "
                  f"{fig['flow_cpu_ms_per_task']:.2f} ms/task, "
                  f"{fig['flow_cpu_share_of_machine']:.0%} of the machine), LLM stand-in {c['benchmark_process_s']:.1f} s, "
                  f"rest {c['machine_busy_s'] - c['flow_process_s'] - c['benchmark_process_s']:.1f} s", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    report = {"benchmark": "pipeline", "latency_s": args.latency, "concurrency": args.concurrency,
              "shard_size": args.shard_size, "parallel_shards": args.parallel_shards,
              "builds": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
