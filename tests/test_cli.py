"""CLI error paths: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest


def codeio(*args: str, cwd: Path, api_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _one_line_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("codeio: error: ")
    assert needle in lines[0]


def test_missing_corpus_path(tmp_path):
    res = codeio("run", "--corpus", str(tmp_path / "nope"), "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path)
    _one_line_error(res, "does not exist")
    assert not (tmp_path / "c.duckdb").exists()  # nothing started, nothing written


def test_a_wrong_setting_is_reported_before_prefect_is_imported(tmp_path):
    """`codeio run` checks its settings and paths first: a mistake costs a second, not the
    seconds Prefect takes to import (most of what each error case here took)."""
    code = "import sys\nfrom flows.cli import main\nrc = main(sys.argv[1:])\nprint('prefect' in sys.modules)\nsys.exit(rc)"
    for args in (["--corpus", str(tmp_path / "nope")], ["--kind", "curated"]):
        res = subprocess.run([sys.executable, "-c", code, "run", *args, "--db", str(tmp_path / "c.duckdb")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stdout.strip() == "False", (res.stdout, res.stderr[-2000:])


def test_parquet_without_content_column(tmp_path):
    pq = tmp_path / "rows.parquet"
    pl.DataFrame({"text": ["print(1)"], "path": ["a.py"]}).write_parquet(pq)
    res = codeio("run", "--corpus", str(pq), "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path)
    _one_line_error(res, "no `content` column")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "build.json"
    cfg.write_text(json.dumps({"shard_sise": 10}))
    res = codeio("run", "--config", str(cfg), cwd=tmp_path)
    _one_line_error(res, "shard_sise: unknown setting")
    cfg.write_text(json.dumps({"llm": {"temperatur": 0.2}}))
    _one_line_error(codeio("stats", "--config", str(cfg), cwd=tmp_path), "llm.temperatur: unknown setting")


def test_unreadable_database(tmp_path):
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"not a database" * 512)
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    for args in (("run", "--corpus", str(corpus)), ("stats",), ("export",)):
        res = codeio(*args, "--db", str(bogus), cwd=tmp_path)
        _one_line_error(res, "cannot open database")
    assert bogus.read_bytes() == b"not a database" * 512  # left as it was


def test_stats_without_a_database(tmp_path):
    _one_line_error(codeio("stats", "--db", str(tmp_path / "none.duckdb"), cwd=tmp_path), "does not exist")


@pytest.mark.parametrize("cmd", ["run", "stats", "export", "doctor", "serve", "report", "cache"])
def test_help(cmd, tmp_path):
    res = codeio(cmd, "--help", cwd=tmp_path)
    assert res.returncode == 0 and "usage: codeio" in res.stdout



def test_readme_lists_every_option_of_every_command():
    """The README's Commands block is where operators look options up (serve's lacked --name,
    --base-url, --model and --api-key-env)."""
    import argparse
    import re

    from flows.cli import _parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("## Commands"):readme.index("## Outputs")]
    parts = re.split(r"^codeio (\w+)", block[:block.index("```", block.index("```bash") + 3)], flags=re.M)
    synopsis = dict(zip(parts[1::2], parts[2::2]))
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = {name: [opt for action in sub._actions for opt in action.option_strings
                      if opt.startswith("--") and opt != "--help" and opt not in synopsis.get(name, "")]
               for name, sub in commands.items()}
    assert {name: opts for name, opts in missing.items() if opts} == {}


def test_run_freezes_what_was_loaded_during_the_build_only(tmp_path, monkeypatch):
    """`codeio run` keeps the collector off the objects loaded before the build and hands them
    back afterwards (only the CLI does this, never a notebook's interpreter)."""
    import gc

    import flows.build
    from flows.cli import main

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    seen = {}

    def fake_build(cfg):
        seen["frozen"] = gc.get_freeze_count()
        raise SystemExit(0)

    monkeypatch.setattr(flows.build, "run_build", fake_build)
    with pytest.raises(SystemExit):
        main(["run", "--corpus", str(corpus), "--db", str(tmp_path / "c.duckdb")])
    assert seen["frozen"] > 0 and gc.get_freeze_count() == 0


@pytest.mark.parametrize("flag, refresh, cache", [([], False, True), (["--refresh-cache"], True, True),
                                                  (["--no-result-cache"], False, False)])
def test_run_cache_flags_reach_the_build(tmp_path, monkeypatch, flag, refresh, cache):
    """`--refresh-cache` turns the build's refresh_cache on and `--no-result-cache` its
    result_cache off; without them the config's values (off and on by default) stand."""
    import flows.build
    from flows.cli import main

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    seen = {}

    def fake_build(cfg):
        seen["refresh"], seen["cache"] = cfg.refresh_cache, cfg.result_cache
        raise SystemExit(0)

    monkeypatch.setattr(flows.build, "run_build", fake_build)
    with pytest.raises(SystemExit):
        main(["run", "--corpus", str(corpus), "--db", str(tmp_path / "c.duckdb"), *flag])
    assert seen["refresh"] is refresh and seen["cache"] is cache


def test_kind_without_corpus(tmp_path):
    for flag in (("--kind", "curated"), ("--unified",)):
        res = codeio("run", *flag, "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path)
        _one_line_error(res, "describe --corpus, which is not given")
    assert not (tmp_path / "c.duckdb").exists()


@pytest.mark.parametrize("pattern", ["*.pyy", "empty-dir"])
def test_corpus_that_matches_nothing(tmp_path, pattern):
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "a.py").write_text("def f(x):\n    return x\n")
    res = codeio("run", "--corpus", str(tmp_path / pattern), "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path)
    _one_line_error(res, "matches no files" if "*" in pattern else "holds no .py files")
    assert not (tmp_path / "c.duckdb").exists()


def test_output_settings_are_checked_before_any_work(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "taken").write_text("a file where the export directory should go")
    base = ("run", "--corpus", str(corpus), "--db", str(tmp_path / "db" / "c.duckdb"))
    res = codeio(*base, "--out", str(tmp_path / "taken" / "export"), cwd=tmp_path)
    _one_line_error(res, f"export directory {tmp_path / 'taken' / 'export'}: {tmp_path / 'taken'} is a file")
    res = codeio("run", "--corpus", str(corpus), "--db", str(tmp_path / "taken" / "c.duckdb"), cwd=tmp_path)
    _one_line_error(res, "is a file, not a directory")
    cfg = tmp_path / "build.json"
    cfg.write_text(json.dumps({"export": {"decontaminate": [str(tmp_path / "bench.jsonl")]}}))
    res = codeio(*base, "--config", str(cfg), cwd=tmp_path)
    _one_line_error(res, f"export.decontaminate: {tmp_path / 'bench.jsonl'} is not a readable file")
    assert not (tmp_path / "db").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_a_build_that_exports_nothing_says_so(tmp_path, prefect_harness):
    corpus = tmp_path / "records.jsonl"
    corpus.write_text("[1, 2, 3]\n\"not a record\"\n")  # every line is rejected as bad_record
    # Against the session's server (a temporary one of its own took ~10 s of CPU to start;
    # test_cli_interrupt.py runs `codeio run` with one).
    res = codeio("run", "--corpus", str(corpus), "--db", str(tmp_path / "c.duckdb"), cwd=tmp_path,
                 api_url=prefect_harness)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rejected:bad_record 2" in res.stdout
    assert res.stderr.rstrip().splitlines()[-1] == (
        "codeio: warning: the export holds no samples; `codeio stats` shows where the rows were dropped")
    assert json.loads((tmp_path / "export" / "stats.json").read_text())["files"]["codeio.jsonl"] == 0


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path, monkeypatch, capsys):
    # `codeio stats | head`: writing to a closed pipe is not an error worth a message.
    from flows.cli import main
    from storage.store import Store

    spare = os.open(os.devnull, os.O_WRONLY)  # stands for the pipe's descriptor

    class ClosedPipe:
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return spare

    try:
        Store(tmp_path / "c.duckdb").close()
        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        assert main(["stats", "--db", str(tmp_path / "c.duckdb")]) == 141
    finally:
        os.close(spare)
    assert capsys.readouterr().err == ""


def test_stats_says_when_the_latest_runs_settings_no_longer_load(tmp_path, capsys):
    """A database whose latest run was made with a setting this version no longer has: stats
    still reports (with the defaults), and says so in one warning line rather than silently
    counting other rows."""
    from storage.store import Store

    from flows.cli import main

    with Store(tmp_path / "c.duckdb") as store:
        store.start_run("r1", {"retired_setting": 1, "provider": "offline"})
    assert main(["stats", "--db", str(tmp_path / "c.duckdb")]) == 0
    err = capsys.readouterr().err
    assert "warning: the latest run's settings no longer load" in err and "retired_setting" in err
    assert len(err.strip().splitlines()) == 1


def test_the_run_summary_lines_show_counts_not_timings():
    """`codeio run` prints per stage what became of its rows; the timings are in `--json`."""
    from collections import Counter

    from flows.build import BuildReport, StageReport
    from flows.cli import _summary_text

    report = BuildReport(run_id="r", db_path="x.duckdb", provider="offline", seconds=3.0)
    report.stages["answer"] = StageReport("answer", shards=1, rows_in=5, counters=Counter(ok=4, **{"dropped:x": 1}),
                                          seconds=2.5, cpu_seconds=1.25, sandbox_cpu_seconds=0.5, store_seconds=0.25)
    summary = report.as_dict()
    assert summary["stages"]["answer"]["store_seconds"] == 0.25
    line = next(x for x in _summary_text(summary).splitlines() if x.strip().startswith("answer"))
    assert line.endswith("dropped:x 1, ok 4"), line


def test_a_full_disk_is_one_line_and_not_retried(tmp_path, monkeypatch, capsys):
    """A full disk outside the database (the LLM call journal beside it) ends `codeio run`
    with one line naming the file, exit 2; a shard task that hit it is not retried, and
    Prefect logs it without a traceback, as it does the errors a user fixes."""
    import errno
    import logging

    import flows.build
    from flows.cli import main
    from flows.errors import _QuietUserErrors

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/ledger/answer-0123.jsonl")

    def no_space(cfg):
        raise full

    monkeypatch.setattr(flows.build, "run_build", no_space)
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.py").write_text("def f(x: int) -> int:\n    return x\n")
    assert main(["run", "--corpus", str(corpus), "--db", str(tmp_path / "c.duckdb")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'codeio: error: the disk is full: could not write file "/data/ledger/answer-0123.jsonl": No space left '
        "on device; free space there and run again (the work committed before is kept)")
    assert flows.build._fatal(full) and not flows.build._fatal(OSError(errno.EIO, "I/O error"))
    record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, (OSError, full, None))
    _QuietUserErrors().filter(record)
    assert record.exc_info is None


def test_sigterm_during_a_database_statement_in_a_flow_says_terminated(tmp_path, monkeypatch, capsys):
    """While a flow runs, Prefect's SIGTERM handler is the one in place, and a signal landing
    in a DuckDB statement comes out as DuckDB's "Query interrupted" whichever handler raised:
    the command used to end "interrupted", exit 130, as after Ctrl-C (seen in CI)."""
    import signal
    import threading

    from prefect.utilities.engine import capture_sigterm

    import flows.cli
    from storage.store import Store

    store = Store(tmp_path / "c.duckdb", threads=1)

    def long_statement_in_a_flow(_args):
        with capture_sigterm():  # what Prefect's flow engine wraps a flow run in
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
            store.query("SELECT count(*) FROM range(20000000000) t(i) WHERE i % 7 = 3")
        raise AssertionError("the statement was not interrupted")

    monkeypatch.setattr(flows.cli, "_cmd_stats", long_statement_in_a_flow)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert flows.cli.main(["stats", "--db", str(tmp_path / "c.duckdb")]) == 128 + signal.SIGTERM
    finally:
        store.close()
    assert capsys.readouterr().err.rstrip().splitlines()[-1] == (
        "codeio: terminated (SIGTERM; completed work is saved; run again to resume)")
    assert signal.getsignal(signal.SIGTERM) is handler  # put back


@pytest.mark.slow
def test_a_build_against_ollama_that_cuts_long_prompts_stops_before_any_work(tmp_path, prefect_harness):
    """Against an Ollama server (it answers /api/version), a build first sends doctor's two
    probe prompts; one that cuts the long one (Ollama at a small context counts only what it
    kept) stops the build in one line, before any call is made for a row. One that takes it
    whole builds as usual; other endpoints are not probed."""
    from flows.config import BuildConfig
    from flows.doctor import stop_if_prompts_are_cut
    from llm.testserver import serve
    from reliability_helpers import http_config, llm_script, write_config, write_corpus

    def cutting(body: dict) -> dict:
        answer = llm_script(body)
        answer = dict(answer) if isinstance(answer, dict) else {"content": answer}
        chars = sum(len(m["content"]) for m in body["messages"])
        return {**answer, "prompt_tokens": min(chars // 4 + 1, 4098)}

    def probes(server: object) -> list[str]:
        return [b["messages"][0]["content"] for b in server.requests  # type: ignore[attr-defined]
                if "Ignore the assignments above" in b["messages"][0]["content"]]

    corpus = write_corpus(tmp_path / "corpus", 2)
    for name, script in (("cut", cutting), ("whole", llm_script)):
        with serve(script, ollama_version="0.12.6") as server:
            config = write_config(tmp_path / name / "build.json",
                                  http_config(tmp_path / name, corpus, server.base_url, result_cache=False))
            res = codeio("run", "--config", str(config), cwd=tmp_path, api_url=prefect_harness)
            sent, probed = len(server.requests), len(probes(server))
        if name == "cut":
            _one_line_error(res, "cut a prompt of about")
            assert "OLLAMA_CONTEXT_LENGTH=" in res.stderr
            assert probed == 2 and sent == 3  # the chat request and the probes, nothing else
        else:
            assert res.returncode == 0, res.stderr[-2000:]
            assert probed == 2 and sent > 3  # probed once (by the CLI, not again by the flow), then built
    with serve(cutting) as server:  # not Ollama: not probed
        stop_if_prompts_are_cut(BuildConfig.model_validate(http_config(tmp_path / "other", corpus, server.base_url)))
        assert server.requests == []
