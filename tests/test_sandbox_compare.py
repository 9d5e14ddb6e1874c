"""Parent-side value handling: comparison, JSON conversion policy, canonical JSON, size check."""

from __future__ import annotations

import collections
import enum
import json
import math

import numpy as np
import pytest

from sandbox import NotJSONError, canonical_json, outputs_match, size_violation, to_json_value

NAN = float("nan")
INF = float("inf")


# -- outputs_match ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expected, actual",
    [
        (1, 1.0),
        (1.0, 1),
        (0.1 + 0.2, 0.3),
        (1000.0, 1000.9),  # within rel_tol 1e-3
        (0.0, 1e-10),  # abs_tol near zero
        (NAN, NAN),
        (INF, INF),
        (-INF, -INF),
        ([1, [2.0, {"a": 3}]], [1.0, [2, {"a": 3.0}]]),
        ((1, 2), [1, 2]),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        (np.float64(0.5), 0.5),
        (np.int64(3), 3),
        (np.bool_(True), True),
        (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
        (None, None),
        ("x", "x"),
        (True, True),
        (10**30, 10**30),
        ({1: "a"}, {"1": "a"}),  # int keys are JSON strings
    ],
)
def test_outputs_that_match(expected, actual):
    assert outputs_match(expected, actual)


@pytest.mark.parametrize(
    "expected, actual",
    [
        (True, 1),  # bools are not numbers
        (1, True),
        (False, 0),
        (0, None),
        (1.0, 1.01),
        (1000, 1001),  # ints compare exactly
        (NAN, 0.0),
        (0.0, NAN),
        (INF, -INF),
        (INF, 1e308),
        (10**400, 1e308),  # an int beyond float range equals no float
        ("1", 1),
        ([1, 2], [1, 2, 3]),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": 1}, {"b": 1}),
        ([1], {"0": 1}),
        ("a", "A"),
        ([[NAN]], [[1.0]]),
    ],
)
def test_outputs_that_differ(expected, actual):
    assert not outputs_match(expected, actual)


def test_tolerances_are_configurable():
    assert outputs_match(1.0, 1.05, rel_tol=0.1)
    assert not outputs_match(1.0, 1.0001, rel_tol=1e-6)
    assert outputs_match(0.0, 0.5, abs_tol=1.0)


def test_unconvertible_values_raise_instead_of_comparing_unequal():
    with pytest.raises(NotJSONError):
        outputs_match({1, 2}, [1, 2])


# -- to_json_value and canonical_json -----------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


def test_conversion_policy():
    Point = collections.namedtuple("Point", "x y")
    value = {
        "tuple": (1, (2, 3)),
        "named": Point(1, 2),
        "np": [np.int32(7), np.float32(0.5), np.bool_(False), np.str_("s")],
        "array": np.arange(6).reshape(2, 3),
        "floats": np.array([0.25, NAN]),
        "objects": np.array([1, "a", None], dtype=object),
        "counter": collections.Counter("aab"),
        "enum": Color.RED,
        3: "int key",
        "big": 10**40,
    }
    converted = to_json_value(value)
    assert converted["tuple"] == [1, [2, 3]]
    assert converted["named"] == [1, 2]
    assert converted["np"] == [7, 0.5, False, "s"]
    assert [type(x) for x in converted["np"]] == [int, float, bool, str]
    assert converted["array"] == [[0, 1, 2], [3, 4, 5]]
    assert converted["floats"][0] == 0.25 and math.isnan(converted["floats"][1])
    assert converted["objects"] == [1, "a", None]
    assert converted["counter"] == {"a": 2, "b": 1} and type(converted["counter"]) is dict
    assert converted["enum"] == 1 and type(converted["enum"]) is int
    assert converted["3"] == "int key"
    assert converted["big"] == 10**40


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        b"bytes",
        1j,
        object(),
        lambda: 1,
        (x for x in range(3)),
        {(1, 2): "tuple key"},
        {None: 1},
        {True: 1},
        {1.5: 1},
        {1: "a", "1": "b"},  # keys that collide as JSON
        np.array([1 + 2j]),
        np.longdouble(1) / 3,
        np.datetime64("2020-01-01"),
        "\ud800",  # a lone surrogate is not text
    ],
)
def test_unconvertible_values(value):
    with pytest.raises(NotJSONError):
        to_json_value(value)


def test_self_containing_values_are_rejected():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(NotJSONError):
        to_json_value(loop)
    shared = [1, 2]
    assert to_json_value([shared, shared]) == [[1, 2], [1, 2]]  # sharing is not a cycle


def test_canonical_json_is_stable_and_compact():
    a = canonical_json({"b": [1, (2, 3)], "a": "é", "c": 1.5})
    b = canonical_json({"c": 1.5, "a": "é", "b": [1, [2, 3]]})
    assert a == b == '{"a":"é","b":[1,[2,3]],"c":1.5}'


def test_non_finite_floats_round_trip_through_canonical_json():
    text = canonical_json([NAN, INF, -INF])
    assert text == "[NaN,Infinity,-Infinity]"
    back = json.loads(text)
    assert math.isnan(back[0]) and back[1] == INF and back[2] == -INF
    assert outputs_match([NAN, INF, -INF], back)


# -- size check (paper appendix A) --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        1,
        1.5,
        "x" * 99,
        list(range(19)),
        {"a": [1, 2, 3], "b": "text"},
        (1, 2),
        {1, 2, 3},
        np.arange(5),
        {"k" * 99: 1},
    ],
)
def test_values_within_the_size_limits(value):
    assert size_violation(value) is None


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("x" * 100, "string of 100"),
        (list(range(20)), "20 items"),
        (tuple(range(25)), "25 items"),
        (set(range(20)), "20 items"),
        ({str(i): i for i in range(20)}, "20 items"),
        ({"k" * 100: 1}, "string of 100"),  # keys count as strings
        ([[["x" * 150]]], "string of 150"),  # checked recursively
        (10**300, "bytes"),  # a leaf of 128 bytes or more
        (b"y" * 200, "bytes"),
        (np.arange(30), "30 items"),
    ],
)
def test_values_over_the_size_limits(value, fragment):
    reason = size_violation(value)
    assert reason is not None and fragment in reason


def test_total_size_limit_applies_to_the_whole_object():
    value = [["abcdefghij" * 9] for _ in range(15)]  # every part passes, the whole is >= 1024 bytes
    assert size_violation(value) is not None
    assert "object of" in size_violation(value)


def test_size_check_shortcuts_agree_with_pympler():
    from pympler.asizeof import asizeof

    for bits in range(0, 1200, 7):
        for number in (2**bits, -(2**bits)):
            assert (size_violation(number) is None) == (asizeof(number) < 128), bits
    for leaf in (None, True, False, 0.0, -1.5e300, NAN):
        assert size_violation(leaf) is None and asizeof(leaf) < 128
