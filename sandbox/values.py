"""Return values: the JSON conversion policy, canonical JSON, and the paper's size check.

JSON conversion policy (``to_json_value``); the same code runs in the child on the real
returned object and in the parent on any value it is given:

* ``None``, ``bool``, ``int`` (any size), ``str`` and finite ``float`` stay as they are.
  Subclasses (``IntEnum``, a ``str`` subclass) become their base type's plain value. A
  string with a lone surrogate (not valid Unicode, cannot be stored as UTF-8) is rejected.
* NaN, +inf and -inf stay Python floats. ``canonical_json`` writes them as the JSON
  extension tokens ``NaN``, ``Infinity`` and ``-Infinity`` (what Python's ``json`` and the
  paper's scripts write, and what ``json.loads`` reads back to the same float), so nothing is
  lost and ``outputs_match`` compares them as numbers: NaN equals NaN, an infinity equals
  only the infinity of the same sign. Strict-JSON consumers must accept those three tokens.
* ``list`` and ``tuple`` (and their subclasses, e.g. named tuples) become lists.
* ``dict`` (and ``OrderedDict``, ``defaultdict``, ``Counter``) becomes a dict. Keys: ``str``
  stays; ``int`` (not ``bool``), including numpy integers, becomes its decimal string, as
  ``json.dumps`` does and the paper's data has it. Any other key (``bool``, ``None``,
  ``float``, ``tuple``...) is rejected, and so is a dict where two keys become the same
  string (``{1: .., "1": ..}``), so no key is ever silently merged or retyped beyond that one
  documented rule.
* numpy: ``bool_`` -> bool, integers -> int, float16/32/64 -> float (exact),
  ``str_`` -> str; arrays of those kinds (or of object dtype holding convertible values)
  -> nested lists. ``longdouble`` (would round), complex, bytes, datetime and void are rejected.
* Everything else is rejected with ``NotJSONError`` (status ``not_json``): sets, frozensets,
  bytes, complex, Decimal, Fraction, datetimes, functions, generators, custom objects, and
  containers that contain themselves.

Size check (``size_violation``), CodeI/O appendix A, applied in the child to the real
returned object (and to each generated input): the object passes only if pympler
``asizeof(obj) < 1024`` bytes, every list/tuple/set/frozenset/dict (and numpy array, taken as
a sequence along its first axis) has fewer than 20 items, every string (dict keys included)
has fewer than 100 characters, and every other leaf has ``asizeof < 128`` bytes, recursively.
``asizeof`` counts an object once however many references share it, so ``[[0] * 19] * 19``
passes it while its JSON repeats every row; the parent therefore also refuses a value whose
JSON text is over ``MAX_VALUE_JSON_BYTES`` (an unshared value within the check above comes
to a few KiB at most).

The child runs this module after untrusted code may have monkeypatched ``json``, ``numpy``'s
module attributes or ``pympler``: everything used there is bound before any user code runs
(the C JSON encoder at import; the numpy types and ``asizeof`` when the worker warms up), and
the child restores the builtins before calling in.
"""

from __future__ import annotations

import json
import sys
from typing import Any


try:  # the C encoder, bound now so that later patches of the json module cannot reach it
    from _json import encode_basestring as _c_encode_str
    from _json import make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has _json
    _c_make_encoder = None

MAX_OBJECT_BYTES = 1024
MAX_ITEMS = 20
MAX_STRING_CHARS = 100
MAX_LEAF_BYTES = 128
# A chain of nested containers costs at least 40 bytes a level, so anything deeper than this
# is over MAX_OBJECT_BYTES anyway; the bound keeps the walk's recursion shallow.
_MAX_SIZE_DEPTH = 32
_MAX_CONVERT_DEPTH = 500
# An int of at most this many bits has asizeof <= 72 bytes (24 + 4 per 30-bit digit, rounded up
# to 8), so it passes the leaf limit without asking pympler; tests hold the two to agreement.
_SMALL_INT_BITS = 300
# The largest int whose asizeof is under MAX_LEAF_BYTES (24 digits of 30 bits: 120 bytes).
_MAX_LEAF_INT_BITS = 720
MAX_VALUE_JSON_BYTES = 8192



class _NumpyTypes:
    """numpy's types, bound once (a value can only be a numpy object once numpy is imported,
    so a process that never imports numpy, like the pipeline's, does not pay for it)."""

    def __init__(self, numpy: Any) -> None:
        self.generic, self.ndarray, self.bool_ = numpy.generic, numpy.ndarray, numpy.bool_
        self.integer, self.floating, self.str_ = numpy.integer, numpy.floating, numpy.str_
        self.longdouble = numpy.longdouble
        self.exact_float_dtypes = frozenset(numpy.dtype(t) for t in (numpy.float16, numpy.float32, numpy.float64))


