"""Notebook use: examples/quickstart.ipynb runs top to bottom in a fresh python3 kernel, and
`flows.notebook_api` reads back what it built.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.config import BuildConfig
from flows.notebook_api import BuildResult, load, make_config

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
    with pytest.raises(ValidationError, match="shard_sise"):
        make_config(shard_sise=3)
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
