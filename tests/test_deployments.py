"""The served deployments against a real Prefect server on loopback: a UI-style trigger of
`build-dataset` completes and exports; the scheduled `incremental-ingest` is declared with a
cron schedule and a concurrency limit of 1, the server schedules its runs, and it skips when
nothing is new. Plus the form's
mapping onto BuildConfig, without a server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.config import SAMPLE_CORPUS, BuildConfig
from reliability_helpers import seeded_prefect_home

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A serve's runner looks for runs to start every second instead of every ten (Prefect's
# default): a run created through the API starts within a second, not up to ten later.
QUICK_RUNNER = {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}


def _corpus(tmp_path: Path, n: int = 3) -> Path:
    dst = tmp_path / "corpus"
    dst.mkdir()
    for f in sorted(SAMPLE_CORPUS.glob("*.py"))[:n]:
        shutil.copy(f, dst / f.name)
    return dst


# -- the form, without a server ------------------------------------------------------------------


def test_form_enums_and_defaults_match_build_config():
    """The flat form may not drift from BuildConfig: same choices, same defaults."""
    from prefect.utilities.callables import parameter_schema

    from deployments.flow import codeio, form_config

    props = parameter_schema(codeio.fn).model_dump()["properties"]
    schema = BuildConfig.model_json_schema()
    defs = schema["$defs"]
    assert props["provider"]["enum"] == schema["properties"]["provider"]["enum"]
    assert props["export_mode"]["enum"] == defs["ExportSettings"]["properties"]["mode"]["enum"]
    assert props["kind"]["enum"] == defs["SourceSpec"]["properties"]["kind"]["enum"]
    assert all(p.get("description") for p in props.values()), "every form field needs a description"
    assert form_config() == BuildConfig()


def test_the_form_signature_and_build_config_do_not_drift_apart():
    """The flow's signature is the form's one definition: each field sets the BuildConfig
    setting it names (with the setting's choices, bounds and default) or is one the form
    handles itself, and form_parameters inverts form_config field by field."""
    import inspect

    from prefect.utilities.callables import parameter_schema

    from deployments.flow import codeio, form_config, form_parameters, form_settings

    params = inspect.signature(codeio.fn).parameters
    settings = form_settings()
    assert set(params) - set(settings) == {"corpus", "kind", "unified", "config_file", "only_if_new"}
    props = parameter_schema(codeio.fn).model_dump()["properties"]
    defaults = form_parameters(BuildConfig())
    for name, setting in settings.items():
        *sections, key = setting.path.split(".")
        model = BuildConfig
        for section in sections:
            model = model.model_fields[section].annotation
        assert key in model.model_fields, f"{name}: BuildConfig has no setting {setting.path}"
        expected = model.model_json_schema()["properties"][key]
        for bound in ("enum", "minimum", "maximum"):
            assert props[name].get(bound) == expected.get(bound), (name, bound)
        assert params[name].default == defaults[name], name
    changed = {"db_path": "/d/c.duckdb", "output_dir": "/o", "provider": "http", "base_url": "http://h:1/v1",
               "model": "m", "api_key_env": "", "revision_turns": 2, "export_mode": "rejection",
               "shard_size": 7, "max_parallel_shards": 3,
               "refresh_cache": True, "result_cache": False}
    assert set(changed) == set(settings), "give every setting of the form a changed value here"
    form_defaults = {name: p.default for name, p in params.items() if name != "only_if_new"}
    assert form_parameters(form_config(**changed)) == {**form_defaults, **changed}


def test_form_overrides_the_config_file(tmp_path):
    from deployments.flow import form_config

    cfg_file = tmp_path / "build.toml"
    cfg_file.write_text(
        '[llm]\nprice_per_1k_prompt = 0.5\nmodel = "from-file"\n[sampling]\ngenerator_calls = 7\n'
        '[[sources]]\npath = "x"\nkind = "curated"\n'
    )
    cfg = form_config(config_file=str(cfg_file), model="from-form", api_key_env="", revision_turns=2)
    assert cfg.sampling.generator_calls == 7  # kept from the file
    assert cfg.llm.price_per_1k_prompt == 0.5
    assert cfg.llm.model == "from-form" and cfg.llm.api_key_env is None
    assert cfg.prediction.revision_turns == 2
    assert [s.kind for s in cfg.sources] == ["curated"]  # an empty corpus keeps the file's sources
    cfg = form_config(config_file=str(cfg_file), corpus=["a", "b"], kind="educational", unified=True)
    assert [(s.path, s.kind, s.format) for s in cfg.sources] == [("a", "educational", "unified"), ("b", "educational", "unified")]


def test_invalid_form_is_a_user_error(tmp_path):
    from deployments.flow import form_config
    from flows.errors import UserError

    with pytest.raises(UserError, match="base_url"):
        form_config(provider="http", base_url="localhost:8000")
    with pytest.raises(UserError, match="not found"):
        form_config(config_file=str(tmp_path / "missing.toml"))


def test_a_run_with_a_wrong_setting_fails_with_the_line_to_fix(tmp_path, prefect_harness):
    """A form naming a missing corpus or config file: the run fails, its state's message is
    what to fix, and its log says it in one line, without the tracebacks of the flows' frames
    (four per run, most of them Prefect's engine)."""
    import logging

    from deployments.flow import codeio

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    run_logger = logging.getLogger("prefect.flow_runs")
    run_logger.addHandler(handler)
    missing = tmp_path / "missing"
    cases = {f"corpus path {missing} does not exist": {"corpus": [str(missing)]},
             f"config file {missing}.toml not found": {"config_file": f"{missing}.toml"}}
    try:
        for line, form in cases.items():
            records.clear()
            state = codeio(db_path=str(tmp_path / "c.duckdb"), **form, return_state=True)
            assert state.is_failed() and state.message == line
            assert line in [r.getMessage() for r in records]
            assert [r.getMessage() for r in records if r.exc_info] == []
    finally:
        run_logger.removeHandler(handler)


def test_serve_rejects_bad_settings_before_serving(tmp_path, capsys):
    from deployments.serve import main

    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--cron", "every tuesday", "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "invalid schedule" in capsys.readouterr().err
    assert main(["--timezone", "Mars/Olympus", "--db", str(tmp_path / "x.duckdb")]) == 2
    # A schedule with no date that exists: Prefect takes it, and its server never runs it.
    from deployments.flow import form_parameters
    from deployments.serve import build_deployments
    from flows.errors import UserError

    with pytest.raises(UserError, match="'0 0 31 2 [*]'.*never run"):
        build_deployments(form_parameters(BuildConfig()), cron="0 0 31 2 *")


def test_serve_refuses_a_cron_without_five_fields(tmp_path, capsys):
    """croniter reads a sixth field as seconds: '0 0 * * * *' would run 60 builds at midnight."""
    from deployments.flow import form_parameters
    from deployments.serve import build_deployments, main
    from flows.errors import UserError

    params = form_parameters(BuildConfig())
    for cron in ("0 0 * * * *", "0 0 * * * * 2030", "0 0 * *"):
        # Refused before anything is served (on a cron it took, main would serve until stopped).
        with pytest.raises(UserError, match="give the five of a crontab line"):
            build_deployments(params, cron=cron)
        assert main(["--cron", cron, "--db", str(tmp_path / "x.duckdb")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"codeio: error: invalid schedule --cron '{cron}'"), err
    for cron in ("0 3 * * *", " 0  3 * * * ", "@daily"):
        build_deployments(params, cron=cron)


def test_scan_finds_new_and_unfinished_work(tmp_path):
    from deployments.flow import scan_sources
    from storage.models import ShardResult
    from storage.store import Store
    from tasks import ingest as ingest_mod

    corpus = _corpus(tmp_path, 2)
    cfg = BuildConfig.model_validate({
        "sources": [{"path": str(corpus), "kind": "mixed"}],
        "db_path": str(tmp_path / "db" / "c.duckdb"),
        "output_dir": str(tmp_path / "out"),
    })
    assert scan_sources(cfg).new_items == 2 and scan_sources(cfg).reason == "no store yet"
    with Store(cfg.db_path) as s:  # a build that died after ingest: nothing new, but unfinished
        s.start_run("r1", json.loads(cfg.model_dump_json()))
        items = [it.as_row() for it in ingest_mod.iter_source(str(corpus), cfg.sources[0].source_name, "mixed")]
        log_rows, raw_rows = ingest_mod.validate_items(items, cfg.max_file_bytes)
        s.write_ingest(ShardResult(stage="ingest", config_key="k", rows={"ingest_log": log_rows, "raw_files": raw_rows}))
    pending = scan_sources(cfg)
    assert (pending.new_items, pending.reason, pending.due) == (0, "last build interrupted", True)
    with Store(cfg.db_path) as s:
        s.finish_run("r1", "completed", {})
    assert not scan_sources(cfg).due
    shutil.copy(sorted(SAMPLE_CORPUS.glob("*.py"))[5], corpus / "new.py")
    assert scan_sources(cfg).new_items == 1
    (corpus / "new.py").unlink()
    # How a build runs (shard sizes, parallelism) is not a reason to build again; what it
    # makes (the model, say) is.
    assert not scan_sources(cfg.model_copy(update={"shard_size": 7, "max_parallel_shards": 5})).due
    other = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"model": "another-model"}), "provider": "http"})
    assert scan_sources(other).reason == "settings changed"


