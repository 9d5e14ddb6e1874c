"""Compare two figures files written by ``run_all.py``: the headline figures of each benchmark
side by side, how much each moved and which way is better, and the goals.

    .venv/bin/python benchmarks/compare.py old.json new.json
    .venv/bin/python benchmarks/compare.py old.json new.json --all --min-change 0.1

``--all`` adds every other number both files hold (as a dotted path), when it moved by at
least ``--min-change`` (a share: 0.05 is 5 %). On a shared or virtual machine the same commit
can measure tens of percent apart from one hour to the next, so a small move between files
from different sittings means little: run both commits in one sitting (``git worktree``) to
read one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Per benchmark: (label, path into its figures, which way is better). A path step that is an
# int indexes a list; "builds[-1]" of the pipeline is its largest build.
HEADLINES: dict[str, list[tuple[str, tuple[Any, ...], str]]] = {
    "bench_llm": [
        ("requests/s, share of ideal", ("share_of_ideal",), "higher"),
        ("client CPU ms/request", ("client_cpu_ms_per_request",), "lower"),
        ("latency p99 s", ("latency_p99_s",), "lower"),
    ],
    "bench_sandbox": [
        ("pool calls/s", ("pool_calls_per_second",), "higher"),
        ("one-call jobs/s", ("pool_single_call_jobs_per_second",), "higher"),
        ("CPU ms per call", ("pool_cpu_ms_per_call",), "lower"),
        ("CPU ms per one-call job", ("pool_single_call_jobs_cpu_ms_per_call",), "lower"),
        ("page faults per one-call job", ("pool_single_call_jobs_page_faults_per_call",), "lower"),
        ("CPU speed-up over a fresh interpreter", ("cpu_speedup",), "higher"),
    ],
    "bench_store": [
        ("rows/s, grouped commits", ("write_grouped", "rows_per_s"), "higher"),
        ("rows/s, one shard per commit", ("write_one_per_commit", "rows_per_s"), "higher"),
        ("rows/s, shards written again", ("rewrite", "rows_per_s"), "higher"),
        ("funnel read s", ("funnel", "seconds"), "lower"),
    ],
}
_BUILD_HEADLINES = [
    ("wall s", ("wall_s",), "lower"),
    ("ms per task", ("ms_per_task",), "lower"),
    ("peak RSS MB", ("peak_rss_mb",), "lower"),
    ("overhead share of wall", ("overhead_share",), "lower"),
    ("flow CPU ms per task", ("flow_cpu_ms_per_task",), "lower"),
    ("store share of wall", ("store_share_of_wall",), "lower"),
]


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        elif isinstance(data, dict) and step in data:
            data = data[step]
        else:
            return None
    return data


def _numbers(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in ``data`` with its dotted path (list items by position)."""
    if isinstance(data, bool):
        return
    if isinstance(data, (int, float)):
        yield prefix, float(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _numbers(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _numbers(value, f"{prefix}[{i}]")


def _change(old: float, new: float) -> float | None:
    return None if old == 0 else (new - old) / abs(old)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _row(label: str, old: Any, new: Any, better: str | None = None) -> str:
    moved = ""
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        change = _change(float(old), float(new))
        if change is not None:
            moved = f"{change:+.1%}"
            if better and abs(change) >= 0.005:
                moved += "  better" if (change > 0) == (better == "higher") else "  worse"
    return f"  {label:<44} {_fmt(old):>12} {_fmt(new):>12}  {moved}"


def headlines(name: str, old: dict, new: dict) -> list[tuple[str, Any, Any, str]]:
    """(label, old value, new value, which way is better) of one benchmark's headlines."""
    rows = [(label, _get(old, path), _get(new, path), better) for label, path, better in HEADLINES.get(name, [])]
    if name == "bench_pipeline":
        old_builds, new_builds = old.get("builds", []), new.get("builds", [])
        by_size = {b.get("tasks"): b for b in old_builds}
        for i, build in enumerate(new_builds):
            # Builds of the same requested size have nearly the same task count; match by position
            # when the sizes line up, else by the exact count.
            match = old_builds[i] if i < len(old_builds) and _close(old_builds[i], build) else by_size.get(build.get("tasks"))
            for label, path, better in _BUILD_HEADLINES:
                rows.append((f"{build.get('tasks')} tasks: {label}", _get(match, path) if match else None,
                             _get(build, path), better))
    return rows


def _close(a: dict, b: dict) -> bool:
    ta, tb = a.get("tasks") or 0, b.get("tasks") or 0
    return max(ta, tb) > 0 and min(ta, tb) / max(ta, tb) > 0.9


def goals(report: dict) -> list[tuple[str, Any, bool | None]]:
    """The benchmarks' goals (README, Figures) and whether ``report`` meets each; None when
    the figure is not in it."""
    b = report.get("benchmarks", {})
    fig = {name: (r or {}).get("figures") or {} for name, r in b.items()}
    builds = fig.get("bench_pipeline", {}).get("builds", [])
    largest = builds[-1] if builds else {}
    smallest = builds[0] if builds else {}
    linear = (largest.get("ms_per_task") / smallest["ms_per_task"]
              if len(builds) > 1 and smallest.get("ms_per_task") and largest.get("ms_per_task") else None)
    store = _get(fig.get("bench_store", {}), ("write_grouped", "rows_per_s"))
    llm_share = fig.get("bench_llm", {}).get("share_of_ideal")
    llm_cpu = fig.get("bench_llm", {}).get("client_cpu_ms_per_request")
    size = f" at {largest.get('tasks')} tasks" if largest else ""

    def at_size(value: Any) -> Any:  # the files' largest builds may differ in size
        return f"{_fmt(value)}{size}" if value is not None else None

    rows = [
        ("pipeline: ms/task at the largest build <= 1.2x the smallest's", at_size(linear),
         linear <= 1.2 if linear else None),
        ("pipeline: peak RSS < 1536 MB at the largest build", at_size(largest.get("peak_rss_mb")),
         largest["peak_rss_mb"] < 1536 if largest.get("peak_rss_mb") else None),
        ("pipeline: overhead < 10 % of wall at the largest build", at_size(largest.get("overhead_share")),
         largest["overhead_share"] < 0.10 if largest.get("overhead_share") is not None else None),
        ("store: >= 200k rows/s", store, store >= 200_000 if store else None),
        ("llm: >= 90 % of the ideal rate", llm_share, llm_share >= 0.9 if llm_share is not None else None),
        ("llm: < 1 ms of client CPU a request", llm_cpu, llm_cpu < 1.0 if llm_cpu is not None else None),
    ]
    return rows


def _describe(report: dict, path: Path) -> str:
    commit = report.get("commit") or {}
    sha = (commit.get("sha") or "unknown commit")[:10]
    dirty = " (with uncommitted changes)" if commit.get("uncommitted_changes") else ""
    return f"{path}: {sha}{dirty}, started {report.get('started', '?')}"


def compare(old: dict, new: dict, show_all: bool = False, min_change: float = 0.05) -> list[str]:
    lines = []
    machines = (old.get("machine"), new.get("machine"))
    if machines[0] != machines[1]:
        lines.append(f"different machines or Pythons: {machines[0]} / {machines[1]}")
    lines.append(f"  {'':<44} {'old':>12} {'new':>12}")
    old_b, new_b = old.get("benchmarks", {}), new.get("benchmarks", {})
    for name in sorted(set(old_b) | set(new_b)):
        o, n = old_b.get(name) or {}, new_b.get(name) or {}
        status = f"{o.get('status', 'absent')} / {n.get('status', 'absent')}"
        lines.append(f"{name} ({status})")
        of, nf = o.get("figures") or {}, n.get("figures") or {}
        for label, ov, nv, better in headlines(name, of, nf):
            lines.append(_row(label, ov, nv, better))
        if show_all:
            shown = {".".join(map(str, path)) for _label, path, _better in HEADLINES.get(name, [])}
            shown |= {f"builds[{i}]." + ".".join(map(str, path))
                      for i in range(len(nf.get("builds", []))) for _label, path, _better in _BUILD_HEADLINES}
            old_numbers = dict(_numbers(of))
            for path, nv in _numbers(nf):
                ov = old_numbers.get(path)
                if ov is None or path in shown:
                    continue
                change = _change(ov, nv)
                if change is not None and abs(change) >= min_change:
                    lines.append(_row(path, ov, nv))
    lines.append("goals")
    new_goals = {label: (value, met) for label, value, met in goals(new)}
    for label, value, met in goals(old):
        nvalue, nmet = new_goals.get(label, (None, None))
        verdict = {True: "met", False: "not met", None: "-"}
        lines.append(f"  {label:<62} {verdict[met]:>8} -> {verdict[nmet]:<8} ({_fmt(value)} -> {_fmt(nvalue)})")
    return lines


def _load(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except OSError as exc:
        raise SystemExit(f"compare: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"compare: {path} is not JSON: {exc}") from None
    if not isinstance(report, dict) or not isinstance(report.get("benchmarks"), dict):
        raise SystemExit(f"compare: {path} is not a figures file of run_all.py (no 'benchmarks')")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path, help="figures file of the earlier commit")
    p.add_argument("new", type=Path, help="figures file of the later commit")
    p.add_argument("--all", action="store_true", help="also every other number that moved")
    p.add_argument("--min-change", type=float, default=0.05, help="with --all: the smallest move shown (a share)")
    args = p.parse_args(argv)
    old, new = _load(args.old), _load(args.new)
    print(f"old  {_describe(old, args.old)}\nnew  {_describe(new, args.new)}")
    print("\n".join(compare(old, new, args.all, args.min_change)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
