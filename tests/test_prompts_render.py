"""Prompt templates: load, render strictly, keep braces, switch the tip, assemble CODEI/O++."""

from __future__ import annotations

import json
import re
from importlib import resources
from string import Template

import pytest

from prompts import render
from prompts.entry_params import EntryParams
from prompts.render import (
    assemble_multiturn,
    fill,
    load_sections,
    render_feedback,
    render_prediction,
    render_revision,
    render_transform,
    template_digest,
)

REFCODE = 'def main_solution(grid, word):\n    seen = {(0, 0): {"a": 1}}\n    return {"found": word in str(grid), "cost": 1.5}'
QUERY = "Given a `grid` and a `word`, is the word hidden in the grid?"
IO = "`grid` (list of str), `word` (str); returns {\"found\": bool, \"cost\": float}."


def content(messages: list[dict]) -> str:
    assert len(messages) == 1 and messages[0]["role"] == "user"
    return messages[0]["content"]


def test_every_template_is_valid_and_packaged():
    folder = resources.files("prompts").joinpath("templates")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".txt"))
    assert names == [
        "feedback.txt", "multiturn.txt", "predict_input.txt", "predict_output.txt",
        "reference_tip.txt", "revise.txt", "transform.txt",
    ]
    for name in names:
        assert Template(render.load_template(name)).is_valid(), name


def test_template_digest_is_stable_hex():
    assert re.fullmatch(r"[0-9a-f]{64}", template_digest())
    assert template_digest() == template_digest()


def test_fill_is_strict():
    assert fill("a $x {b}", {"x": "{1}"}) == "a {1} {b}"
    with pytest.raises(TypeError, match="missing=\\['x'\\]"):
        fill("a $x", {})
    with pytest.raises(TypeError, match="unexpected=\\['y'\\]"):
        fill("a $x", {"x": "1", "y": "2"})
    with pytest.raises(ValueError):
        fill("costs 5$ each", {})


def test_transform_prompt_contains_code_verbatim_and_the_rules():
    raw = 'PRICES = {"a": 1, "b": {2}}\nprint(f"{PRICES[\'a\']} costs $5 ${x}")\n'
    text = content(render_transform(raw))
    assert 'PRICES = {"a": 1, "b": {2}}\nprint(f"{PRICES[\'a\']} costs $5 ${x}")\n```' in text
    for heading in ("### Reference Code", "### Input/Output Description", "### Input Generator", "### Query"):
        assert f"\n{heading}\n" in text
    assert "`main_solution`" in text and "`input_generator()`" in text
    assert "about 1024 bytes" in text and "20 or more items" in text and "100 or more characters" in text
    assert "JSON-serializable" in text
    assert "$" not in text.replace("costs $5 ${x}", "")


def test_transform_limits_are_configurable():
    text = content(render_transform("x = 1", max_bytes=2048, max_items=10, max_chars=50))
    assert "about 2048 bytes" in text and "10 or more items" in text and "50 or more characters" in text


def test_transform_example_in_the_template_parses():
    """The layout the prompt shows is itself accepted by the parser."""
    from prompts.transform_parse import parse_transform

    template = render.load_template("transform.txt")
    example = template[template.index("### Reference Code\n```python") : template.index("Now rewrite")]
    parsed = parse_transform(example)
    assert parsed.arg_names == ("words", "top_k")


def test_output_prediction_prompt():
    given = {"word": "cat", "grid": ["cxt", "aat"]}
    text = content(render_prediction("output", QUERY, IO, given, REFCODE, ["grid", "word"]))
    assert text.index(QUERY) < text.index(IO) < text.index('{"grid": ["cxt", "aat"], "word": "cat"}')
    assert '{"output": <your output>}' in text
    assert "without writing any code" in text
    assert text.rstrip().endswith("```python\n" + REFCODE + "\n```")
    assert 'seen = {(0, 0): {"a": 1}}' in text  # braces in code survive
    assert "argument names" not in text


def test_input_prediction_prompt_lists_argument_names():
    text = content(render_prediction("input", QUERY, IO, {"found": True, "cost": 1.5}, REFCODE, ["grid", "word"]))
    assert '{"cost": 1.5, "found": true}' in text
    assert '{"input": <your input>}' in text
    assert '("grid", "word")' in text
    assert "Hint:" in text


def test_input_prediction_prompt_names_optional_keys_only_when_there_are_some():
    def prompt(names) -> str:
        return content(render_prediction("input", QUERY, IO, 3, None, names))

    # Without defaults the text is the one plain names give: those prompts (and answers) stay.
    assert prompt(EntryParams(("grid", "word"))) == prompt(["grid", "word"])
    # Defaulted ones are listed after the required ones, as optional, in signature order.
    with_defaults = EntryParams(("grid", "limit", "word", "case"), frozenset({"limit", "case"}))
    assert '("grid", "word" and optionally "limit", "case")' in prompt(with_defaults)
    assert '(optionally "limit")' in prompt(EntryParams(("limit",), frozenset({"limit"})))
    bad = render_feedback("bad_format", kind="input", detail="missing keys: grid", arg_names=with_defaults)
    assert 'exactly these keys: "grid", "word" and optionally "limit", "case".' in bad


