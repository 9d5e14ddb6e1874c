"""Throughput and client CPU cost of the LLM client against the local test server.

N requests at concurrency C against a server that answers after L seconds: the ideal rate is
C / L. The server runs in its own process so its CPU is not counted as the client's.

    python benchmarks/bench_llm.py --n 2000 --latency 0.2 --concurrency 64 --json out.json
    python benchmarks/bench_llm.py --outage 200          # also: the same requests after an outage

Goal: >= 90% of the ideal rate and < 1 ms of client CPU per request.

``--outage N`` runs the same requests once more against a server that answers N requests in
a row with 503 right after the warm-up (a server restarting), with the client's default
settings, and reports how much longer they take than against the healthy server: the
rejected calls' backoff, and the requests held back while the admission limit comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llm import CachedProvider, HTTPProvider, JournalLedger, LLMSettings  # noqa: E402


def _start_server(latency_s: float, *extra: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "llm.testserver", "--port", "0", "--latency", str(latency_s), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("serving on "):
        server.kill()
        raise RuntimeError(f"test server did not start: {line!r}")
    return server, line.split()[-1]


def _process_cpu_s(pid: int) -> float | None:
    """utime + stime of another process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(base_url: str, n: int, concurrency: int, journal: Path | None) -> dict:
    settings = LLMSettings(
        base_url=base_url, model="test-model", api_key_env=None, max_concurrency=concurrency, timeout_s=60
    )
    filler = "x" * 400  # a prompt of realistic-ish size

    def batch(tag: str, count: int) -> list:
        return [
            settings.request([{"role": "user", "content": f"{tag} {i} {filler}"}], stage="bench")
            for i in range(count)
        ]

    async with HTTPProvider(settings) as http:
        provider = http if journal is None else CachedProvider(http, JournalLedger(journal))
        await provider.complete(batch("warmup", concurrency))  # open the connections
        requests = batch("run", n)
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        results = await provider.complete(requests)
        wall, usage1 = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
        final_limit = http.concurrency_limit
    latencies = sorted(result.latency_s for result in results if result.error is None)
    return {
        "wall_s": wall,
        "client_cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "client_user_cpu_s": usage1.ru_utime - usage0.ru_utime,
        "client_system_cpu_s": usage1.ru_stime - usage0.ru_stime,
        "errors": sum(result.error is not None for result in results),
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "final_concurrency_limit": final_limit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests")
    parser.add_argument("--latency", type=float, default=0.2, help="server latency L, seconds")
    parser.add_argument("--concurrency", type=int, default=64, help="client concurrency C")
    parser.add_argument("--ledger", action="store_true", help="go through CachedProvider + JournalLedger")
    parser.add_argument("--outage", type=int, default=0, metavar="N",
                        help="run again with N requests answered 503 in a row after the warm-up")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    server, base_url = _start_server(args.latency)
    try:
        server_cpu0 = _process_cpu_s(server.pid)
        with tempfile.TemporaryDirectory() as tmp:
            journal = Path(tmp) / "bench.jsonl" if args.ledger else None
            figures = asyncio.run(_run(base_url, args.n, args.concurrency, journal))
        server_cpu1 = _process_cpu_s(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    ideal = args.concurrency / args.latency
    rate = args.n / figures["wall_s"]
    report = {
        "n": args.n,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "ledger": args.ledger,
        "ideal_rate_per_s": ideal,
        "rate_per_s": rate,
        "share_of_ideal": rate / ideal,
        "client_cpu_ms_per_request": figures["client_cpu_s"] / args.n * 1000,
        "server_cpu_ms_per_request": (
            None
            if server_cpu0 is None or server_cpu1 is None
            else (server_cpu1 - server_cpu0) / (args.n + args.concurrency) * 1000
        ),
        **figures,
    }
    print(
        f"{args.n} requests, C={args.concurrency}, L={args.latency}s{' via ledger' if args.ledger else ''}: "
        f"{rate:.1f}/s = {report['share_of_ideal']:.1%} of ideal {ideal:.0f}/s; "
        f"client CPU {report['client_cpu_ms_per_request']:.3f} ms/request "
        f"({figures['client_user_cpu_s'] / args.n * 1000:.3f} user + "
        f"{figures['client_system_cpu_s'] / args.n * 1000:.3f} system); "
        f"errors {figures['errors']}"
    )
    if args.outage:
        report["outage"] = _outage(args, figures["wall_s"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    goal_met = report["share_of_ideal"] >= 0.9 and report["client_cpu_ms_per_request"] < 1.0
    print("goal (>= 90% of ideal, < 1 ms CPU/request):", "met" if goal_met else "NOT met")
    return 0


def _outage(args: argparse.Namespace, healthy_wall_s: float) -> dict:
    """The same requests against a server that answers ``args.outage`` requests in a row with
    503 right after the warm-up (the warm-up sends ``args.concurrency``)."""
    server, base_url = _start_server(args.latency, "--outage", str(args.outage),
                                     "--outage-after", str(args.concurrency))
    try:
        figures = asyncio.run(_run(base_url, args.n, args.concurrency, None))
    finally:
        server.terminate()
        server.wait(timeout=10)
    outage = {"rejected": args.outage, "wall_s": figures["wall_s"], "errors": figures["errors"],
              "extra_s": figures["wall_s"] - healthy_wall_s, "final_concurrency_limit": figures["final_concurrency_limit"]}
    print(f"after an outage of {args.outage} requests answered 503: {figures['wall_s']:.1f} s "
          f"({outage['extra_s']:+.1f} s against the healthy server's {healthy_wall_s:.1f} s); errors {figures['errors']}")
    return outage


if __name__ == "__main__":
    sys.exit(main())
