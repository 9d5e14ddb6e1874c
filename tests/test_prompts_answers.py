"""extract_answer / check_input_keys on realistic chain-of-thought endings."""

from __future__ import annotations

import math

import pytest

from prompts.answers import Extracted, check_input_keys, extract_answer
from prompts.entry_params import EntryParams, entry_params


def ok(text: str, kind: str = "output"):
    result = extract_answer(text, kind)
    assert result.status == "ok", result
    return result.value


def test_simple_output():
    text = 'The loop runs three times, so the total is 6.\n\n{"output": 6}'
    assert extract_answer(text, "output") == Extracted("ok", 6, "", "json")


def test_last_object_with_the_key_wins():
    text = (
        'First guess: {"output": [1, 2]}. Wait, I forgot the last element.\n'
        'Corrected: {"output": [1, 2, 3]}\n'
        'By the way the input was {"n": 3}.'
    )
    assert ok(text) == [1, 2, 3]


def test_format_echo_is_ignored():
    text = 'I must answer as {"output": <your output>}. Counting gives 4.\n{"output": 4}'
    assert ok(text) == 4


def test_only_format_echo_is_no_answer():
    text = 'The answer should be given as {"output": <your output>} but I ran out of'
    assert extract_answer(text, "output").status == "no_answer"


def test_nested_output_value_keeps_outer_object():
    assert ok('{"output": {"output": 3, "other": [1, {"x": 2}]}}') == {"output": 3, "other": [1, {"x": 2}]}


def test_braces_and_escaped_quotes_inside_strings():
    text = r'So the string is built as shown. {"output": "a \"quoted\" {brace} and } here"}'
    assert ok(text) == 'a "quoted" {brace} and } here'


def test_unpaired_escaped_quote_inside_string():
    assert ok(r'{"output": "a \" { b"}') == 'a " { b'


def test_apostrophes_in_prose_do_not_break_the_scan():
    text = "Let's see: the set {1, 2} isn't sorted, it's fine.\n{\"output\": \"don't {stop}\"}"
    assert ok(text) == "don't {stop}"


def test_fenced_json_block_with_key():
    text = 'Reasoning...\n\n```json\n{\n  "output": {"count": 2, "items": ["a", "b"]}\n}\n```\n'
    assert ok(text) == {"count": 2, "items": ["a", "b"]}


def test_python_literals():
    result = extract_answer("{'output': (True, None, 'x', [1.5, False])}", "output")
    assert result.status == "ok" and result.source == "python_literal"
    assert result.value == [True, None, "x", [1.5, False]]


def test_python_dict_with_int_keys_becomes_json_keys():
    assert ok("{'output': {1: 'a', 2: (3, 4)}}") == {"1": "a", "2": [3, 4]}


def test_mixed_json_and_python_tokens_and_trailing_comma():
    assert ok('{"output": [true, None, null, False,],}') == [True, None, None, False]


def test_floats_keep_their_value():
    assert ok('{"output": [0.1, -2.5e-3, 1e10, 3]}') == [0.1, -0.0025, 1e10, 3]
    value = ok('{"output": 3.0}')
    assert value == 3.0 and isinstance(value, float)


@pytest.mark.parametrize(
    "text", ['{"output": NaN}', "{'output': float('nan')}", "{'output': nan}"]
)
def test_nan(text):
    assert math.isnan(ok(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"output": [Infinity, -Infinity]}', [math.inf, -math.inf]),
        ("{'output': [float('inf'), -inf]}", [math.inf, -math.inf]),
    ],
)
def test_infinity(text, expected):
    assert ok(text) == expected


def test_input_dict():
    text = 'Working backwards, n must be 5 and k 2.\n{"input": {"n": 5, "k": 2}}'
    assert ok(text, "input") == {"n": 5, "k": 2}


def test_input_ignores_output_objects_and_vice_versa():
    text = '{"input": {"n": 1}} gives {"output": 7}'
    assert ok(text, "input") == {"n": 1}
    assert ok(text, "output") == 7