def test_tip_can_be_switched_off():
    with_tip = content(render_prediction("output", QUERY, IO, {"grid": [], "word": "a"}, REFCODE, ["grid", "word"]))
    without = content(render_prediction("output", QUERY, IO, {"grid": [], "word": "a"}, None, ["grid", "word"]))
    assert "def main_solution" not in without and "Hint:" not in without
    assert without.endswith("must follow the output requirement above.\n")
    assert with_tip.startswith(without.rstrip())


def test_given_is_canonical_json():
    text = content(render_prediction("input", QUERY, IO, [float("nan"), "é", {"b": 1, "a": 2}], None, ["grid", "word"]))
    assert '[NaN, "é", {"a": 2, "b": 1}]' in text


def test_prediction_argument_checks():
    with pytest.raises(ValueError):
        render_prediction("both", QUERY, IO, 1, None, ["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render_prediction("input", QUERY, IO, 1, None, [])


def test_feedback_texts():
    assert render_feedback("correct") == "Your answer is correct."
    assert render_feedback("correct", kind="input") == "Your answer is correct."
    wrong_output = render_feedback("wrong", kind="output", predicted=[1, 2])
    assert wrong_output.startswith("Your answer is incorrect") and "[1, 2]" in wrong_output
    wrong_input = render_feedback("wrong", kind="input", predicted={"n": 2}, actual_output=4, given_output=9)
    assert wrong_input == (
        'Your answer is incorrect: running the code on your predicted input {"n": 2} returns 4, '
        "which differs from the given output 9."
    )
    exception = render_feedback("exception", predicted={"n": -1}, error_type="ValueError", error_message="math domain\nerror")
    assert exception.endswith("raised ValueError: math domain error")
    assert "time limit" in render_feedback("timeout", predicted={"n": 10**6})
    assert "required JSON format" in render_feedback("no_answer")
    bad_input = render_feedback("bad_format", kind="input", detail="missing keys: k", arg_names=["n", "k"])
    assert "(missing keys: k)" in bad_input and 'exactly these keys: "n", "k".' in bad_input
    bad_output = render_feedback("bad_format", kind="output", detail="the answer object could not be parsed")
    assert '{"output": <your output>}' in bad_output


def test_wrong_output_feedback_never_reveals_the_expected_output():
    with pytest.raises(TypeError):
        render_feedback("wrong", kind="output", predicted=1, given_output=2)
    with pytest.raises(TypeError):
        render_feedback("wrong", kind="output", predicted=1, actual_output=2)


def test_feedback_argument_checks():
    with pytest.raises(ValueError):
        render_feedback("almost")
    with pytest.raises(TypeError):
        render_feedback("wrong", predicted=1)  # kind is required
    with pytest.raises(TypeError):
        render_feedback("wrong", kind="input", predicted={"n": 1})  # outputs missing
    with pytest.raises(TypeError):
        render_feedback("timeout", predicted=1, seconds=5)


def test_feedback_shortens_huge_values():
    text = render_feedback("wrong", kind="output", predicted=list(range(5000)))
    assert len(text) < 800 and "…" in text


def test_revision_message():
    message = render_revision("  Your answer is incorrect: x.\n")
    assert message["role"] == "user"
    assert message["content"].startswith("Your answer is incorrect: x.\n\n")
    assert "new answer" in message["content"] and "same format" in message["content"]


def test_assemble_two_turns_two_feedbacks_exact_shape():
    sections = load_sections("multiturn.txt")
    retry = sections["retry"]
    result = assemble_multiturn(["turn one {\"output\": 1}\n\n", "turn two"], ["bad", " good "])
    assert result == (
        'turn one {"output": 1}\n\nExecution feedback: bad\n\n' + retry
        + "\n\nturn two\n\nExecution feedback: good"
    )


def test_assemble_other_shapes():
    assert assemble_multiturn(["only\n"], []) == "only"
    assert assemble_multiturn(["only"], ["fine"]) == "only\n\nExecution feedback: fine"
    three = assemble_multiturn(["a", "b", "c"], ["x", "y"])
    assert three.count("Execution feedback:") == 2 and three.endswith("\n\nc")
    with pytest.raises(ValueError):
        assemble_multiturn([], [])
    with pytest.raises(ValueError):
        assemble_multiturn(["a"], ["x", "y"])
    with pytest.raises(ValueError):
        assemble_multiturn(["a", "b", "c"], ["x"])


def test_rendered_prompts_are_json_serialisable_messages():
    messages = render_prediction("output", QUERY, IO, {"grid": [], "word": "a"}, REFCODE, ["grid", "word"])
    assert json.loads(json.dumps(messages)) == messages
