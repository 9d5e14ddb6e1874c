"""Checks of a build's settings against the machine, before any work starts.

Apart from the flow (and without Prefect), so that `codeio run` reports a wrong path in one
line without first importing Prefect, which takes seconds."""

from __future__ import annotations

import os
from pathlib import Path

from flows.config import BuildConfig
from flows.errors import UserError, one_line
from tasks import ingest as ingest_mod


def preflight(cfg: BuildConfig) -> None:
    """Fail fast, with one line, on what would otherwise fail only after the work is done or
    at its start: sources that cannot be read at all, a database or export directory that
    cannot be written, decontamination files that are not there."""
    _writable_dir(Path(cfg.db_path).parent, f"database {cfg.db_path}")
    _writable_dir(Path(cfg.output_dir), f"export directory {cfg.output_dir}")
    for name in cfg.export.decontaminate:
        if not Path(name).is_file() or not os.access(name, os.R_OK):
            raise UserError(f"export.decontaminate: {name} is not a readable file")
    for spec in cfg.sources:
        try:
            next(ingest_mod.iter_source(spec.path, spec.source_name, spec.kind, spec.format), None)
        except (ingest_mod.SourceError, OSError) as exc:
            raise UserError(str(exc)) from None
    if cfg.dask_address and cfg.dask_address != "local":
        _check_scheduler(cfg.dask_address)


# How long a build waits for the Dask scheduler at ``dask_address`` to answer before it stops.
SCHEDULER_WAIT_S = 10.0


def _check_scheduler(address: str) -> None:
    """The scheduler at ``address`` answers. Prefect's Dask runner would find out only at the
    first shard, after Dask's 30-second connect timeout, and end the run with a traceback.
    ``distributed`` is imported only here: a build without a cluster does not pay for it."""
    try:
        from distributed import Client
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend
    except ImportError:
        return  # _task_runner says what to install
    try:
        get_backend(parse_address(address)[0])  # a client of an unknown scheme hangs at exit
        with Client(address, timeout=SCHEDULER_WAIT_S, set_as_default=False):
            pass
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"dask_address {address}: cannot reach a Dask scheduler ({one_line(exc)}); "
                        "start `dask scheduler` there or fix the address") from None


def _writable_dir(path: Path, what: str) -> None:
    """``path`` is a directory this process can write, or can be created as one."""
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{what}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {existing} is not writable")
