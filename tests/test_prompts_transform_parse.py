"""parse_transform on realistic LLM answers: tolerant of presentation, strict about the code."""

from __future__ import annotations

import textwrap

import pytest

from prompts.transform_parse import ParsedFunction, TransformRejected, parse_transform


def answer(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def run_generator(parsed: ParsedFunction) -> dict:
    """Execute the documented contract: refcode + generator, then call both functions."""
    namespace: dict = {}
    exec(compile(parsed.generator_program, "<program>", "exec"), namespace)
    kwargs = namespace["input_generator"]()
    assert set(kwargs) == set(parsed.arg_names)
    namespace["main_solution"](**kwargs)
    return kwargs


def rejected(text: str) -> TransformRejected:
    with pytest.raises(TransformRejected) as info:
        parse_transform(text)
    return info.value


CANONICAL = answer('''
    ### Reference Code
    ```python
    import math

    def is_prime(n):
        if n < 2:
            return False
        return all(n % d for d in range(2, int(math.isqrt(n)) + 1))

    def main_solution(limit, offset=0):
        primes = [p + offset for p in range(limit) if is_prime(p)]
        return {"count": len(primes), "largest": primes[-1] if primes else None}
    ```

    ### Input/Output Description
    Input:
    - `limit` (int): upper bound (exclusive) of the search, 2 to 200.
    - `offset` (int): added to every prime found.
    Output:
    - return (dict): `count` (int) and `largest` (int or None).

    ### Input Generator
    ```python
    import random

    def input_generator():
        return {"limit": random.randint(2, 200), "offset": random.randint(0, 5)}
    ```

    ### Query
    Given an upper bound `limit` and an `offset`, how many primes lie below `limit`, and what is the largest one after adding `offset`?
''')


def test_canonical_answer_gives_all_fields():
    parsed = parse_transform(CANONICAL)
    assert parsed.arg_names == ("limit", "offset")
    assert parsed.refcode.startswith("import math\n\ndef is_prime(n):")
    assert parsed.refcode.rstrip().endswith('"largest": primes[-1] if primes else None}')
    assert parsed.input_generator.startswith("import random\n\ndef input_generator():")
    assert parsed.io_description.startswith("Input:\n- `limit` (int)")
    assert parsed.io_description.endswith("`largest` (int or None).")
    assert parsed.query.startswith("Given an upper bound")
    assert parsed.query.endswith("after adding `offset`?")
    assert parsed.generator_program == parsed.refcode + "\n\n" + parsed.input_generator
    kwargs = run_generator(parsed)
    assert 2 <= kwargs["limit"] <= 200


def test_bold_numbered_headings_no_language_tags_and_prose():
    text = answer('''
        Sure! Here is the transformed version of your file.

        **1. Refcode**
        ```
        def main_solution(values):
            return sorted(values)[::-1]
        ```

        **2. Input/Output Description:**
        - `values` (list of int): numbers to sort.
        - returns (list of int): the numbers in descending order.

        **3. Input Generator**
        ```
        import random
        def input_generator():
            return {"values": [random.randint(-9, 9) for _ in range(random.randint(1, 10))]}
        ```

        **4. Query:** Given a list `values`, what is the list sorted from largest to smallest?

        ---
        Let me know if you need anything else!
    ''')
    parsed = parse_transform(text)
    assert parsed.arg_names == ("values",)
    assert parsed.refcode == "def main_solution(values):\n    return sorted(values)[::-1]"
    assert parsed.io_description.startswith("- `values` (list of int)")
    assert parsed.query == "Given a list `values`, what is the list sorted from largest to smallest?"
    run_generator(parsed)


def test_numbered_markdown_headings_and_aliases():
    text = answer('''
        ## 1. Reference Code (Python)
        ```Python
        def main_solution(n):
            return sum(range(n))
        ```
        ## 2. Input and Output Requirements
        `n` (int) in 1..50; the output is an int.
        ## 3. Input Generator Function
        ```py
        import random
        def input_generator():
            return {"n": random.randint(1, 50)}
        ```
        ## 4. Problem Statement
        What is the sum of all integers from 0 up to but not including `n`?
    ''')
    parsed = parse_transform(text)
    assert parsed.arg_names == ("n",)
    assert parsed.io_description == "`n` (int) in 1..50; the output is an int."
    assert parsed.query == "What is the sum of all integers from 0 up to but not including `n`?"


def test_plain_colon_headings_and_step_prefix():
    text = answer('''
        Step 1: Reference code
        ```python
        def main_solution(a, b):
            return a * b
        ```
        Step 2: Input/output description
        a, b: ints; returns their product.
        Step 3: Input generator
        ```python
        import random
        def input_generator():
            return {"a": random.randint(0, 9), "b": random.randint(0, 9)}
        ```
        Step 4: Query
        What is the product of `a` and `b`?
    ''')
    parsed = parse_transform(text)
    assert parsed.arg_names == ("a", "b")
    assert parsed.io_description == "a, b: ints; returns their product."


def test_generator_inside_reference_block_is_split_out():
    text = answer('''
        ### Reference Code
        ```python
        import random

        def helper(x):
            return x * 2

        def main_solution(x):
            return helper(x)

        def input_generator():
            return {"x": random.randint(1, 9)}
        ```
        ### Input/Output Description
        `x` (int); returns 2 * x.
        ### Input Generator
        The input generator is included in the reference code above.
        ### Query
        What is twice `x`?
    ''')
    parsed = parse_transform(text)
    assert "def input_generator" not in parsed.refcode
    assert "def helper" in parsed.refcode
    assert parsed.input_generator.startswith("def input_generator():")
    assert "import random" not in parsed.input_generator  # it comes from the refcode
    assert 2 <= run_generator(parsed)["x"] * 2 <= 18


def test_generator_inside_reference_block_without_its_heading():
    text = answer('''
        ### Reference Code
        ```python
        import random
        def main_solution(word):
            return word[::-1]
        def input_generator():
            return {"word": "".join(random.choice("abc") for _ in range(5))}
        ```
        ### Input/Output Description
        `word` (str) of five letters; returns it reversed.
        ### Query
        What is `word` spelled backwards?
    ''')
    parsed = parse_transform(text)
    assert parsed.arg_names == ("word",)
    assert parsed.input_generator.startswith("def input_generator():")
    run_generator(parsed)


def test_generator_using_helper_from_refcode_runs_with_contract():
    text = answer('''
        ### Reference Code
        ```python
        import random
        BOARD = 8
        def main_solution(row, col):
            return (row + col) % 2 == 0
        ```
        ### Input/Output Description
        `row`, `col` (int) on an 8x8 board; returns True for a dark square.
        ### Input Generator
        ```python
        def input_generator():
            return {"row": random.randrange(BOARD), "col": random.randrange(BOARD)}
        ```
        ### Query
        Is the square at (`row`, `col`) dark?
    ''')
    parsed = parse_transform(text)
    kwargs = run_generator(parsed)
    assert 0 <= kwargs["row"] < 8


def test_main_guard_and_entry_copy_are_removed():
    text = answer('''
        ### Reference Code
        ```python
        def main_solution(n):
            return n + 1

        if __name__ == "__main__":
            print(main_solution(3))
        ```
        ### Input/Output Description
        `n` (int); returns n + 1.
        ### Input Generator
        ```python
        import random
        def main_solution(n):
            return n - 1
        def input_generator():
            return {"n": random.randint(0, 3)}
        if __name__ == '__main__':
            print(input_generator())
        ```
        ### Query
        What is `n` plus one?
    ''')
    parsed = parse_transform(text)
    assert "__main__" not in parsed.refcode and "print" not in parsed.refcode
    assert "main_solution" not in parsed.input_generator
    assert "__main__" not in parsed.input_generator
    namespace: dict = {}
    exec(parsed.generator_program, namespace)
    assert namespace["main_solution"](1) == 2  # the refcode's entry point survives


def test_example_usage_calls_are_removed():
    """An "Example usage" block outside a __main__ guard states inputs and their outputs in
    the reference code every prompt shows (as a doctest would), and runs at every load."""
    text = answer('''
        ### Reference Code
        ```python
        import math
        import random

        random.seed(7)
        TABLE = [math.factorial(k) for k in range(5)]

        def main_solution(n):
            return math.factorial(n)
        ```

        Example usage:
        ```python
        print(main_solution(5))  # Output: 120
        result = main_solution(n=6)
        assert result == 720
        for k in range(3):
            print(k, main_solution(k))
        ```
        ### Input/Output Description
        `n` (int); returns n!.
        ### Input Generator
        ```python
        import random

        def input_generator():
            return {"n": random.randint(0, 10)}

        sample = input_generator()
        print(sample, main_solution(**sample))
        ```
        ### Query
        What is `n` factorial?
    ''')
    parsed = parse_transform(text)
    assert "120" not in parsed.refcode and "720" not in parsed.refcode and "print" not in parsed.refcode
    assert "result" not in parsed.refcode
    assert "random.seed(7)" in parsed.refcode and "TABLE = " in parsed.refcode  # set-up code stays
    assert "sample" not in parsed.input_generator and "print" not in parsed.input_generator
    assert parsed.example_statements_removed == 6
    run_generator(parsed)
    assert parse_transform(CANONICAL).example_statements_removed == 0


def test_keyword_only_arguments_are_recorded():
    text = CANONICAL.replace("def main_solution(limit, offset=0):", "def main_solution(limit, *, offset=0):")
    assert parse_transform(text).arg_names == ("limit", "offset")


def test_whole_answer_wrapped_in_markdown_fence():
    assert parse_transform("```markdown\n" + CANONICAL + "```\n").arg_names == ("limit", "offset")


def test_indented_fences_inside_list_items():
    text = answer('''
        1. **Reference Code**
            ```python
            def main_solution(s):
                return s.upper()
            ```
        2. **Input/Output Description**: `s` (str); returns it in upper case.
        3. **Input Generator**
            ```python
            import random
            def input_generator():
                return {"s": random.choice(["ab", "cd"])}
            ```
        4. **Query**: What is `s` in capital letters?
    ''')
    parsed = parse_transform(text)
    assert parsed.refcode == "def main_solution(s):\n    return s.upper()"
    assert parsed.io_description == "`s` (str); returns it in upper case."
    assert parsed.query == "What is `s` in capital letters?"
    run_generator(parsed)


def test_braces_and_heading_words_inside_code_are_not_headings():
    text = CANONICAL.replace(
        "import math\n",
        'import math\n# Query\nTEMPLATE = "{name}: {value}"\n',
    )
    parsed = parse_transform(text)
    assert "# Query" in parsed.refcode
    assert 'TEMPLATE = "{name}: {value}"' in parsed.refcode
    assert parsed.query.startswith("Given an upper bound")


def test_repeated_heading_word_inside_a_section_stays_content():
    text = CANONICAL.replace(
        "### Query\n",
        "### Query\nA sieve marks composites up to a bound.\n**Question:** ",
    )
    parsed = parse_transform(text)
    assert parsed.query.startswith("A sieve marks composites up to a bound.\n**Question:** Given an upper bound")


def test_arguments_named_like_sections_are_not_headings():
    text = answer('''
        ### Reference Code
        ```python
        def main_solution(query, problem, generator):
            return query.count(problem) + generator
        ```
        ### Input/Output Description
        - `query` (str): the text to search.
        query (str): repeated without backticks.
        1. problem (str): the pattern.
        `generator`: an int added to the count.
        ### Input Generator
        ```python
        import random
        def input_generator():
            return {"query": "abab", "problem": "ab", "generator": random.randint(0, 3)}
        ```
        ### Query
        How often does `problem` occur in `query`, plus `generator`?
    ''')
    parsed = parse_transform(text)
    assert parsed.arg_names == ("query", "problem", "generator")
    assert parsed.io_description.splitlines() == [
        "- `query` (str): the text to search.",
        "query (str): repeated without backticks.",
        "1. problem (str): the pattern.",
        "`generator`: an int added to the count.",
    ]
    assert parsed.query == "How often does `problem` occur in `query`, plus `generator`?"


def test_weak_inline_heading_used_when_no_strong_one():
    text = CANONICAL.replace("### Query\n", "Query: ")
    assert parse_transform(text).query.startswith("Given an upper bound `limit`")


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_answer(text):
    assert rejected(text).reason == "empty_answer"


@pytest.mark.parametrize(
    ("heading", "reason"),
    [
        ("### Reference Code", "missing_section:refcode"),
        ("### Input/Output Description", "missing_section:io_description"),
        ("### Query", "missing_section:query"),
    ],
)
def test_missing_section(heading, reason):
    assert rejected(CANONICAL.replace(heading, "### Notes")).reason == reason


def test_missing_generator_section():
    text = CANONICAL.replace("### Input Generator", "Some more words:").replace("def input_generator", "def make_input")
    assert rejected(text).reason == "missing_section:input_generator"


def test_truncated_answer_reports_missing_query():
    cut = CANONICAL[: CANONICAL.index("### Query")] + "### Que"
    assert rejected(cut).reason == "missing_section:query"


def test_refusal_is_missing_refcode():
    assert rejected("I'm sorry, but I can't help with rewriting this file.").reason == "missing_section:refcode"


def test_syntax_error_in_refcode():
    error = rejected(CANONICAL.replace("def main_solution(limit, offset=0):", "def main_solution(limit, offset=0)"))
    assert error.reason == "syntax_error"
    assert "reference code" in error.detail


def test_syntax_error_in_generator():
    error = rejected(CANONICAL.replace('"offset": random.randint(0, 5)}', '"offset": random.randint(0, 5)'))
    assert error.reason == "syntax_error"
    assert "input generator" in error.detail


def test_code_that_parses_but_does_not_compile_is_a_syntax_error():
    error = rejected(CANONICAL.replace("import math\n", "import math\nreturn 1\n"))
    assert error.reason == "syntax_error"


def test_generator_renamed():
    text = CANONICAL.replace("def input_generator():", "def generate_inputs():")
    error = rejected(text)
    assert error.reason == "no_input_generator"


def test_generator_section_without_code_and_none_inline():
    text = CANONICAL[: CANONICAL.index("### Input Generator")] + (
        "### Input Generator\nUse random small integers.\n\n### Query\nWhat is it?\n"
    )
    assert rejected(text).reason == "no_input_generator"


def test_generator_requiring_arguments():
    text = CANONICAL.replace("def input_generator():", "def input_generator(seed):")
    assert rejected(text).reason == "generator_requires_args"


def test_generator_with_defaulted_arguments_is_fine():
    text = CANONICAL.replace("def input_generator():", "def input_generator(low=2, *, high=200):")
    assert parse_transform(text).input_generator.startswith("import random\n\ndef input_generator(low=2")


def test_generator_that_yields():
    text = CANONICAL.replace(
        '    return {"limit": random.randint(2, 200), "offset": random.randint(0, 5)}',
        '    while True:\n        yield {"limit": 5, "offset": 1}',
    )
    assert rejected(text).reason == "generator_yields"


def test_entry_point_renamed():
    error = rejected(CANONICAL.replace("def main_solution(", "def solve("))
    assert error.reason == "no_entry_point"
    assert "nowhere" in error.detail


def test_entry_point_only_inside_class():
    text = answer('''
        ### Reference Code
        ```python
        class Solution:
            def main_solution(self, nums):
                return max(nums)
        ```
        ### Input/Output Description
        `nums` (list of int); returns the maximum.
        ### Input Generator
        ```python
        import random
        def input_generator():
            return {"nums": [random.randint(0, 9) for _ in range(3)]}
        ```
        ### Query
        What is the largest number in `nums`?
    ''')
    error = rejected(text)
    assert error.reason == "no_entry_point"
    assert "Solution" in error.detail


def test_entry_point_mentioned_only_in_a_string_or_comment():
    text = CANONICAL.replace("def main_solution(limit, offset=0):", "def solve(limit, offset=0):  # main_solution(limit)")
    assert rejected(text).reason == "no_entry_point"


@pytest.mark.parametrize("signature", ["def main_solution():", "def main_solution(*args):", "def main_solution(**kwargs):"])
def test_entry_without_named_args(signature):
    assert rejected(CANONICAL.replace("def main_solution(limit, offset=0):", signature)).reason == "entry_without_args"


def test_positional_only_entry():
    text = CANONICAL.replace("def main_solution(limit, offset=0):", "def main_solution(limit, /, offset=0):")
    assert rejected(text).reason == "positional_only_args"


def test_async_entry_point():
    text = CANONICAL.replace("def main_solution(", "async def main_solution(")
    assert rejected(text).reason == "no_entry_point"


def test_empty_query_section():
    text = CANONICAL[: CANONICAL.index("### Query")] + "### Query\n\n---\n"
    assert rejected(text).reason == "empty_section:query"


def test_future_import_in_generator_breaks_the_combined_program():
    text = CANONICAL.replace("```python\nimport random\n", "```python\nfrom __future__ import annotations\nimport random\n")
    error = rejected(text)
    assert error.reason == "syntax_error"
    assert "reference code + input generator" in error.detail


def test_rejection_is_a_value_error_with_reason_and_detail():
    error = rejected(CANONICAL.replace("def main_solution(", "def solve("))
    assert isinstance(error, ValueError)
    assert str(error).startswith("no_entry_point: ")


def test_a_draft_in_a_reasoning_models_thinking_is_not_read():
    draft = answer('''
        <think>
        Let me draft it first.
        ### Reference Code
        ```python
        def main_solution(n):
            return n
        ```
        ### Query
        A draft query.
        That draft is too simple; the final one keeps the offset.
        </think>

    ''')
    parsed = parse_transform(draft + CANONICAL)
    assert parsed.arg_names == ("limit", "offset") and parsed.query.startswith("Given an upper bound")
    assert rejected(draft).detail == "nothing after the thinking"
