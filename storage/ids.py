"""Content-addressed identifiers: the sha256 of a record's canonical JSON.

The same work is recognised across runs, machines and corpora because its id depends only on
what it is made of, never on when or where it was made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson


def canonical_json(value: Any, *, allow_nan: bool = True) -> str:
    """Serialise with sorted keys and no whitespace, so equal values give equal text.

    Non-finite floats are written as the JSON extensions NaN/Infinity (the sandbox's JSON
    policy decides whether they may appear in data at all); with ``allow_nan=False`` they
    raise ValueError.

    The text is that of ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` and must stay so: ids are hashes of it. A value without floats
    (chat messages, most I/O values) is written by orjson, several times faster on the long
    strings of prompts and identical for them (strings, 64-bit ints, booleans, null, lists,
    dicts with string keys); anything else, or anything orjson refuses (a lone surrogate, a
    larger int), goes through ``json``.
    """
    if _orjson_safe(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)


def _orjson_safe(value: Any) -> bool:
    """Whether ``value`` is made only of the exact types orjson writes as ``json`` does.

    Floats are left out: the two spell exponents differently (1e+16 against 1e16) and orjson
    writes NaN as null. Subclasses are left out too: ``json`` and orjson treat them apart.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is list:
        return all(_orjson_safe(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _orjson_safe(v) for k, v in value.items())
    return False


def content_id(*parts: Any) -> str:
    """Hex sha256 over the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()


def content_id_of_encoded(*encoded: str) -> str:
    """``content_id`` of parts given as their ``canonical_json`` texts (the same id): for a
    caller that needs a part's text anyway and would otherwise serialise it twice."""
    return hashlib.sha256(("[" + ",".join(encoded) + "]").encode("utf-8")).hexdigest()


def bytes_id(data: bytes) -> str:
    """Hex sha256 of raw bytes (used for files before they are known to be text)."""
    return hashlib.sha256(data).hexdigest()
