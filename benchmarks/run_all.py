"""Run every benchmark script in this folder (``bench_*.py``) and write one JSON file.

Each script runs in its own process with ``--json <temp file>`` (every benchmark here takes
that flag); its figures, exit code, duration and the tail of its output are collected under
its name. A script that fails is recorded as failed and the others still run.

    .venv/bin/python benchmarks/run_all.py --json benchmark-results.json
    .venv/bin/python benchmarks/run_all.py --only bench_store --extra bench_store="--rows 200000"
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def run_one(name: str, extra: list[str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, str(HERE / f"{name}.py"), *extra, "--json", str(out)]
        print(f"== {name}: {' '.join(shlex.quote(c) for c in command[1:])}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout:g} s"
        seconds = time.perf_counter() - start
        figures = json.loads(out.read_text()) if out.exists() else None
    print(stdout.rstrip(), flush=True)
    if code != 0:
        print(stderr.rstrip()[-2000:], flush=True)
    return {
        "status": "ok" if code == 0 and figures is not None else "failed",
        "returncode": code,
        "seconds": round(seconds, 1),
        "command": command[1:-2],
        "figures": figures,
        "output_tail": stdout[-4000:],
        **({"error_tail": stderr[-4000:]} if code != 0 else {}),
    }


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def source_version() -> dict | None:
    """The commit the benchmarked code is at, and whether the tree had changes beyond it, so
    figures files from different commits can be told apart; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=HERE.parent).stdout

    try:
        return {"sha": git("rev-parse", "HEAD").strip(), "uncommitted_changes": bool(git("status", "--porcelain").strip())}
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="benchmark-results.json", help="where to write the combined figures")
    p.add_argument("--only", action="append", help="run only this benchmark (repeatable), e.g. bench_store")
    p.add_argument("--skip", action="append", default=[], help="skip this benchmark (repeatable)")
    p.add_argument("--extra", action="append", default=[], metavar='NAME="ARGS"',
                   help='extra arguments for one benchmark, e.g. bench_pipeline="--sizes 1000"')
    p.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = p.parse_args(argv)

    extras: dict[str, list[str]] = {}
    for item in args.extra:
        name, _, rest = item.partition("=")
        extras[name.strip()] = shlex.split(rest)
    names = [n for n in discover() if (not args.only or n in args.only) and n not in args.skip]
    unknown = sorted(set(args.only or []) - set(discover()))
    if unknown:
        p.error(f"no such benchmark: {', '.join(unknown)} (found: {', '.join(discover())})")

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    code = source_version()
    results = {name: run_one(name, extras.get(name, []), args.timeout) for name in names}
    report = {
        "started": started,
        "commit": code,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "benchmarks": results,
    }
    Path(args.json).write_text(json.dumps(report, indent=2))
    failed = [n for n, r in results.items() if r["status"] != "ok"]
    print(f"wrote {args.json}: {len(results) - len(failed)} ok" + (f", failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