# -- served against a real server ---------------------------------------------------------------


@pytest.mark.slow
def test_served_build_dataset_runs_from_the_api(tmp_path):
    from deployments.server import LocalPrefectServer, stop_process_group

    corpus = _corpus(tmp_path, 3)
    db = tmp_path / "db" / "codeio.duckdb"
    out = tmp_path / "out"
    config = tmp_path / "build.json"
    config.write_text(json.dumps({"sandbox": {"workers": 1}, "sampling": {"generator_calls": 100}, "shard_size": 8}))
    home = seeded_prefect_home(tmp_path / "prefect-home")
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    }
    # The scheduler looks for deployments to schedule every second instead of every minute.
    server_env = {**env, "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}
    server = LocalPrefectServer(_free_port(), env=server_env, log_path=tmp_path / "server.log")
    serve_log = tmp_path / "serve.log"
    serving = None
    try:
        # Boot both at once: serving waits for the API, and imports meanwhile.
        with open(serve_log, "wb") as log:
            serving = subprocess.Popen(
                [sys.executable, "-m", "deployments.serve", "--config", str(config), "--corpus", str(corpus),
                 "--kind", "mixed", "--db", str(db), "--out", str(out), "--cron", _CRON_NOT_NOW],
                cwd=tmp_path, env={**os.environ, **env, **QUICK_RUNNER, "PREFECT_API_URL": server.api_url},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        server.start(timeout_s=120)
        _check_served(server.api_url, serving, serve_log, db, out)
        _check_second_database(server.api_url, tmp_path, corpus, {**os.environ, **env}, db)
    finally:
        if serving is not None:
            stop_process_group(serving, grace_s=5, first=signal.SIGINT)  # what Ctrl-C sends
        server.stop(grace_s=5)


@pytest.mark.slow
def test_the_served_server_remembers_slot_leases_across_a_restart(tmp_path):
    """`codeio serve`'s server keeps concurrency leases on disk. Restarted while a run held a
    slot (Ctrl-C of the serve stops it, or a reboot), it still knows the lease, so it takes
    the slot back once the lease expires; a server that forgot it kept the slot taken for
    good, and every later run of that deployment (one at a time) was cancelled or waited."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.server import LocalPrefectServer

    env = {"PREFECT_HOME": str(seeded_prefect_home(tmp_path / "home")), "PREFECT_UI_ENABLED": "false",
           "PREFECT_API_BLOCKS_REGISTER_ON_START": "false"}
    port = _free_port()
    lease_id = None
    for attempt in ("before", "after"):
        with LocalPrefectServer(port, env=env, log_path=tmp_path / f"server-{attempt}.log") as server:
            with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
                if lease_id is None:
                    client.upsert_global_concurrency_limit_by_name("slot", limit=1)
                    lease_id = client.increment_concurrency_slots_with_lease(
                        names=["slot"], slots=1, mode="concurrency", lease_duration=300).json()["lease_id"]
                else:
                    client.renew_concurrency_lease(UUID(lease_id), lease_duration=60)  # raises if forgotten


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_of_serve_leaves_no_run_running(tmp_path, stop):
    """Ctrl-C (or SIGTERM) of a `codeio serve` that started its own server, while a run waits
    for its database: the run ends (Crashed) and gives back build-dataset's one slot. Prefect's
    runner stopped the run's process before it reported its end, so the run stayed Running for
    good, holding the slot: every later run queued behind it. The stop says so in a line, not
    in the tracebacks Prefect's own SIGTERM handler left (it exits inside its event loop)."""
    import fcntl

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.flow import store_lock_path
    from deployments.server import LocalPrefectServer, stop_process_group

    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    db = tmp_path / "db" / "c.duckdb"
    home = {"PREFECT_HOME": str(seeded_prefect_home(tmp_path / "home")), "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_BLOCKS_REGISTER_ON_START": "false"}
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({**home, **QUICK_RUNNER}, PREFECT_LOGGING_LEVEL="WARNING")
    log = tmp_path / "serve.log"
    store_lock_path(str(db)).parent.mkdir(parents=True)
    with open(store_lock_path(str(db)), "a") as lock, open(log, "wb") as out:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run holds the database: the served run waits
        serving = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--corpus", str(_corpus(tmp_path, 1)), "--db", str(db),
             "--cron", "", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                dep, _ = _registered(client, ["codeio/build-dataset", "codeio/incremental-ingest"], serving, log, 120)
                run = client.create_flow_run_from_deployment(dep.id)
                deadline = time.monotonic() + 90
                while not client.read_flow_run(run.id).state.is_running():
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.5)
                time.sleep(2)
            if stop == "ctrl-c":
                os.killpg(serving.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
            else:
                serving.send_signal(signal.SIGTERM)  # what `kill PID`, systemd and `docker stop` send
            assert serving.wait(90) == 0, log.read_text()[-3000:]
        finally:
            stop_process_group(serving, grace_s=5)
    output = log.read_text()
    assert "Traceback" not in output and "Warning:" not in output, output[-3000:]
    assert f"codeio: stopped serving ({'Ctrl-C' if stop == 'ctrl-c' else 'SIGTERM'})" in output, output[-3000:]
    with LocalPrefectServer(port, env=home, log_path=tmp_path / "server.log") as server:
        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            state = client.read_flow_run(run.id).state
            slots = {limit.name: limit.active_slots for limit in client.read_global_concurrency_limits()}
    assert state.is_final(), (state, log.read_text()[-3000:])
    assert slots[f"deployment:{dep.id}"] == 0  # the next run of build-dataset starts


def test_a_stopping_serve_ends_the_subflow_runs_of_the_runs_it_leaves_going(prefect_harness, capsys):
    """The served flow runs `build-dataset` as a subflow in its own process: when a stopping
    serve marks its run Crashed, the subflow run (the build itself) is ended too, not left
    Running in the UI for good. A finished subflow run and a run another serve ran are left."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    from deployments import serve

    @flow(name="codeio-test-served")
    def served() -> None: ...

    @flow(name="codeio-test-build")
    def build() -> None: ...

    @task(name="codeio-test-subflow-call")
    def call() -> None: ...

    with get_client(sync_client=True) as client:
        parent = client.create_flow_run(served, state=Running())
        other = client.create_flow_run(served, state=Running())  # another serve's
        children = []
        for n, state in enumerate((Running(), Completed())):
            wrapper = client.create_task_run(call, flow_run_id=parent.id, dynamic_key=str(n), state=Running())
            children.append(client.create_flow_run(build, parent_task_run_id=wrapper.id, state=state))
        # This process's own children (the test servers, sandbox pools) stand for the serve's
        # server: a stopping serve waits for every other child of its (up to RUNS_END_WAIT_S).
        runs = serve.ServedRuns(exclude=set(serve._child_processes(set())))
        runs.ids = {str(parent.id)}
        serve._end_runs_left_going(runs)
        states = {run.id: client.read_flow_run(run.id).state for run in (parent, other, *children)}
    assert states[parent.id].is_crashed() and states[children[0].id].is_crashed()
    assert states[children[1].id].is_completed() and states[other.id].is_running()
    assert f"run {children[0].name} ended with the serve (Crashed)" in capsys.readouterr().err


def test_a_stopping_serve_ends_only_the_runs_its_own_processes_ran():
    """A stopping serve marks Crashed the unfinished runs its flow-run processes ran, known by
    the run id in their environment; not every unfinished run of its deployments (another
    serve of the same database serves them too, and its runs are going)."""
    from deployments.serve import ServedRuns

    run_id = "0190a0c0-0000-7000-8000-000000000001"
    with ServedRuns(exclude=set()) as runs:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 env={**os.environ, "PREFECT__FLOW_RUN_ID": run_id})
        try:
            deadline = time.monotonic() + 10
            while run_id not in runs.ids and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            child.kill()
            child.wait()
    assert runs.ids == {run_id}


def _check_second_database(api_url: str, tmp_path: Path, corpus: Path, env: dict[str, str], db: Path) -> None:
    """A second database on the same server: under the served names it is refused in one
    line (the two serves would run each other's builds); under --name it gets its own pair."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.server import stop_process_group

    db2 = tmp_path / "db2" / "codeio.duckdb"
    command = [sys.executable, "-m", "deployments.serve", "--config", str(tmp_path / "build.json"),
               "--corpus", str(corpus), "--db", str(db2), "--cron", ""]
    env = {**env, "PREFECT_API_URL": api_url}
    # (With Prefect's default poll frequency: it counts the first serve's deployment as served
    # if polled within the last 30 s, and that serve polls every second.)
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"codeio: error: codeio/build-dataset is being served for {db} ")
    assert "--name NAME" in lines[0]
    log = tmp_path / "serve2.log"
    with open(log, "wb") as out:
        second = subprocess.Popen(command + ["--name", "second"], cwd=tmp_path, env={**env, **QUICK_RUNNER},
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            dep, ingest = _registered(client, ["codeio/build-dataset-second", "codeio/incremental-ingest-second"],
                                      second, log, 60)
            assert dep.parameters["db_path"] == str(db2)
            assert ingest.parameters["db_path"] == str(db2)
            assert client.read_deployment_by_name("codeio/build-dataset").parameters["db_path"] == str(db)
            # Its runs' artifacts have keys of their own (keys are per server, as names are).
            run = run_deployment("codeio/build-dataset-second", timeout=90, poll_interval=1)
            assert run.state is not None and run.state.is_completed(), (run.state, log.read_text()[-3000:])
            keys = {a.key for a in client.read_artifacts()} - {None}
            assert {"codeio-summary", "codeio-second-summary"} <= keys, keys
            summaries = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=["codeio-second-summary"])))
            assert f"database `{db2}`" in summaries[0].data
    finally:
        stop_process_group(second, grace_s=5, first=signal.SIGINT)


