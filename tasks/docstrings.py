"""Worked examples (doctests) removed from the docstrings of reference code.

The reference code is shown in every prediction prompt. A docstring example such as
``>>> knapsack([1, 3, 4, 5], [1, 4, 5, 7], 7)`` followed by ``9`` states an input and its
output outright, and when a sampled pair is that example (or the offline transform took its
arguments from it) the prompt gives its own answer away. The transform therefore drops every
example block (the ``>>>`` line, its ``...`` continuations and the expected output up to the
next blank line) from module, class and function docstrings, and a heading such as
``Examples:`` left with nothing under it. Only docstring text changes: the result must parse
to the same program with its docstrings set aside, or the code is kept as it was.
"""

from __future__ import annotations

import ast
import re

_HEADING = re.compile(r"^\s*(examples?|usage|doctests?|for example)\b[^:]*:\s*$", re.IGNORECASE)
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def strip_doctest_examples(code: str) -> str:
    """``code`` with the doctest examples of its docstrings removed (see the module doc)."""
    if ">>>" not in code:
        return code
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return code
    lines = code.splitlines(keepends=True)
    drop: set[int] = set()  # 0-based line numbers
    replace: dict[int, str] = {}
    for node in ast.walk(tree):
        doc = _docstring_node(node)
        if doc is not None and ">>>" in doc.value.value:
            _mark_examples(lines, doc.value, drop, replace)
    if not drop and not replace:
        return code
    cleaned = join_kept_lines(lines, drop, replace)
    return cleaned if _same_program(tree, cleaned) else code


def join_kept_lines(lines: list[str], drop: set[int], replace: dict[int, str]) -> str:
    """``lines`` (with their endings) without those in ``drop`` and with those in ``replace``
    replaced; a removal between two blank lines leaves one of them, not a run."""
    out: list[str] = []
    removed = False  # a line was dropped since the last one kept
    for i, line in enumerate(lines):
        if i in drop:
            removed = True
            continue
        line = replace.get(i, line)
        if removed and not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
        removed = False
    return "".join(out)


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    if not isinstance(node, _DOCUMENTED) or not node.body:
        return None
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def _mark_examples(lines: list[str], string: ast.Constant, drop: set[int], replace: dict[int, str]) -> None:
    first, last = string.lineno - 1, (string.end_lineno or string.lineno) - 1
    if first == last:  # a one-line docstring: nothing to take apart safely
        return
    i = first + 1
    while i <= last:
        if not lines[i].lstrip().startswith(">>>"):
            i += 1
            continue
        block = [i]
        j = i + 1
        while j <= last and lines[j].lstrip().startswith("..."):
            block.append(j)
            j += 1
        while j <= last and lines[j].strip() and not lines[j].lstrip().startswith(">>>"):
            block.append(j)
            j += 1
        for k in block:
            if k == last:  # the closing quotes share the line: keep them, not the text before
                line = lines[k]
                end = string.end_col_offset or len(line.rstrip("\r\n"))
                quotes = line[:end].rstrip()[-3:]
                if quotes not in ('"""', "'''"):
                    return  # not a plain triple-quoted ending: leave this docstring alone
                indent = line[: len(line) - len(line.lstrip())]
                replace[k] = indent + quotes + line[end:]
            else:
                drop.add(k)
        _drop_heading(lines, first, block[0], drop)
        i = j


def _drop_heading(lines: list[str], first: int, start: int, drop: set[int]) -> None:
    """An ``Examples:`` line just above the removed block (blank lines between) goes too."""
    k = start - 1
    while k > first and (not lines[k].strip() or k in drop):
        k -= 1
    if k > first and _HEADING.match(lines[k]):
        drop.add(k)


def _same_program(before: ast.Module, code: str) -> bool:
    try:
        after = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return _without_docstrings(before) == _without_docstrings(after)


def _without_docstrings(tree: ast.Module) -> str:
    copy = ast.parse(ast.unparse(tree))
    for node in ast.walk(copy):
        doc = _docstring_node(node)
        if doc is not None:
            doc.value.value = ""
    return ast.dump(copy)
