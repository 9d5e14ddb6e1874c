"""Records, the DuckDB system of record, and exports. Never imports Prefect."""

from storage.ids import canonical_json, content_id
from storage.store import Store, StoreError, StoreLocked

__all__ = ["Store", "StoreError", "StoreLocked", "canonical_json", "content_id"]
