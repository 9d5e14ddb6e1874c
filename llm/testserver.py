"""A real OpenAI-compatible chat server for tests and demos, with scripted answers and faults.

``serve(...)`` runs it under uvicorn in a background thread on a free loopback port::

    with serve(latency_s=0.05, faults=[Fault("429", retry_after=0.2, times=2)]) as server:
        settings = LLMSettings(base_url=server.base_url, model="test-model", api_key_env=None)
        ...
        assert server.counts["429"] == 2

``python -m llm.testserver --port 8000 --latency 0.2`` serves it in the foreground.
Answers come from ``script``: a callable ``(request_body) -> str | dict``, a list consumed in
order, or (by default) an echo of the last message. A dict answer may set ``content`` (None
for a null), ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, and the thinking of a
reasoning model as ``reasoning_content`` (DeepSeek, SGLang, older vLLM) or ``reasoning`` (vLLM,
Ollama); or ``body``, the whole status-200 body as it is (a dict, or bytes sent with
``content_type``), for answers of other shapes. Latency applies to answered requests (status
200); faults other than ``hang`` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import uvicorn

FaultKind = Literal["429", "500", "503", "hang", "malformed", "reset", "length", "400", "401", "402", "404", "422"]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
Script = Callable[[dict], str | dict] | list[str | dict] | None


@dataclass(frozen=True)
class Fault:
    """A rule that replaces the answer to matching requests with a failure.

    ``times``: fire for the first N matching requests only; ``probability``: fire at random
    (the server's RNG is seeded); neither: fire always. ``match`` narrows the rule to request
    bodies it accepts. ``retry_after`` (seconds, or an HTTP date string) is sent as Retry-After.
    ``error`` replaces the error object of the body (``{"message": ...}`` by default).
    """

    kind: FaultKind
    times: int | None = None
    probability: float | None = None
    retry_after: float | str | None = None
    match: Callable[[dict], bool] | None = None
    hang_s: float = 30.0
    error: dict | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")


_STATUS = {"429": 429, "500": 500, "503": 503, "400": 400, "402": 402, "404": 404, "422": 422}
_ERROR_TEXT = {
    "429": "Rate limit reached, please retry later",
    "500": "Internal server error",
    "503": "Service temporarily overloaded",
    "400": "This model's maximum context length is 8192 tokens",
    "402": "Insufficient Balance",
    "404": "The model does not exist",
    "422": "Invalid Parameters",
}


_UNAUTHORIZED = Fault("401")


class ChatApp:
    """The ASGI application; its counters are read from other threads under ``lock``."""

    def __init__(
        self,
        script: Script = None,
        latency_s: float = 0.0,
        faults: list[Fault] | None = None,
        seed: int = 0,
        model: str = "test-model",
        api_key: str | None = None,
        ollama_version: str | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.ollama_version = ollama_version
        self.faults = list(faults or [])
        self.model = model
        self.api_key = api_key
        self.lock = threading.Lock()
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = False
        self._script = script
        self._script_pos = 0
        self._remaining = [fault.times for fault in self.faults]
        self._rng = random.Random(seed)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            await _send_json(send, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
            return
        if method == "GET" and path == "/api/version" and self.ollama_version is not None:
            await _send_json(send, 200, {"version": self.ollama_version})  # as Ollama answers it
            return
        if method != "POST" or path != "/v1/chat/completions":
            await _send_json(send, 404, {"error": {"message": f"no route {method} {path}"}})
            return
        raw = await _read_body(receive)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                fault: Fault | None = _UNAUTHORIZED
            else:
                fault = self._pick_fault(body)
            answer = self._next_answer(body) if fault is None or fault.kind == "length" else None
        try:
            await self._respond(send, body, headers, fault, answer)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _count(self, outcome: str) -> None:
        with self.lock:
            self.counts[outcome] += 1

    def _pick_fault(self, body: Any) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.match is not None and not (isinstance(body, dict) and fault.match(body)):
                continue
            if fault.times is not None and self._remaining[index] <= 0:
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                self._remaining[index] -= 1
            return fault
        return None

    def _next_answer(self, body: Any) -> dict:
        script = self._script
        if callable(script):
            answer = script(body)
        elif isinstance(script, list):
            if self._script_pos >= len(script):
                return {"error": "test server: the scripted answers are used up"}
            answer = script[self._script_pos]
            self._script_pos += 1
        else:
            messages = body.get("messages") if isinstance(body, dict) else None
            last = messages[-1].get("content", "") if messages else ""
            answer = f"echo: {last}"
        return {"content": answer} if isinstance(answer, str) else dict(answer)

    async def _respond(
        self, send: Callable, body: Any, headers: dict[str, str], fault: Fault | None, answer: dict | None
    ) -> None:
        """Answer, or fail as ``fault`` says. Each outcome is counted before the client can
        see it, so a test reading the counters after its call returns sees every outcome."""
        if fault is None or fault.kind == "length":
            assert answer is not None
            if "error" in answer:
                await self._reply(send, "500", 500, {"error": {"message": answer["error"]}})
                return
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if fault is None and "body" in answer:
                raw = answer["body"]
                await self._reply(send, "ok", 200, raw, content_type=answer.get("content_type", "application/json"))
                return
            if fault is None:
                await self._reply(send, "ok", 200, self._completion(body, answer))
                return
            content = answer.get("content", "")
            answer = {**answer, "content": content[: max(1, len(content) // 2)], "finish_reason": "length"}
            await self._reply(send, "length", 200, self._completion(body, answer))
            return
        kind = fault.kind
        if kind == "401":
            # Like some real APIs, echo what was presented: the client must redact it.
            presented = headers.get("authorization", "").removeprefix("Bearer ") or "(none)"
            error = {"message": f"Incorrect API key provided: {presented}", "type": "invalid_request_error"}
            await self._reply(send, kind, 401, {"error": error})
        elif kind in _STATUS:
            extra = [] if fault.retry_after is None else [(b"retry-after", str(fault.retry_after).encode())]
            error = fault.error or {"message": _ERROR_TEXT[kind]}
            await self._reply(send, kind, _STATUS[kind], {"error": error}, extra)
        elif kind == "malformed":
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            await self._reply(send, kind, 200, b'{"id": "cmpl", "choices": [{"message": {"content": "cut')
        elif kind == "hang":
            self._count(kind)
            deadline = time.monotonic() + fault.hang_s
            while not self.stopping and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await _send_json(send, 504, {"error": {"message": "hung"}})
        else:
            # reset: abort the TCP connection (RST) without answering. uvicorn's ``send`` is a
            # method of its per-request cycle object, which holds the transport.
            transport = send.__self__.transport  # type: ignore[attr-defined]
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._count(kind)
            transport.abort()
            await asyncio.sleep(0.01)  # let uvicorn see the disconnect before the app returns

    async def _reply(
        self, send: Callable, outcome: str, status: int, payload: dict | bytes, extra_headers: list | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())]
        self._count(outcome)
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
        await send({"type": "http.response.body", "body": data})

    def _completion(self, body: Any, answer: dict) -> dict:
        content = answer.get("content", "")
        message = {"role": "assistant", "content": content}
        for field in ("reasoning_content", "reasoning"):
            if field in answer:
                message[field] = answer[field]
        messages = body.get("messages", []) if isinstance(body, dict) else []
        prompt_chars = sum(len(str(message.get("content", ""))) for message in messages)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model) if isinstance(body, dict) else self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": answer.get("finish_reason", "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": answer.get("prompt_tokens", prompt_chars // 4 + 1),
                "completion_tokens": answer.get("completion_tokens", len(content or "") // 4 + 1),
            },
        }


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Callable, status: int, payload: dict) -> None:
    data = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class ServerHandle:
    """A running test server: where it listens and what it has seen."""

    def __init__(self, app: ChatApp, port: int) -> None:
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    @property
    def requests(self) -> list[Any]:
        """Bodies of the chat requests received so far, in arrival order."""
        with self.app.lock:
            return list(self.app.requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        with self.app.lock:
            return list(self.app.headers)

    @property
    def counts(self) -> Counter[str]:
        """Responses by outcome: 'ok', 'length', or a fault kind."""
        with self.app.lock:
            return Counter(self.app.counts)

    @property
    def max_in_flight(self) -> int:
        with self.app.lock:
            return self.app.max_in_flight


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP, and without it Nagle + delayed ACK add ~40 ms per answer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(app: ChatApp) -> uvicorn.Config:
    return uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2, backlog=4096
    )


@contextlib.contextmanager
def serve(
    script: Script = None,
    latency_s: float = 0.0,
    faults: list[Fault] | None = None,
    *,
    seed: int = 0,
    model: str = "test-model",
    api_key: str | None = None,
    port: int = 0,
    ollama_version: str | None = None,
) -> Iterator[ServerHandle]:
    """Run the server in a background thread on 127.0.0.1 (``port=0``: a free port);
    ``ollama_version``: also answer Ollama's ``GET /api/version`` with it."""
    app = ChatApp(script, latency_s, faults, seed, model, api_key, ollama_version)
    sock = _bind("127.0.0.1", port)
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="llm-testserver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    try:
        yield ServerHandle(app, sock.getsockname()[1])
    finally:
        app.stopping = True
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def outage(rejected: int, after: int = 0) -> Fault:
    """A server restarting: ``rejected`` chat requests in a row answered 503, after the first
    ``after`` were answered."""
    seen = itertools.count(1)
    return Fault("503", times=rejected, match=lambda _body: next(seen) > after)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible test server (echoes by default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--model", default="test-model")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:PROBABILITY",
        help=f"inject a fault at random, e.g. 429:0.05 (kinds: {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument("--outage", type=int, default=0, metavar="N",
                        help="answer N chat requests with 503 in a row, as a restarting server does")
    parser.add_argument("--outage-after", type=int, default=0, metavar="M",
                        help="start the outage after the first M chat requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = [outage(args.outage, args.outage_after)] if args.outage else []
    for spec in args.fault:
        kind, _, probability = spec.partition(":")
        retry_after = 1 if kind == "429" else None
        faults.append(Fault(kind, probability=float(probability or 1.0), retry_after=retry_after))  # type: ignore[arg-type]
    app = ChatApp(latency_s=args.latency, faults=faults, seed=args.seed, model=args.model)
    sock = _bind(args.host, args.port)
    sock.listen(4096)  # accept connections (queued) from the moment the address is printed
    print(f"serving on http://{args.host}:{sock.getsockname()[1]}/v1", flush=True)
    uvicorn.Server(_config(app)).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
