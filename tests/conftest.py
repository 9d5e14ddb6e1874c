"""Shared test setup: Prefect runs against a temporary local server, offline."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The suite never reads or writes the developer's own Prefect home (profiles, the temporary
# server's database, cached shard results) and never reaches a server their environment points
# at: every process it starts inherits a Prefect home of its own, removed at the end.
_HOME = tempfile.mkdtemp(prefix="codeio-tests-prefect-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _name in [k for k in os.environ if k.startswith("PREFECT_")]:
    del os.environ[_name]
os.environ["PREFECT_HOME"] = _HOME

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server for the whole session (the one prefect_test_harness would
    start), with its own result storage, so shard results cached by an earlier session never
    stand in for real work. Its database starts as a copy of an already migrated one: the
    harness's own starts empty, and migrating it took half of the server's start-up.

    Yields the server's API URL, for the `codeio` subprocesses of the CLI and reliability
    tests too: a second server for them cost its start-up (seconds of CPU) and its idle load
    for the rest of the session."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH,
                                  PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings)

    from reliability_helpers import free_port, seeded_prefect_home

    storage = tmp_path_factory.mktemp("prefect-results")
    db = seeded_prefect_home(tmp_path_factory.mktemp("prefect-server")) / "prefect.db"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage,
                             PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}"}):
        server = SubprocessASGIServer(port=free_port())
        server.start(timeout=120)
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                yield server.api_url
                # What the runs logged and emitted reaches the server before it stops.
                APILogWorker.drain_all()
                EventsWorker.drain_all()
        finally:
            server.stop()


@pytest.fixture
def store(tmp_path):
    from storage.store import Store

    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()