def _registered(client, names: list[str], serving: subprocess.Popen, log: Path, timeout_s: float) -> list:
    """The deployments ``names`` once a serve has registered them all (its runner registers
    them one after the other when it starts); fails if that serve exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return [client.read_deployment_by_name(name) for name in names]
        except Exception:  # noqa: BLE001 - ObjectNotFound until registered
            assert serving.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "deployments not registered: " + log.read_text()
            time.sleep(0.5)


# Daily, twelve hours from when the tests start: a schedule that fires while the test runs
# (as "0 3 * * *" did for a run at 03:00 UTC) adds an ingest run the test does not expect.
_CRON_NOT_NOW = f"0 {(time.gmtime().tm_hour + 12) % 24} * * *"


def _check_served(api_url: str, serving: subprocess.Popen, serve_log: Path, db: Path, out: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.flow import store_lock_name
    from storage.store import Store

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        build_dep, ingest_dep = _registered(client, ["codeio/build-dataset", "codeio/incremental-ingest"],
                                            serving, serve_log, 30)
        assert build_dep.parameters["db_path"] == str(db)
        assert build_dep.global_concurrency_limit is not None and build_dep.global_concurrency_limit.limit == 1
        assert ingest_dep.global_concurrency_limit is not None and ingest_dep.global_concurrency_limit.limit == 1
        assert ingest_dep.parameters["only_if_new"] is True
        assert ingest_dep.concurrency_options.collision_strategy == "CANCEL_NEW"
        assert [s.schedule.cron for s in ingest_dep.schedules] == [_CRON_NOT_NOW]
        # ...and the server's scheduler turns it into scheduled runs (it could not, silently,
        # under SQLAlchemy 2.1: only the server's log said so).
        deadline = time.monotonic() + 30
        while not client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[ingest_dep.id]))):
            assert time.monotonic() < deadline, "the scheduler made no run of incremental-ingest"
            time.sleep(0.5)
        assert "output_dir" in build_dep.parameter_openapi_schema["properties"]
        # A parameter the flow does not take is refused when the run is created (as a wrong type
        # is), not left to crash the run on a signature mismatch.
        for bad in ({"no_such_setting": 1}, {"shard_size": "many"}):
            with pytest.raises(Exception, match="409"):
                client.create_flow_run_from_deployment(build_dep.id, parameters=bad)

        run = run_deployment("codeio/build-dataset", timeout=90, poll_interval=1)
        assert run.state is not None and run.state.is_completed(), (run.state, serve_log.read_text()[-3000:])
        assert (out / "codeio.jsonl").stat().st_size > 0
        assert (out / "codeio_pp.jsonl").stat().st_size > 0
        assert client.read_global_concurrency_limit_by_name(store_lock_name(str(db))).limit == 1

        # Nothing new since: the scheduled ingest skips the build (no second run in the store).
        run = run_deployment("codeio/incremental-ingest", timeout=60, poll_interval=1)
        assert run.state is not None and run.state.is_completed(), (run.state, serve_log.read_text()[-3000:])
    with Store(db, read_only=True) as s:
        assert s.query("SELECT status, count(*) FROM runs GROUP BY ALL") == [("completed", 1)]
        assert s.query("SELECT count(*) FROM ingest_log")[0][0] == 3


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """The first line ``proc`` prints within ``timeout_s`` (None if it prints none)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline().strip() if ready else None


