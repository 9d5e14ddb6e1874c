"""A lean HTTP/1.1 keep-alive transport for httpx.

httpx's default transport (httpcore) re-scans its whole pool, polling every socket, each time
a request starts or ends: at 64 connections that is ~15 ms of CPU per request, which caps one
client near 60 requests/s. Here the admission controller already bounds how many requests are
in flight, so the pool is a stack of idle connections per origin, and the wire format is the
small part of HTTP/1.1 that chat completions use: one request with a Content-Length body,
one response framed by Content-Length, chunked encoding, or the connection closing. Errors
are raised as httpx's own exception types, so callers handle both transports alike.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

Origin = tuple[str, str, int]

MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUSES = (204, 304)
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")


def encode_head_prefix(request: httpx.Request) -> bytes:
    """Request line and headers but the framing ones, each line ending in CRLF."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if name.lower() in _FRAMING_HEADERS:
            continue
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpx.LocalProtocolError("invalid character in a header", request=request)
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n"


def encode_request_head(request: httpx.Request, body_length: int) -> bytes:
    """Request line and headers; the body is always sent whole, with a Content-Length."""
    head = encode_head_prefix(request)
    if body_length or request.method in ("POST", "PUT", "PATCH"):
        head += b"Content-Length: %d\r\n" % body_length
    return head + b"\r\n"


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection that carries one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.closed = False
        self.eof = False
        self.keep_alive = False
        self.lost_reason: str | None = None
        self.idle_since = loop.time()
        self._waiter: asyncio.Future[bool] | None = None

    # asyncio.Protocol callbacks -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection is out of step
            self.abort()
            return
        self.buffer += data
        self._wake(True)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake(True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.eof = True
        if exc is not None:
            self.lost_reason = f"{type(exc).__name__}: {exc}"
        self._wake(True)

    # ----------------------------------------------------------------------------------
    def _wake(self, value: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        return self.keep_alive and not self.closed and not self.eof

    async def _more(self, request: httpx.Request, timeout: float | None) -> None:
        """Wait for more bytes; the peer closing first is an error."""
        if self.eof:
            if self.lost_reason:
                raise httpx.ReadError(f"connection lost: {self.lost_reason}", request=request)
            raise httpx.RemoteProtocolError(
                "server closed the connection before the response was complete", request=request
            )
        waiter: asyncio.Future[bool] = self.loop.create_future()
        self._waiter = waiter
        timer = None if timeout is None else self.loop.call_later(timeout, self._wake, False)
        try:
            if not await waiter:
                raise httpx.ReadTimeout(f"no response within {timeout:g} s", request=request)
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _line(self, request: httpx.Request, timeout: float | None, separator: bytes = b"\r\n") -> bytes:
        """Bytes up to ``separator`` (consumed, not returned)."""
        while True:
            end = self.buffer.find(separator)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + len(separator)]
                return line
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("response line or head too large", request=request)
            await self._more(request, timeout)

    async def _exactly(self, size: int, request: httpx.Request, timeout: float | None) -> bytes:
        while len(self.buffer) < size:
            await self._more(request, timeout)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def round_trip(self, request: httpx.Request, read_timeout: float | None) -> httpx.Response:
        """Send ``request`` and read the whole response."""
        body = await request.aread()
        raw = await self.exchange(encode_request_head(request, len(body)) + body, request, read_timeout)
        return raw.response()

    async def exchange(self, wire: bytes, request: httpx.Request, read_timeout: float | None) -> RawResponse:
        """Send a request already encoded for the wire and read the whole response.
        ``request`` describes it (method, and what errors name)."""
        self.busy = True
        if self.closed or self.transport is None or self.transport.is_closing():
            raise httpx.WriteError("connection closed before the request was sent", request=request)
        self.transport.write(wire)

        while True:  # skip 1xx interim responses
            head = await self._line(request, read_timeout, b"\r\n\r\n")
            status_line, *header_lines = head.split(b"\r\n")
            version, status, reason = _parse_status_line(status_line, request)
            if not 100 <= status < 200:
                break
        headers = _parse_headers(header_lines, request)
        content = await self._read_body(status, headers, request, read_timeout)
        connection = b",".join(value for name, value in headers if name.lower() == b"connection").lower()
        self.keep_alive = (
            version == b"HTTP/1.1" and b"close" not in connection and not self.buffer and not self.eof
        )
        self.busy = False
        return RawResponse(status, headers, content, version, reason)

    async def _read_body(
        self, status: int, headers: list[tuple[bytes, bytes]], request: httpx.Request, timeout: float | None
    ) -> bytes:
        if status in _NO_BODY_STATUSES or request.method == "HEAD":
            return b""
        encodings = [value.lower() for name, value in headers if name.lower() == b"transfer-encoding"]
        if encodings:
            if not encodings[-1].rstrip().endswith(b"chunked"):
                raise httpx.RemoteProtocolError("unsupported transfer-encoding", request=request)
            return await self._read_chunked(request, timeout)
        lengths = {value.strip() for name, value in headers if name.lower() == b"content-length"}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise httpx.RemoteProtocolError("invalid content-length", request=request)
            return await self._exactly(int(next(iter(lengths))), request, timeout)
        while not self.eof:  # delimited by the connection closing
            await self._more(request, timeout)
        content = bytes(self.buffer)
        self.buffer.clear()
        if self.lost_reason:
            raise httpx.ReadError(f"connection lost: {self.lost_reason}", request=request)
        return content

    async def _read_chunked(self, request: httpx.Request, timeout: float | None) -> bytes:
        chunks = []
        while True:
            size_line = await self._line(request, timeout)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError("invalid chunk size", request=request) from None
            if size == 0:
                while await self._line(request, timeout):  # trailers, up to the empty line
                    pass
                return b"".join(chunks)
            chunks.append(await self._exactly(size, request, timeout))
            if await self._exactly(2, request, timeout) != b"\r\n":
                raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=request)


