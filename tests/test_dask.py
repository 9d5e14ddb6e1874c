"""Scale-out: the same build (offline provider, six sample files) on the local thread runner and
on two-worker Dask clusters gives byte-identical exports.

Each build gets its own Prefect result storage, so no shard is a cache hit from another build:
the Dask builds really run every shard on the workers. Every build must also agree with its own
LLM ledger (tasks that make the same call get the ledger's one answer, whichever shard finished
first). The run with a cluster of our own checks that each Dask worker process started a
sandbox pool of its own, and that the pools' processes go away with the workers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from uuid import UUID

import cloudpickle
import pytest

from flows.config import SAMPLE_CORPUS, BuildConfig
from tasks.stage import ShardContext

pytest.importorskip("prefect_dask", reason="prefect-dask is not installed (pip install prefect-dask)")
distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parent.parent
built = pytest.mark.usefixtures("prefect_harness")

PICK = 6


def _corpus(root: Path) -> Path:
    dst = root / "corpus"
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(SAMPLE_CORPUS.glob("*.py"))[:PICK]:
        shutil.copy(f, dst / f.name)
    return dst


def _cfg(root: Path, corpus: Path, dask_address: str | None) -> BuildConfig:
    return BuildConfig.model_validate({
        "sources": [{"path": str(corpus), "name": "t", "kind": "mixed"}],
        "db_path": str(root / "db" / "codeio.duckdb"),
        "output_dir": str(root / "out"),
        "shard_size": 4,
        "max_parallel_shards": 2,
        "dask_address": dask_address,
        "sandbox": {"workers": 1},  # per process: each Dask worker has its own pool
        "sampling": {"generator_calls": 200},
    })


def _build(cfg: BuildConfig, results: Path) -> dict:
    """run_build with Prefect results (and so task-cache records) stored under ``results``."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    from flows.build import run_build

    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(results)}):
        return run_build(cfg)


def _ledger_mismatches(db_path: str) -> int:
    """Attempts whose response is not the ledger's answer to their call key. The ledger is the
    cache: two tasks that make the same call must get the same answer, however shards are
    scheduled, or a re-run could not reproduce the build."""
    from storage.store import Store

    with Store(db_path, read_only=True) as store:
        return store.query(
            "SELECT count(*) FROM attempts a JOIN llm_calls c ON c.key = a.call_key "
            "WHERE a.response IS DISTINCT FROM c.content"
        )[0][0]