def test_input_must_be_a_dict():
    result = extract_answer('{"input": [5, 2]}', "input")
    assert result.status == "bad_format"
    assert result.value is None
    assert "JSON object" in result.detail and "array" in result.detail


def test_input_as_json_string_is_bad_format():
    assert extract_answer('{"input": "{\\"n\\": 5}"}', "input").status == "bad_format"


def test_no_answer():
    result = extract_answer("I think the answer is probably six, but I am not sure.", "output")
    assert result == Extracted("no_answer", None, 'no JSON object with an "output" key', None)


def test_empty_response():
    assert extract_answer("", "output").status == "no_answer"
    assert extract_answer("  \n", "input").status == "no_answer"


def test_truncated_json_is_no_answer():
    text = 'So the result list is long.\n{"output": [1, 2, 3, 4, 5, 6, 7'
    assert extract_answer(text, "output").status == "no_answer"


def test_truncated_inside_string_is_no_answer():
    assert extract_answer('{"output": "abc', "output").status == "no_answer"


def test_earlier_complete_answer_survives_truncated_rewrite():
    text = '{"output": 5}\nHmm, let me redo this. {"output": [5, '
    assert ok(text) == 5


def test_object_with_key_that_does_not_parse_is_bad_format():
    result = extract_answer('Final: {"output": [1, 2] + [3]}', "output")
    assert result.status == "bad_format"
    assert "could not be parsed" in result.detail


def test_bare_fenced_json_block_at_the_end():
    result = extract_answer("The result is:\n```json\n[3, 1, 2]\n```", "output")
    assert result == Extracted("ok", [3, 1, 2], 'bare answer without the "output" key', "fenced_json")


def test_bare_fenced_json_dict_as_input():
    assert ok('Thus:\n```json\n{"n": 4, "k": 1}\n```\n', "input") == {"n": 4, "k": 1}


def test_fenced_json_block_far_from_the_end_is_not_an_answer():
    text = "The input is\n```json\n{\"n\": 4}\n```\n" + "Now I simulate the loop step by step. " * 30
    assert extract_answer(text, "output").status == "no_answer"


def test_broken_final_json_block_is_bad_format():
    result = extract_answer("```json\n{output: 3\n```", "output")
    assert result.status == "bad_format" and result.source == "fenced_json"


def test_boxed_number():
    result = extract_answer(r"Therefore the answer is $\boxed{42}$.", "output")
    assert result == Extracted("ok", 42, "boxed answer", "boxed")


def test_boxed_list_and_text():
    assert ok(r"\boxed{[1, 2, 3]}") == [1, 2, 3]
    assert ok(r"\boxed{\text{hello}}") == "hello"


def test_boxed_input_dict():
    assert ok(r'So $\boxed{{"n": 3}}$', "input") == {"n": 3}


def test_boxed_non_dict_input_is_bad_format():
    assert extract_answer(r"\boxed{3}", "input").status == "bad_format"


def test_json_object_beats_boxed_fallback():
    assert ok(r'\boxed{7} ... final: {"output": 8}') == 8


def test_many_braces_do_not_explode():
    text = "{" * 5000 + ' {"output": 1}'
    assert ok(text) == 1


@pytest.mark.parametrize(
    ("value", "names", "expected"),
    [
        ({"a": 1, "b": 2}, ["a", "b"], None),
        ({"b": 2, "a": 1}, ["a", "b"], None),
        ({"a": 1}, ["a", "b"], "missing keys: b"),
        ({"a": 1, "b": 2, "c": 3}, ["a", "b"], "unexpected keys: c"),
        ({"x": 1}, ["a"], "missing keys: a; unexpected keys: x"),
        ([1, 2], ["a"], "the input must be a JSON object, got array"),
    ],
)
def test_check_input_keys(value, names, expected):
    assert check_input_keys(value, EntryParams(tuple(names))) == expected


SIGNATURES = """
def main_solution(n, mod=10**9 + 7, *args, step, start=0, **options):
    return n


def defaults_only(a=1, b=2):
    return a


def main_solution_strict(n, *args):
    return n
"""