def _parse_status_line(line: bytes, request: httpx.Request) -> tuple[bytes, int, bytes]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"invalid status line {line[:80]!r}", request=request)
    return version, int(code), reason


def _parse_headers(lines: list[bytes], request: httpx.Request) -> list[tuple[bytes, bytes]]:
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"invalid header line {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    return headers


class RawResponse:
    """A whole response as read off the wire; ``response()`` makes it an httpx.Response (which
    also undoes any content encoding)."""

    __slots__ = ("status", "headers", "content", "version", "reason")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes, version: bytes,
                 reason: bytes) -> None:
        self.status, self.headers, self.content, self.version, self.reason = status, headers, content, version, reason

    @property
    def encoded(self) -> bool:
        """Whether the body carries a content encoding (gzip, ...) that ``response()`` would undo."""
        return any(name.lower() == b"content-encoding" and value.strip().lower() not in (b"", b"identity")
                   for name, value in self.headers)

    def response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=self.headers, content=self.content,
                              extensions={"http_version": self.version, "reason_phrase": self.reason})


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive and no pool bookkeeping beyond a LIFO stack of idle sockets.

    The caller bounds concurrency; ``max_idle`` bounds how many idle sockets are kept, and an
    idle socket older than ``keepalive_expiry_s`` is closed rather than reused (servers drop
    idle connections, uvicorn after 5 s).
    """

    def __init__(self, max_idle: int = 64, keepalive_expiry_s: float = 4.0) -> None:
        self._max_idle = max_idle
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._ssl_context: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        wire = encode_request_head(request, len(body)) + body
        raw = await self.exchange(request, wire, request.extensions.get("timeout", {}))
        return raw.response()

    async def exchange(self, request: httpx.Request, wire: bytes, timeouts: dict[str, float | None]) -> RawResponse:
        """Send ``wire`` (head and body, already encoded) to ``request``'s origin on a pooled
        connection and read the whole response, without building httpx objects per request:
        a client that sends the same POST many times encodes its head once. ``request`` gives
        the origin and method, and is what errors name."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        conn = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"), request)
        try:
            raw = await conn.exchange(wire, request, timeouts.get("read"))
        except BaseException:
            self._discard(conn)
            raise
        if conn.reusable():
            self._put_idle(origin, conn)
        else:
            self._discard(conn)
        return raw

    def _take_idle(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        oldest_ok = asyncio.get_running_loop().time() - self._keepalive_expiry_s
        while stack:
            conn = stack.pop()
            if conn.reusable() and conn.idle_since >= oldest_ok:
                return conn
            self._discard(conn)
        return None

    def _put_idle(self, origin: Origin, conn: _Connection) -> None:
        stack = self._idle.setdefault(origin, [])
        if len(stack) >= self._max_idle:
            self._discard(conn)
            return
        conn.idle_since = conn.loop.time()
        stack.append(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.abort()
        self._open.discard(conn)

    async def _connect(self, origin: Origin, timeout: float | None, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {host}:{port} failed: {exc}", request=request) from None
        self._open.add(conn)
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()
