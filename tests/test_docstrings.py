"""Doctest examples leave the reference code's docstrings: they would state answers in prompts."""

from __future__ import annotations

import ast

from tasks.docstrings import strip_doctest_examples

CODE = '''"""Knapsack helpers.

>>> 1 + 1
2
"""


def knapsack(weights, values, cap):
    """Best total value within ``cap``.

    Examples:
        >>> knapsack([1, 3, 4, 5], [1, 4, 5, 7], 7)
        9
        >>> knapsack([1, 2],
        ...          [3, 4], 0)
        0

    Args:
        weights: item weights
    """
    best = [0] * (cap + 1)
    for w, v in zip(weights, values):
        for c in range(cap, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[cap]


def double(x):
    """Twice x.
    >>> double(21)
    42"""
    text = """>>> a string that is not a docstring
    stays
    """
    return 2 * x


def main_solution(weights, values, cap):
    return knapsack(weights, values, cap)
'''


def test_examples_and_their_heading_go_and_the_program_stays():
    cleaned = strip_doctest_examples(CODE)
    assert ">>> knapsack" not in cleaned and "        9\n" not in cleaned and "...          [3, 4]" not in cleaned
    assert ">>> 1 + 1" not in cleaned and ">>> double(21)" not in cleaned and "42" not in cleaned
    assert "Examples:" not in cleaned
    assert "Args:\n        weights: item weights" in cleaned  # the rest of the docstring stays
    assert ">>> a string that is not a docstring\n    stays" in cleaned  # only docstrings change
    assert '    """Twice x.\n    """\n' in cleaned  # closing quotes kept where the output shared their line
    assert "\n\n\n    Args" not in cleaned  # no run of blank lines where the examples were

    def run(code: str) -> int:
        namespace: dict = {}
        exec(code, namespace)
        return namespace["main_solution"]([1, 3, 4, 5], [1, 4, 5, 7], 7)

    assert run(cleaned) == run(CODE) == 9
    assert ast.dump(ast.parse(cleaned).body[1].body[1]) == ast.dump(ast.parse(CODE).body[1].body[1])


def test_code_without_examples_or_that_does_not_parse_is_returned_as_is():
    plain = "def main_solution(x):\n    '''No examples here.'''\n    return x\n"
    assert strip_doctest_examples(plain) == plain
    broken = 'def main_solution(x:\n    """\n    >>> main_solution(1)\n    1\n    """\n'
    assert strip_doctest_examples(broken) == broken
    one_line = 'def main_solution(x):\n    """>>> main_solution(1) gives 1"""\n    return x\n'
    assert strip_doctest_examples(one_line) == one_line  # nothing to take apart safely


def test_the_transform_stage_removes_examples_and_counts_it():
    import json

    from flows.config import BuildConfig
    from tasks.stage import ShardContext
    from tasks.transform import run_shard

    record = {"refcode": CODE, "funcname": "main_solution", "problem_description": "q", "io_requirements": "io",
              "ios": [{"input": {"weights": [1], "values": [2], "cap": 1}, "output": 2}]}
    row = {"id": "raw1", "origin": "unified", "content": json.dumps(record), "source": "s", "source_kind": "curated"}
    res = run_shard([row], BuildConfig.model_validate({}), ShardContext(config_key="k"))
    (fn,) = res.rows["functions"]
    assert fn["refcode"] == strip_doctest_examples(CODE) != CODE and res.counters["doctest_examples_removed"] == 1
