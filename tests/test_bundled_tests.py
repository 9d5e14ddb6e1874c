"""A file's own unit tests leave the reference code: they would state answers in prompts."""

from __future__ import annotations

import ast

from tasks.bundled_tests import strip_bundled_tests

SOURCE = '''"""Squares."""
import pytest


def square_sum(n: int) -> int:
    """Sum of squares of 1..n."""
    return sum(i * i for i in range(1, n + 1))


def test_square_sum():
    assert square_sum(7) == 140


@pytest.mark.parametrize("n, total", [(3, 14)])
def test_small(n, total):
    assert square_sum(n) == total


class TestSquares:
    def test_one(self):
        assert square_sum(1) == 1


def test_table():
    return [square_sum(k) for k in range(3)]


TABLE = test_table()
'''


def test_tests_go_and_what_the_code_uses_stays():
    cleaned = strip_bundled_tests(SOURCE)
    assert "140" not in cleaned and "14)" not in cleaned and "TestSquares" not in cleaned
    assert "def test_table" in cleaned and "TABLE = test_table()" in cleaned  # used: a helper, not a test
    assert "def square_sum" in cleaned
    ast.parse(cleaned)


def test_code_without_tests_is_kept_as_it_is():
    for code in ("def square_sum(n):\n    return n\n\n\n\nX = 1\n", "def test_(:\n"):
        assert strip_bundled_tests(code) == code


def test_the_offline_transform_stage_removes_them_and_counts_it(tmp_path):
    from flows.config import BuildConfig
    from tasks.stage import ShardContext
    from tasks.transform import run_shard

    source = SOURCE.replace("import pytest\n", "").replace('@pytest.mark.parametrize("n, total", [(3, 14)])\n', "")
    row = {"id": "raw1", "origin": "raw", "content": source, "source": "s", "source_kind": "curated"}
    res = run_shard([row], BuildConfig.model_validate({"provider": "offline"}), ShardContext(config_key="k"))
    (fn,) = res.rows["functions"]
    assert "assert square_sum(7) == 140" not in fn["refcode"] and "def main_solution(n)" in fn["refcode"]
    assert res.counters["test_code_removed"] == 1


def test_an_entry_point_named_like_a_test_stays():
    # An imported record may name its entry point test_*: it is the function the pairs call.
    code = "def test_parity(n):\n    return n % 2\n\n\ndef test_it():\n    assert test_parity(3) == 1\n"
    assert strip_bundled_tests(code, keep=("test_parity",)) == "def test_parity(n):\n    return n % 2\n"
