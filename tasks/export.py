"""The export step: CODEI/O and CODEI/O++ files from the store, for the current config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.decontam import Decontaminator
from storage.export import export_datasets

if TYPE_CHECKING:
    from flows.config import BuildConfig
    from storage.store import Store


def export_all(store: "Store", cfg: "BuildConfig", keys: dict[str, str], out_dir: str | None = None) -> dict[str, str]:
    ex = cfg.export
    decontam = (
        Decontaminator.from_files(ex.decontaminate, field=ex.decontaminate_field, n=ex.ngram)
        if ex.decontaminate
        else None
    )
    result = export_datasets(
        store,
        keys,
        out_dir or cfg.output_dir,
        mode=ex.mode,
        revision_turns=cfg.prediction.revision_turns,
        decontam=decontam,
        decontam_action=ex.decontaminate_action,
    )
    return {k: str(v) for k, v in result.paths.items()}
