"""The `codeio` command line: run, stats, export, report, doctor, serve, cache.

Every user error is one line on stderr and a non-zero exit; nothing already done is lost.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

# Offline by default: no telemetry, and the temporary Prefect server needs no internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# Prefect's default 20 s is too short for its temporary server on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

EXIT_USER = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codeio", description="Build CodeI/O reasoning training data.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML or JSON build config (unknown keys are errors)")
        sp.add_argument("--db", help="DuckDB file (default: codeio-out/codeio.duckdb)")

    run = sub.add_parser("run", help="run the build_dataset flow", description=(
        "Ingest the corpus, transform, sample I/O pairs, build prediction prompts, answer, "
        "verify, revise and export. Re-running does only missing work."))
    common(run)
    run.add_argument("--corpus", action="append", help="directory, glob, or .jsonl/.parquet file (repeatable)")
    run.add_argument("--kind", choices=["mixed", "educational", "curated"], help="source kind for --corpus")
    run.add_argument("--unified", action="store_true", help="--corpus holds already-unified records")
    run.add_argument("--out", help="export directory (default: export/ beside the database)")
    run.add_argument("--provider", choices=["offline", "http"],
                     help="offline: no LLM, the bundled stand-in (the default); http: an OpenAI-compatible endpoint")
    run.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    run.add_argument("--model", help="model name at the endpoint")
    run.add_argument("--api-key-env", help="environment variable holding the API key")
    run.add_argument("--shard-size", type=int, help="rows per shard task (the config's shard_size; 200 unless set)")
    run.add_argument("--parallel-shards", type=int, help="shard tasks running at once (the config's max_parallel_shards; 2 unless set)")
    run.add_argument("--refresh-cache", action="store_true",
                     help="run every shard the build submits, even those Prefect's result cache holds "
                          "(a fresh database otherwise reuses shards any earlier build on this machine finished)")
    run.add_argument("--no-result-cache", action="store_true",
                     help="keep no shard results in Prefect's result storage (they take about two fifths "
                          "of the database's disk space, under PREFECT_HOME, until `codeio cache --clear`)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")

    st = sub.add_parser("stats", help="funnel, drop reasons, response types, token use",
                        description="Read the store (no run may hold it) and print the funnel per stage.")
    common(st)
    st.add_argument("--json", action="store_true", help="print funnel, pending rows, response types and tokens as JSON")

    ex = sub.add_parser("export", help="write the training sets from the store",
                        description="Write CODEI/O and CODEI/O++ JSONL, chat-messages JSONL and Parquet.")
    common(ex)
    ex.add_argument("--out", help="export directory (default: the build's output_dir)")
    ex.add_argument("--mode", choices=["keep_all", "rejection", "ground_truth"],
                    help="which samples to write (default: the build's export.mode, keep_all unless set)")

    dr = sub.add_parser("doctor", help="check the sandbox, Prefect, the LLM endpoint and the database",
                        description="One line per check: [ok|warn|fail|skip] name: detail - how to fix. "
                        "Exits non-zero when a check fails.")
    common(dr)
    dr.add_argument("--out", help="export directory")
    dr.add_argument("--provider", choices=["offline", "http"], help="offline skips the endpoint check")
    dr.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    dr.add_argument("--model", help="model name at the endpoint")
    dr.add_argument("--api-key-env", help="environment variable holding the API key")

    from deployments.serve import DESCRIPTION as SERVE_DESCRIPTION
    from deployments.serve import add_arguments as serve_arguments

    sv = sub.add_parser("serve", help="serve the build-dataset and incremental-ingest deployments",
                        description=SERVE_DESCRIPTION)
    serve_arguments(sv)

    cc = sub.add_parser("cache", help="show or clear the shard results builds left in Prefect's result storage",
                        description="Count codeio's shard results in Prefect's result storage on this machine "
                        "(PREFECT_LOCAL_STORAGE_PATH, $PREFECT_HOME/storage unless set), by stage; --clear deletes "
                        "them. Databases keep everything without them; other flows' results are left alone.")
    cc.add_argument("--clear", action="store_true", help="delete them (not while a build runs on this machine)")
    cc.add_argument("--older-than", type=float, metavar="DAYS", help="with --clear: only those written over DAYS days ago")
    cc.add_argument("--stale", action="store_true",
                    help="with --clear: only those of earlier codeio releases, which this one never reads")
    cc.add_argument("--json", action="store_true", help="print the counts (and what was deleted) as JSON")

    rp = sub.add_parser("report", help="write the statistics as an HTML page with charts",
                        description="Read the store (no run may hold it) and write one self-contained HTML "
                        "page: funnel, response types per turn, I/O pairs per function, drop reasons, tokens.")
    common(rp)
    rp.add_argument("--out", dest="report_path", help="HTML file (default: report.html in the export directory)")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if getattr(args, "db", None):
        o["db_path"] = args.db
    if getattr(args, "out", None):
        o["output_dir"] = args.out
    check_corpus_flags(args)
    if getattr(args, "corpus", None):
        o["sources"] = [
            {"path": c, "kind": args.kind or "mixed", **({"format": "unified"} if args.unified else {})}
            for c in args.corpus
        ]
    if getattr(args, "refresh_cache", False):
        o["refresh_cache"] = True
    if getattr(args, "no_result_cache", False):
        o["result_cache"] = False
    for attr, key in (("provider", "provider"), ("shard_size", "shard_size"), ("parallel_shards", "max_parallel_shards")):
        if getattr(args, attr, None) is not None:
            o[key] = getattr(args, attr)
    return o


def check_corpus_flags(args: argparse.Namespace) -> None:
    """--kind and --unified only describe --corpus (of `run` and `serve`): alone, an error."""
    if not getattr(args, "corpus", None) and (getattr(args, "kind", None) or getattr(args, "unified", False)):
        from flows.errors import UserError

        raise UserError("--kind and --unified describe --corpus, which is not given "
                        "(for the config's sources, set kind and format in its [[sources]])")


def _load(args: argparse.Namespace) -> Any:
    from flows.config import load_config

    cfg = load_config(args.config, _overrides(args))
    llm_over = {k: v for k, v in (("base_url", getattr(args, "base_url", None)), ("model", getattr(args, "model", None)),
                                  ("api_key_env", getattr(args, "api_key_env", None))) if v}
    if llm_over:
        cfg = load_config(args.config, {**_overrides(args), "llm": {**cfg.llm.model_dump(), **llm_over}})
    if getattr(args, "mode", None):
        cfg = cfg.model_copy(update={"export": cfg.export.model_copy(update={"mode": args.mode})})
    return cfg


def _cmd_run(args: argparse.Namespace) -> int:
    import gc

    from flows.doctor import stop_if_prompts_are_cut
    from flows.errors import RowsLeftToRetry, quiet_user_errors
    from flows.preflight import preflight
    from storage.store import Store

    cfg = _load(args)
    preflight(cfg)
    Store(cfg.db_path).close()  # a locked or unreadable database fails before Prefect starts
    stop_if_prompts_are_cut(cfg)  # so does an Ollama that cuts long prompts (the flow then skips it)
    from flows.build import run_build  # Prefect, seconds to import: only once the settings hold
    # What this process loaded so far (Prefect, pydantic models, the libraries) lives through
    # the build, so the cyclic garbage collector need not walk it on every full collection
    # (it halves the collector's time in a build). Unfrozen after it, so that exit finalizes
    # everything as usual (DuckDB's bindings report objects still alive at exit).
    gc.freeze()
    try:
        with quiet_user_errors():
            summary = run_build(cfg)
    except RowsLeftToRetry as exc:  # the build ran to its end: show what it did, then the error
        if exc.summary:
            print(json.dumps(exc.summary, indent=2, sort_keys=True) if args.json else _summary_text(exc.summary))
        raise
    finally:
        gc.unfreeze()
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(_summary_text(summary))
    if _exported_rows(summary) == 0:
        print("codeio: warning: the export holds no samples; `codeio stats` shows where the rows were "
              "dropped", file=sys.stderr)
    return 0


def _exported_rows(summary: dict[str, Any]) -> int | None:
    """Samples in the build's export (from its stats.json), or None if it cannot be read."""
    path = summary.get("exports", {}).get("stats.json")
    try:
        files = json.loads(Path(path).read_text(encoding="utf-8"))["files"]
        return max(files.values(), default=0)
    except (TypeError, OSError, ValueError, KeyError, AttributeError):
        return None


