"""The offline (no-LLM) transform: the bundled sample corpus and the rules behind it."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest

from llm.offline.transform import NeedsLLM, OfflineFunction, offline_transform

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "sample"
CORPUS_FILES = sorted(CORPUS.glob("*.py"))

# Files that show the needs_llm path, with the reason each must get.
NEEDS_LLM = {
    "csv_report.py": "performs_io",
    "dice.py": "nondeterministic",
    "legacy_stats.py": "syntax_error",
    "linked_list.py": "no_public_function",
    "matrix_utils.py": "no_json_typed_entry",
    "quiz.py": "performs_io",
    "retry_decorator.py": "no_json_typed_entry",
    "settings_lookup.py": "side_effects_at_top_level",
    "tree_height.py": "no_json_typed_entry",
    "wordcount_script.py": "no_public_function",
}
TRANSFORMABLE = [path for path in CORPUS_FILES if path.name not in NEEDS_LLM]
DRAWS = 20


def _transform(text: str) -> OfflineFunction:
    result = offline_transform(textwrap.dedent(text))
    assert isinstance(result, OfflineFunction), result
    return result


def _load(function: OfflineFunction) -> dict:
    """Namespace of the program the sampler runs: refcode, then the generator."""
    namespace: dict = {}
    exec(compile(function.refcode + "\n\n" + function.input_generator, "<refcode>", "exec"), namespace)
    return namespace


def _within_paper_limits(value, depth: int = 0) -> bool:
    """Rough form of the paper's size check: < 20 items per container, strings < 100 chars."""
    if isinstance(value, str):
        return len(value) < 100
    if isinstance(value, (list, tuple)):
        return len(value) < 20 and all(_within_paper_limits(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) < 20 and all(_within_paper_limits(v, depth + 1) for v in value.values())
    return True


# ----------------------------------------------------------------------------- corpus


def test_corpus_has_both_kinds():
    assert len(CORPUS_FILES) >= 45
    assert len(TRANSFORMABLE) >= 35
    assert set(NEEDS_LLM) <= {path.name for path in CORPUS_FILES}


@pytest.mark.parametrize("path", [CORPUS / name for name in sorted(NEEDS_LLM)], ids=lambda p: p.name)
def test_corpus_needs_llm_with_reason(path):
    result = offline_transform(path.read_text())
    assert isinstance(result, NeedsLLM)
    assert result.reason == NEEDS_LLM[path.name]
    assert "\n" not in result.reason and result.reason


@pytest.mark.parametrize("path", TRANSFORMABLE, ids=lambda p: p.name)
def test_corpus_function_samples_cleanly(path):
    function = offline_transform(path.read_text())
    assert isinstance(function, OfflineFunction), function
    compile(function.refcode, "<refcode>", "exec")
    compile(function.input_generator, "<generator>", "exec")
    assert "__main__" not in function.refcode
    assert function.arg_names and "?" in function.query
    for name in function.arg_names:
        assert f"`{name}`" in function.io_description and f"`{name}`" in function.query

    sampler = _load(function)
    runner: dict = {}
    exec(compile(function.refcode, "<refcode>", "exec"), runner)  # main_solution runs from refcode alone
    random.seed(path.name)
    small = 0
    for _ in range(DRAWS):
        kwargs = sampler["input_generator"]()
        assert isinstance(kwargs, dict) and tuple(kwargs) == function.arg_names
        assert json.loads(json.dumps(kwargs)) == kwargs, "inputs must be plain JSON"
        output = runner["main_solution"](**json.loads(json.dumps(kwargs)))
        encoded = json.dumps(output)
        assert json.dumps(runner["main_solution"](**json.loads(json.dumps(kwargs)))) == encoded, "deterministic"
        if _within_paper_limits(kwargs) and _within_paper_limits(output) and len(encoded) < 1024:
            small += 1
    assert small >= DRAWS * 0.8, "the generator should draw inputs with small results"


def test_corpus_transform_is_deterministic():
    for path in TRANSFORMABLE[:5]:
        assert offline_transform(path.read_text()) == offline_transform(path.read_text())


# ----------------------------------------------------------------------------- entry choice


def test_doctest_examples_type_unannotated_parameters():
    function = _transform('''
        def scale(values, factor):
            """Multiply every value by a factor.

            >>> scale([1, 2, 3], 2)
            [2, 4, 6]
            >>> scale([], -1.5)
            []
            """
            return [v * factor for v in values]
    ''')
    assert function.arg_names == ("values", "factor")
    assert "`values` (list of int)" in function.io_description
    assert "`factor` (float)" in function.io_description
    assert "(list of int)" in function.io_description.split("Output:")[1]
    draws = [_load(function)["input_generator"]() for _ in range(30)]
    assert any(d["factor"] < 0 for d in draws), "negative examples widen the range"


def test_all_restricts_entry_and_root_beats_helper():
    source = '''
        __all__ = ["area"]

        def area(width: int, height: int) -> int:
            """Area of a rectangle."""
            return width * height

        def total_area(sizes: list[list[int]], extra: int, more: int) -> int:
            """Sum of areas."""
            return sum(area(w, h) for w, h in sizes) + extra + more
    '''
    assert _transform(source).entry == "area"
    without_all = source.replace('__all__ = ["area"]', "")
    assert _transform(without_all).entry == "total_area"


def test_helper_called_by_api_is_not_entry():
    function = _transform('''
        def normalise(word: str) -> str:
            """Lower-case and strip a word."""
            return word.strip().lower()

        def count_distinct(words: list[str]) -> int:
            return len({normalise(w) for w in words})
    ''')
    assert function.entry == "count_distinct"


def test_state_parameters_and_untyped_defaults_keep_their_defaults():
    function = _transform('''
        def fib(n: int, memo: dict | None = None, trace=None) -> int:
            """Fibonacci number with memoisation.

            >>> fib(10)
            55
            """
            memo = {} if memo is None else memo
            if n < 2:
                return n
            if n not in memo:
                memo[n] = fib(n - 1, memo) + fib(n - 2, memo)
            return memo[n]
    ''')
    assert function.arg_names == ("n",)
    assert _load(function)["main_solution"](n=10) == 55


def test_keyword_only_and_positional_only_parameters():
    function = _transform('''
        def clamp(value: int, /, low: int = 0, *, high: int = 10) -> int:
            """Clamp a value into [low, high]."""
            return max(low, min(value, high))
    ''')
    assert function.arg_names == ("value", "low", "high")
    assert _load(function)["main_solution"](value=50, low=1, high=7) == 7


def test_nested_optional_and_dict_types_are_drawn_as_declared():
    function = _transform('''
        from typing import Dict, List, Optional, Tuple

        def summarise(scores: Dict[str, List[float]], limit: Optional[int], pair: Tuple[int, str],
                      flags: list[bool]) -> dict:
            """Summarise scores."""
            return {"n": len(scores)}
    ''')
    generate = _load(function)["input_generator"]
    for _ in range(40):
        drawn = generate()
        assert all(isinstance(k, str) and all(isinstance(x, float) for x in v) for k, v in drawn["scores"].items())
        assert drawn["limit"] is None or isinstance(drawn["limit"], int)
        assert isinstance(drawn["pair"][0], int) and isinstance(drawn["pair"][1], str)
        assert all(isinstance(flag, bool) for flag in drawn["flags"])
        assert all(isinstance(x, float) for v in drawn["scores"].values() for x in v)


def test_grid_examples_shape_the_generator():
    function = _transform('''
        def live_cells(board: list[list[int]]) -> int:
            """Count live cells.

            >>> live_cells([[0, 1, 0], [1, 1, 0]])
            3
            """
            return sum(map(sum, board))
    ''')
    generate = _load(function)["input_generator"]
    for _ in range(30):
        board = generate()["board"]
        assert all(cell in (0, 1) for row in board for cell in row)
        assert len({len(row) for row in board}) <= 1, "rows of a grid have one length"


def test_lists_the_function_wants_in_order_are_drawn_sorted():
    by_name = _transform('''
        def contains(sorted_values: list[int], target: int) -> bool:
            """Binary search."""
            return target in sorted_values
    ''')
    by_examples = _transform('''
        def median(values: list[int]) -> int:
            """Middle value.

            >>> median([1, 3, 8])
            3
            >>> median([2, 2, 5, 9])
            2
            """
            return values[(len(values) - 1) // 2]
    ''')
    unordered = _transform('''
        def total(values: list[int]) -> int:
            """Sum.

            >>> total([3, 1, 2])
            6
            >>> total([1, 2])
            3
            """
            return sum(values)
    ''')
    for function, name in ((by_name, "sorted_values"), (by_examples, "values")):
        generate = _load(function)["input_generator"]
        assert all((v := generate()[name]) == sorted(v) for _ in range(30)), function.input_generator
    generate = _load(unordered)["input_generator"]
    assert any((v := generate()["values"]) != sorted(v) for _ in range(30)), "only some lists are kept sorted"


# ----------------------------------------------------------------------------- refcode


def test_refcode_drops_top_level_side_effects_but_keeps_definitions():
    function = _transform('''
        """Module docstring."""
        import math

        SCALE = 2  # kept: a constant
        print("loading")
        for i in range(3):
            print(i)

        def hypot(a: float, b: float) -> float:
            """Length of the hypotenuse."""
            i = 0
            return round(math.sqrt(a * a + b * b) * SCALE / 2, 3)

        if __name__ == "__main__":
            print(hypot(3, 4))
    ''')
    assert 'print("loading")' not in function.refcode
    assert "for i in range(3)" not in function.refcode
    assert "__main__" not in function.refcode
    assert "SCALE = 2  # kept: a constant" in function.refcode
    assert _load(function)["main_solution"](a=3.0, b=4.0) == 5.0


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("def f(x: int) -> int\n    return x\n", "syntax_error"),
        ("class Stack:\n    def push(self, x: int) -> None:\n        pass\n", "no_public_function"),
        ("def f(node: 'Node') -> int:\n    return 1\n", "no_json_typed_entry"),
        ("def f(counts: dict[int, int]) -> int:\n    return 1\n", "no_json_typed_entry"),
        ("def f(xs: list[int]) -> set[int]:\n    return set(xs)\n", "no_json_typed_entry"),
        ("def f() -> int:\n    return 1\n", "no_json_typed_entry"),
        (
            "TABLE = []\nfor k in range(5):\n    TABLE.append(k * k)\n\n"
            "def square(n: int) -> int:\n    return TABLE[n % 5]\n",
            "side_effects_at_top_level",
        ),
        ("def load(path: str) -> str:\n    with open(path) as f:\n        return f.read()\n", "performs_io"),
        ("import os\n\ndef f(name: str) -> bool:\n    return os.path.exists(name)\n", "performs_io"),
        ("import random\n\ndef f(n: int) -> int:\n    return random.randint(0, n)\n", "nondeterministic"),
        ("import time\n\ndef f(n: int) -> float:\n    return time.time() + n\n", "nondeterministic"),
        ("import random\n\ndef f(n: int) -> int:\n    return random.Random().randint(0, n)\n", "nondeterministic"),
        ("def input_generator(n: int) -> int:\n    return n\n\ndef f(n: int) -> int:\n    return n\n", "name_collision"),
    ],
)
def test_needs_llm_reasons(source, reason):
    result = offline_transform(source)
    assert isinstance(result, NeedsLLM), result
    assert result.reason == reason


