"""Sending a shard's chat requests through the ledger: cached calls are never sent again, and
every completed call is journaled the moment it completes, so a killed run pays for nothing
twice."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from llm.errors import RunCancelled
from llm.ledger import CachedProvider, JournalLedger, MemoryLedger
from llm.types import ChatRequest, ChatResult
from storage.models import LLMCall
from tasks.stage import ShardContext

if TYPE_CHECKING:
    from flows.config import BuildConfig


T = TypeVar("T")
logger = logging.getLogger("codeio")


def make_provider(cfg: "BuildConfig") -> Any:
    """The provider the config names; stages do not know which one they get."""
    if cfg.provider == "offline":
        from llm.offline.provider import OfflineProvider
        from tasks.runtime import get_pool

        return OfflineProvider(get_pool(cfg.sandbox), max_tokens=cfg.llm.max_tokens)
    from llm.http import HTTPProvider

    return HTTPProvider(cfg.llm)


# -- one event loop and one provider per process -------------------------------------------
#
# Every shard of a build running in this process (the flow's task threads, or a Dask worker's)
# sends its calls through one provider on one event loop, so the endpoint sees the configured
# concurrency bound for the whole build (not once per shard running at a time), what the
# adaptive limit learned from 429s and timeouts carries over from shard to shard, the
# consecutive-failure stop counts across shards, and connections are kept alive between
# shards. Another build (another run id) starts with providers of its own, as a new process
# would.

_MAX_PROVIDERS = 4  # providers kept (builds, or configs, in this process)


class _LLMRuntime:
    """This process's LLM event loop (on a daemon thread, started on first use) and the
    providers that live on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.providers: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self.cancelled: set[str] = set()  # run ids of interrupted builds
        self.inflight: dict[str, set[concurrent.futures.Future[Any]]] = {}

    def run(self, coro: Coroutine[Any, Any, T], run_id: str = "") -> T:
        """Run ``coro`` on the loop and wait for it; ``RunCancelled`` if run ``run_id`` is
        (or gets) cancelled meanwhile."""
        loop = self._loop()
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("LLM calls cannot wait on their own event loop")
        with self.lock:
            if run_id and run_id in self.cancelled:
                coro.close()
                raise RunCancelled(f"run {run_id} was interrupted")
            future = asyncio.run_coroutine_threadsafe(coro, loop)
            self.inflight.setdefault(run_id, set()).add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RunCancelled(f"run {run_id} was interrupted") from None
        finally:
            with self.lock:
                waiting = self.inflight.get(run_id)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self.inflight[run_id]

    def cancel(self, run_id: str) -> int:
        """Stop run ``run_id``'s calls in this process: those being awaited are cancelled on
        the loop (their shards get ``RunCancelled`` at once), later ones are refused. Returns
        how many batches were cancelled."""
        with self.lock:
            self.cancelled.add(run_id)
            futures = list(self.inflight.get(run_id, ()))
        for future in futures:
            future.cancel()  # cancels the task on the loop, which closes its ledger
        return len(futures)

    def _loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None or self.pid != os.getpid():  # none yet, or inherited by a fork
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="llm-loop", daemon=True)
                thread.start()
                self.loop, self.thread, self.pid = loop, thread, os.getpid()
                self.providers.clear()
            return self.loop

    def provider(self, cfg: "BuildConfig", run_id: str = "") -> Any:
        """The provider for ``cfg`` in run ``run_id`` (called on the loop, which owns them)."""
        key = (run_id, *_provider_key(cfg))
        provider = self.providers.get(key)
        if provider is None:
            provider = self.providers[key] = make_provider(cfg)
            while len(self.providers) > _MAX_PROVIDERS:
                _, old = self.providers.popitem(last=False)
                close = getattr(old, "aclose", None)
                if close is not None:
                    asyncio.get_running_loop().create_task(close())
        else:
            self.providers.move_to_end(key)
        return provider

    def close(self) -> None:
        """Close the providers (their connections) and stop the loop."""
        with self.lock:
            loop, thread = self.loop, self.thread
            self.loop, self.thread = None, None
        if loop is None or self.pid != os.getpid() or thread is None or not thread.is_alive():
            self.providers.clear()
            return

        async def close_all() -> None:  # on the loop, which alone touches the providers
            providers = list(self.providers.values())
            self.providers.clear()
            for provider in providers:
                close = getattr(provider, "aclose", None)
                if close is not None:
                    await close()

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=5.0)
        except Exception:  # noqa: BLE001 - shutting down: the sockets go with the process
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        if not thread.is_alive():
            loop.close()