# A stage's figures in the run summary that are not counts of rows or calls: `--json` has them.
_NOT_COUNTERS = ("shards", "rows_in", "seconds", "cpu_seconds", "sandbox_cpu_seconds", "store_seconds")


def _summary_text(s: dict[str, Any]) -> str:
    from flows.artifacts import calls_text

    lines = [f"build finished in {s['seconds']:.1f}s: {s['task_runs']} shard task(s), "
             f"{calls_text(s)}, {int(s['executions'])} execution(s)"]
    for name, st in s["stages"].items():
        extra = ", ".join(f"{k} {int(v)}" for k, v in sorted(st.items())
                          if k not in _NOT_COUNTERS and not k.startswith(("pair_drop", "verdict")))
        lines.append(f"  {name:<10} {st['rows_in']:>7} rows in {st['shards']:>4} shard(s)  {extra}")
    for name, path in sorted(s.get("exports", {}).items()):
        lines.append(f"  wrote {name}: {path}")
    lines.append(f"database: {s['db_path']}  (see `codeio stats`)")
    return "\n".join(lines)


def _store_and_keys(args: argparse.Namespace) -> tuple[Any, Any, dict[str, str]]:
    """Open the store read-only and use the config of its latest run by default (finished,
    failed or interrupted: the settings the user is building with)."""
    from flows.config import BuildConfig
    from storage.store import Store
    from tasks.registry import build_keys

    cfg = _load(args)
    store = Store(cfg.db_path, read_only=True)
    if not args.config:
        row = store.query("SELECT config_json FROM runs ORDER BY started_at DESC LIMIT 1")
        if row:
            try:
                cfg = BuildConfig.model_validate({**json.loads(row[0][0]), **_overrides(args)})
            except Exception as exc:  # noqa: BLE001 - an older config shape: fall back to the given one
                from pydantic import ValidationError

                from flows.config import validation_summary

                first = validation_summary(exc) if isinstance(exc, ValidationError) else type(exc).__name__
                print(f"codeio: warning: the latest run's settings no longer load ({first}); using "
                      "the defaults and the options given, which may name other rows (pass --config)",
                      file=sys.stderr)
        if getattr(args, "mode", None):
            cfg = cfg.model_copy(update={"export": cfg.export.model_copy(update={"mode": args.mode})})
    return store, cfg, build_keys(cfg)