def test_seeded_randomness_and_local_names_are_fine():
    function = _transform('''
        import random

        for i in range(2):
            pass

        def shuffle_seeded(items: list[int], seed: int) -> list[int]:
            """Shuffle with a private generator."""
            rng = random.Random(seed)
            out = list(items)
            rng.shuffle(out)
            i = len(out)
            return out
    ''')
    main = _load(function)["main_solution"]
    assert main(items=[1, 2, 3, 4], seed=5) == main(items=[1, 2, 3, 4], seed=5)


def test_io_description_uses_docstring_sections():
    function = _transform('''
        def window_sum(values: list[int], width: int = 2) -> list[int]:
            """Sums over a sliding window.

            Args:
                values: the series to smooth.
                width (int): size of the window,
                    at least one.

            Returns:
                list[int]: one sum per window position.

            >>> window_sum([1, 2, 3])
            [3, 5]
            """
            width = max(width, 1)
            return [sum(values[i:i + width]) for i in range(len(values) - width + 1)]
    ''')
    assert "`values` (list of int): the series to smooth." in function.io_description
    assert "size of the window, at least one." in function.io_description
    assert "one sum per window position." in function.io_description
    assert "[3, 5]" not in function.io_description
    assert function.query.startswith("Sums over a sliding window.")
