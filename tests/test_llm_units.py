"""Unit behaviour of the LLM package: keys, settings, admission control, backoff, helpers."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

import httpx
import pydantic
import pytest

from llm.admission import AdmissionController
from llm.backoff import full_jitter_delay, parse_retry_after
from llm.errors import ConfigError, EndpointDown
from llm.gather import gather_all
from llm.http import HTTPProvider
from llm.settings import LLMSettings
from llm.testserver import Fault
from llm.transport import LeanTransport
from llm.types import ChatRequest

REPO = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]


# keys -------------------------------------------------------------------------------------
def test_key_is_stable_and_covers_what_changes_the_call() -> None:
    base = ChatRequest(messages=MESSAGES)
    key = base.key("m")
    assert key == ChatRequest(messages=[dict(m) for m in MESSAGES]).key("m") and len(key) == 64
    assert key == base.model_copy(update={"stage": "revise", "context": {"task": 1}}).key("m")
    variants = [
        base.key("other-model"),
        base.key("m", {"top_p": 0.9}),
        base.model_copy(update={"sample_index": 1}).key("m"),
        base.model_copy(update={"temperature": 0.2}).key("m"),
        base.model_copy(update={"max_tokens": 100}).key("m"),
        ChatRequest(messages=MESSAGES[1:]).key("m"),
    ]
    assert len({key, *variants}) == len(variants) + 1
    assert base.key("m", {}) == base.key("m", None) == key
    assert base.key("m", {"a": 1, "b": 2}) == base.key("m", {"b": 2, "a": 1})
    # Keys are remembered per request, which neither changes equality nor follows an updated copy.
    assert base == ChatRequest(messages=MESSAGES) and base.key("m") == key
    assert base.model_copy(update={"messages": MESSAGES[1:]}).key("m") == ChatRequest(messages=MESSAGES[1:]).key("m")


def test_request_is_frozen_and_strict() -> None:
    request = ChatRequest(messages=MESSAGES)
    with pytest.raises(pydantic.ValidationError):
        request.temperature = 0.1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ChatRequest(messages=MESSAGES, temprature=0.1)  # type: ignore[call-arg]


# settings ---------------------------------------------------------------------------------
def test_settings_reject_typos_and_inconsistent_values() -> None:
    with pytest.raises(pydantic.ValidationError):
        LLMSettings(model="m", max_concurency=4)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="min_concurrency"):
        LLMSettings(model="m", min_concurrency=8, max_concurrency=4)
    with pytest.raises(pydantic.ValidationError, match="extra_body may not set"):
        LLMSettings(model="m", extra_body={"temperature": 0})
    with pytest.raises(pydantic.ValidationError, match="http"):
        LLMSettings(model="m", base_url="127.0.0.1:8000/v1")
    settings = LLMSettings(model="m", base_url="http://h:1/v1/", temperature=0.2, max_tokens=64)
    assert settings.base_url == "http://h:1/v1"
    request = settings.request(MESSAGES, stage="answer", sample_index=2, context={"id": 7})
    assert (request.temperature, request.max_tokens, request.sample_index, request.context) == (0.2, 64, 2, {"id": 7})


def test_errors_name_the_endpoint_and_survive_pickling() -> None:
    error = EndpointDown("http://h/v1", 12, "HTTP 500: boom")
    assert str(error) == "endpoint http://h/v1 failed 12 consecutive attempts; last error: HTTP 500: boom"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert str(pickle.loads(pickle.dumps(ConfigError("check base_url")))) == "check base_url"


# admission control ------------------------------------------------------------------------
def test_admission_halves_once_per_epoch_and_grows_back_slowly() -> None:
    async def go() -> None:
        gate = AdmissionController(max_limit=16, min_limit=2)
        tickets = [await gate.acquire() for _ in range(16)]
        assert gate.in_flight == 16
        for ticket in tickets:  # a burst of 429s sent under one limit
            gate.release(ticket, "overload")
        assert gate.limit == 8 and gate.decreases == 1
        gate.release(await gate.acquire(), "success")  # served at 8 ...
        gate.release(await gate.acquire(), "overload")  # ... pushed back at 8: congestion
        assert gate.limit == 4
        for _ in range(3):
            gate.release(await gate.acquire(), "success")
        assert gate.limit == 4  # at its threshold: +1 per ~limit successes, slowly
        while gate.limit < 16:
            gate.release(await gate.acquire(), "success")
        gate.release(await gate.acquire(), "success")
        assert gate.limit == 16  # capped

    asyncio.run(go())


def test_admission_comes_back_from_an_outage_in_a_few_windows() -> None:
    """An outage rejects everything and takes the limit to the floor; once requests succeed
    again the limit doubles per window back to half its level before the outage (slow start),
    and only above that grows one slot per window."""

    async def go() -> None:
        gate = AdmissionController(max_limit=64, min_limit=2)
        long_call = await gate.acquire()  # started before the outage
        for _ in range(5):  # every request of the outage is rejected: halved to the floor
            gate.release(await gate.acquire(), "overload")
        assert gate.limit == 2 and gate.decreases == 5
        gate.release(long_call, "success")  # it ends well during the outage, but says nothing
        assert gate.limit == 3              # of how the endpoint serves now
        successes = 0
        while gate.limit < 32:
            gate.release(await gate.acquire(), "success")
            successes += 1
        assert successes == 29  # one slot per success up to half the level before the outage
        for _ in range(33):  # then one slot per window
            gate.release(await gate.acquire(), "success")
        assert gate.limit == 33
        gate.release(await gate.acquire(), "overload")  # pushback while serving: congestion
        assert gate.limit == 16
        for _ in range(16):
            gate.release(await gate.acquire(), "success")
        assert gate.limit == 17  # no slow start back to 33: 16 is the new threshold

    asyncio.run(go())


def test_admission_queues_past_the_limit_and_survives_cancellation() -> None:
    async def go() -> None:
        gate = AdmissionController(max_limit=2)
        first, second = await gate.acquire(), await gate.acquire()
        third = asyncio.ensure_future(gate.acquire())
        fourth = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        assert not third.done() and gate.in_flight == 2
        third.cancel()
        gate.release(first, "neutral")
        await asyncio.sleep(0)
        assert fourth.done() and gate.in_flight == 2  # the cancelled waiter was skipped
        gate.release(second, "neutral")
        gate.release(fourth.result(), "neutral")
        assert gate.in_flight == 0

    asyncio.run(go())


# backoff ----------------------------------------------------------------------------------
def test_full_jitter_is_bounded_by_the_exponential_and_the_cap() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        delays = [full_jitter_delay(attempt, 0.5, 10.0, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(10.0, 0.5 * 2**attempt)
    assert full_jitter_delay(5000, 0.5, 10.0, rng) <= 10.0


def test_retry_after_accepts_seconds_dates_and_milliseconds() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30)
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


# helpers ----------------------------------------------------------------------------------
def test_gather_all_raises_the_error_itself_and_cancels_the_rest() -> None:
    cancelled = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise EndpointDown("http://h/v1", 1, "x")

    async def go() -> None:
        assert await gather_all([asyncio.sleep(0, result=i) for i in range(3)]) == [0, 1, 2]
        with pytest.raises(EndpointDown):
            await gather_all([slow(), boom(), slow()])

    asyncio.run(go())
    assert cancelled == [True, True]


def test_the_lean_transport_is_used_unless_a_proxy_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = LLMSettings(model="m", base_url="http://10.1.2.3:8000/v1", api_key_env=None)
    assert isinstance(HTTPProvider(settings)._client._transport, LeanTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert not isinstance(HTTPProvider(settings)._client._transport, LeanTransport)
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    assert isinstance(HTTPProvider(settings)._client._transport, LeanTransport)


def test_package_exports_are_loaded_on_use() -> None:
    import llm

    assert llm.LLMSettings is LLMSettings and llm.HTTPProvider is HTTPProvider
    with pytest.raises(AttributeError):
        llm.NoSuchThing  # noqa: B018


def test_fault_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("418")  # type: ignore[arg-type]


def test_testserver_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "llm.testserver", "--port", "0", "--latency", "0.01"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("serving on http://127.0.0.1:")
        base_url = line.split()[-1]
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(base_url + "/chat/completions", json=body)
        assert reply.json()["choices"][0]["message"]["content"] == "echo: hi"
    finally:
        server.terminate()
        server.wait(timeout=10)
