"""`python -m deployments.serve` (and `codeio serve`): serve both deployments of the `codeio`
flow against a Prefect server until interrupted.

* ``codeio/build-dataset``: run from the UI (or `prefect deployment run`); its form starts
  with the settings given here. Runs queue one at a time.
* ``codeio/incremental-ingest``: on a cron schedule (hourly by default), scans the sources
  and builds only when something is new or unfinished. A run due while one is still going is
  cancelled, not queued: the next one catches up.

With ``PREFECT_API_URL`` set, that server is used; otherwise a local one is started on
127.0.0.1 (or one already answering there is reused), with its UI. Deployments are named per
server, so each database served on one server needs its own ``--name`` (``build-dataset-NAME``,
``incremental-ingest-NAME``); serving a second database under names another `codeio serve`
is serving is refused, since the two would run each other's builds.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DESCRIPTION = ("Serve the build-dataset (run from the UI) and incremental-ingest (scheduled) deployments "
               "against a Prefect server; a local one is started when PREFECT_API_URL is unset.")
DEFAULT_CRON = "0 * * * *"
DEFAULT_PORT = 4200
API_WAIT_S = 120.0
RUNS_END_WAIT_S = 30.0  # how long a stopping serve waits for its flow-run processes to end
RUN_SAMPLE_S = 0.5  # how often a serve looks at which flow runs its processes run


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `codeio serve` (shared by ``main``)."""
    p.add_argument("--config", help="TOML or JSON build config both deployments start from")
    p.add_argument("--corpus", action="append", help="directory, glob, or .jsonl/.parquet file (repeatable)")
    p.add_argument("--kind", choices=["mixed", "educational", "curated"], help="source kind for --corpus")
    p.add_argument("--unified", action="store_true", help="--corpus holds already-unified records")
    p.add_argument("--db", help="DuckDB file")
    p.add_argument("--out", help="export directory")
    p.add_argument("--provider", choices=["offline", "http"])
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", help="model name at the endpoint")
    p.add_argument("--api-key-env", help="environment variable holding the API key")
    p.add_argument("--cron", default=DEFAULT_CRON,
                   help=f"schedule of incremental-ingest, five cron fields (default: '{DEFAULT_CRON}', "
                        "hourly; '' for none)")
    p.add_argument("--timezone", default="UTC", help="time zone of --cron (default: UTC)")
    p.add_argument("--name", type=_deployment_suffix,
                   help="suffix of the deployments' names (build-dataset-NAME, incremental-ingest-NAME): "
                        "one per database served on the same Prefect server")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port of the local Prefect server when PREFECT_API_URL is unset (default: {DEFAULT_PORT})")