_numpy_types: list[_NumpyTypes] = []
_asizeof_function: list[Any] = []


def _asizeof(obj: Any) -> int:
    """pympler's ``asizeof``, imported on first use (it imports numpy, which the pool's own
    process does not need) and bound from then on."""
    if not _asizeof_function:
        from pympler.asizeof import asizeof

        _asizeof_function.append(asizeof)
    return _asizeof_function[0](obj)


def _numpy() -> _NumpyTypes | None:
    if not _numpy_types and "numpy" in sys.modules:
        _numpy_types.append(_NumpyTypes(sys.modules["numpy"]))
    return _numpy_types[0] if _numpy_types else None


class NotJSONError(ValueError):
    """A value the conversion policy does not turn into JSON."""


class OutputLimitError(ValueError):
    """A value whose JSON would exceed the allowed number of items (shared references expand)."""


def to_json_value(obj: Any) -> Any:
    """The JSON-compatible form of ``obj`` under the module's policy; ``NotJSONError`` if none."""
    try:
        return _Converter(None).convert(obj, 0)
    except RecursionError:  # nesting within _MAX_CONVERT_DEPTH may still exhaust a deep stack
        raise NotJSONError("nested too deep to convert") from None


def canonical_json(value: Any) -> str:
    """Stable text of a value: converted by the policy, keys sorted, compact, UTF-8 kept."""
    return json.dumps(
        to_json_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    )


def size_violation(obj: Any) -> str | None:
    """Why ``obj`` fails the paper's size check, or None when it passes."""
    try:
        reason = _shape_violation(obj, set(), 0)
        if reason is None:
            total = _asizeof(obj)
            if total >= MAX_OBJECT_BYTES:
                reason = f"object of {total} bytes (limit {MAX_OBJECT_BYTES})"
        return reason
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # pympler cannot measure some exotic objects: they do not pass
        return f"size not measurable: {type(exc).__name__}"


def json_shape_violation(value: Any) -> str | None:
    """The part of the size check that can be verified on a decoded JSON value.

    The parent applies it to what a child reported, so a child that forged its result still
    cannot hand over more items, longer strings or larger integers than the real check allows
    (the length of the JSON text is checked apart: ``json_bytes_violation``).
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_SIZE_DEPTH:
            return "nested too deep"
        if isinstance(item, str):
            if len(item) >= MAX_STRING_CHARS:
                return f"string of {len(item)} chars (limit {MAX_STRING_CHARS})"
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > _MAX_LEAF_INT_BITS:
                return f"integer of {item.bit_length()} bits (leaf limit {MAX_LEAF_BYTES} bytes)"
        elif isinstance(item, (list, dict)):
            if len(item) >= MAX_ITEMS:
                return f"{type(item).__name__} of {len(item)} items (limit {MAX_ITEMS})"
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def json_bytes_violation(message_bytes: int) -> str | None:
    """The size check's bound on a reported value's JSON text (the message holding it, whose
    envelope is a few bytes): shared references, counted once by asizeof, are written out."""
    if message_bytes > MAX_VALUE_JSON_BYTES + 64:
        return f"JSON of {message_bytes} bytes (limit {MAX_VALUE_JSON_BYTES}; shared references are repeated in it)"
    return None


def encode_canonical(value: Any) -> str:
    """``canonical_json`` of an already converted value, by the encoder bound at import."""
    return "".join(_ENCODER(value, 0))


def convert_bounded(obj: Any, max_items: int) -> Any:
    """``to_json_value`` that gives up with ``OutputLimitError`` after ``max_items`` nodes."""
    return _Converter(max_items).convert(obj, 0)


def _refuse(obj: object) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON")


if _c_make_encoder is not None:
    _ENCODER = _c_make_encoder(None, _refuse, _c_encode_str, None, ":", ",", True, False, True)
else:  # pragma: no cover
    _ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).iterencode


def _members(obj: Any) -> tuple[int, Any] | None:
    """(length, items) of a container the size check walks, by the base types' own methods."""
    if isinstance(obj, dict):
        keys = list(dict.keys(obj))
        return len(keys), keys + list(dict.values(obj))
    for base in (list, tuple, set, frozenset):
        if isinstance(obj, base):
            return base.__len__(obj), base.__iter__(obj)
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray) and obj.ndim > 0:
        return obj.shape[0], iter(obj)
    return None


