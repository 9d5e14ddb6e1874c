"""Sending a shard's chat requests through the ledger: cached calls are never sent again, and
every completed call is journaled the moment it completes, so a killed run pays for nothing
twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm.ledger import CachedProvider, JournalLedger, MemoryLedger
from llm.types import ChatRequest, ChatResult
from storage.models import LLMCall
from tasks.stage import ShardContext

if TYPE_CHECKING:
    from flows.config import BuildConfig


def make_provider(cfg: "BuildConfig") -> Any:
    """The provider the config names; stages do not know which one they get."""
    if cfg.provider == "offline":
        from llm.offline.provider import OfflineProvider
        from tasks.runtime import get_pool

        return OfflineProvider(get_pool(cfg.sandbox), max_tokens=cfg.llm.max_tokens)
    from llm.http import HTTPProvider

    return HTTPProvider(cfg.llm)


def key_model_and_extra(cfg: "BuildConfig") -> tuple[str, dict | None]:
    """The model name and extra body parameters a call's key covers under this config."""
    extra = cfg.llm.extra_body if cfg.provider == "http" else None
    return cfg.model_name(), extra or None


def request_key(req: ChatRequest, cfg: "BuildConfig") -> str:
    return req.key(*key_model_and_extra(cfg))


def complete(
    requests: list[ChatRequest], cfg: "BuildConfig", ctx: ShardContext,
    on_result: Callable[[int, ChatResult], None] | None = None,
) -> tuple[list[ChatResult], list[dict[str, Any]], dict[str, float]]:
    """Results in request order, ledger rows for the newly completed calls, and counters.
    ``on_result(i, result)`` is called as each result becomes known (see CachedProvider)."""
    if not requests:
        return [], [], {}
    preloaded = {k: ChatResult(**_result_fields(v)) for k, v in ctx.cached_calls.items()}

    async def go() -> list[ChatResult]:
        provider = make_provider(cfg)
        ledger = JournalLedger(ctx.journal_path, preloaded=preloaded) if ctx.journal_path else MemoryLedger(preloaded)
        try:
            return await CachedProvider(provider, ledger).complete(requests, on_result)
        finally:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
            lclose = getattr(ledger, "close", None)
            if lclose is not None:
                lclose()

    results = asyncio.run(go())
    # ChatResult is LLMCall plus ``error``: its validated fields are the ledger row as they are.
    new_rows = [
        {name: getattr(r, name) for name in _LEDGER_FIELDS}
        for r in results
        if r.key not in preloaded and r.error is None and r.content is not None
    ]
    counters = {
        "llm_calls_sent": float(sum(1 for r in results if r.key not in preloaded)),
        "llm_calls_cached": float(sum(1 for r in results if r.key in preloaded)),
        "prompt_tokens": float(sum(r.prompt_tokens for r in results if r.key not in preloaded)),
        "completion_tokens": float(sum(r.completion_tokens for r in results if r.key not in preloaded)),
    }
    return results, new_rows, counters


_LEDGER_FIELDS = tuple(LLMCall.model_fields)


def _result_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = set(ChatResult.model_fields)
    return {k: v for k, v in row.items() if k in fields}
