"""Worked examples removed from the comments of reference code.

The reference code is shown in every prediction prompt. A commented-out example such as
``# print(main_solution(5))  # Output: 120`` (what an LLM leaves after its "Example usage:"
block) states an input and its output just as a doctest does, and when a sampled pair is that
example the prompt gives its own answer away. A comment is an example when it holds a call of
the entry point (or the input generator, or the original function's name) whose arguments are
all literals: ``main_solution(n=6)`` is one, ``fib(n - 1)`` in an explanation is not. A run of
comment-only lines holding one goes whole (its heading and the output lines after the call go
with it); an example in a comment after code is cut off that line. Only comments change: the
result must parse to the same program, or the code is kept as it was.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable

from tasks.docstrings import join_kept_lines


def strip_example_comments(code: str, names: Iterable[str]) -> str:
    """``code`` without the comments that show a worked call of one of ``names``."""
    wanted = {name for name in names if name}
    if not wanted or not re.search(r"#.*\b(" + "|".join(map(re.escape, sorted(wanted))) + r")\s*\(", code):
        return code
    try:
        tree = ast.dump(ast.parse(code))
        comments = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]
    except (SyntaxError, ValueError, RecursionError, tokenize.TokenError):
        return code
    lines = code.splitlines(keepends=True)
    own_line = {t.start[0] - 1 for t in comments if not lines[t.start[0] - 1][: t.start[1]].strip()}
    drop: set[int] = set()
    cut: dict[int, int] = {}  # 0-based line -> column where a trailing example comment starts
    for token in comments:
        if not _shows_example(token.string, wanted):
            continue
        row = token.start[0] - 1
        if row in own_line:
            drop |= _comment_run(own_line, row)
        else:
            cut[row] = token.start[1]
    if not drop and not cut:
        return code
    # A trailing example comment is cut off its line; the line keeps its ending.
    replace = {i: lines[i][:col].rstrip() + lines[i][len(lines[i].rstrip("\r\n")):] for i, col in cut.items()}
    cleaned = join_kept_lines(lines, drop, replace)
    if len(lines) - 1 in drop:  # the code ended with the removed run: no blank lines after it
        cleaned = cleaned.rstrip() + "\n"
    try:
        same = ast.dump(ast.parse(cleaned)) == tree
    except (SyntaxError, ValueError, RecursionError):
        same = False
    return cleaned if same else code


def _comment_run(own_line: set[int], row: int) -> set[int]:
    """The consecutive comment-only lines around ``row``."""
    first, last = row, row
    while first - 1 in own_line:
        first -= 1
    while last + 1 in own_line:
        last += 1
    return set(range(first, last + 1))


def _shows_example(comment: str, names: set[str]) -> bool:
    """Whether the comment holds a call of one of ``names`` with literal arguments only."""
    for match in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", comment):
        if match.group(1) not in names:
            continue
        call = _call_at(comment, match.start())
        if call is not None and _literal_call(call):
            return True
    return False


def _call_at(text: str, start: int) -> str | None:
    """The call starting at ``start`` up to its closing parenthesis (None when it never closes)."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return None


def _literal_call(source: str) -> bool:
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return False
    if not isinstance(node, ast.Call) or not (node.args or node.keywords):
        return False
    for arg in [*node.args, *(k.value for k in node.keywords)]:
        try:
            ast.literal_eval(arg)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return False
    return all(k.arg is not None for k in node.keywords)
