"""The shard results builds leave in Prefect's result storage (their cache), and `codeio cache`.

Each finished shard's result is a file named by its cache key (``shard_cache_key``) in
Prefect's local result storage, ``PREFECT_LOCAL_STORAGE_PATH`` (``$PREFECT_HOME/storage``
unless set). Nothing removes them: `codeio cache` counts them and ``--clear`` deletes them,
codeio's only (other flows' results may share the directory). A database holds all it needs
without them; a build that finds none runs its shards.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bumped whenever the shape of a cached ShardResult changes, so results pickled by an older
# release are never handed to this one.
SHARD_RESULT_VERSION = "3"  # 3: io_pairs rows carry same_output_as, not first_of_output
KEY_PREFIX = "codeio-r"


def shard_cache_key(stage: str, config_key: str, shard_id: str) -> str:
    return f"{KEY_PREFIX}{SHARD_RESULT_VERSION}-{stage}-{config_key}-{shard_id}"


def storage_path() -> Path:
    """Where Prefect persists results on this machine."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    return Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser()


@dataclass
class CacheFiles:
    """codeio's shard results in one directory, by stage; ``stale``: those of earlier
    releases (another ``SHARD_RESULT_VERSION``), which this one never reads."""

    path: Path
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    by_stage: Counter = field(default_factory=Counter)
    stale: int = 0
    others: int = 0  # files that are not codeio's

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "results": len(self.files), "bytes": self.bytes,
                "by_stage": dict(sorted(self.by_stage.items())), "earlier_releases": self.stale,
                "other_files": self.others}


def scan(path: Path, older_than_days: float | None = None, stale_only: bool = False) -> CacheFiles:
    """codeio's shard results under ``path`` (files named by ``shard_cache_key``), those
    written more than ``older_than_days`` ago or of earlier releases only when asked."""
    found = CacheFiles(path)
    if not path.is_dir():
        return found
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    current = f"{KEY_PREFIX}{SHARD_RESULT_VERSION}-"
    for entry in path.iterdir():
        if not entry.name.startswith(KEY_PREFIX):
            found.others += 1
            continue
        if not entry.is_file():
            continue
        stat = entry.stat()
        stale = not entry.name.startswith(current)
        if (stale_only and not stale) or (cutoff is not None and stat.st_mtime > cutoff):
            continue
        found.files.append(entry)
        found.bytes += stat.st_size
        found.stale += stale
        parts = entry.name.split("-", 3)
        found.by_stage[parts[2] if len(parts) == 4 else "?"] += 1
    return found


def clear(found: CacheFiles) -> tuple[int, int]:
    """Delete ``found``'s files; returns how many and how many bytes were deleted (a file
    gone meanwhile is not counted)."""
    deleted = freed = 0
    for entry in found.files:
        try:
            size = entry.stat().st_size
            entry.unlink()
        except FileNotFoundError:
            continue
        deleted += 1
        freed += size
    return deleted, freed


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def main(clear_them: bool, older_than_days: float | None, stale_only: bool, as_json: bool) -> int:
    """`codeio cache`: what the result storage holds of codeio's, and with ``clear_them``
    delete it (narrowed by age or to earlier releases)."""
    import json

    from flows.errors import UserError

    if not clear_them and (older_than_days is not None or stale_only):
        raise UserError("--older-than and --stale choose what --clear deletes; add --clear")
    if older_than_days is not None and older_than_days < 0:
        raise UserError(f"--older-than {older_than_days:g}: a number of days, 0 or more")
    path = storage_path()
    found = scan(path, older_than_days, stale_only)
    out: dict[str, Any] = found.summary()
    if clear_them:
        out["deleted"], out["freed_bytes"] = clear(found)
    if as_json:
        print(json.dumps(out, indent=2))
        return 0
    if not path.is_dir():
        print(f"no result storage at {path}: nothing cached")
        return 0
    which = " of earlier releases" if stale_only else ""
    which += f" written over {older_than_days:g} days ago" if older_than_days is not None else ""
    stages = ", ".join(f"{stage} {n}" for stage, n in sorted(found.by_stage.items())) or "none"
    print(f"{path}: {len(found.files)} codeio shard results{which} ({_mb(found.bytes)}; {stages}; "
          f"{found.stale} of earlier releases, never read again)")
    if clear_them:
        print(f"deleted {out['deleted']} ({_mb(out['freed_bytes'])}); the databases hold everything they had, "
              "and a build that finds no cached shard runs it")
    elif found.files:
        print("`codeio cache --clear` deletes them (not while a build runs on this machine)")
    if found.others:
        print(f"{found.others} other files there are not codeio's and are left alone")
    return 0
