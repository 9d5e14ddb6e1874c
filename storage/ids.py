"""Content-addressed identifiers: the sha256 of a record's canonical JSON.

The same work is recognised across runs, machines and corpora because its id depends only on
what it is made of, never on when or where it was made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialise with sorted keys and no whitespace, so equal values give equal text.

    Non-finite floats are written as the JSON extensions NaN/Infinity (the sandbox's JSON
    policy decides whether they may appear in data at all).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
