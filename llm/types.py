"""The request/result records every LLM stage exchanges, and the provider interface."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, PrivateAttr

from storage.ids import canonical_json


def chat_key(
    model: str,
    messages: list[dict[str, str]],
    temperature: float,
    max_tokens: int,
    sample_index: int = 0,
    extra_body: dict | None = None,
) -> str:
    """The key of a chat call (``ChatRequest.key``), for callers that only need the key."""
    # The text of json.dumps({...}, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    # allow_nan=False) over these six fields (in sorted order), put together field by field so
    # the messages, nearly all of it, go through the fast canonical writer (the same text).
    fields = (("extra_body", extra_body or {}), ("max_tokens", max_tokens), ("messages", messages),
              ("model", model), ("sample_index", sample_index), ("temperature", temperature))
    canonical = "{" + ",".join(f'"{name}":{canonical_json(value, allow_nan=False)}' for name, value in fields) + "}"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _memo(model: str, extra_body: dict | None) -> tuple[str, str]:
    return model, json.dumps(extra_body, sort_keys=True) if extra_body else ""


class ChatRequest(BaseModel):
    """One chat completion to make; its ``key`` identifies the call across runs and machines."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: list[dict[str, str]]
    temperature: float = 0.7
    max_tokens: int = 4096
    sample_index: int = 0
    stage: str = ""
    context: dict = {}

    # Keys already computed, per (model, extra body): a request's key is asked for by the
    # flow, the ledger and the provider, and hashing the canonical JSON is not free.
    _keys: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    def key(self, model: str, extra_body: dict | None = None) -> str:
        """sha256 of the canonical JSON of everything that changes what the model is asked.

        ``stage`` and ``context`` are bookkeeping, so they stay out: the same prompt asked by
        two stages is one call.
        """
        memo = _memo(model, extra_body)
        keys = self.__pydantic_private__["_keys"]  # type: ignore[index]  # (plain attribute access is slow)
        known = keys.get(memo)
        if known is None:
            known = keys[memo] = chat_key(
                model, self.messages, self.temperature, self.max_tokens, self.sample_index, extra_body
            )
        return known

    def know_key(self, model: str, extra_body: dict | None, key: str) -> None:
        """Take ``key`` as this request's key under (model, extra body), computed elsewhere
        with ``chat_key`` from the same fields (the flow computes a shard's keys before the
        shard builds its requests)."""
        self.__pydantic_private__["_keys"][_memo(model, extra_body)] = key  # type: ignore[index]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> "ChatRequest":
        copy = super().model_copy(update=update, deep=deep)
        copy._keys = {} if update else dict(self._keys)  # an updated copy asks something else
        return copy

    def __eq__(self, other: object) -> bool:  # the fields, not the memo of keys
        if not isinstance(other, ChatRequest):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # list fields: never hashable


class ChatResult(BaseModel):
    """What one call produced; ``content is None`` and ``error`` set when it failed. A failed
    call is ``retryable`` when it failed on transient errors only (429, 5xx, timeouts,
    connection errors) until its retries ran out: asked again later, it may succeed, so the
    stages leave its row to be retried by the next run instead of dropping it."""

    model_config = ConfigDict(extra="forbid")

    key: str
    model: str
    stage: str
    content: str | None
    finish_reason: str | None
    truncated: bool = False
    prompt_tokens: int | None = 0  # None: the server's answer did not say (no usage)
    completion_tokens: int | None = 0
    latency_s: float = 0.0
    error: str | None = None
    retryable: bool = False
    # The drop reason of a failed call's row: call_failed, or prompt_too_long (the prompt and
    # max_tokens do not fit the model's context), so a user sees why rows were lost.
    failure: str | None = None


class Provider(Protocol):
    """Anything that answers chat requests: the HTTP client, the offline provider, the cache.

    ``complete`` returns one result per request, in the same order. A provider whose calls
    depend on extra body parameters exposes them as ``extra_body`` so keys include them.
    """

    model: str

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]: ...


def request_key(provider: Any, request: ChatRequest) -> str:
    """The cache key of ``request`` when ``provider`` answers it."""
    return request.key(provider.model, getattr(provider, "extra_body", None))