def _provider_key(cfg: "BuildConfig") -> tuple[str, ...]:
    if cfg.provider == "offline":
        return ("offline", cfg.sandbox.model_dump_json(), str(cfg.llm.max_tokens))
    secret = os.environ.get(cfg.llm.api_key_env) if cfg.llm.api_key_env else None
    # The key the provider was made with is part of its identity (a notebook may change it),
    # kept here only as a hash.
    secret_id = hashlib.sha256(secret.encode()).hexdigest() if secret else ""
    return ("http", cfg.llm.model_dump_json(), secret_id)


_runtime = _LLMRuntime()
atexit.register(_runtime.close)


def cancel_run(run_id: str) -> int:
    """Stop the LLM calls of an interrupted build in this process (see ``_LLMRuntime.cancel``)."""
    return _runtime.cancel(run_id)


def close_providers() -> None:
    """Close this process's LLM providers and their event loop (they restart on next use)."""
    _runtime.close()


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
        provider = _runtime.provider(cfg, ctx.run_id)
        ledger = _shard_ledger(ctx, preloaded)
        try:
            return await CachedProvider(provider, ledger).complete(requests, on_result)
        finally:
            lclose = getattr(ledger, "close", None)
            if lclose is not None:
                lclose()

    results = _runtime.run(go(), ctx.run_id)
    # A request asked twice in one shard is sent once (CachedProvider): count calls by key.
    fresh = {r.key: r for r in results if r.key not in preloaded}
    # ChatResult is LLMCall plus ``error``: its validated fields are the ledger row as they are.
    new_rows = [
        {name: getattr(r, name) for name in _LEDGER_FIELDS}
        for r in fresh.values()
        if r.error is None and r.content is not None
    ]
    counters = {
        "llm_calls_sent": float(len(fresh)),
        "llm_calls_cached": float(len(results) - len(fresh)),
        "prompt_tokens": float(sum(r.prompt_tokens or 0 for r in fresh.values())),
        "completion_tokens": float(sum(r.completion_tokens or 0 for r in fresh.values())),
        # Answered calls whose server did not say how many tokens they took: the sums above
        # leave them out, so they are a lower bound when this is not 0.
        "llm_calls_without_usage": float(sum(
            r.error is None and (r.prompt_tokens is None or r.completion_tokens is None) for r in fresh.values())),
    }
    return results, new_rows, counters


_LEDGER_FIELDS = tuple(LLMCall.model_fields)

_unseen_journal_dirs: set[str] = set()  # journal directories this process has warned about


def _shard_ledger(ctx: ShardContext, preloaded: dict[str, ChatResult]) -> JournalLedger | MemoryLedger:
    """The shard's journal, which the flow created before it submitted the shard; or, where this
    process cannot see that file (a Dask worker on another machine, whose disk does not hold
    the flow's database directory), a ledger in memory. A journal created here instead would be
    a file the flow never reads (its calls are sent again if the run is killed anyway) and never
    removes, in a directory of the worker's machine that no setting names, or a shard that fails
    where that directory cannot be made."""
    if not ctx.journal_path:
        return MemoryLedger(preloaded)
    try:
        return JournalLedger(ctx.journal_path, preloaded=preloaded, create=False)
    except FileNotFoundError:
        where = os.path.dirname(ctx.journal_path)
        # A directory that is there but lost the file: the flow has written the shard already.
        if not os.path.isdir(where) and where not in _unseen_journal_dirs:
            _unseen_journal_dirs.add(where)
            logger.warning(
                "ledger journal directory %s is not on this machine (the flow's database directory is not "
                "shared): the LLM calls of shards run here are kept in memory until the flow writes them, and "
                "a run killed before that sends them again", where)
        return MemoryLedger(preloaded)


def _result_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = set(ChatResult.model_fields)
    return {k: v for k, v in row.items() if k in fields}
