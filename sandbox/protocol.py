"""Wire formats: length-prefixed JSON frames between pool and worker, and the child's messages.

The pool and its workers trust each other (neither runs untrusted code). A child's result
message is untrusted: the worker decodes it with its own ``json`` and accepts only the exact
shapes below; anything else means the child did not report.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

from .records import CHILD_STATUSES

_LENGTH = struct.Struct("<I")
MAX_FRAME_BYTES = 1 << 30


class ChannelClosed(Exception):
    """The other end of a frame channel went away (or stopped answering in time)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def write_frame(fd: int, message: dict[str, Any]) -> None:
    data = memoryview(encode_frame(message))
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        raise ChannelClosed(str(exc)) from exc


def read_frame(fd: int, timeout: float | None = None) -> dict[str, Any]:
    """The next frame from ``fd``; ChannelClosed on EOF, on a bad frame or after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size, deadline))
    if length > MAX_FRAME_BYTES:
        raise ChannelClosed(f"frame of {length} bytes")
    try:
        message = json.loads(_read_exactly(fd, length, deadline))
    except ValueError as exc:
        raise ChannelClosed(f"undecodable frame: {exc}") from exc
    if not isinstance(message, dict):
        raise ChannelClosed("frame is not an object")
    return message


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ChannelClosed("no answer in time")
        try:
            chunk = os.read(fd, min(size, 1 << 20))
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        if not chunk:
            raise ChannelClosed("end of stream")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def parse_child_message(data: bytes | bytearray) -> dict[str, Any] | None:
    """A child's message as ``{"s": status, "v": value}`` or ``{"s", "t", "m"}``; None if malformed."""
    try:
        message = json.loads(bytes(data).decode("utf-8"))
    except ValueError:
        return None
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
    try:
        short = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    if isinstance(short, dict) and short.keys() == {"s"} and short["s"] in CHILD_STATUSES - {"ok"}:
        return short
    return None
