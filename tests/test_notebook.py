"""Notebook use: examples/quickstart.ipynb runs top to bottom in a fresh python3 kernel, and
`flows.notebook_api` reads back what it built.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.config import BuildConfig
from flows.notebook_api import BuildResult, load, make_config
from reliability_helpers import seeded_prefect_home

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart.ipynb"


def test_make_config_merges_overrides_into_nested_settings():
    cfg = make_config({"shard_size": 7, "sampling": {"min_pairs": 3}}, sampling={"generator_calls": 50},
                      db_path="x/db.duckdb")
    assert (cfg.shard_size, cfg.db_path) == (7, "x/db.duckdb")
    assert (cfg.sampling.generator_calls, cfg.sampling.min_pairs) == (50, 3)

    again = make_config(cfg, prediction={"revision_turns": 2})
    assert again.sampling == cfg.sampling and again.prediction.revision_turns == 2
    assert make_config() == BuildConfig()


def test_make_config_rejects_unknown_settings():
    from flows.errors import UserError

    with pytest.raises(UserError, match="shard_sise") as caught:
        make_config(shard_sise=3)
    assert "shard_size" in str(caught.value) and "\n" not in str(caught.value)  # one line, with the likely key
    with pytest.raises(UserError, match="shard_size"):
        make_config(shard_size="many")
    with pytest.raises(TypeError):
        make_config("build.toml")  # type: ignore[arg-type]


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel", reason="the python3 kernel needs ipykernel")

    # The notebook builds under tempfile.mkdtemp(): keep that inside this test's directory.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # Shard results cached by other builds on this machine must not stand in for this one.
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp_path / "prefect-results"))
    # The temporary server the notebook's build starts gets a Prefect home of its own whose
    # database is already migrated (migrating a new one took ~10 s of the test on 2 cores).
    monkeypatch.setenv("PREFECT_HOME", str(seeded_prefect_home(tmp_path / "prefect-home")))
    nb = nbformat.read(QUICKSTART, as_version=4)
    started = time.monotonic()
    from jupyter_client.manager import KernelManager

    # A kernel on Unix sockets (no TCP port) from the python3 spec ipykernel installs.
    # Shut down politely, so the kernel's exit stops the temporary Prefect server it started.
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    try:
        nbclient.NotebookClient(
            nb, km=kernel, timeout=240, resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=False)
    seconds = time.monotonic() - started

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "BuildResult(5 files → 5 functions" in text
    assert ">Funnel per stage</title>" in html  # the result's rich display draws the funnel
    assert "verdict: correct" in text
    print(f"quickstart notebook ran in {seconds:.1f}s")

    (work,) = tmp_path.glob("codeio-quickstart-*")
    assert (work / "export" / "report.html").is_file()

    # Reading the same build back in this process, without running the flow.
    result = load(db_path=str(work / "codeio.duckdb"), output_dir=str(work / "export"))
    assert isinstance(result, BuildResult)
    assert result.summary["stages"]["ingest"]["rows_in"] == 5
    assert result.funnel.filter(result.funnel["stage"] == "ingest")["count"].sum() == 5
    assert result.samples.height == result.response_types.filter(result.response_types["turn"] == 1)["count"].sum()
    assert {"prompt", "turn_1", "feedback_1", "turn_2", "verdict"} <= set(result.samples.columns)
    assert result.tokens["calls"].sum() > 0
    assert "CODEI/O++ samples" in repr(result) and "<svg" in result._repr_html_()
    assert result.report(tmp_path / "again.html").is_file()


def test_make_config_exports_beside_a_new_database(tmp_path):
    # A notebook builds once, then again from the first result's config on another database:
    # the second build must not export over the first one's files.
    first = make_config(db_path=str(tmp_path / "a" / "db.duckdb"))
    second = make_config(first, db_path=str(tmp_path / "b" / "db.duckdb"))
    assert Path(second.output_dir) == tmp_path / "b" / "export"
    assert Path(make_config(BuildConfig(), db_path=str(tmp_path / "c.duckdb")).output_dir) == tmp_path / "export"
    # An export directory of its own stays where it was put.
    own = make_config(first, output_dir=str(tmp_path / "mine"))
    assert Path(make_config(own, db_path=str(tmp_path / "d" / "db.duckdb")).output_dir) == tmp_path / "mine"
    both = make_config(first, db_path=str(tmp_path / "e.duckdb"), output_dir=str(tmp_path / "out-e"))
    assert Path(both.output_dir) == tmp_path / "out-e"


def test_make_config_takes_paths(tmp_path):
    cfg = make_config(db_path=tmp_path / "db.duckdb", sources=[{"path": tmp_path / "corpus"}])
    assert (cfg.db_path, cfg.sources[0].path) == (str(tmp_path / "db.duckdb"), str(tmp_path / "corpus"))
    assert cfg.output_dir == str(tmp_path / "export")


def test_a_connection_of_this_process_is_named_when_the_store_cannot_open(tmp_path):
    import duckdb

    from storage.store import Store, StoreError, StoreLocked

    path = tmp_path / "db.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path), read_only=True)  # a notebook looking at the store
    try:
        with pytest.raises(StoreLocked, match=r"this process already has it open.*close that connection"):
            Store(path)
    finally:
        con.close()
    with pytest.raises(StoreError, match="is a directory"):
        load(db_path=str(tmp_path))


def test_an_interrupted_server_start_leaves_no_server(monkeypatch):
    import subprocess
    import sys

    from prefect.server.api.server import SubprocessASGIServer

    from flows import build

    started = []

    def start(self, timeout=None):  # the server process runs, then Interrupt while waiting for it
        self.running = True
        self.server_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(self.server_process)
        raise KeyboardInterrupt

    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    monkeypatch.setattr(build, "_SERVERS", [])
    with pytest.raises(KeyboardInterrupt):
        build.temporary_server()
    (process,) = started
    assert process.wait(timeout=10) is not None  # stopped, not left running beside the next one
    assert build._SERVERS == []


def test_a_build_waits_for_the_shards_an_interrupted_build_left_running():
    import logging
    import threading

    from flows import build

    release = threading.Event()
    entered = threading.Event()

    def orphan() -> None:  # a shard of a build whose cell was interrupted twice
        with build._shard_running("interrupted-run"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=orphan)
    thread.start()
    entered.wait(5)
    warnings: list[str] = []

    class Logger:
        def warning(self, msg, *args):
            warnings.append(msg % args)

    timer = threading.Timer(0.5, release.set)
    timer.start()
    started = time.monotonic()
    build._wait_for_earlier_shards("next-run", Logger(), poll_s=0.05)
    waited = time.monotonic() - started
    thread.join(5)
    assert waited >= 0.4 and release.is_set()
    assert warnings and "1 shard(s) of an interrupted build" in warnings[0]
    assert build._running_shards() == 0
    # Its own shards (and nothing running) do not hold a build up.
    with build._shard_running("next-run"):
        started = time.monotonic()
        build._wait_for_earlier_shards("next-run", logging.getLogger("t"))
        assert time.monotonic() - started < 0.1


def test_a_wrong_corpus_path_fails_before_any_flow_starts(tmp_path, monkeypatch):
    import flows.build
    from flows.errors import UserError
    from flows.notebook_api import build

    def no_flow(cfg):
        raise AssertionError("the flow (and a Prefect server) started for a build that cannot run")

    monkeypatch.setattr(flows.build, "run_build", no_flow)
    with pytest.raises(UserError, match="missing-corpus"):
        build(sources=[{"path": str(tmp_path / "missing-corpus"), "name": "x"}], db_path=tmp_path / "db.duckdb")


def test_export_dir_is_where_the_run_wrote_its_files(tmp_path):
    """load(db_path=...) without the build's output_dir reads the samples where the run wrote
    them; export_dir (and report()'s default place) must say that directory, not the default."""
    import polars as pl

    cfg = make_config(db_path=tmp_path / "db" / "codeio.duckdb")
    empty = pl.DataFrame()
    written = tmp_path / "out" / "codeio_pp.parquet"
    result = BuildResult(config=cfg, keys={}, summary={"exports": {"codeio_pp.parquet": str(written)}},
                         funnel=empty, response_types=empty, tokens=empty, samples=empty, pairs_per_function=empty)
    assert result.export_dir == tmp_path / "out"
    assert BuildResult(config=cfg, keys={}, summary={}, funnel=empty, response_types=empty, tokens=empty,
                       samples=empty, pairs_per_function=empty).export_dir == tmp_path / "db" / "export"


@pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted to send logs")
def test_user_errors_are_logged_without_their_traceback():
    """A notebook build raises the error itself; Prefect's failed-run log before it keeps its
    message but not the traceback for errors a user can fix (others keep theirs)."""
    import logging

    from flows.errors import UserError, quiet_user_errors

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger, handler = logging.getLogger("prefect.flow_runs"), Keep()
    logger.addHandler(handler)
    try:
        with quiet_user_errors():
            for exc in (UserError("corpus not found"), ValueError("a bug")):
                try:
                    raise exc
                except Exception:
                    logger.error("flow run failed", exc_info=True)
        try:
            raise UserError("after the block")
        except UserError:
            logger.error("flow run failed", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert [r.exc_info is None for r in seen] == [True, False, False]