def _deployment_suffix(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use lowercase letters, digits and dashes (at most 40)")
    return text


def deployment_names(suffix: str | None = None) -> tuple[str, str]:
    """The names of the build-dataset and incremental-ingest deployments."""
    tail = f"-{suffix}" if suffix else ""
    return f"build-dataset{tail}", f"incremental-ingest{tail}"


def name_suffix(deployment_name: str | None) -> str | None:
    """The ``--name`` a deployment was served with (None: none, or not one of ours)."""
    for base in deployment_names():
        if deployment_name and deployment_name.startswith(base + "-"):
            return deployment_name[len(base) + 1:]
    return None


def deployment_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The form values both deployments start with; validated now, so a bad setting fails
    here rather than in the first scheduled run."""
    from deployments.flow import form_config, form_parameters
    from flows.build import preflight
    from flows.cli import check_corpus_flags
    from flows.config import load_config

    given = {
        "db_path": _abs(args.db), "output_dir": _abs(args.out), "provider": args.provider,
        "base_url": args.base_url, "model": args.model, "api_key_env": args.api_key_env,
    }
    config_file = _abs(args.config) or ""
    check_corpus_flags(args)
    # Settings not given on the command line come from the config file, then the defaults
    # (the export directory beside the database, as for `codeio run`).
    params = form_parameters(load_config(config_file or None, {"db_path": given["db_path"]}))
    params.update({k: v for k, v in given.items() if v is not None})
    params.update(corpus=[_abs(c) for c in args.corpus or []], kind=args.kind or "mixed",
                  unified=args.unified, config_file=config_file)
    params.update(db_path=_abs(params["db_path"]), output_dir=_abs(params["output_dir"]) or "")
    # An invalid combination, and sources, database or export directory that cannot be used
    # (a mistyped --corpus, say), are a UserError now, not a failure of every scheduled run.
    preflight(form_config(**params))
    return params


def build_deployments(params: dict[str, Any], cron: str = DEFAULT_CRON, timezone: str = "UTC",
                      suffix: str | None = None) -> list[Any]:
    """The two RunnerDeployments of the `codeio` flow (named with ``suffix``, if given)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from deployments.flow import codeio
    from flows.errors import UserError

    schedules = []
    if cron:
        try:
            _check_fields(cron)
            schedules = [Cron(cron, timezone=timezone)]
            _check_fires(cron, ZoneInfo(timezone))
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise UserError(f"invalid schedule --cron {cron!r} --timezone {timezone!r}: {exc}") from None
    build_name, ingest_name = deployment_names(suffix)
    build = codeio.to_deployment(
        name=build_name,
        description="Build CODEI/O and CODEI/O++ training data; only new or unfinished work is done.",
        parameters=params,
        concurrency_limit=1,
        tags=["codeio"],
    )
    ingest = codeio.to_deployment(
        name=ingest_name,
        description="Scan the sources on a schedule; build only what is new.",
        parameters={**params, "only_if_new": True},
        schedules=schedules,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        tags=["codeio"],
    )
    for deployment in (build, ingest):
        deployment._parameter_openapi_schema = _closed(deployment._parameter_openapi_schema)
    return [build, ingest]


def _check_fields(cron: str) -> None:
    """ValueError unless ``cron`` has the five fields of a crontab line (or is a nickname such
    as @daily): Prefect's croniter reads a sixth field as seconds and a seventh as the year, so
    '0 0 * * * *' would start a run every second of midnight's first minute."""
    fields = cron.split()
    if len(fields) != 5 and not (len(fields) == 1 and cron.strip().startswith("@")):
        raise ValueError(f"it has {len(fields)} field(s); give the five of a crontab line "
                         "(minute hour day-of-month month day-of-week, e.g. '0 * * * *')")


def _check_fires(cron: str, zone: ZoneInfo) -> None:
    """ValueError if ``cron`` never fires (the 31st of February): Prefect accepts it, and its
    server then schedules no run, saying why only in its own log."""
    try:  # Prefect's own copy (private): a Prefect without it skips this check, not the serve
        from prefect._vendor.croniter import CroniterBadDateError, croniter
    except ImportError:
        return
    try:
        croniter(cron, datetime.now(zone)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError("it names no date that exists, so it would never run") from None


def _closed(schema: Any) -> Any:
    """The flow's parameter schema, refusing parameters it does not name: the server then
    rejects a run with an unknown parameter (from the API, or the UI's JSON editor) when it
    is created, as it rejects a wrong type, instead of the run crashing on a signature
    mismatch with the reason only in a traceback in the log."""
    from prefect.utilities.callables import ParameterSchema

    class ClosedParameterSchema(ParameterSchema):
        additionalProperties: bool = False

    return ClosedParameterSchema(**schema.model_dump(exclude_unset=True), additionalProperties=False)


def serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; start a local Prefect server first when none is configured."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_UI_URL, temporary_settings

    from deployments.server import LocalPrefectServer, ServerError, api_healthy, wait_healthy
    from flows.errors import UserError

    params = deployment_parameters(args)
    deployments = build_deployments(params, args.cron, args.timezone, args.name)
    api_url = PREFECT_API_URL.value()
    if api_url:
        if not wait_healthy(api_url, API_WAIT_S):  # a server started alongside may still be booting
            raise UserError(f"the Prefect API at {api_url} (PREFECT_API_URL) did not answer within "
                            f"{API_WAIT_S:.0f}s; start that server, or unset PREFECT_API_URL to get a local one")
        return _serve(deployments, params, args)
    api_url = f"http://127.0.0.1:{args.port}/api"
    ui_url = f"http://127.0.0.1:{args.port}"
    server = None
    if api_healthy(api_url):
        print(f"codeio: using the Prefect server already at {ui_url}", file=sys.stderr)
    else:
        print(f"codeio: starting a local Prefect server at {ui_url} ...", file=sys.stderr)
        log_path = PREFECT_HOME.value() / f"codeio-server-{args.port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            server = LocalPrefectServer(args.port, log_path=log_path).start()
        except ServerError as exc:
            raise UserError(f"cannot start a Prefect server on port {args.port}: {exc} "
                            "(use --port, or set PREFECT_API_URL)") from None
    try:
        os.environ["PREFECT_API_URL"] = api_url  # for the flow-run processes the runner starts
        with temporary_settings({PREFECT_API_URL: api_url, PREFECT_UI_URL: ui_url}):
            return _serve(deployments, params, args, server=server.process.pid if server and server.process else None)
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if server is not None:
            server.stop()


class ServedRuns:
    """The flow runs this serve's runner started, by the ids in its flow-run processes'
    environment (``PREFECT__FLOW_RUN_ID``), sampled while it serves: Prefect's runner keeps
    no list of them that lasts until it has stopped."""

    def __init__(self, exclude: set[int]) -> None:
        self.ids: set[str] = set()
        self.exclude = exclude  # child processes that run no flow (the local server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="codeio-served-runs", daemon=True)

    def __enter__(self) -> "ServedRuns":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _watch(self) -> None:
        while not self._stop.wait(RUN_SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        for pid in _child_processes(self.exclude):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue  # ended meanwhile
            for entry in environ:
                if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
                    self.ids.add(entry.split(b"=", 1)[1].decode())


def _end_runs_left_going(runs: ServedRuns) -> None:
    """Mark Crashed the runs this serve started that it leaves unfinished, and their subflow
    runs.

    On Ctrl-C Prefect's runner stops its flow-run processes, and may close their output and
    end before they report their runs' end: those runs stayed Running for good, each holding
    its deployment's one slot, so every later run of it was cancelled (incremental-ingest)
    or queued forever (build-dataset). The `build-dataset` subflow run inside such a run (the
    build itself, in the same process) stayed Running too, in the UI's list of runs going.
    Once this serve's flow-run processes are gone (waited for up to ``RUNS_END_WAIT_S``), none
    of its runs, and none of their subflows, can still be going."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.states import Crashed

    deadline = time.monotonic() + RUNS_END_WAIT_S
    while _child_processes(runs.exclude) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        with get_client(sync_client=True) as client:
            served = [client.read_flow_run(UUID(run_id)) for run_id in sorted(runs.ids)]
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id for run in served]))) if served else []
            for run in served + subflows:
                if _going(run):
                    client.set_flow_run_state(run.id, Crashed(
                        message="codeio serve stopped while the run was going (the next run finishes its work)"))
                    print(f"codeio: run {run.name} ended with the serve (Crashed)", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - stopping anyway; say what is left
        print(f"codeio: warning: could not mark the runs this serve left going as Crashed "
              f"({type(exc).__name__}); see the UI", file=sys.stderr)


def _going(run: Any) -> bool:
    """Whether a flow run is under way. Not a run sent back to wait (Scheduled, awaiting its
    deployment's slot): the next serve runs it."""
    from prefect.client.schemas.objects import StateType

    return run.state is not None and run.state.type in {StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}


def _child_processes(exclude: set[int]) -> list[int]:
    """Live (not zombie) child processes of this process, but those in ``exclude``."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # ended meanwhile
        if int(ppid) == me and state != "Z":
            found.append(int(entry.name))
    return found


def _serve(deployments: list[Any], params: dict[str, Any], args: argparse.Namespace, server: int | None = None) -> int:
    """Serve until interrupted, then end the runs left going (``server``: the pid of the
    local server this serve started, not a flow-run process)."""
    check_names_free(deployments, params["db_path"])
    when = f"'{args.cron}' ({args.timezone})" if args.cron else "no schedule"
    build_name, ingest_name = deployment_names(args.name)
    print(f"codeio: serving codeio/{build_name} and codeio/{ingest_name} ({when}); "
          f"database {params['db_path']}; Ctrl-C stops", file=sys.stderr)
    with ServedRuns(exclude={server} if server else set()) as runs:
        try:
            _run_runner(deployments)
        finally:
            _end_runs_left_going(runs)
    return 0


def _run_runner(deployments: list[Any]) -> None:
    """``prefect.serve(*deployments)``, but a SIGTERM stops it as Ctrl-C does.

    Prefect's runner handles SIGTERM by calling its ``stop()`` (a coroutine there, never
    awaited) and ``sys.exit`` from inside its event loop: every task dies mid-await, and
    asyncio logs a RuntimeWarning and a traceback per task (~40 lines, with a run going).
    Here SIGTERM cancels the runner's main task, as asyncio does on Ctrl-C: the runner pauses
    its deployments and ends its flow-run processes as then, and the serve returns."""
    import asyncio

    from prefect.runner import Runner

    class StopsOnSigterm(Runner):
        main: asyncio.Task | None = None
        terminated = False

        async def serve(self) -> None:
            self.main = asyncio.current_task()
            await self.start()

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self.terminated = True
            if self.main is not None:
                self.main.get_loop().call_soon_threadsafe(self.main.cancel)

    runner = StopsOnSigterm(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    _print_serve_start(deployments)
    try:
        asyncio.run(runner.serve())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"codeio: stopped serving ({'SIGTERM' if runner.terminated else 'Ctrl-C'})", file=sys.stderr)


def _print_serve_start(deployments: list[Any]) -> None:
    """Prefect's table of the served deployments and how to run them (as ``prefect.serve``
    prints it); its private helper moving skips the table, not the serve."""
    try:
        from prefect.flows import _display_serve_start_message
    except ImportError:
        return
    _display_serve_start_message(*deployments)


def check_names_free(deployments: list[Any], db_path: str) -> None:
    """Refuse to take over deployments another `codeio serve` is serving for another database.

    Registering a deployment replaces the server's one of that name, and every runner serving
    that name picks up its runs: the other serve would go on building this database, and its
    own would no longer be built. A deployment counts as served while its runner polls
    (every ``PREFECT_RUNNER_POLL_FREQUENCY`` seconds); one left from a stopped serve is
    replaced, with a line saying which database it built."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY

    from flows.errors import UserError

    served_within = 3 * PREFECT_RUNNER_POLL_FREQUENCY.value()
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            full_name = deployment.full_name
            try:
                existing = client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                continue
            other = (existing.parameters or {}).get("db_path")
            if other == db_path:
                continue
            polled = existing.last_polled
            age = (datetime.now(timezone.utc) - polled).total_seconds() if polled else None
            if age is not None and age < served_within:
                raise UserError(
                    f"{full_name} is being served for {other} (its runner polled {age:.0f} s ago); serve "
                    f"{db_path} under names of its own with --name NAME (if you have just stopped that "
                    f"serve, try again in {served_within - age:.0f} s)")
            print(f"codeio: {full_name} built {other}; it now builds {db_path}", file=sys.stderr)


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m deployments.serve`: `codeio serve`, with the CLI's settings
    defaults and its one-line errors (and exit statuses) for everything a user can fix."""
    from flows.cli import main as codeio_main

    return codeio_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
