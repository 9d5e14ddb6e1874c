"""The OpenAI-compatible chat client: one httpx.AsyncClient, adaptive concurrency, retries.

Per attempt the request holds an admission slot only while it is on the wire; backoff sleeps
happen after the slot is released. Failures are sorted into three kinds:
- transient (429, 5xx, 408, timeouts, connection errors, malformed bodies): retried with
  exponential backoff and full jitter, or after the server's Retry-After;
- row-level (400, 422, other 4xx): returned as ``ChatResult.error``, not retried;
- configuration (401, 403, 404, an account out of credit: 402 or ``insufficient_quota``, a
  stream answered to a request that asked for none): ``ConfigError``, which stops the run.
An error body sent with status 200 counts as the status it names. ``max_consecutive_failures``
transient failures in a row, across requests, raise ``EndpointDown``; when the last of them
says the server is not ready (502, 503, 504: a model still loading, which vLLM and TGI behind a
proxy answer for minutes, or a proxy whose backend is not up yet), only once the failures have
also lasted ``endpoint_down_after_s``, and until then a call does not give up on its retries
while the endpoint answers no call at all (the endpoint is failing, not the call). A refused
connection (a wrong port), a 500 or a 429 stops the run after the count alone. As many
row-level refusals in a row, with no answer between them, raise ``ConfigError`` (a setting
every request carries is wrong).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
import urllib.request
from dataclasses import dataclass

import httpx
import orjson

from llm.admission import AdmissionController, Signal
from llm.backoff import full_jitter_delay, parse_retry_after
from llm.errors import ConfigError, EndpointDown
from llm.gather import gather_all
from llm.settings import LLMSettings
from llm.transport import LeanTransport, encode_head_prefix
from llm.types import ChatRequest, ChatResult

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300
# Finish reasons of an answer that ended before the model did: cut off at max_tokens, or by the
# provider's content filter (OpenAI, Azure), and what it holds is not a final answer.
_CUT_OFF = frozenset({"length", "content_filter"})
# Finish reasons of a generation the server gave up on (DeepSeek's insufficient_system_resource,
# vLLM's abort and error): not the model's answer at all, so the call is a server failure.
_SERVER_GAVE_UP = frozenset({"insufficient_system_resource", "abort", "error"})
# Where Azure OpenAI says why its content filter refused a prompt (prompt_annotations in
# older API versions) when it answers 200 with no choices at all.
_PROMPT_FILTER_FIELDS = ("prompt_filter_results", "prompt_annotations")
# How servers say a prompt (with max_tokens) does not fit the model's context: OpenAI's error
# code, and the messages of vLLM, DeepSeek and OpenAI ("maximum context length"), SGLang
# ("longer than the model's context length"), TGI (422 "`inputs` tokens + `max_new_tokens` must
# be <= ...") and others ("context window", "prompt is too long").
_CONTEXT_EXCEEDED_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_EXCEEDED = re.compile(
    r"maximum context length|context length|context window|prompt is too long|max_new_tokens` must be", re.I)


@dataclass(slots=True)
class _Attempt:
    """How one HTTP exchange went."""

    kind: str  # 'ok' | 'transient' | 'row' | 'config'
    signal: Signal = "neutral"
    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = 0  # None: the answer did not say
    completion_tokens: int | None = 0
    error: str = ""
    retry_after: float | None = None
    failure: str = "call_failed"  # a row-level failure's drop reason
    not_ready: bool = False  # 502, 503, 504: the server (or its proxy) is up, the model not yet


def _json_or_none(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _error_code(data: object) -> str:
    """``error.code`` (or ``error.type``) of an OpenAI-style error body, as text; "" when none."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    return str(error.get("code") or error.get("type") or "")


def _error_status(data: dict) -> int | None:
    """The HTTP status an error body carried with a 200 names (``error.code`` of OpenRouter,
    ``code`` of vLLM's error object), or None when it names none."""
    error = data.get("error")
    for code in ((error.get("code") if isinstance(error, dict) else None), data.get("code")):
        if isinstance(code, int) and 400 <= code < 600:
            return code
        if isinstance(code, str) and code.isdigit() and 400 <= int(code) < 600:
            return int(code)
    return None


def _tokens(data: dict, field: str) -> int | None:
    """A token count from the answer's ``usage``, or None when it does not say: some servers
    and proxies send no usage, and counting 0 would report a wrong cost."""
    usage = data.get("usage")
    count = usage.get(field) if isinstance(usage, dict) else None
    return None if count is None else int(count)