def test_runs_on_one_database_wait_for_each_other_but_not_for_a_dead_one(tmp_path, prefect_harness):
    """A run holding the database makes the next one wait; a run killed while holding it
    (SIGKILL, an OOM kill, a reboot) does not: the next run takes the database at once, though
    the dead run's Prefect slot is still taken (a server restarted meanwhile, which forgets
    the slot's lease, would keep it taken for good; this one would for 5 minutes)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from deployments.flow import store_lock_name

    db = str(tmp_path / "db" / "c.duckdb")
    holder = ("import sys, time\nfrom deployments.flow import store_lock\n"
              "with store_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}

    def hold(seconds: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", holder, db, str(seconds)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, text=True)

    first, second = hold(600), None
    try:
        assert _first_line(first, 60) == "held"
        second = hold(0)
        assert _first_line(second, 8) is None  # waits for the first
        first.kill()
        first.wait()
        assert _first_line(second, 30) == "held"
        assert second.wait(30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(store_lock_name(db)).active_slots == 0


def test_serve_exports_beside_its_database_and_kind_needs_a_corpus(tmp_path):
    import argparse

    from deployments.flow import form_config
    from deployments.serve import add_arguments, deployment_parameters
    from flows.errors import UserError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    params = deployment_parameters(parser.parse_args(["--db", str(tmp_path / "b" / "c.duckdb")]))
    # The form leaves the export directory empty: it follows whatever database the form names.
    assert params["output_dir"] == ""
    assert form_config(**params).output_dir == str(tmp_path / "b" / "export")
    other = {**params, "db_path": str(tmp_path / "d" / "e.duckdb")}
    assert form_config(**other).output_dir == str(tmp_path / "d" / "export")
    given = deployment_parameters(parser.parse_args(["--db", str(tmp_path / "c.duckdb"), "--out", str(tmp_path / "o")]))
    assert given["output_dir"] == str(tmp_path / "o")
    for flags in (["--kind", "curated"], ["--unified"]):
        with pytest.raises(UserError, match="describe --corpus, which is not given"):
            deployment_parameters(parser.parse_args(flags))
    # A mistyped corpus is refused when serving starts, not in every scheduled run after it.
    missing = tmp_path / "corpsu"
    with pytest.raises(UserError, match=f"corpus path {missing} does not exist"):
        deployment_parameters(parser.parse_args(["--corpus", str(missing), "--db", str(tmp_path / "c.duckdb")]))


def test_a_scheduled_ingest_skips_a_database_another_build_holds(tmp_path):
    import logging

    from deployments.flow import build_unless_idle
    from storage.store import Store

    cfg = BuildConfig.model_validate({"sources": [{"path": str(_corpus(tmp_path, 1)), "kind": "mixed"}],
                                      "db_path": str(tmp_path / "db" / "c.duckdb")})
    Store(cfg.db_path).close()
    holder = subprocess.Popen(  # `codeio run` holding the database
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "time.sleep(60)", cfg.db_path],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = build_unless_idle(cfg, True, logging.getLogger("test"))
    finally:
        holder.kill()
        holder.wait()
    assert result == {"skipped": True, "busy": True, "db_path": cfg.db_path}


@pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted to send logs")  # no run here
def test_a_served_run_stopped_by_ctrl_c_is_logged_without_a_traceback():
    """Prefect logs an interrupted run ("Engine execution interrupted by base exception") with
    the traceback of wherever the signal landed: a served run's process gets its serve's
    Ctrl-C too, and that traceback turned up under serve's one-line stop (seen in a test run
    whose Ctrl-C came while the run waited for its database)."""
    import logging

    import deployments.flow  # noqa: F401 - importing it is what quiets the run loggers

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    logger, keep = logging.getLogger("prefect.flow_runs"), Keep()
    logger.addHandler(keep)
    try:
        for stop in (KeyboardInterrupt(), ValueError("a real failure")):
            try:
                raise stop
            except BaseException:
                logger.error("Engine execution interrupted by base exception", exc_info=True)
    finally:
        logger.removeHandler(keep)
    interrupted, failed = keep.records
    assert interrupted.getMessage() == "Engine execution interrupted by base exception"
    assert interrupted.exc_info is None and "Traceback" not in logging.Formatter().format(interrupted)
    assert failed.exc_info is not None  # other errors keep theirs