def _digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def _task_states(run_id: str, expected: int, timeout: float = 60.0) -> list[str]:
    """State names of the flow run's task runs, once the API has recorded all of them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])), limit=200
            )
        states = sorted(r.state.name for r in runs if r.state is not None)
        finished = [s for s in states if s in ("Completed", "Cached")]
        if len(finished) >= expected or time.monotonic() > deadline:
            return states
        time.sleep(1.0)


@pytest.fixture(scope="module")
def thread_build(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("threads")
    corpus = _corpus(root)
    cfg = _cfg(root, corpus, None)
    summary = _build(cfg, root / "results")
    assert summary["executions"] > 0 and summary["llm_calls_sent"] > 0
    assert _ledger_mismatches(cfg.db_path) == 0
    return corpus, summary, _digest(root / "out")


def test_cluster_example_config_is_valid():
    from flows.config import load_config

    cfg = load_config(str(REPO / "examples" / "cluster.toml"))
    assert cfg.dask_address == "tcp://scheduler.example.internal:8786" and cfg.provider == "http"


def test_an_unreachable_scheduler_is_one_line_before_any_work(tmp_path, monkeypatch):
    """A wrong dask_address stops the build at its checks, in one line, instead of at the first
    shard after Dask's 30-second connect timeout with a traceback; `codeio run` stops with exit
    2 before it imports Prefect."""
    import json
    import socket
    import subprocess
    import sys

    from flows import preflight
    from flows.errors import UserError

    monkeypatch.setattr(preflight, "SCHEDULER_WAIT_S", 1.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    corpus = _corpus(tmp_path)
    for bad, reason in ((address, "Timed out trying to connect"), ("tpc://127.0.0.1:8786", "unknown address scheme")):
        with pytest.raises(UserError, match=f"dask_address {bad}: cannot reach a Dask scheduler .*{reason}") as err:
            preflight.preflight(_cfg(tmp_path, corpus, bad))
        assert "\n" not in str(err.value)
    assert not (tmp_path / "db").exists()

    config = tmp_path / "build.json"
    config.write_text(json.dumps({"sources": [{"path": str(corpus)}], "db_path": str(tmp_path / "db" / "c.duckdb"),
                                  "dask_address": "tpc://127.0.0.1:8786"}))
    code = "import sys\nfrom flows.cli import main\nrc = main(sys.argv[1:])\nprint('prefect' in sys.modules)\nsys.exit(rc)"
    res = subprocess.run([sys.executable, "-c", code, "run", "--config", str(config)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout.strip() == "False", (res.stdout, res.stderr[-2000:])
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("codeio: error: dask_address tpc://127.0.0.1:8786: cannot reach a Dask scheduler "
                           "(unknown address scheme 'tpc'") and line.endswith("fix the address"), res.stderr
    assert not (tmp_path / "db").exists()


def test_a_journal_still_being_written_is_folded_once_its_writer_ends(tmp_path, caplog, request, monkeypatch):
    """A killed flow's shards go on running on the Dask workers, appending to their journals. The
    next run folds journals into the ledger at its start: one folded and removed while a shard
    still writes it would lose that shard's later calls, and they would be sent again."""
    import logging
    import threading

    from flows.build import merge_journals
    from llm.ledger import JournalLedger
    from llm.types import ChatResult
    from storage.store import Store

    def result(key: str) -> ChatResult:
        return ChatResult(key=key, model="m", stage="answer", content=f"answer {key}", finish_reason="stop")

    # Prefect's logging set-up (at its import) replaces the root logger's handlers, caplog's too.
    logging.getLogger("codeio").addHandler(caplog.handler)
    request.addfinalizer(lambda: logging.getLogger("codeio").removeHandler(caplog.handler))
    monkeypatch.setattr("flows.build.JOURNAL_WAIT_LOG_S", 0.5)  # the wait is logged again every minute
    cfg = _cfg(tmp_path, tmp_path, "local")
    journal = Path(cfg.db_path).parent / "ledger" / "answer-0.jsonl"
    orphan = JournalLedger(journal)  # the shard of the killed run, still running
    orphan.append(result("a"))
    with Store(cfg.db_path) as store:
        merged: list[int] = []
        folding = threading.Thread(target=lambda: merged.append(merge_journals(store, cfg)), daemon=True)
        try:
            folding.start()
            folding.join(1.2)
            assert folding.is_alive(), "folded a journal that a shard still writes"
            waits = [r.getMessage() for r in caplog.records if "waiting for a shard of an interrupted run" in r.getMessage()]
            assert len(waits) >= 2 and "answer-0.jsonl" in waits[0] and "(waited " not in waits[0], caplog.text
            assert "(waited " in waits[-1] and "stopping that run's Dask workers ends the wait" in waits[-1], waits
            orphan.append(result("b"))
        finally:
            orphan.close()
        folding.join(10)
        assert merged == [2] and not journal.exists()
        assert sorted(k for (k,) in store.query("SELECT key FROM llm_calls")) == ["a", "b"]


def test_config_and_shard_context_pickle():
    """What a shard task is sent: the config and the context survive cloudpickle as they are."""
    cfg = _cfg(Path("/tmp/x"), Path("/tmp/c"), "local")
    ctx = ShardContext(config_key="k", cached_calls={"c": {"content": "x"}},
                       journal_path="/tmp/x/ledger/j.jsonl")
    assert cloudpickle.loads(cloudpickle.dumps(cfg)) == cfg
    assert cloudpickle.loads(cloudpickle.dumps(ctx)) == ctx


