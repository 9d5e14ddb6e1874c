"""Pull the final answer out of a chain-of-thought response.

The answer is the object with the expected key ("output" or "input") that ends last in the
text, after a reasoning model's thinking (``<think>...</think>``, see prompts.reasoning): a draft
answer in the thinking is not the answer. Objects are found by a brace scan that skips quoted strings (with escapes), and each is read
as JSON first, then as a Python literal (True/None, single quotes, tuples, nan/inf, trailing
commas). Only when no such object exists, a final ```json block or ``\\boxed{...}`` near the end
of the text is read as the bare answer. Values are normalised through a JSON round trip (tuples
become lists, dict keys strings) so they compare like the values the sandbox recorded.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prompts.entry_params import EntryParams
from prompts.reasoning import answer_part

# 2: only what follows a reasoning model's thinking is read
ANSWER_PARSER_VERSION = 2

Status = Literal["ok", "no_answer", "bad_format"]


@dataclass(frozen=True)
class Extracted:
    """Result of :func:`extract_answer`.

    ``status``: 'ok' | 'no_answer' | 'bad_format'; ``value``: the answer (None unless ok);
    ``detail``: a short human explanation; ``source``: which strategy found it ('json',
    'python_literal', 'fenced_json', 'boxed') or None.
    """

    status: Status
    value: Any = None
    detail: str = ""
    source: str | None = None


class _Unparsable(ValueError):
    pass


# Only this many of the last "{" in a text are tried, and nesting deeper than this is not an
# answer: both bound the scan on degenerate output ("{{{{...").
_MAX_CANDIDATES = 1000
_MAX_DEPTH = 64
# A bare fallback answer (```json block, \boxed{}) counts only when at most this much text
# follows it; an input echoed early in a response that was then cut off is not an answer.
_MAX_TRAILING_CHARS = 400

_OUTSIDE_STRING = re.compile(r"""[{}"'\\]""")
_INSIDE_STRING = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_PLACEHOLDER = re.compile(r"<[^<>\n]{1,60}>")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_BOXED = re.compile(r"\\boxed\s*\{")
_LATEX_TEXT = re.compile(r"\\(?:text|texttt|mathrm)\s*\{(.*)\}", re.S)
_JSON_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# One decoder for every answer: json.loads(text, parse_constant=...) builds a new one per call.
_JSON = json.JSONDecoder(parse_constant=_JSON_CONSTANTS.__getitem__)
# The key of an answer object, quoted either way: '"output":' or "'input' :".
_KEY = {key: re.compile(r"""["']""" + key + r"""["']\s*:""") for key in ("input", "output")}
_PY_NAMES = {
    "True": True, "False": False, "None": None,
    "true": True, "false": False, "null": None,
    "nan": math.nan, "NaN": math.nan, "inf": math.inf, "Infinity": math.inf,
}


def _match_close(text: str, start: int) -> int:
    """Index of the brace closing ``text[start]``, or -1 when it never closes.

    Quoted strings (single or double, with backslash escapes) are skipped, so braces inside
    them do not count; a string that never closes means the object never closes.
    """
    depth = 0
    pos = start
    quote: str | None = None
    while True:
        pattern = _OUTSIDE_STRING if quote is None else _INSIDE_STRING[quote]
        found = pattern.search(text, pos)
        if found is None:
            return -1
        char = found.group()
        pos = found.end()
        if char == "\\":
            pos += 1  # skip the escaped character, whatever it is
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
            if depth > _MAX_DEPTH:
                return -1
        else:
            depth -= 1
            if depth == 0:
                return found.start()


