"""benchmarks/compare.py: two figures files of run_all.py side by side, run as a user runs it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = REPO / "benchmarks" / "results" / "figures.json"


def _compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_moves_and_goals_are_shown_with_their_direction(tmp_path):
    old = json.loads(FIGURES.read_text())
    new = copy.deepcopy(old)
    new["commit"] = {"sha": "f" * 40, "uncommitted_changes": True}
    store = new["benchmarks"]["bench_store"]["figures"]["write_grouped"]
    store["rows_per_s"] = old["benchmarks"]["bench_store"]["figures"]["write_grouped"]["rows_per_s"] * 2
    largest = new["benchmarks"]["bench_pipeline"]["figures"]["builds"][-1]
    largest["peak_rss_mb"] = 2000.0
    largest["stage_seconds"]["answer"] *= 3  # not a headline: shown with --all only
    del new["benchmarks"]["bench_llm"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))

    done = _compare(str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "ffffffffff (with uncommitted changes)" in out[1]
    grouped = next(line for line in out if "rows/s, grouped commits" in line)
    assert grouped.rstrip().endswith("+100.0%  better")
    rss = next(line for line in out if f"{largest['tasks']} tasks: peak RSS MB" in line)
    assert "worse" in rss
    assert "bench_llm (ok / absent)" in out
    goals = out[out.index("goals"):]
    assert any("store: >= 200k rows/s" in line and "not met -> met" in line for line in goals)
    assert any("peak RSS < 1536 MB" in line and "met -> not met" in line for line in goals)
    assert not any("stage_seconds.answer" in line for line in out)

    everything = _compare(str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--all")
    moved = [line for line in everything.stdout.splitlines() if "stage_seconds.answer" in line]
    assert len(moved) == 1 and "+200.0%" in moved[0]


def test_a_file_that_is_not_a_figures_file_is_one_line(tmp_path):
    (tmp_path / "broken.json").write_text('{"benchmarks": ')
    (tmp_path / "other.json").write_text('{"rows": 3}')
    for name, message in (("broken.json", "is not JSON"), ("other.json", "is not a figures file"),
                          ("missing.json", "cannot read")):
        done = _compare(str(FIGURES), str(tmp_path / name))
        assert done.returncode != 0
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