@pytest.mark.slow
@built
def test_local_dask_cluster_gives_identical_exports(thread_build, tmp_path):
    corpus, threaded, digest = thread_build
    states = _task_states(threaded["run_id"], threaded["task_runs"])
    assert len(states) == threaded["task_runs"] and all(s == "Completed" for s in states), states

    cfg = _cfg(tmp_path, corpus, "local")
    summary = _build(cfg, tmp_path / "results")
    assert _ledger_mismatches(cfg.db_path) == 0
    assert _digest(tmp_path / "out") == digest
    assert summary["task_runs"] == threaded["task_runs"]
    assert summary["executions"] == threaded["executions"]
    states = _task_states(summary["run_id"], summary["task_runs"])
    assert len(states) == summary["task_runs"]
    assert all(s == "Completed" for s in states), states  # run on the workers, not cache hits


@pytest.mark.slow
@built
def test_dask_cluster_by_address_uses_a_sandbox_pool_per_worker(thread_build, tmp_path):
    corpus, _threaded, digest = thread_build
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        # Without the result cache: the workers persist nothing and hand results back in memory.
        cfg = _cfg(tmp_path, corpus, cluster.scheduler_address).model_copy(update={"result_cache": False})
        summary = _build(cfg, tmp_path / "results")
        assert _digest(tmp_path / "out") == digest
        assert summary["executions"] > 0 and not any((tmp_path / "results").glob("*"))

        per_worker = client.run(_pool_pids)
        assert len(per_worker) == 2
        pids = [p for pid, pools in per_worker.values() for pool in pools for p in pool]
        for worker_pid, pools in per_worker.values():
            assert worker_pid != os.getpid()
            assert pools and all(pool for pool in pools), per_worker  # a live pool in each worker
        assert len(set(pids)) == len(pids)  # no two workers share a sandbox process
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids if _alive(p)], "sandbox workers outlived their Dask worker"


@pytest.mark.slow
def test_an_interrupt_stops_the_llm_calls_of_shards_on_dask_workers(tmp_path):
    """Dask does not stop a running task when its client goes away: a shard on a worker would go
    on sending its calls after Ctrl-C stopped the flow. The interrupted build tells every worker
    to cancel its run: the shard ends at once with RunCancelled and sends nothing more."""
    from flows.build import cancel_on_dask_workers
    from llm.errors import RunCancelled
    from llm.testserver import serve

    with serve(latency_s=2.0) as server, distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        cfg = BuildConfig.model_validate({
            "sources": [{"path": str(tmp_path)}], "db_path": str(tmp_path / "db.duckdb"), "provider": "http",
            "llm": {"base_url": server.base_url, "model": "test-model", "api_key_env": None, "max_concurrency": 2},
        })
        shard = client.submit(_shard_calls, cfg, "run-interrupted", 20)  # 20 s of calls, two at a time
        deadline = time.monotonic() + 30
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        assert cancel_on_dask_workers(client, "run-interrupted") == 1
        with pytest.raises(RunCancelled):
            shard.result(timeout=15)
        assert time.monotonic() - started < 5
        sent = len(server.requests)
        time.sleep(2.5)
        assert len(server.requests) == sent < 20


@pytest.mark.slow
@built
def test_an_interrupted_dask_build_reaches_its_workers():
    """The interrupted build finds the workers through its task runner's Dask client (a private
    attribute of prefect-dask's runner, set once the first shard is submitted)."""
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

    from flows.build import _dask_client, cancel_on_dask_workers

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        def interrupted() -> tuple[int, int]:
            before = cancel_on_dask_workers(_dask_client(), "run-x")  # no shard submitted, no client
            task(lambda: 1).submit().result()
            return before, cancel_on_dask_workers(_dask_client(), "run-x")

        assert interrupted() == (0, 2)


def _shard_calls(cfg: BuildConfig, run_id: str, n: int) -> int:
    """Run on a Dask worker: a shard's ``n`` LLM calls, as an answer shard sends them."""
    from llm.types import ChatRequest
    from tasks import llm_calls

    requests = [ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], stage="answer") for i in range(n)]
    return len(llm_calls.complete(requests, cfg, ShardContext(config_key="k", run_id=run_id))[0])


def _pool_pids() -> tuple[int, list[list[int]]]:
    """Run on a Dask worker: its pid and the sandbox worker pids of each pool it started."""
    from tasks import runtime

    return os.getpid(), [pool.worker_pids for pool in runtime._pools.values()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False
