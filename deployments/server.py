"""A local Prefect server (API and UI) as a child process, for `codeio serve` and tests.

Served deployments need a real API: a run triggered from the UI or by a schedule is picked up
by polling it. When ``PREFECT_API_URL`` is unset, `codeio serve` starts one on loopback (or
reuses one already answering there) and stops what it started on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

OFFLINE_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Leases of concurrency slots kept on disk (PREFECT_HOME/concurrency_leases), not in the
# server's memory (Prefect's default): a server restarted while a run held a slot (Ctrl-C of
# `codeio serve` stops its server; a reboot) would forget the lease and keep the slot taken
# for good, and a deployment limited to one run at a time would cancel or queue every later
# run. A lease it remembers expires, and the server takes the slot back. A setting in the
# environment wins.
LEASES_ON_DISK = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}


class ServerError(RuntimeError):
    """The Prefect server did not come up."""


def api_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """True when ``{api_url}/health`` answers 200."""
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(api_url: str, timeout_s: float) -> bool:
    """Poll ``api_healthy`` until it answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not api_healthy(api_url, timeout_s=1.0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


class LocalPrefectServer:
    """`prefect server start` on 127.0.0.1 in its own process group; a context manager.

    ``env`` is added to this process's environment for the server (e.g. ``PREFECT_HOME``, or
    ``PREFECT_UI_ENABLED=false`` in tests). The server's output goes to ``log_path``.
    """

    def __init__(self, port: int = 4200, env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.ui_url = f"http://127.0.0.1:{port}"
        self.env = {**LEASES_ON_DISK, **os.environ, **OFFLINE_ENV, **(env or {})}
        self.env.pop("PREFECT_API_URL", None)  # the server itself must not point at another API
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"codeio-prefect-server-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> "LocalPrefectServer":
        """Start the server and wait until its API is healthy."""
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"prefect server exited with code {self.process.returncode}; {self._log_tail()}")
            if api_healthy(self.api_url, timeout_s=1.0):
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"prefect server not healthy after {timeout_s:.0f}s; {self._log_tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """Terminate the server's whole process group, then kill what is left."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        stop_process_group(proc, grace_s)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return f"see {self.log_path}"
        return f"last lines of {self.log_path}: " + " | ".join(tail)

    def __enter__(self) -> "LocalPrefectServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0, first: int = signal.SIGTERM) -> None:
    """Send ``first`` to the group led by ``proc`` (started with ``start_new_session``),
    SIGKILL it after ``grace_s``, and reap ``proc``."""
    for sig, wait_s in ((first, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # children of the group that outlived their leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=5)
