"""Validated, frozen settings of one LLM endpoint: a typo is an error at start."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm.types import ChatRequest

# Body fields the client writes itself; extra_body may not override them.
RESERVED_BODY_FIELDS = frozenset({"model", "messages", "temperature", "max_tokens", "stream", "n"})


class LLMSettings(BaseModel):
    """Where the endpoint is, how hard to push it, and when to give up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint, starting with http:// or https://"
    )
    model: str = Field("deepseek-chat", min_length=1, description="Model name at the endpoint")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (none: no key is sent)"
    )
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of every call")
    max_tokens: int = Field(
        4096, ge=1, description="Completion tokens per call; a response cut off there counts as truncated"
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="The request field that carries max_tokens: OpenAI's reasoning models "
        "(o1, o3, o4-mini, gpt-5) refuse max_tokens and take max_completion_tokens"
    )
    timeout_s: float = Field(600.0, gt=0, description="Read and write timeout of one attempt, in seconds")
    connect_timeout_s: float = Field(10.0, gt=0, description="Timeout of connecting to the endpoint, in seconds")
    max_concurrency: int = Field(
        64, ge=1, description="Calls on the wire at once, at most (fewer while the endpoint pushes back)"
    )
    min_concurrency: int = Field(1, ge=1, description="The lowest that pushback brings max_concurrency down to")
    max_retries: int = Field(
        8, ge=0, description="Retries of a call after transient failures (429, 5xx, timeouts, lost connections)"
    )
    backoff_base_s: float = Field(
        1.0, ge=0, description="Base of the exponential backoff (full jitter) between retries, in seconds"
    )
    backoff_max_s: float = Field(
        60.0, ge=0, description="Longest wait before a retry, in seconds; caps a server's Retry-After too"
    )
    max_consecutive_failures: int = Field(
        100, ge=1, description="Transient failures in a row, across calls, that stop the run (endpoint down; "
        "502/503/504 only once they have lasted endpoint_down_after_s); so do as many requests refused in a "
        "row (400, 422) with none answered"
    )
    endpoint_down_after_s: float = Field(
        120.0, ge=0, description="Seconds an endpoint that answers only 502, 503 or 504 (not ready: a model "
        "still loading, a proxy whose backend is not up) is waited for before the run stops; other failures "
        "(a refused connection, 500, 429, timeouts) stop it after max_consecutive_failures attempts"
    )
    # A call that fails on transient errors (429, 5xx, timeouts) until max_retries runs out
    # leaves its row pending for the next run; after this many runs in a row the row is
    # dropped (reason call_failed), so a request the endpoint never answers does not fail
    # every scheduled run.
    give_up_after_runs: int = Field(
        3, ge=1, description="Runs in a row that may leave a row to retry before it is dropped (call_failed)"
    )
    extra_body: dict = Field(
        {}, description="Extra fields of every request body (not model, messages, temperature, max_tokens, stream, n)"
    )
    price_per_1k_prompt: float | None = Field(
        None, ge=0, description="USD per 1000 prompt tokens, for the run's cost (none: no cost shown)"
    )
    price_per_1k_completion: float | None = Field(
        None, ge=0, description="USD per 1000 completion tokens, for the run's cost (none: no cost shown)"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("extra_body")
    @classmethod
    def _no_reserved_fields(cls, value: dict) -> dict:
        clash = sorted(RESERVED_BODY_FIELDS & value.keys())
        if clash:
            raise ValueError(f"extra_body may not set {clash}: use the dedicated settings")
        return value

    @model_validator(mode="after")
    def _ordered_bounds(self) -> LLMSettings:
        if self.min_concurrency > self.max_concurrency:
            raise ValueError("min_concurrency must not exceed max_concurrency")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        return self

    def request(
        self,
        messages: list[dict[str, str]],
        *,
        stage: str,
        sample_index: int = 0,
        context: dict | None = None,
    ) -> ChatRequest:
        """A request with this endpoint's sampling parameters."""
        return ChatRequest(
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            sample_index=sample_index,
            stage=stage,
            context=context or {},
        )