def _objects(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of brace-balanced ``{...}`` spans, nested ones included, last first."""
    starts = [found.start() for found in re.finditer(r"\{", text)][-_MAX_CANDIDATES:]
    for start in reversed(starts):
        close = _match_close(text, start)
        if close != -1:
            yield start, close + 1


def _python_value(node: ast.AST) -> Any:
    """A literal expression as a value; true/null/nan/inf names and float('...') allowed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _PY_NAMES:
        return _PY_NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_python_value(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _Unparsable("dict unpacking is not a literal")
        return {_python_value(k): _python_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _python_value(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        try:
            return float(node.args[0].value)
        except ValueError as exc:
            raise _Unparsable(str(exc)) from exc
    raise _Unparsable(f"not a literal: {type(node).__name__}")


def _parse_value(text: str) -> tuple[Any, str]:
    """``text`` as a JSON value, trying JSON then a Python literal; returns (value, source)."""
    try:
        return _JSON.decode(text), "json"
    except (ValueError, RecursionError):
        pass
    try:
        value = _python_value(ast.parse(text.strip(), mode="eval").body)
        # Round trip: tuples become lists, non-string dict keys become JSON keys.
        return _JSON.decode(json.dumps(value)), "python_literal"
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise _Unparsable("neither JSON nor a Python literal") from exc


def _from_objects(text: str, key: str) -> tuple[Any, str] | str | None:
    """The value of ``key`` in the last-ending parsable object that has it.

    Returns (value, source) when found; else a detail string when some object with the key
    could not be parsed; else None.
    """
    key_re = _KEY[key]
    best: tuple[int, Any, str] | None = None
    failure: str | None = None
    for start, end in _objects(text):
        if best is not None and end <= best[0]:
            continue
        candidate = text[start:end]
        if not key_re.search(candidate):
            continue
        try:
            value, source = _parse_value(candidate)
        except _Unparsable:
            # An echo of the requested format ({"output": <your output>}) is not an attempt.
            if failure is None and not _PLACEHOLDER.search(candidate):
                failure = f"the answer object could not be parsed: {_clip(candidate)}"
            continue
        if isinstance(value, dict) and key in value:
            best = (end, value[key], source)
    if best is not None:
        return best[1], best[2]
    return failure


def _final_fenced_json(text: str) -> tuple[str, bool] | None:
    """(body, tagged_json) of the last fenced block when it is json or untagged and ends the text."""
    blocks = list(_FENCE.finditer(text))
    if not blocks:
        return None
    last = blocks[-1]
    tag = last.group(2).lower()
    if tag not in ("json", "") or len(text) - last.end() > _MAX_TRAILING_CHARS:
        return None
    return last.group(3), tag == "json"


def _final_boxed(text: str) -> str | None:
    """Body of the last complete ``\\boxed{...}`` when it ends the text (LaTeX: only braces nest)."""
    for found in reversed(list(_BOXED.finditer(text))):
        depth = 0
        for index in range(found.end() - 1, len(text)):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    if len(text) - index - 1 > _MAX_TRAILING_CHARS:
                        return None
                    return text[found.end() : index]
    return None


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _accept(kind: str, value: Any, source: str, detail: str = "") -> Extracted:
    if kind == "input" and not isinstance(value, dict):
        return Extracted("bad_format", None, f"the input must be a JSON object, got {_json_type(value)}", source)
    return Extracted("ok", value, detail, source)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def extract_answer(text: str, kind: Literal["input", "output"]) -> Extracted:
    """The final answer of a response to an input- or output-prediction task.

    ok: ``value`` is the JSON value under "output", or the dict under "input".
    bad_format: an answer was attempted but is unusable (the object with the key does not parse,
    the input is not a JSON object, a final ```json block does not parse).
    no_answer: nothing answer-like, including responses cut off inside their final JSON.
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    if not text or not text.strip():
        return Extracted("no_answer", None, "empty response")
    text = answer_part(text)
    if not text.strip():
        return Extracted("no_answer", None, "nothing after the thinking")

    found = _from_objects(text, kind)
    if isinstance(found, tuple):
        return _accept(kind, *found)

    fenced = _final_fenced_json(text)
    if fenced is not None:
        body, tagged_json = fenced
        try:
            value, _ = _parse_value(body)
        except _Unparsable:
            if tagged_json:
                return Extracted("bad_format", None, f"the final json block does not parse: {_clip(body)}", "fenced_json")
        else:
            return _accept(kind, value, "fenced_json", f'bare answer without the "{kind}" key')

    boxed = _final_boxed(text)
    if boxed is not None:
        body = boxed.strip()
        latex_text = _LATEX_TEXT.fullmatch(body)
        try:
            value, _ = _parse_value(latex_text.group(1) if latex_text else body)
        except _Unparsable:
            if kind == "output" and body:
                # A boxed bare word or \text{...} is most plausibly a string answer.
                return Extracted("ok", latex_text.group(1).strip() if latex_text else body, "boxed text read as a string", "boxed")
            return Extracted("bad_format", None, f"the boxed answer does not parse: {_clip(body)}", "boxed")
        return _accept(kind, value, "boxed", "boxed answer")

    if isinstance(found, str):
        return Extracted("bad_format", None, found)
    return Extracted("no_answer", None, f'no JSON object with an "{kind}" key')


def check_input_keys(value: Any, params: EntryParams) -> str | None:
    """None when ``value`` is an input dict the entry point takes (see prompts.entry_params:
    every required key, no key it cannot take); else what is wrong: the required keys it
    lacks, the keys it must not have."""
    if not isinstance(value, dict):
        return f"the input must be a JSON object, got {_json_type(value)}"
    missing = [name for name in params.required if name not in value]
    known = set(params.names)
    unexpected = sorted(str(key) for key in value
                        if not isinstance(key, str) or (key not in known and not params.extra_keys))
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    return "; ".join(problems) or None