def _cmd_stats(args: argparse.Namespace) -> int:
    from storage.stats import format_report, funnel, response_types, token_usage
    from tasks.registry import pending_counts

    store, cfg, keys = _store_and_keys(args)
    try:
        pending = pending_counts(store, cfg, keys)
        if args.json:
            out = {
                "funnel": funnel(store, keys).to_dicts(),
                "pending": pending,
                "response_types": response_types(store, keys).to_dicts(),
                "tokens": token_usage(store).to_dicts(),
            }
            print(json.dumps(out, indent=2, default=str))
        else:
            print(format_report(store, keys, pending))
    finally:
        store.close()
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tasks.export import export_all

    store, cfg, keys = _store_and_keys(args)
    try:
        paths = export_all(store, cfg, keys, args.out)
    finally:
        store.close()
    for name, path in sorted(paths.items()):
        print(f"wrote {name}: {path}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from flows.doctor import main as doctor_main

    return doctor_main(_load(args))


def _cmd_serve(args: argparse.Namespace) -> int:
    from deployments.serve import serve

    return serve(args)


def _cmd_cache(args: argparse.Namespace) -> int:
    from flows.result_cache import main as cache_main

    return cache_main(args.clear, args.older_than, args.stale, args.json)


def _cmd_report(args: argparse.Namespace) -> int:
    from flows.report import write_report

    store, cfg, keys = _store_and_keys(args)
    try:
        path = write_report(store, keys, args.report_path or Path(cfg.output_dir) / "report.html")
    finally:
        store.close()
    print(f"wrote report: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import logging

    # One line per HTTP request is noise at millions of calls; failures are logged by the client.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from flows.errors import RowsLeftToRetry, UserError, disk_full_line, one_line
    from llm.errors import ConfigError, EndpointDown
    from storage.store import StoreError

    handlers = {"run": _cmd_run, "stats": _cmd_stats, "export": _cmd_export,
                "doctor": _cmd_doctor, "serve": _cmd_serve, "report": _cmd_report, "cache": _cmd_cache}
    # `serve` turns SIGTERM into its runner's stop itself.
    sigterm = _SigtermStop.install() if args.command != "serve" else None
    try:
        return handlers[args.command](args)
    except (UserError, StoreError, ConfigError) as exc:
        _fail(f"codeio: error: {one_line(exc)}", exc)
        return EXIT_USER
    except EndpointDown as exc:
        _fail(f"codeio: error: {one_line(exc)} (completed work is saved; run again to resume)", exc)
        return EXIT_FAILED
    except RowsLeftToRetry as exc:
        _fail(f"codeio: error: {one_line(exc)}", exc)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        if sigterm is not None and sigterm.seen():
            _fail("codeio: terminated (SIGTERM; completed work is saved; run again to resume)", exc)
            return 128 + signal.SIGTERM
        _fail("codeio: interrupted (completed work is saved; run again to resume)", exc)
        return 130
    except BrokenPipeError:
        # The reader went away (`codeio stats | head`): stop quietly, as tools killed by
        # SIGPIPE do, and keep the exit's flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            _fail(f"codeio: error: {disk_full_line(exc)}", exc)
            return EXIT_USER
        _fail(f"codeio: error: {one_line(exc)}", exc)
        return EXIT_FAILED
    finally:
        if sigterm is not None:
            sigterm.restore()


class _SigtermStop:
    """Make SIGTERM stop the command as Ctrl-C does: the build marks its run failed, stops its
    shards and the temporary Prefect server it started, and the command ends with one line.
    By default SIGTERM ended the process at once, and the temporary server it had started
    stayed behind for good.

    Which signal stopped the command is read from a wakeup pipe, not from the handler: while a
    flow runs, Prefect's SIGTERM handler replaces this one, and a signal that lands during a
    DuckDB statement comes out of it as DuckDB's "Query interrupted", whichever handler raised.
    Python writes the number of every signal it handles to the pipe, under any handler."""

    def __init__(self, previous: Any, pipe: tuple[int, int], previous_fd: int) -> None:
        self._previous = previous
        self._pipe = pipe
        self._previous_fd = previous_fd
        self._seen = False

    @classmethod
    def install(cls) -> _SigtermStop | None:
        """None off the main thread, where no handler can be set."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def terminated(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt("SIGTERM")

        pipe = os.pipe()
        for fd in pipe:
            os.set_blocking(fd, False)
        previous_fd = signal.set_wakeup_fd(pipe[1], warn_on_full_buffer=False)
        return cls(signal.signal(signal.SIGTERM, terminated), pipe, previous_fd)

    def seen(self) -> bool:
        """Whether SIGTERM arrived since ``install``."""
        while not self._seen:
            try:
                got = os.read(self._pipe[0], 512)
            except BlockingIOError:
                break
            if not got:
                break
            self._seen = signal.SIGTERM in got
        return self._seen

    def restore(self) -> None:
        """Put the previous handler and wakeup descriptor back."""
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._previous_fd)
        for fd in self._pipe:
            os.close(fd)


def _fail(line: str, exc: BaseException | None) -> None:
    """Print the one-line error as the last line on stderr: Prefect's background services
    (events, API logs) would otherwise log their shutdown progress after it, at exit."""
    _drain_prefect_services()
    _stop_temporary_server()
    print(line, file=sys.stderr)
    if exc is not None:
        _release(exc)


def _drain_prefect_services(timeout_s: float = 5.0) -> None:
    if "prefect" not in sys.modules:
        return  # the command failed before a run started; nothing is queued
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (EventsWorker, APILogWorker):
            service.drain_all(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - best effort; the error line matters more than the drain
        pass


def _stop_temporary_server() -> None:
    """Stop the temporary Prefect server the build started, now (it would be stopped at exit,
    logging after the error line)."""
    build = sys.modules.get("flows.build")
    if build is None:
        return
    try:
        build.stop_temporary_servers()
    except Exception:  # noqa: BLE001 - best effort; it is stopped at exit otherwise
        pass


def _release(exc: BaseException) -> None:
    """Drop the frames an error keeps alive (they hold the DuckDB connection), so the process
    exits quietly instead of with the bindings' leak warnings."""
    import traceback

    traceback.clear_frames(exc.__traceback__)


def entry() -> None:
    """The `codeio` command: ``main``, then exit with its status. After a failure or an
    interruption the process ends right after the exit handlers ran (sandbox workers, the
    temporary server, log handlers), skipping the interpreter's teardown, in which DuckDB's
    bindings report every object an interrupted statement left alive (dozens of lines after
    the one that matters)."""
    import atexit

    code = main()
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
