"""Worked examples leave the reference code's comments: they would state answers in prompts."""

from __future__ import annotations

import ast
import json

from tasks.example_comments import strip_example_comments

NAMES = ("main_solution", "input_generator")

CODE = '''import math

TABLE = [1, 1, 2]  # main_solution(2) == 2


def fib(n):
    # fib(n) = fib(n - 1) + fib(n - 2), so fib(10) is a sum of smaller ones
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main_solution(n):
    # e.g. main_solution(5) gives 120
    text = "# main_solution(7) is not a comment"
    return math.factorial(n)


# Example usage:
# print(main_solution(5))
# Output: 120
# main_solution(n=6) -> 720
'''

CLEANED = '''import math

TABLE = [1, 1, 2]


def fib(n):
    # fib(n) = fib(n - 1) + fib(n - 2), so fib(10) is a sum of smaller ones
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main_solution(n):
    text = "# main_solution(7) is not a comment"
    return math.factorial(n)
'''


def test_commented_examples_are_removed_and_the_program_kept():
    cleaned = strip_example_comments(CODE, NAMES)
    assert cleaned == CLEANED
    assert ast.dump(ast.parse(cleaned)) == ast.dump(ast.parse(CODE))
    # the original name of an offline entry point counts too; a call with a variable does not
    assert "fib(n) = " not in strip_example_comments(CODE, (*NAMES, "fib"))
    assert strip_example_comments("# fib(n - 1)\ndef fib(n):\n    return n\n", ("fib",)) == (
        "# fib(n - 1)\ndef fib(n):\n    return n\n")


def test_code_without_examples_is_kept_as_it_is():
    for code in ("def main_solution(n):\n    return n  # the answer\n",
                 "def main_solution(n):\n    return n\n# main_solution(\n",
                 "def main_solution(n:\n    # main_solution(5) == 5\n"):  # does not parse
        assert strip_example_comments(code, NAMES) == code


def test_the_transform_stage_removes_them_and_counts_it():
    from flows.config import BuildConfig
    from tasks.stage import ShardContext
    from tasks.transform import run_shard

    record = {"refcode": CODE, "funcname": "main_solution", "problem_description": "q", "io_requirements": "io",
              "ios": [{"input": {"n": 5}, "output": 120}]}
    row = {"id": "raw1", "origin": "unified", "content": json.dumps(record), "source": "s", "source_kind": "curated"}
    res = run_shard([row], BuildConfig.model_validate({}), ShardContext(config_key="k"))
    (fn,) = res.rows["functions"]
    assert fn["refcode"] == CLEANED and res.counters["example_comments_removed"] == 1
