"""Records, the DuckDB system of record, and exports. Never imports Prefect."""

from typing import Any

from storage.ids import canonical_json, content_id

__all__ = ["Store", "StoreError", "StoreLocked", "canonical_json", "content_id"]


def __getattr__(name: str) -> Any:
    # The store (DuckDB, Arrow) loads on first use, so the ids alone stay a light import
    # (the LLM client's request keys use them).
    if name in ("Store", "StoreError", "StoreLocked"):
        from storage import store

        return getattr(store, name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")
