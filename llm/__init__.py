"""LLM client for the CodeI/O pipeline: OpenAI-compatible HTTP, the response ledger, test server.

Stages build ``ChatRequest``s, hand them to a ``Provider`` (usually
``CachedProvider(HTTPProvider(settings), JournalLedger(path))``) and get ``ChatResult``s back
in the same order. Nothing here imports Prefect. Names are loaded on first use, so importing
one submodule (say ``llm.types`` in a sandbox worker) does not pull in httpx.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CachedProvider": "llm.ledger",
    "ChatRequest": "llm.types",
    "ChatResult": "llm.types",
    "ConfigError": "llm.errors",
    "EndpointDown": "llm.errors",
    "HTTPProvider": "llm.http",
    "JournalLedger": "llm.ledger",
    "LLMSettings": "llm.settings",
    "Ledger": "llm.ledger",
    "MemoryLedger": "llm.ledger",
    "Provider": "llm.types",
    "Usage": "llm.usage",
    "read_journal": "llm.ledger",
    "request_key": "llm.types",
    "summarize_usage": "llm.usage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
