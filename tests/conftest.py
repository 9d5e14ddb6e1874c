"""Shared test setup: Prefect runs against a temporary local server, offline."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server (and database) for the whole session, with its own result
    storage, so shard results cached by an earlier session never stand in for real work."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture
def store(tmp_path):
    from storage.store import Store

    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()
