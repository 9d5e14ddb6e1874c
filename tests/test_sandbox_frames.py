"""Frames between the pool and its workers decode to exactly what the sender encoded."""

from __future__ import annotations

import json
import math
import os
import random
import struct

import pytest

from sandbox.protocol import ChannelClosed, FrameReader, decode_frame_body, encode_frame, write_frame


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:  # ints of every size, beyond 64 bits included
        return rng.choice([1, -1]) * rng.getrandbits(rng.choice([3, 31, 63, 64, 65, 200]))
    if kind == 2:  # floats across the whole range, subnormals and specials included
        return rng.choice([struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0],
                           rng.uniform(-1e6, 1e6), 5e-324, -0.0, math.inf, -math.inf, math.nan])
    if kind == 3:  # any code point, lone surrogates included
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(6)))
    if kind == 4:
        return rng.choice(["", "plain", "quote\"back\\slash", "tab\tnew\nline", "\x00\x1f"])
    if kind == 5:
        return rng.random()
    if kind in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(_random_value(rng, 3)): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_every_encoded_value_decodes_to_what_json_reads():
    rng = random.Random(7)
    for _ in range(5000):
        value = {"type": "result", "value": _random_value(rng)}
        try:
            body = encode_frame(value)[4:]
        except UnicodeEncodeError:  # a lone surrogate: no frame carries one (the sender refuses)
            continue
        decoded = decode_frame_body(body)
        assert _same(decoded, json.loads(body)), body
        assert _same(decoded, value), body


def test_frames_cross_a_pipe_in_order_and_a_bad_one_closes_the_channel():
    r, w = os.pipe()
    try:
        messages = [{"i": i, "v": [math.nan, 2**70, -(2**63) - 1, 1e308 * 10, "é", 0.1 + i]} for i in range(50)]
        write_frame(w, *messages)
        reader = FrameReader(r)
        got = [reader.read(5.0) for _ in messages]
        assert all(_same(a, b) for a, b in zip(got, messages))
        body = b"{not json"
        os.write(w, struct.pack("<I", len(body)) + body)
        with pytest.raises(ChannelClosed, match="undecodable frame"):
            reader.read(5.0)
    finally:
        os.close(r)
        os.close(w)
