"""Wire formats: length-prefixed JSON frames between pool and worker, and the child's messages.

The pool and its workers trust each other (neither runs untrusted code). A child's result
message is untrusted: the worker decodes it with its own ``json`` and accepts only the exact
shapes below; anything else means the child did not report.
"""

from __future__ import annotations

import json
import os
import re
import select
import struct
import time
from typing import Any

import orjson

from .records import CHILD_STATUSES

_LENGTH = struct.Struct("<I")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
MAX_FRAME_BYTES = 1 << 30
#: Deepest nesting a child's message may have: beyond what the child's own conversion can
#: produce (``values._MAX_CONVERT_DEPTH``), and well within what ``json`` decodes and encodes
#: again without a RecursionError in the worker and in the pool.
MAX_MESSAGE_DEPTH = 520


class ChannelClosed(Exception):
    """The other end of a frame channel went away (or stopped answering in time)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def write_frame(fd: int, *messages: dict[str, Any]) -> None:
    """Write ``messages`` as frames with one write: a reader waiting for the last of them
    wakes once (on a VM a wake-up costs more CPU than decoding a small frame)."""
    data = memoryview(b"".join(encode_frame(message) for message in messages))
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        raise ChannelClosed(str(exc)) from exc


class FrameReader:
    """Reads frames from one fd, buffered, so a burst of small frames costs one read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def read(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame; ChannelClosed on EOF, on a bad frame or after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._fill(_LENGTH.size, deadline)
        (length,) = _LENGTH.unpack_from(self.buffer)
        if length > MAX_FRAME_BYTES:
            raise ChannelClosed(f"frame of {length} bytes")
        self._fill(_LENGTH.size + length, deadline)
        body = bytes(self.buffer[_LENGTH.size : _LENGTH.size + length])
        del self.buffer[: _LENGTH.size + length]
        try:
            message = decode_frame_body(body)
        except (ValueError, RecursionError) as exc:
            raise ChannelClosed(f"undecodable frame: {type(exc).__name__}") from exc
        if not isinstance(message, dict):
            raise ChannelClosed("frame is not an object")
        return message

    def _fill(self, size: int, deadline: float | None) -> None:
        while len(self.buffer) < size:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                    raise ChannelClosed("no answer in time")
            try:
                chunk = os.read(self.fd, max(size - len(self.buffer), 1 << 16))
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not chunk:
                raise ChannelClosed("end of stream")
            self.buffer += chunk


def decode_frame_body(body: bytes) -> Any:
    """A frame's JSON, read exactly as ``json`` reads it. orjson reads nearly every frame (4x
    faster); a frame with a run of 19 or more digits goes to ``json`` (orjson reads integers
    beyond 64 bits as floats), and so does what orjson refuses (NaN and infinities)."""
    if _LONG_DIGITS.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def parse_child_message(data: bytes | bytearray) -> dict[str, Any] | None:
    """A child's message as ``{"s": status, "v": value}`` or ``{"s", "t", "m"}``; None if malformed."""
    message = _decode_untrusted(data)
    if not isinstance(message, dict) or message.get("s") not in CHILD_STATUSES:
        return None
    if message["s"] == "ok":
        return message if message.keys() == {"s", "v"} else None
    if message.keys() == {"s", "t", "m"} and isinstance(message["t"], str) and isinstance(message["m"], str):
        return message
    return None


def parse_generated_line(line: bytes) -> dict[str, Any] | None:
    """One line of a generator's stream: a value, a failure (details only on the first), or end."""
    if line == b'{"s":"end"}':
        return {"s": "end"}
    message = parse_child_message(line)
    if message is not None:
        return message
    short = _decode_untrusted(line)
    if isinstance(short, dict) and short.keys() == {"s"} and short["s"] in CHILD_STATUSES - {"ok"}:
        return short
    return None


class _Malformed:
    """What ``_decode_untrusted`` returns for bytes that are not an acceptable JSON text."""


def _decode_untrusted(data: bytes | bytearray) -> Any:
    """A child's JSON text decoded, or a ``_Malformed`` instance: never raises. A hostile child
    can write any bytes on its result pipe; nesting deep enough to exhaust ``json``'s
    recursion limit (a RecursionError, not a ValueError) once killed the worker."""
    raw = bytes(data)
    try:
        if raw.count(b"[") + raw.count(b"{") > MAX_MESSAGE_DEPTH and _nesting(raw) > MAX_MESSAGE_DEPTH:
            return _Malformed()
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError):
        return _Malformed()


def _nesting(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings not counted."""
    deepest = depth = 0
    for token in _STRUCTURE.finditer(raw):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
