"""The export step: CODEI/O and CODEI/O++ files from the store, for the current config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storage.decontam import Decontaminator
from storage.export import export_datasets

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store


def remove_stale_temp_files(out_dir: Path) -> int:
    """Temp files of an export that was killed mid-write (the atomic writer's names)."""
    n = 0
    for p in out_dir.glob(".*.tmp"):
        if p.name.startswith((".codeio", ".stats.json.")):
            p.unlink(missing_ok=True)
            n += 1
    return n


def export_all(store: "Store", cfg: "BuildConfig", keys: dict[str, str], out_dir: str | None = None) -> dict[str, str]:
    ex = cfg.export
    target = Path(out_dir or cfg.output_dir)
    if target.is_dir():
        remove_stale_temp_files(target)
    decontam = (
        Decontaminator.from_files(ex.decontaminate, field=ex.decontaminate_field, n=ex.ngram)
        if ex.decontaminate
        else None
    )
    result = export_datasets(
        store,
        keys,
        target,
        mode=ex.mode,
        revision_turns=cfg.prediction.revision_turns,
        decontam=decontam,
        decontam_action=ex.decontaminate_action,
    )
    return {k: str(v) for k, v in result.paths.items()}