def _shape_violation(obj: Any, seen: set[int], depth: int) -> str | None:
    if depth > _MAX_SIZE_DEPTH:
        return "nested too deep"
    if isinstance(obj, str):
        n = str.__len__(obj)
        return None if n < MAX_STRING_CHARS else f"string of {n} chars (limit {MAX_STRING_CHARS})"
    members = _members(obj)
    if members is None:
        if obj is None or obj is True or obj is False or type(obj) is float:
            return None  # asizeof 16-24 bytes: always within MAX_LEAF_BYTES
        if type(obj) is int and int.bit_length(obj) <= _SMALL_INT_BITS:
            return None
        size = _asizeof(obj)
        if size < MAX_LEAF_BYTES:
            return None
        return f"{type(obj).__name__} of {size} bytes (limit {MAX_LEAF_BYTES})"
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    count, items = members
    if count >= MAX_ITEMS:
        return f"{type(obj).__name__} of {count} items (limit {MAX_ITEMS})"
    for item in items:
        reason = _shape_violation(item, seen, depth + 1)
        if reason is not None:
            return reason
    return None


class _Converter:
    """One conversion: tracks the containers on the current path (cycles) and a node budget."""

    def __init__(self, max_items: int | None) -> None:
        self.budget = max_items
        self.active: set[int] = set()
        self.np = _numpy()

    def _spend(self, n: int) -> None:
        if self.budget is not None:
            self.budget -= n
            if self.budget < 0:
                raise OutputLimitError("value expands beyond the output limit")

    def convert(self, obj: Any, depth: int) -> Any:
        self._spend(1)
        if obj is None or obj is True or obj is False:
            return obj
        kind = type(obj)
        if kind is int or kind is float:
            return obj
        if isinstance(obj, str):
            return _text(obj)
        if isinstance(obj, int):  # bool is handled above; IntEnum and friends
            return int.__index__(obj)
        if isinstance(obj, float):
            return float.__float__(obj)
        np = self.np
        if np is not None and isinstance(obj, np.generic):
            return _numpy_scalar(np, obj)
        if depth >= _MAX_CONVERT_DEPTH:
            raise NotJSONError(f"nested deeper than {_MAX_CONVERT_DEPTH} levels")
        if isinstance(obj, (dict, list, tuple)):
            key = id(obj)
            if key in self.active:
                raise NotJSONError("value contains itself")
            self.active.add(key)
            try:
                if isinstance(obj, dict):
                    return self._dict(obj, depth)
                base = list if isinstance(obj, list) else tuple
                return [self.convert(item, depth + 1) for item in base.__iter__(obj)]
            finally:
                self.active.discard(key)
        if np is not None and isinstance(obj, np.ndarray):
            return self._array(obj, depth)
        raise NotJSONError(f"{type(obj).__name__} is not JSON-convertible")

    def _dict(self, obj: dict, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in dict.items(obj):
            name = _json_key(key, self.np)
            if name in out:
                raise NotJSONError(f"dict keys collide as JSON keys: {name!r}")
            out[name] = self.convert(value, depth + 1)
        return out

    def _array(self, arr: Any, depth: int) -> Any:
        dtype = arr.dtype
        self._spend(int(arr.size))
        if dtype.kind in "biu" or dtype in self.np.exact_float_dtypes:  # type: ignore[union-attr]
            return arr.tolist()
        if dtype.kind in "OU":
            return self._nested_objects(arr.tolist(), arr.ndim, depth)
        raise NotJSONError(f"numpy array of dtype {dtype} is not JSON-convertible")

    def _nested_objects(self, items: Any, ndim: int, depth: int) -> Any:
        if ndim == 0:
            return self.convert(items, depth + 1)
        return [self._nested_objects(item, ndim - 1, depth + 1) for item in items]


def _numpy_scalar(np: _NumpyTypes, obj: Any) -> Any:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating) and not isinstance(obj, np.longdouble):
        return float(obj)
    if isinstance(obj, np.str_):
        return _text(obj)
    raise NotJSONError(f"numpy {type(obj).__name__} is not JSON-convertible")


def _text(text: str) -> str:
    """An exact ``str`` copy of a valid Unicode string (lone surrogates cannot be stored as UTF-8)."""
    text = str.__str__(text)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotJSONError("string with a lone surrogate is not valid Unicode text") from exc
    return text


def _json_key(key: Any, np: _NumpyTypes | None) -> str:
    if isinstance(key, str):
        return _text(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return int.__repr__(int.__index__(key))
    if np is not None and isinstance(key, np.integer):
        return int.__repr__(int(key))
    raise NotJSONError(f"dict key of type {type(key).__name__} is not JSON-convertible")

