"""The HTTP client against a real OpenAI-compatible server on loopback: faults, retries, limits."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import httpx
import pytest

from llm.errors import ConfigError, EndpointDown
from llm.http import HTTPProvider
from llm.settings import LLMSettings
from llm.testserver import Fault, ServerHandle, outage, serve
from llm.types import ChatRequest, ChatResult

SECRET = "sk-test-9f8e7d6c5b4a-DO-NOT-LOG"


def make_settings(base_url: str, **overrides) -> LLMSettings:
    values = dict(
        base_url=base_url,
        model="test-model",
        api_key_env=None,
        timeout_s=5.0,
        connect_timeout_s=2.0,
        max_concurrency=8,
        backoff_base_s=0.01,
        backoff_max_s=0.2,
        max_retries=5,
        max_consecutive_failures=50,
    )
    values.update(overrides)
    return LLMSettings(**values)


def make_requests(n: int, tag: str = "q", stage: str = "answer") -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"{tag}{i}"}], stage=stage) for i in range(n)]


def complete(settings: LLMSettings, requests: list[ChatRequest]) -> list[ChatResult]:
    async def go() -> list[ChatResult]:
        async with HTTPProvider(settings) as provider:
            return await provider.complete(requests)

    return asyncio.run(go())


def sent_contents(server: ServerHandle) -> list[str]:
    return [body["messages"][-1]["content"] for body in server.requests]


def only_message(tag: str):
    return lambda body: body["messages"][-1]["content"] == tag


def test_results_come_back_in_order_with_usage_and_keys() -> None:
    with serve() as server:
        settings = make_settings(server.base_url, extra_body={"top_p": 0.95})
        requests = make_requests(20)
        results = complete(settings, requests)
    assert [r.content for r in results] == [f"echo: q{i}" for i in range(20)]
    assert all(r.finish_reason == "stop" and not r.truncated and r.error is None for r in results)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 and r.stage == "answer" for r in results)
    assert [r.key for r in results] == [q.key("test-model", {"top_p": 0.95}) for q in requests]
    body = server.requests[0]
    assert body["model"] == "test-model" and body["top_p"] == 0.95
    assert body["temperature"] == 0.7 and body["max_tokens"] == 4096
    assert "context" not in body and "stage" not in body and "sample_index" not in body


def test_scripted_answers_are_used_in_order() -> None:
    script = ["first", {"content": "second", "completion_tokens": 7}]
    with serve(script=script) as server:
        results = complete(make_settings(server.base_url, max_concurrency=1), make_requests(3))
    assert [r.content for r in results[:2]] == ["first", "second"] and results[1].completion_tokens == 7
    assert results[2].error is not None and "used up" in results[2].error  # a 500, retried, then given up


def test_random_faults_from_a_seeded_rng_are_all_absorbed() -> None:
    faults = [Fault("500", probability=0.2), Fault("429", probability=0.1, retry_after=0.01)]
    with serve(faults=faults, seed=7) as server:
        results = complete(make_settings(server.base_url, max_retries=10), make_requests(60))
        counts = server.counts
    assert all(r.error is None for r in results)
    assert counts["500"] > 0 and counts["429"] > 0 and counts["ok"] == 60


def test_models_endpoint_lists_the_model() -> None:
    with serve(model="m1") as server:
        response = httpx.get(server.base_url + "/models")
    assert response.json()["data"][0]["id"] == "m1"


def test_api_key_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with serve(api_key=SECRET) as server:
        results = complete(make_settings(server.base_url, api_key_env="TEST_LLM_KEY"), make_requests(2))
    assert all(r.error is None for r in results)
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"
    # Requests bypass the client's per-request layers but carry the headers it would send.
    sent = {k.lower(): v for k, v in server.headers[0].items()}
    assert sent["content-type"] == "application/json" and sent["user-agent"].startswith("python-httpx/")
    assert sent["host"].startswith("127.0.0.1") and sent["content-length"].isdigit()
    assert SECRET not in repr(HTTPProvider(make_settings(server.base_url, api_key_env="TEST_LLM_KEY")))


def test_401_stops_the_run_naming_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with serve(api_key="sk-the-right-one") as server:
        with pytest.raises(ConfigError) as caught:
            complete(make_settings(server.base_url, api_key_env="TEST_LLM_KEY"), make_requests(4))
    message = str(caught.value)
    assert "check the API key env var TEST_LLM_KEY" in message and "\n" not in message
    assert SECRET not in message  # the server echoed it; the client redacts it
    assert server.counts["401"] <= 4  # not retried


def test_unset_key_env_var_is_named_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with serve(faults=[Fault("401")]) as server:
        with pytest.raises(ConfigError, match="TEST_LLM_KEY \\(it is not set\\)"):
            complete(make_settings(server.base_url, api_key_env="TEST_LLM_KEY"), make_requests(1))


def test_404_stops_the_run_naming_base_url_and_model() -> None:
    with serve(faults=[Fault("404")]) as server:
        with pytest.raises(ConfigError, match="check base_url / model") as caught:
            complete(make_settings(server.base_url), make_requests(3))
    assert server.base_url in str(caught.value) and "test-model" in str(caught.value)


def test_400_is_a_row_error_and_is_not_retried() -> None:
    invalid = Fault("400", error={"message": "messages.0: invalid\ncontent"}, match=only_message("q2"))
    with serve(faults=[invalid]) as server:
        results = complete(make_settings(server.base_url), make_requests(5))
    bad = results[2]
    assert bad.content is None and bad.error is not None and bad.error.startswith("bad_request: ")
    assert "messages.0: invalid content" in bad.error and "\n" not in bad.error
    assert all(r.error is None for i, r in enumerate(results) if i != 2)
    assert sent_contents(server).count("q2") == 1


@pytest.mark.parametrize("kind", ["500", "503", "429", "malformed", "reset", "hang"])
def test_transient_faults_are_retried_until_success(kind: str) -> None:
    fault = Fault(kind, times=2, hang_s=3.0)  # type: ignore[arg-type]
    with serve(faults=[fault]) as server:
        results = complete(make_settings(server.base_url, timeout_s=0.3), make_requests(4))
        counts = server.counts
    assert [r.content for r in results] == [f"echo: q{i}" for i in range(4)]
    assert counts[kind] == 2 and counts["ok"] == 4


def test_retry_after_is_honoured_over_backoff() -> None:
    # backoff_base_s=5 would make a blind retry take seconds; the server asks for 0.3 s.
    with serve(faults=[Fault("429", retry_after=0.3, times=1)]) as server:
        settings = make_settings(server.base_url, backoff_base_s=5.0, backoff_max_s=10.0)
        started = time.perf_counter()
        results = complete(settings, make_requests(1))
        elapsed = time.perf_counter() - started
    assert results[0].error is None and server.counts["429"] == 1
    assert 0.3 <= elapsed < 1.5


def test_truncated_answer_is_recorded_not_retried() -> None:
    with serve(script=lambda body: "a long answer that gets cut", faults=[Fault("length", times=1)]) as server:
        (result,) = complete(make_settings(server.base_url), make_requests(1))
    assert result.truncated and result.finish_reason == "length" and result.error is None
    assert result.content == "a long answer"
    assert len(server.requests) == 1


def test_retries_exhausted_is_a_row_error() -> None:
    with serve(faults=[Fault("500", match=only_message("q1"))]) as server:
        results = complete(make_settings(server.base_url, max_retries=2), make_requests(3))
    assert results[1].error is not None and results[1].error.startswith("retries_exhausted: 3 attempts")
    assert "HTTP 500" in results[1].error
    assert results[0].error is None and results[2].error is None
    assert sent_contents(server).count("q1") == 3


def test_no_slot_is_held_while_backing_off() -> None:
    # One slot. q0 fails and is told to wait 0.5 s; the other requests must use the slot
    # meanwhile, so q0's retry arrives last.
    fault = Fault("500", retry_after=0.5, times=1, match=only_message("q0"))
    with serve(latency_s=0.02, faults=[fault]) as server:
        settings = make_settings(server.base_url, max_concurrency=1, min_concurrency=1, backoff_max_s=1.0)
        results = complete(settings, make_requests(6))
    assert all(r.error is None for r in results)
    # Holding the slot through the back-off would have sent q0 twice before anything else.
    assert sent_contents(server) == ["q0", "q1", "q2", "q3", "q4", "q5", "q0"]


def test_concurrency_shrinks_on_429_and_grows_back() -> None:
    faults = [Fault("429", retry_after=0.05, times=16)]
    with serve(latency_s=0.01, faults=faults) as server:
        settings = make_settings(server.base_url, max_concurrency=16)

        async def go() -> tuple[int, int, int]:
            async with HTTPProvider(settings) as provider:
                await provider.complete(make_requests(16, "a"))
                after_429s = provider.concurrency_limit
                await provider.complete(make_requests(300, "b"))
                return after_429s, provider.concurrency_limit, provider.admission.decreases

        after_429s, after_successes, decreases = asyncio.run(go())
    assert decreases >= 1 and after_429s < 16
    assert after_successes == 16  # grown back to the ceiling, and never past it
    assert server.max_in_flight <= 16


def test_the_test_servers_outage_rejects_a_run_of_requests_after_the_first_ones() -> None:
    with serve(faults=[outage(3, after=2)]) as server:
        statuses = [httpx.post(f"{server.base_url}/chat/completions", json={
            "model": "test-model", "messages": [{"role": "user", "content": f"q{i}"}]}).status_code for i in range(7)]
    assert statuses == [200, 200, 503, 503, 503, 200, 200]


def test_concurrency_comes_back_quickly_after_an_outage() -> None:
    """A burst of 503s takes the limit to the floor; once the endpoint answers again the
    limit is back to half its earlier level within a few dozen answers (slow start), where
    growing one slot per window of answers would still be near the floor."""
    faults = [outage(150)]
    with serve(latency_s=0.01, faults=faults) as server:
        settings = make_settings(server.base_url, max_concurrency=64, max_retries=50, backoff_base_s=0.01,
                                 backoff_max_s=0.05, max_consecutive_failures=1000)

        async def go() -> tuple[int, int]:
            async with HTTPProvider(settings) as provider:
                results = await provider.complete(make_requests(64, "a"))  # all through the outage
                assert all(r.error is None for r in results)
                floor = provider.admission.decreases
                await provider.complete(make_requests(40, "b"))
                return floor, provider.concurrency_limit

        decreases, after_40 = asyncio.run(go())
    assert decreases >= 5  # 64 halved at least to 2
    assert after_40 >= 32


def test_only_429s_stop_with_endpoint_down() -> None:
    with serve(faults=[Fault("429", retry_after=0.01)]) as server:
        settings = make_settings(server.base_url, max_consecutive_failures=20, max_retries=100,
                                 endpoint_down_after_s=600)  # a rate limit is not a model loading
        started = time.perf_counter()
        with pytest.raises(EndpointDown, match="HTTP 429"):
            complete(settings, make_requests(8))
    assert time.perf_counter() - started < 5


def test_endpoint_down_when_server_answers_only_500s() -> None:
    with serve(faults=[Fault("500")]) as server:
        settings = make_settings(server.base_url, max_consecutive_failures=30, max_retries=100,
                                 endpoint_down_after_s=600)

        async def go() -> HTTPProvider:
            provider = HTTPProvider(settings)
            try:
                with pytest.raises(EndpointDown) as caught:
                    await provider.complete(make_requests(16))
            finally:
                await provider.aclose()
            message = str(caught.value)
            assert server.base_url in message and "HTTP 500" in message and "consecutive attempts" in message
            return provider

        started = time.perf_counter()
        provider = asyncio.run(go())
    assert time.perf_counter() - started < 5
    assert provider.admission.in_flight == 0  # cancelled requests gave their slots back
    assert len(server.requests) < 30 + 16


def test_a_server_still_loading_its_model_is_waited_for() -> None:
    # vLLM / TGI behind a proxy answer 503 while the model loads: more failures in a row than
    # max_consecutive_failures, and more than any call's retries, before the first answer.
    ready_at = time.monotonic() + 1.5
    loading = Fault("503", match=lambda body: time.monotonic() < ready_at,
                    error={"message": "Model is loading"})
    with serve(faults=[loading]) as server:
        settings = make_settings(server.base_url, max_consecutive_failures=5, max_retries=2,
                                 backoff_max_s=0.1, endpoint_down_after_s=30)
        results = complete(settings, make_requests(8))
    assert [r.content for r in results] == [f"echo: q{i}" for i in range(8)]
    assert server.counts["503"] > 5 + 8 * 2


def test_an_endpoint_that_keeps_loading_stops_the_run_after_the_wait() -> None:
    with serve(faults=[Fault("503")]) as server:
        settings = make_settings(server.base_url, max_consecutive_failures=5, max_retries=2,
                                 backoff_max_s=0.05, endpoint_down_after_s=1.0)
        started = time.perf_counter()
        with pytest.raises(EndpointDown, match=r"failed \d+ consecutive attempts in \d+ s; last error: HTTP 503"):
            complete(settings, make_requests(4))
    assert 1.0 <= time.perf_counter() - started < 5


def test_endpoint_down_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    # A wrong port: no server is coming, so the wait for a loading one does not apply.
    settings = make_settings(base_url, max_consecutive_failures=10, max_retries=100, endpoint_down_after_s=600)
    started = time.perf_counter()
    with pytest.raises(EndpointDown, match="connect") as caught:
        complete(settings, make_requests(4))
    assert base_url in str(caught.value)
    assert time.perf_counter() - started < 5


def test_api_key_never_reaches_logs_errors_or_results(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    faults = [
        Fault("429", times=2, retry_after=0.01),
        Fault("500", times=2),
        Fault("reset", times=1),
        Fault("malformed", times=1),
        Fault("400", match=only_message("q3")),
    ]
    texts: list[str] = []
    with serve(api_key=SECRET, faults=faults) as server:
        settings = make_settings(server.base_url, api_key_env="TEST_LLM_KEY")
        results = complete(settings, make_requests(8))
        texts += [r.model_dump_json() for r in results]
        texts += [repr(settings), repr(HTTPProvider(settings))]
    with serve(api_key="sk-other") as server:  # 401 that echoes the presented key
        with pytest.raises(ConfigError) as caught:
            complete(make_settings(server.base_url, api_key_env="TEST_LLM_KEY"), make_requests(2))
        texts += [str(caught.value), repr(caught.value)]
    assert any(r.error for r in results) and caplog.records
    for record in caplog.records:
        texts += [record.getMessage(), record.exc_text or "", repr(record.args)]
    assert not [text for text in texts if SECRET in text]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("402"),  # DeepSeek: Insufficient Balance
        Fault("429", error={"message": "You exceeded your current quota, please check your plan and billing details",
                            "type": "insufficient_quota", "code": "insufficient_quota"}),  # OpenAI
    ],
    ids=["402", "insufficient_quota"],
)
def test_an_account_out_of_credit_stops_the_run_at_once(fault: Fault) -> None:
    with serve(faults=[fault]) as server:
        with pytest.raises(ConfigError, match="out of credit: top it up") as caught:
            complete(make_settings(server.base_url, max_concurrency=1), make_requests(4))
    assert server.base_url in str(caught.value) and "\n" not in str(caught.value)
    sent = sent_contents(server)
    assert len(sent) == len(set(sent)) < 4  # not retried; the run stopped


def test_an_error_sent_with_status_200_counts_as_the_status_it_names() -> None:
    # OpenRouter and some proxies answer errors with 200; vLLM's error object has a top-level code.
    seen: dict[str, int] = {}

    def script(body: dict) -> dict:
        tag = body["messages"][-1]["content"]
        seen[tag] = seen.get(tag, 0) + 1
        if tag == "q0":
            return {"body": {"error": {"code": 400, "message": "prompt is too long for the context window"}}}
        if tag == "q1":
            return {"body": {"object": "error", "message": "max_tokens is too large", "code": 400}}
        if tag == "q2" and seen[tag] == 1:
            return {"body": {"error": {"message": "upstream provider timed out"}}}
        return f"echo: {tag}"

    with serve(script=script) as server:
        results = complete(make_settings(server.base_url), make_requests(4))
    assert results[0].error == "prompt_too_long: prompt is too long for the context window " \
                               "(the prompt and max_tokens do not fit the model's context)"
    assert results[1].error is not None and results[1].error.startswith("bad_request: max_tokens is too large")
    assert seen["q0"] == seen["q1"] == 1  # a row's own problem: not retried
    assert results[2].content == "echo: q2" and seen["q2"] == 2  # no status named: a server error, retried
    assert results[3].content == "echo: q3"
    assert server.requests[0]["stream"] is False


def test_a_stream_answered_to_a_plain_request_stops_the_run() -> None:
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n'
    with serve(script=lambda body: {"body": chunk, "content_type": "text/event-stream"}) as server:
        with pytest.raises(ConfigError, match="answered a stream") as caught:
            complete(make_settings(server.base_url, max_concurrency=1), make_requests(3))
    assert '"stream": false' in str(caught.value) and len(server.requests) < 3


def test_an_endpoint_that_refuses_every_request_stops_the_run() -> None:
    # vLLM with max_model_len below max_tokens, or an OpenAI model that does not take
    # max_tokens: every request gets a 400, and every row would be dropped for a setting.
    with serve(faults=[Fault("400")]) as server:
        with pytest.raises(ConfigError, match=r"refused \d+ requests in a row and answered none") as caught:
            complete(make_settings(server.base_url, max_consecutive_failures=6), make_requests(100))
    assert "maximum context length" in str(caught.value) and len(server.requests) < 100


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("400", {"message": "This model's maximum context length is 8192 tokens. However, you requested 9000 "
                            "tokens (4904 in the messages, 4096 in the completion).", "code": 400}),  # vLLM
        ("400", {"message": "Your input exceeds the context window of this model.", "type": "invalid_request_error",
                 "code": "context_length_exceeded"}),  # OpenAI
        ("400", {"message": "The input (9000 tokens) is longer than the model's context length (8192 tokens)."}),
        ("422", {"message": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. "
                            "Given: 5000 `inputs` tokens and 4096 `max_new_tokens`"}),  # TGI
    ],
    ids=["vllm", "openai", "sglang", "tgi"],
)
def test_a_prompt_longer_than_the_models_context_fails_as_prompt_too_long(status: str, error: dict) -> None:
    too_long = Fault(status, error=error, match=only_message("q0"))
    other_400 = Fault("400", error={"message": "temperature must be non-negative"}, match=only_message("q1"))
    with serve(faults=[too_long, other_400]) as server:
        results = complete(make_settings(server.base_url), make_requests(3))
    assert results[0].failure == "prompt_too_long" and results[0].error.startswith("prompt_too_long: ")
    assert not results[0].retryable and sent_contents(server).count("q0") == 1
    assert results[1].failure == "call_failed" and results[1].error.startswith("bad_request: ")
    assert results[2].error is None and results[2].failure is None


def test_refusals_between_answers_stay_row_errors() -> None:
    refuse_even = Fault("400", match=lambda body: int(body["messages"][-1]["content"][1:]) % 2 == 0)
    with serve(faults=[refuse_even]) as server:
        settings = make_settings(server.base_url, max_consecutive_failures=3, max_concurrency=1)
        results = complete(settings, make_requests(12))
    assert [r.error is not None for r in results] == [i % 2 == 0 for i in range(12)]


def test_a_reasoning_models_thinking_is_kept_before_its_answer() -> None:
    from prompts.answers import extract_answer

    script = [
        {"content": 'So {"output": 4}', "reasoning_content": '\nFirst {"output": 3}? No, once more.\n'},  # DeepSeek
        {"content": "plain answer", "reasoning": "thinking"},  # vLLM 0.9+, Ollama
        {"content": None, "reasoning_content": "still thinking when max_tokens ran out",
         "finish_reason": "length"},
        {"content": "no thinking", "reasoning_content": None},
    ]
    with serve(script=script) as server:
        results = complete(make_settings(server.base_url, max_concurrency=1), make_requests(4))
    assert results[0].content == '<think>\nFirst {"output": 3}? No, once more.\n</think>\n\nSo {"output": 4}'
    assert extract_answer(results[0].content, "output").value == 4
    assert results[1].content == "<think>\nthinking\n</think>\n\nplain answer"
    assert results[2].content == "<think>\nstill thinking when max_tokens ran out" and results[2].truncated
    assert extract_answer(results[2].content, "output").status == "no_answer"
    assert results[3].content == "no thinking"


def test_a_base_url_without_v1_is_named_on_404() -> None:
    with serve() as server:
        with pytest.raises(ConfigError, match="serve it under /v1") as caught:
            complete(make_settings(server.base_url.removesuffix("/v1")), make_requests(1))
    assert "\n" not in str(caught.value)


def test_an_answer_cut_off_by_a_content_filter_is_truncated_and_one_the_server_gave_up_on_is_retried() -> None:
    seen: list[str] = []

    def script(body: dict) -> dict:
        tag = body["messages"][-1]["content"]
        seen.append(tag)
        if tag == "q0":
            return {"content": 'Partial {"output": 1} and', "finish_reason": "content_filter"}
        if tag == "q1" and seen.count("q1") == 1:  # DeepSeek, short of capacity
            return {"content": 'It is {"output": 2', "finish_reason": "insufficient_system_resource"}
        return {"content": f"echo: {tag}"}

    with serve(script=script) as server:
        results = complete(make_settings(server.base_url), make_requests(2))
    assert results[0].truncated and results[0].finish_reason == "content_filter"
    assert results[1].content == "echo: q1" and seen.count("q1") == 2 and not results[1].truncated


def test_a_prompt_refused_by_azures_content_filter_is_recorded_once_not_retried() -> None:
    # Azure OpenAI's prompt filter answers 200 with no choices and says why in
    # prompt_filter_results: the prompt is refused, and asking again gets the same answer.
    filtered = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "violence": {"filtered": True, "severity": "medium"}}}],
                "usage": {"prompt_tokens": 31, "completion_tokens": 0, "total_tokens": 31}}
    with serve(script=lambda body: {"body": filtered} if body["messages"][-1]["content"] == "q0"
               else f"echo: {body['messages'][-1]['content']}") as server:
        results = complete(make_settings(server.base_url, max_concurrency=1), make_requests(2))
    assert sent_contents(server).count("q0") == 1
    assert results[0].error is None and results[0].content == "" and results[0].truncated
    assert results[0].finish_reason == "content_filter" and results[0].prompt_tokens == 31
    assert results[1].content == "echo: q1"


def test_an_answer_without_usage_has_unknown_tokens_and_cost() -> None:
    from llm.usage import summarize_usage

    bare = {"id": "c", "object": "chat.completion", "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    with serve(script=lambda body: {"body": bare} if body["messages"][-1]["content"] == "q0" else "echo") as server:
        results = complete(make_settings(server.base_url), make_requests(2))
    assert results[0].content == "hi" and results[0].prompt_tokens is None and results[0].completion_tokens is None
    assert results[1].prompt_tokens > 0
    priced = make_settings(server.base_url, price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
    usage = summarize_usage(results, priced)
    assert usage["total"]["usage_unknown"] == 1 and usage["total"]["cost_usd"] == "unknown"
    assert summarize_usage(results[1:], priced)["total"]["cost_usd"] > 0


def test_max_tokens_goes_in_the_field_the_model_takes() -> None:
    # OpenAI's reasoning models answer max_tokens with a 400 and take max_completion_tokens.
    def script(body: dict) -> str:
        return "ok" if "max_tokens" not in body and body.get("max_completion_tokens") == 900 else "wrong field"

    with serve(script=script) as server:
        settings = make_settings(server.base_url, max_tokens_field="max_completion_tokens", max_tokens=900)
        (result,) = complete(settings, [settings.request([{"role": "user", "content": "q"}], stage="answer")])
    assert result.content == "ok"
