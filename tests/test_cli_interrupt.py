"""Stopping `codeio run` from outside: Ctrl-C in a terminal (SIGINT to the command's whole
process group), SIGTERM to every process of the build (systemd, Slurm), and SIGKILL.

The run must stop within seconds with its one-line message and exit status 130 or 143, leave
no process behind, and the next run must finish the build. The temporary Prefect server is
one of those processes: a signal that stopped it with the build (SIGTERM to the build's group
or to all its processes) left the stopped flow retrying to report its final state for over two
minutes, then ending in tracebacks; a killed command left it running for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_helpers import seeded_prefect_home

REPO = Path(__file__).resolve().parent.parent
CODEIO = str(Path(sys.executable).parent / "codeio")
INTERRUPTED = "codeio: interrupted (completed work is saved; run again to resume)"
TERMINATED = "codeio: terminated (SIGTERM; completed work is saved; run again to resume)"


def _env(home: Path) -> dict[str, str]:
    # No PREFECT_API_URL: the CLI starts the temporary server itself, as on a user's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs: the temporary server and the sandbox workers
    run in sessions of their own, so the command's session does not hold them all."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if (fields := _stat(pid)) and fields[0] != "Z"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm", "sigkill"])
def test_ctrl_c_in_a_terminal_stops_at_once_and_the_next_run_finishes(tmp_path, stop):
    """SIGTERM used to end the process on the spot, silently, leaving the temporary Prefect
    server it had started running for good; SIGKILL still does end it on the spot (nothing can
    catch it), but the server now goes with it."""
    # A third of the bundled sample corpus: enough for an answer stage that lasts seconds, and
    # the next run's build is a third as long.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for source in sorted((REPO / "corpus" / "sample").glob("*.py"))[::3]:
        (corpus / source.name).write_bytes(source.read_bytes())
    args = [CODEIO, "run", "--corpus", str(corpus), "--db", str(tmp_path / "c.duckdb"), "--out", str(tmp_path / "out")]
    home = seeded_prefect_home(tmp_path / "prefect")  # the temporary server's database, migrated
    err_path = tmp_path / "interrupted.stderr"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, env=_env(home), stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        deadline = time.monotonic() + 240
        while "answer: " not in err_path.read_text(errors="replace"):  # the LLM stage has begun
            assert proc.poll() is None, err_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the build never reached the answer stage"
            time.sleep(0.05)
        started = _descendants(proc.pid)
        assert any(b"flows.prefect_server" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
                   for pid in _alive(started)), "no temporary server among the command's processes"
        sent = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        elif stop == "sigterm":
            # To every process of the build at once, as systemd and Slurm stop a job; `kill PID`,
            # `docker stop` and `timeout` (the process group) reach fewer of them.
            for pid in [proc.pid, *_alive(started)]:
                os.kill(pid, signal.SIGTERM)
        else:
            proc.kill()  # kill -9, the out-of-memory killer
        rc = proc.wait(120)
        took = time.monotonic() - sent
    deadline = time.monotonic() + 15
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(started) == []  # the temporary server, the sandbox workers: all gone
    if stop == "sigkill":
        assert rc == -signal.SIGKILL
        return
    stderr = err_path.read_text(errors="replace")
    assert rc == (130 if stop == "ctrl-c" else 143), stderr[-3000:]
    assert took < 30, f"took {took:.0f}s to stop"
    assert "Traceback" not in stderr and "nanobind" not in stderr, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == (INTERRUPTED if stop == "ctrl-c" else TERMINATED)
    if stop == "sigterm":
        return  # the next run resumes as after Ctrl-C: the same interrupted run, checked once

    done = subprocess.run(args, cwd=REPO, env=_env(home), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "codeio.jsonl").stat().st_size > 0


def test_the_test_harness_server_does_not_outlive_a_killed_test_run():
    """The Prefect server the suite and the benchmarks share (reliability_helpers.PrefectServer)
    is started through a bootstrap that asks for SIGTERM when its starter dies: a test run or
    a benchmark killed outright (a CI time limit, SIGKILL) left it serving. Shown here with
    the bootstrap around a plain sleep."""
    from reliability_helpers import _DIES_WITH_PARENT

    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import os, subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()), '/bin/sleep', '120'],\n"
         "                         start_new_session=True)\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)\n",
         _DIES_WITH_PARENT],
        stdout=subprocess.PIPE, text=True,
    )
    sleeper = int(starter.stdout.readline())
    deadline = time.monotonic() + 10
    while not (Path("/proc") / str(sleeper) / "cmdline").read_bytes().startswith(b"/bin/sleep"):
        assert time.monotonic() < deadline, "the bootstrap did not exec its command"
        time.sleep(0.05)
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 10
    while (_stat(sleeper) or ["Z"])[0] != "Z":  # gone, or a zombie waiting for init to reap it
        assert time.monotonic() < deadline, "the command outlived the process that started it"
        time.sleep(0.05)
