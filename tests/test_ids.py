"""Content ids hash canonical JSON, so its text must never change: the fast writer (orjson,
for values without floats) must give exactly what ``json.dumps`` gives, and chat keys must be
the hashes they always were."""

from __future__ import annotations

import hashlib
import json
import random
import sys

import pytest

from llm.types import ChatRequest, chat_key
from storage.ids import _orjson_safe, canonical_json


def _reference(value, allow_nan=True):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)


def _reference_chat_key(model, messages, temperature, max_tokens, sample_index=0, extra_body=None):
    payload = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
               "sample_index": sample_index, "extra_body": extra_body or {}}
    return hashlib.sha256(_reference(payload, allow_nan=False).encode("utf-8")).hexdigest()


_ALL_CHARS = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)


def test_every_code_point_is_written_as_json_writes_it():
    value = {"text": _ALL_CHARS, _ALL_CHARS[:5000]: [_ALL_CHARS[-5000:]]}
    assert _orjson_safe(value)
    assert canonical_json(value) == _reference(value)
    for c in range(0x80):  # one by one: the escapes of control characters, quote, backslash
        one = {chr(c): chr(c), "k": [chr(c) * 3]}
        assert canonical_json(one) == _reference(one), c


def _random_text(rng: random.Random) -> str:
    return "".join(chr(rng.choice((rng.randrange(0x20), rng.randrange(0x80), rng.randrange(0xD800),
                                   rng.randrange(0xE000, 0x110000)))) for _ in range(rng.randrange(12)))


def _random_value(rng: random.Random, depth: int = 0):
    pick = rng.randrange(8 if depth < 4 else 5)
    if pick == 0:
        return _random_text(rng)
    if pick == 1:
        return rng.choice((0, -1, 1, 2**31, -(2**63), 2**63 - 1, 2**64 - 1, rng.randrange(-10**6, 10**6)))
    if pick == 2:
        return rng.choice((True, False))
    if pick == 3:
        return None
    if pick == 4:
        return rng.choice(("", "a", "é", "中", "\U0001F600", "\u2028", "\x7f"))
    if pick in (5, 6):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {_random_text(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_random_values_without_floats_match_json():
    rng = random.Random(20261124)
    fast = 0
    for _ in range(3000):
        value = _random_value(rng)
        fast += _orjson_safe(value)
        assert canonical_json(value) == _reference(value), value
    assert fast > 2000  # the comparison covered the fast path, not only the fallback


@pytest.mark.parametrize("value", [
    1e16, 1e-05, 0.1 + 0.2, -0.0, 1.5e300, 5e-324, float("nan"), float("inf"), -float("inf"),
    [1, 2.5, {"x": 1e22}], 2**64, -(2**63) - 1, 10**30, (1, "a", (2,)), {"t": ("x", 1)},
    {1: "int key"}, {True: "bool key"}, {None: "none key"},
])
def test_values_the_fast_writer_leaves_alone_still_match_json(value):
    assert canonical_json(value) == _reference(value)


def test_subclasses_and_lone_surrogates_go_through_json():
    class Text(str):
        pass

    class Number(int):
        pass

    for value in ([Text("a")], {"k": Number(3)}, {Text("k"): 1}, "\ud800", {"a": "x\udfffy"}):
        assert canonical_json(value) == _reference(value)


def test_keys_json_cannot_sort_fail_as_before():
    for value in ({"a": 1, 2: "b"}, [{"x": {None: 1, "y": 2}}]):
        with pytest.raises(TypeError):
            _reference(value)
        with pytest.raises(TypeError):
            canonical_json(value)


def test_allow_nan_false_refuses_non_finite_numbers():
    with pytest.raises(ValueError):
        canonical_json([float("nan")], allow_nan=False)
    assert canonical_json([float("nan")]) == "[NaN]"


def test_chat_keys_are_the_hashes_they_always_were():
    rng = random.Random(7)
    for i in range(500):
        messages = [{"role": rng.choice(("system", "user", "assistant")), "content": _random_text(rng) * 3}
                    for _ in range(rng.randrange(1, 5))]
        extra = rng.choice((None, {}, {"top_p": 0.9, "stop": ["```"]}, {"seed": 1, "ünï": "cødé"}))
        args = ("model-" + str(i % 3), messages, rng.choice((0.0, 0.7, 1.0, 1e-05)), rng.choice((1, 4096)),
                rng.randrange(3), extra)
        assert chat_key(*args) == _reference_chat_key(*args)
        request = ChatRequest(messages=messages, temperature=args[2], max_tokens=args[3], sample_index=args[4])
        assert request.key(args[0], extra) == _reference_chat_key(*args)


def test_chat_keys_refuse_non_finite_numbers_as_before():
    for bad in (dict(temperature=float("nan")), dict(extra_body={"x": float("inf")})):
        args = {"model": "m", "messages": [{"role": "user", "content": "q"}], "temperature": 0.5, "max_tokens": 8}
        args.update(bad)
        with pytest.raises(ValueError):
            _reference_chat_key(**args)
        with pytest.raises(ValueError):
            chat_key(**args)
