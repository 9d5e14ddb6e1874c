"""`codeio cache`: counts and clears codeio's shard results in Prefect's result storage, and
nothing else there. The CLI runs as a user runs it, on a storage directory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flows.result_cache import KEY_PREFIX, shard_cache_key


def cache(storage: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_LOCAL_STORAGE_PATH=str(storage), PREFECT_HOME=str(storage.parent / "home"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return subprocess.run([sys.executable, "-m", "flows.cli", "cache", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=storage.parent)


def test_cache_counts_and_clears_codeios_results_only(tmp_path):
    storage = tmp_path / "results"
    storage.mkdir()
    answers = [storage / shard_cache_key("answer", "0123456789abcdef", f"{n:064x}") for n in range(2)]
    sample = storage / shard_cache_key("sample_io", "fedcba9876543210", "a" * 64)
    stale = storage / f"{KEY_PREFIX}2-answer-0123456789abcdef-{'b' * 64}"  # an earlier release's
    foreign = storage / ("c" * 64)  # another flow's result, keyed by Prefect's default
    for i, path in enumerate([*answers, sample, stale, foreign]):
        path.write_bytes(b"x" * 1000 * (i + 1))
    week_ago = time.time() - 7 * 86400
    os.utime(answers[0], (week_ago, week_ago))

    listed = cache(storage, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {
        "path": str(storage), "results": 4, "bytes": 1000 + 2000 + 3000 + 4000,
        "by_stage": {"answer": 3, "sample_io": 1}, "earlier_releases": 1, "other_files": 1}
    assert all(p.exists() for p in [*answers, sample, stale, foreign])  # counting deletes nothing

    only_stale = json.loads(cache(storage, "--clear", "--stale", "--json").stdout)
    assert (only_stale["deleted"], only_stale["freed_bytes"]) == (1, 4000)
    assert not stale.exists() and all(p.exists() for p in [*answers, sample, foreign])

    old = cache(storage, "--clear", "--older-than", "3")
    assert old.returncode == 0, old.stderr
    assert "deleted 1 (0.0 MB)" in old.stdout and "1 other files there are not codeio's" in old.stdout
    assert not answers[0].exists() and answers[1].exists() and sample.exists()

    rest = cache(storage, "--clear")
    assert "2 codeio shard results" in rest.stdout and "deleted 2" in rest.stdout
    assert [p.name for p in storage.iterdir()] == [foreign.name]


def test_cache_options_without_clear_are_one_line_errors(tmp_path):
    (tmp_path / "results").mkdir()
    for args, needle in ((["--stale"], "add --clear"), (["--clear", "--older-than", "-1"], "0 or more")):
        res = cache(tmp_path / "results", *args)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip().startswith("codeio: error: ") and needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_no_storage_yet_is_not_an_error(tmp_path):
    res = cache(tmp_path / "never-made")
    assert res.returncode == 0 and "nothing cached" in res.stdout