@pytest.mark.parametrize(
    ("value", "entry", "names", "expected"),
    [
        # Required: n and the keyword-only step; mod and start have defaults; **options takes more.
        ({"n": 1, "step": 2}, "main_solution", ["n", "mod", "step", "start"], None),
        ({"n": 1, "mod": 7, "step": 2, "start": 3}, "main_solution", ["n", "mod", "step", "start"], None),
        ({"n": 1, "step": 2, "verbose": True}, "main_solution", ["n", "mod", "step", "start"], None),
        ({"mod": 7}, "main_solution", ["n", "mod", "step", "start"], "missing keys: n, step"),
        ({}, "defaults_only", ["a", "b"], None),
        ({"a": 1, "c": 3}, "defaults_only", ["a", "b"], "unexpected keys: c"),
        # *args takes nothing by keyword: not a key, and no extra keys either.
        ({"n": 1, "args": [2]}, "main_solution_strict", ["n"], "unexpected keys: args"),
        # Not defined by a plain def: every stored name is required, as before.
        ({"n": 1}, "absent", ["n", "mod"], "missing keys: mod"),
    ],
)
def test_check_input_keys_reads_defaults_and_kwargs(value, entry, names, expected):
    assert check_input_keys(value, entry_params(SIGNATURES, entry, names)) == expected


def test_entry_params_of_the_last_definition_and_of_code_that_does_not_parse():
    code = "def main_solution(n, k):\n    return n\n\n\ndef main_solution(n, k=2):\n    return n\n"
    assert entry_params(code, "main_solution", ["n", "k"]) == EntryParams(("n", "k"), frozenset({"k"}))
    assert entry_params("def main_solution(n, k=2:", "main_solution", ["n", "k"]) == EntryParams(("n", "k"))


@pytest.mark.parametrize(
    ("signature", "optional", "extra_keys"),
    [
        ("(n, k)", set(), False),  # no parse needed: nothing in the signature could be a default
        ("(\n    n: int,\n    k: list,\n)", set(), False),
        ("(n, k=2)", {"k"}, False),
        ("(n, k: int = 2)", {"k"}, False),
        ("(n,  # k=2 was the old default\n    k)", set(), False),  # a comment is parsed, not matched
        ("(n, k=max(1, 2))", {"k"}, False),
        ("(n, k=(1, 2))", {"k"}, False),
        ("(n, *, k=2)", {"k"}, False),
        ("(n, k, **more)", set(), True),
    ],
)
def test_entry_params_find_every_default_however_the_signature_is_written(signature, optional, extra_keys):
    code = f"import math\n\ndef main_solution{signature}:\n    return n\n"
    assert entry_params(code, "main_solution", ["n", "k"]) == EntryParams(("n", "k"), frozenset(optional), extra_keys)


def test_unknown_kind():
    with pytest.raises(ValueError):
        extract_answer('{"output": 1}', "result")  # type: ignore[arg-type]


# Reasoning models (DeepSeek-R1, QwQ, Qwen3) think before they answer; a draft in the thinking
# is not the answer.
@pytest.mark.parametrize("opening", ["<think>\n", ""])  # served raw, R1's template puts <think> in the prompt
def test_a_draft_answer_in_the_thinking_is_not_the_answer(opening):
    thinking = f'{opening}Maybe {{"output": 3}}? No: the loop runs once more.\n</think>\n\n'
    assert extract_answer(thinking + "The answer is\n```json\n4\n```", "output").value == 4
    assert extract_answer(thinking + 'So {"output": 4}', "output").value == 4
    got = extract_answer(thinking + "The output is four.", "output")
    assert got.status == "no_answer" and got.value is None


def test_thinking_without_an_answer_is_no_answer():
    for text in ('<think>\nIt is {"output": 3} I think', '<think>\n{"output": 3}\n</think>\n\n'):
        assert extract_answer(text, "output") == Extracted("no_answer", None, "nothing after the thinking")


def test_a_think_tag_quoted_in_the_answer_is_not_the_end_of_thinking():
    assert ok('Tags are kept.\n{"output": "<think>a</think>"}') == "<think>a</think>"
    assert ok('The code strips `</think>` from the text.\n{"output": "ab"}') == "ab"
