"""The lean HTTP/1.1 transport against a raw socket server that writes exact bytes."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from llm.transport import LeanTransport

OK_JSON = b'{"ok": true}'


def response(status: str = "200 OK", body: bytes = OK_JSON, headers: list[str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(headers if headers is not None else [f"Content-Length: {len(body)}"])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawServer:
    """Answers each request with the next scripted reply: bytes, then close the connection or not."""

    def __init__(self, replies: list[tuple[bytes, bool]]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                data, close = self.replies.pop(0)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def run(replies: list[tuple[bytes, bool]], client_code: Callable[[httpx.AsyncClient, str], Awaitable]) -> RawServer:
    server_state = RawServer(replies)

    async def go() -> None:
        server = await asyncio.start_server(server_state._handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        try:
            async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(1.0)) as client:
                await client_code(client, url)
        finally:
            server.close()

    asyncio.run(go())
    return server_state


def test_keep_alive_reuses_one_connection_and_sends_a_proper_request() -> None:
    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        for _ in range(3):
            reply = await client.post(url, content=b'{"q": 1}', headers={"authorization": "Bearer k"})
            assert reply.status_code == 200 and reply.json() == {"ok": True}

    server = run([(response(), False)] * 3, client_code)
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and body == b'{"q": 1}'
    assert b"Content-Length: 8" in lines and b"authorization: Bearer k" in lines
    assert sum(line.lower().startswith(b"content-length") for line in lines) == 1


def test_chunked_body_with_extensions_and_trailers() -> None:
    chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"

    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        reply = await client.post(url, content=b"{}")
        assert reply.content == b"hello world"
        assert (await client.post(url, content=b"{}")).status_code == 200

    replies = [(response(body=chunked, headers=["Transfer-Encoding: chunked"]), False), (response(), False)]
    server = run(replies, client_code)
    assert server.connections == 1


def test_body_delimited_by_close_and_connection_close_are_not_reused() -> None:
    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        assert (await client.post(url, content=b"{}")).content == b"until close"
        closing = await client.post(url, content=b"{}")
        assert closing.json() == {"ok": True}
        assert (await client.post(url, content=b"{}")).status_code == 200

    replies = [
        (response(body=b"until close", headers=[]), True),
        (response(headers=[f"Content-Length: {len(OK_JSON)}", "Connection: close"]), True),
        (response(), False),
    ]
    server = run(replies, client_code)
    assert server.connections == 3


def test_interim_responses_are_skipped_and_gzip_is_decoded() -> None:
    packed = gzip.compress(OK_JSON)

    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        reply = await client.post(url, content=b"{}")
        assert reply.status_code == 200 and reply.json() == {"ok": True}

    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    packed_reply = response(body=packed, headers=[f"Content-Length: {len(packed)}", "Content-Encoding: gzip"])
    run([(interim + packed_reply, False)], client_code)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"garbage\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"", httpx.RemoteProtocolError),
    ],
)
def test_broken_responses_raise_httpx_errors(reply: bytes, error: type[Exception]) -> None:
    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(error):
            await client.post(url, content=b"{}")

    run([(reply, True)], client_code)


def test_silence_is_a_read_timeout_and_refusal_a_connect_error() -> None:
    async def go() -> None:
        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(0.2)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
            server.close()
            await server.wait_closed()
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{port}/", content=b"{}")

    asyncio.run(go())


def test_header_injection_is_refused() -> None:
    async def client_code(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.LocalProtocolError):
            await client.post(url, content=b"{}", headers={"x-evil": "a\r\nx-injected: 1"})

    run([], client_code)


def test_https_with_certificate_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust our own certificate, as httpx does
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    state = RawServer([(response(), False)] * 2)

    async def go() -> None:
        server = await asyncio.start_server(state._handle, "127.0.0.1", 0, ssl=server_tls)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        try:
            async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(5.0)) as client:
                for _ in range(2):
                    assert (await client.post(url, content=b"{}")).json() == {"ok": True}
            monkeypatch.delenv("SSL_CERT_FILE")  # a client that does not trust it refuses
            async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(5.0)) as client:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.post(url, content=b"{}")
        finally:
            server.close()

    asyncio.run(go())
    assert state.connections == 1  # both requests over one kept-alive TLS connection


def test_the_provider_fast_path_sends_the_clients_request_and_decodes_what_it_must() -> None:
    """HTTPProvider encodes its request head once and skips httpx's objects per call: the bytes
    on the wire are still a proper request with the client's headers, a gzip-encoded completion
    is decoded, and an error reply still surfaces the server's reason."""
    from llm.http import HTTPProvider
    from llm.settings import LLMSettings
    from llm.types import ChatRequest

    completion = b'{"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}], "usage": {}}'
    packed = gzip.compress(completion)
    replies = [
        (response(body=completion), False),
        (response(body=packed, headers=[f"Content-Length: {len(packed)}", "Content-Encoding: gzip"]), False),
        (response("400 Bad Request", b'{"error": {"message": "max_tokens too large"}}'), False),
    ]
    state = RawServer(replies)
    results = []

    async def go() -> None:
        server = await asyncio.start_server(state._handle, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        try:
            settings = LLMSettings(base_url=base, model="m", api_key_env=None, max_concurrency=1, max_retries=0)
            async with HTTPProvider(settings) as provider:
                for tag in ("a", "b", "c"):
                    results.extend(await provider.complete([ChatRequest(messages=[{"role": "user", "content": tag}])]))
        finally:
            server.close()

    asyncio.run(go())
    assert [r.content for r in results[:2]] == ["4", "4"]
    assert results[2].content is None and "max_tokens too large" in (results[2].error or "")
    assert state.connections == 1
    head, _, body = state.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"Content-Length: %d" % len(body) in lines and b'"content":"a"' in body
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert {b"host", b"user-agent", b"accept-encoding", b"content-type"} <= set(names)
    assert names.count(b"content-length") == 1
