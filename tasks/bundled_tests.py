"""Unit tests removed from reference code.

The reference code is shown in every prediction prompt. A file's own tests (``def
test_square_sum(): assert square_sum(7) == 140``, a ``class TestSquares``) state inputs and their
outputs as a doctest does, and when a sampled pair is one of them the prompt gives its own
answer away; the offline transform keeps every function of the file, and an LLM's rewrite may
keep them too. A module-level function named ``test`` or ``test_*``, or a class named ``Test*``,
goes when nothing else in the code uses its name (a helper merely named so stays).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable


def strip_bundled_tests(code: str, keep: Iterable[str] = ()) -> str:
    """``code`` without its module-level test functions and test classes (see the module doc);
    the names in ``keep`` (the entry point, the generator) stay whatever they are called."""
    if not re.search(r"^(def|class|async def)\s+[Tt]est", code, re.M):
        return code
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return code
    kept = set(keep)
    tests = [node for node in module.body if _is_test(node) and node.name not in kept]
    used = {name for node in module.body if node not in tests for name in _names_used(node)}
    tests = [node for node in tests if node.name not in used]
    if not tests:
        return code
    lines = code.splitlines(keepends=True)
    for node in sorted(tests, key=lambda n: n.lineno, reverse=True):
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        del lines[first - 1 : node.end_lineno]
    cleaned = re.sub(r"\n{4,}", "\n\n\n", "".join(lines)).rstrip() + "\n"
    try:
        ast.parse(cleaned)
    except (SyntaxError, ValueError, RecursionError):
        return code
    return cleaned


def _is_test(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == "test" or node.name.startswith("test_")
    return isinstance(node, ast.ClassDef) and node.name.startswith("Test")


def _names_used(node: ast.AST) -> set[str]:
    """Names a statement reads (``x``, and ``x`` of ``x.attr``) or mentions in a string (``__all__``)."""
    names = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            names.add(inner.id)
        elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            names.add(inner.value)
    return names
