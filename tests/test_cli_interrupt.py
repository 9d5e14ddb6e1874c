"""Ctrl-C in a terminal: SIGINT reaches `codeio run` and every process of its group at once.

The run must stop within seconds with its one-line message and exit status 130, leave no
process behind, and the next run must finish the build. (The temporary Prefect server is one
of those processes: if the signal killed it, the interrupted flow would spend minutes retrying
to report its final state and then end in a traceback.)
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


def _session_processes(sid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # session id, state
            found.append(entry.name)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_in_a_terminal_stops_at_once_and_the_next_run_finishes(tmp_path, stop):
    """Ctrl-C, or SIGTERM to the process alone (`kill PID`, `docker stop`, a batch scheduler
    preempting the job). SIGTERM used to end the process on the spot, silently, leaving the
    temporary Prefect server it had started running for good."""
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
        sent = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        else:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        took = time.monotonic() - sent
    stderr = err_path.read_text(errors="replace")
    assert rc == (130 if stop == "ctrl-c" else 143), stderr[-3000:]
    assert took < 30, f"took {took:.0f}s to stop"
    assert "Traceback" not in stderr and "nanobind" not in stderr, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == (INTERRUPTED if stop == "ctrl-c" else TERMINATED)
    time.sleep(1.0)
    assert _session_processes(proc.pid) == []  # workers, the server: all gone
    if stop == "sigterm":
        return  # the next run resumes as after Ctrl-C: the same interrupted run, checked once

    done = subprocess.run(args, cwd=REPO, env=_env(home), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "codeio.jsonl").stat().st_size > 0