def _with_thinking(thinking: str, content: str, finish_reason: str | None) -> str:
    """The response as the model writes it when served without a reasoning parser: the
    thinking in ``<think>...</think>``, then the answer. A training sample keeps the reasoning,
    and the parsers read past it (prompts.reasoning). A thinking cut off at max_tokens before
    any answer stays open, as it was cut."""
    thinking = thinking.strip("\n")
    if not content and finish_reason == "length":
        return f"<think>\n{thinking}"
    return f"<think>\n{thinking}\n</think>\n\n{content}"


def _proxy_configured(url: str) -> bool:
    """True when the environment routes ``url`` through a proxy (only httpx's transport does that)."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parsed.host, proxies)


class HTTPProvider:
    """Answers ChatRequests from an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, settings: LLMSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.model = settings.model
        self.extra_body = dict(settings.extra_body)
        self.admission = AdmissionController(settings.max_concurrency, settings.min_concurrency)
        self._rng = rng or random.Random()
        self._consecutive_failures = 0
        self._failing_since = 0.0  # time.monotonic() of the first of the consecutive failures
        self._answered = 0  # calls answered so far
        self._consecutive_refusals = 0
        self._url = httpx.URL(settings.base_url + "/chat/completions")
        self._secret: str | None = None
        self._key_missing = False
        headers = {"content-type": "application/json", "accept": "application/json"}
        if settings.api_key_env:
            secret = os.environ.get(settings.api_key_env)
            if secret:
                self._secret = secret
                headers["authorization"] = f"Bearer {secret}"
            else:
                self._key_missing = True
                logger.warning("environment variable %s is not set: sending no API key", settings.api_key_env)
        transport = None if _proxy_configured(settings.base_url) else LeanTransport(settings.max_concurrency)
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s, pool=None),
            limits=httpx.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=settings.max_concurrency,
            ),
            transport=transport,
            follow_redirects=False,
        )
        # With the lean transport, a call skips the client's per-request layers (header
        # merging, auth and redirect flows, cookie jar) and httpx's request and response
        # objects: for one POST to a fixed URL with fixed headers they cost more CPU than the
        # exchange itself. The request line and headers, exactly those the client would send,
        # are encoded once; each call adds its Content-Length and body.
        self._lean = transport
        self._template = self._client.build_request("POST", self._url, content=b"")
        self._head = encode_head_prefix(self._template)
        self._timeouts = self._template.extensions.get("timeout", {})

    def __repr__(self) -> str:
        return f"HTTPProvider(base_url={self.settings.base_url!r}, model={self.model!r})"

    @property
    def concurrency_limit(self) -> int:
        """The admission controller's current limit on requests in flight."""
        return self.admission.limit

    async def __aenter__(self) -> HTTPProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """One result per request, same order; raises ConfigError or EndpointDown to stop a run."""
        return await gather_all([self._call(request) for request in requests])

    async def _call(self, request: ChatRequest) -> ChatResult:
        key = request.key(self.model, self.extra_body)
        body = orjson.dumps(
            {
                "model": self.model,
                "messages": request.messages,
                "temperature": request.temperature,
                self.settings.max_tokens_field: request.max_tokens,
                "stream": False,  # said outright: a server or proxy may default to streaming
                **self.extra_body,
            }
        )
        attempt_no = 0
        answered_before = self._answered
        while True:
            ticket = await self.admission.acquire()
            signal: Signal = "neutral"
            started = time.perf_counter()
            try:
                attempt = await self._send(body)
                signal = attempt.signal
            finally:
                self.admission.release(ticket, signal)
            latency = time.perf_counter() - started
            if attempt.kind == "ok":
                self._consecutive_failures = self._consecutive_refusals = 0
                self._answered += 1
                return ChatResult(
                    key=key,
                    model=self.model,
                    stage=request.stage,
                    content=attempt.content,
                    finish_reason=attempt.finish_reason,
                    truncated=attempt.finish_reason in _CUT_OFF,
                    prompt_tokens=attempt.prompt_tokens,
                    completion_tokens=attempt.completion_tokens,
                    latency_s=latency,
                )
            if attempt.kind == "config":
                raise ConfigError(attempt.error)
            if attempt.kind == "row":
                self._count_refusal(attempt.error)
                return self._failed(key, request, attempt.error, latency, failure=attempt.failure)
            self._count_failure(attempt)
            if attempt_no >= self.settings.max_retries and not self._waiting_for_endpoint(attempt, answered_before):
                error = f"retries_exhausted: {attempt_no + 1} attempts, last: {attempt.error}"
                return self._failed(key, request, error, latency, retryable=True)
            if attempt.retry_after is not None:
                # The server's wish, up to backoff_max_s, plus a little jitter so a burst of
                # rejected requests does not come back in lockstep.
                delay = min(attempt.retry_after, self.settings.backoff_max_s) * (1.0 + 0.1 * self._rng.random())
            else:
                delay = full_jitter_delay(
                    attempt_no, self.settings.backoff_base_s, self.settings.backoff_max_s, self._rng
                )
            logger.debug(
                "retry %d of call %s in %.3f s after: %s", attempt_no + 1, key[:12], delay, attempt.error
            )
            attempt_no += 1
            await asyncio.sleep(delay)  # no admission slot is held here

    def _failed(self, key: str, request: ChatRequest, error: str, latency: float, retryable: bool = False,
                failure: str = "call_failed") -> ChatResult:
        return ChatResult(
            key=key,
            model=self.model,
            stage=request.stage,
            content=None,
            finish_reason=None,
            latency_s=latency,
            error=error,
            retryable=retryable,
            failure=failure,
        )

    def _count_failure(self, attempt: _Attempt) -> None:
        now = time.monotonic()
        if self._consecutive_failures == 0:
            self._failing_since = now
        self._consecutive_failures += 1
        if self._consecutive_failures < self.settings.max_consecutive_failures:
            return
        failing_for = now - self._failing_since
        if not attempt.not_ready:
            raise EndpointDown(self.settings.base_url, self._consecutive_failures, attempt.error)
        if failing_for >= self.settings.endpoint_down_after_s:
            raise EndpointDown(self.settings.base_url, self._consecutive_failures, attempt.error, failing_for)

    def _waiting_for_endpoint(self, attempt: _Attempt, answered_before: int) -> bool:
        """True while the endpoint says it is not ready, has answered no call since this one
        started and has not failed for ``endpoint_down_after_s`` yet: the call's failures are
        the endpoint's (a model still loading), so they do not use up its retries."""
        return (
            attempt.not_ready
            and self._answered == answered_before
            and time.monotonic() - self._failing_since < self.settings.endpoint_down_after_s
        )

    def _count_refusal(self, error: str) -> None:
        """A request refused as the row's own problem (400, 422). When the endpoint refuses
        every request, the problem is a setting (max_tokens beyond the model's context, a
        parameter the model does not take, ...): stop, rather than drop every row."""
        self._consecutive_refusals += 1
        if self._consecutive_refusals >= self.settings.max_consecutive_failures:
            raise ConfigError(
                f"{self.settings.base_url} refused {self._consecutive_refusals} requests in a row and "
                f"answered none; last: {error}"
            )

    async def _send(self, body: bytes) -> _Attempt:
        try:
            if self._lean is not None:
                wire = self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
                raw = await self._lean.exchange(self._template, wire, self._timeouts)
                if 200 <= raw.status < 300 and not raw.encoded:
                    return self._parse_completion(raw.content)
                response = raw.response()
            else:
                response = await self._client.post(self._url, content=body)
        except httpx.TimeoutException as exc:
            return _Attempt("transient", "overload", error=self._clean(f"timeout: {type(exc).__name__}: {exc}"))
        except httpx.TransportError as exc:
            return _Attempt("transient", error=self._clean(f"connection: {type(exc).__name__}: {exc}"))
        status = response.status_code
        if 200 <= status < 300:
            return self._parse_completion(response.content)
        data = _json_or_none(response.content)
        return self._classify(status, self._error_message(data, response.text or response.reason_phrase),
                              _error_code(data), parse_retry_after(response.headers))

    def _classify(self, status: int, message: str, code: str, retry_after: float | None) -> _Attempt:
        """How a failed exchange counts: ``status`` and the server's ``message`` and error
        ``code`` (OpenAI's ``error.code`` or ``error.type``, "" when none)."""
        if status == 402 or code == "insufficient_quota":
            # DeepSeek answers 402 when the balance is used up, OpenAI 429 insufficient_quota:
            # no retry and no other row can succeed until someone adds credit.
            return _Attempt("config", error=f"HTTP {status} from {self.settings.base_url}: {message}; "
                                            "the account is out of credit: top it up, then run again")
        if status in (429, 503):
            return _Attempt("transient", "overload", error=f"HTTP {status}: {message}", retry_after=retry_after,
                            not_ready=status == 503)
        if status in (502, 504):  # a proxy whose backend does not answer (yet)
            return _Attempt("transient", error=f"HTTP {status}: {message}", retry_after=retry_after, not_ready=True)
        if status >= 500 or status == 408:
            return _Attempt("transient", error=f"HTTP {status}: {message}", retry_after=retry_after)
        if status in (401, 403, 404):
            return _Attempt("config", error=self._config_hint(status, message))
        if status in (400, 413, 422) and (code in _CONTEXT_EXCEEDED_CODES or _CONTEXT_EXCEEDED.search(message)):
            return _Attempt("row", error=f"prompt_too_long: {message} (the prompt and max_tokens do not fit "
                                         "the model's context)", failure="prompt_too_long")
        if status == 400:
            return _Attempt("row", error=f"bad_request: {message} (check max_tokens, messages, extra_body)")
        if status == 422:
            return _Attempt("row", error=f"unprocessable: {message} (check extra_body and sampling parameters)")
        return _Attempt("row", error=f"http_{status}: {message}")

    def _parse_completion(self, raw: bytes) -> _Attempt:
        data = _json_or_none(raw)
        if isinstance(data, dict) and (data.get("error") or data.get("object") == "error") and not data.get("choices"):
            # An error sent with status 200 (OpenRouter, some proxies): it counts as the
            # status it names, or as a server error when it names none.
            status = _error_status(data) or 500
            text = raw[:_MAX_ERROR_CHARS].decode("utf-8", "replace")
            return self._classify(status, self._error_message(data, text), _error_code(data), None)
        if data is None and raw.lstrip().startswith((b"data:", b"event:")):
            # Server-sent events, though the request says "stream": false: every answer will
            # come like this, so no retry helps.
            return _Attempt("config", error=f"{self.settings.base_url} answered a stream (server-sent events) "
                                            "to a request with \"stream\": false; point base_url at an endpoint "
                                            "(or proxy) that honours it")
        if isinstance(data, dict) and data.get("choices") == [] and any(f in data for f in _PROMPT_FILTER_FIELDS):
            # The prompt itself was refused: asking again gets the same answer, so it is
            # recorded like an answer the filter cut off, with nothing of it.
            return _Attempt("ok", "success", content="", finish_reason="content_filter",
                            prompt_tokens=_tokens(data, "prompt_tokens"), completion_tokens=0)
        try:
            choice = data["choices"][0]  # type: ignore[index]
            message = choice["message"]
            content = message.get("content")
            # DeepSeek and SGLang send a reasoning model's thinking as reasoning_content, vLLM
            # (0.9 on) and Ollama as reasoning.
            thinking = message.get("reasoning_content") or message.get("reasoning")
            finish_reason = choice.get("finish_reason")
            prompt_tokens = _tokens(data, "prompt_tokens")
            completion_tokens = _tokens(data, "completion_tokens")
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            # Not JSON (None has no items), no choices, no message: cut off, or a server hiccup.
            snippet = raw[:80].decode("utf-8", "replace")
            return _Attempt("transient", error=self._clean(f"malformed_response: {type(exc).__name__}: {snippet!r}"))
        if content is not None and not isinstance(content, str):
            return _Attempt("transient", error="malformed_response: message.content is not a string")
        if finish_reason in _SERVER_GAVE_UP:
            return _Attempt("transient", "overload", error=f"cut_off: finish_reason {finish_reason}")
        text = "" if content is None else content
        if isinstance(thinking, str) and thinking.strip():
            text = _with_thinking(thinking, text, finish_reason)
        return _Attempt(
            "ok",
            "success",
            content=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def _error_message(self, data: object, text: str) -> str:
        """The server's own one-line reason, from an OpenAI-style error body when there is one
        (``data``, the parsed body), else the body's ``text``."""
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                text = str(error["message"])
            elif isinstance(error, str):
                text = error
            elif data.get("message") or data.get("detail"):
                text = str(data.get("message") or data.get("detail"))
        return self._clean(text)

    def _config_hint(self, status: int, message: str) -> str:
        where = f"HTTP {status} from {self.settings.base_url}: {message}"
        env = self.settings.api_key_env
        if status == 404:
            hint = "" if self.settings.base_url.endswith("/v1") else " (vLLM, SGLang, Ollama and OpenAI serve it under /v1)"
            return f"{where}; check base_url / model (base_url={self.settings.base_url}{hint}, model={self.model!r})"
        if env is None:
            return f"{where}; the endpoint wants an API key: set api_key_env to the env var that holds it"
        unset = " (it is not set)" if self._key_missing else ""
        if status == 401:
            return f"{where}; check the API key env var {env}{unset}"
        return f"{where}; check that the API key in env var {env}{unset} may use model {self.model!r}"

    def _clean(self, text: str) -> str:
        """One line, bounded, and never the API key (a server may echo it back)."""
        line = " ".join(text.split())
        if self._secret:
            line = line.replace(self._secret, "***")
        if len(line) > _MAX_ERROR_CHARS:
            line = line[: _MAX_ERROR_CHARS - 3] + "..."
        return line
