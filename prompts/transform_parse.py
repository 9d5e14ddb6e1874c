"""Parse the LLM's rewrite of a raw file into the unified format, or say why it is unusable.

Tolerant about presentation: heading level, bold, numbering ("### 1. Reference Code",
"**Query:** ..."), aliases ("Refcode", "Problem Statement"), fences with or without a language
tag, prose around the sections, and the generator given either in its own block or inside the
reference-code block, and a reasoning model's thinking before the answer (read past, see
prompts.reasoning). Strict about substance, checked with ``ast`` and ``compile``: both
functions at module level, the code compiles, ``main_solution`` takes named arguments and
``input_generator`` needs none.

Execution contract: the pipeline samples inputs by running ``refcode + "\\n\\n" +
input_generator`` (``ParsedFunction.generator_program``), so a generator may use the reference
code's imports and helpers; ``main_solution`` is run from ``refcode`` alone.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

from prompts.reasoning import answer_part

# 2: only what follows a reasoning model's thinking is read
TRANSFORM_PARSER_VERSION = 2

ENTRY_POINT = "main_solution"
GENERATOR = "input_generator"

# Heading text (normalised: lower case, words only) -> section name.
_ALIASES = {
    "refcode": (
        "reference code", "refcode", "ref code", "reference solution", "reference implementation",
        "cleaned code", "cleaned reference code", "reference code with main solution",
        "reference code main solution",
    ),
    "io_description": (
        "input output description", "input and output description", "io description",
        "i o description", "input output requirements", "input and output requirements",
        "input output requirement", "io requirements", "input output specification",
        "input output", "inputs and outputs", "input and output",
    ),
    "input_generator": (
        "input generator", "input generator code", "input generator function", "generator",
        "input generation",
    ),
    "query": ("query", "problem statement", "problem", "question", "problem description", "the query"),
}
_SECTION_OF = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_RULE_LINE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_PYTHON_TAGS = ("", "python", "py", "python3", "py3")


@dataclass(frozen=True)
class ParsedFunction:
    """One function in the unified format.

    ``refcode`` holds ``main_solution`` (and helpers) without the generator;
    ``input_generator`` is the generator's own code, run after ``refcode`` (see
    :attr:`generator_program`); ``arg_names`` are ``main_solution``'s keyword-passable
    parameters in signature order.
    """

    refcode: str
    input_generator: str
    io_description: str
    query: str
    arg_names: tuple[str, ...]
    # Top-level statements that ran the entry point or the generator (an "example usage"
    # block), removed from the reference code and the generator code.
    example_statements_removed: int = 0

    @property
    def generator_program(self) -> str:
        """The program the sampler runs to call ``input_generator()``."""
        return self.refcode + "\n\n" + self.input_generator


class TransformRejected(ValueError):
    """The answer cannot become a function; ``reason`` is a short snake_case code for stats
    (e.g. 'missing_section:query', 'syntax_error', 'no_entry_point'), ``detail`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Markdown: sections and code blocks


def _heading(line: str) -> tuple[str, str, bool] | None:
    """(section, inline text, strong) when ``line`` reads as a section heading, else None.

    Strong headings are markdown headings, bold names and lines holding only the name; a weak
    one ("Query: What is ...?") counts only when its section has no strong heading. List
    bullets are never headings, and only marked headings may carry backticks or a
    parenthetical, so an argument line like "`query` (str): ..." is not taken for one.
    """
    text = line.strip()
    if not text or len(text) > 200 or re.match(r"[-+*•]\s", text):
        return None
    marked = text.startswith("#")
    text = text.lstrip("#").strip()
    head, colon, rest = text.partition(":")
    if colon and re.fullmatch(r"[*_\s]*(?:step|part|section)?\s*\d+[*_\s]*", head, re.I):
        head, colon, rest = rest.partition(":")  # "Step 1: Reference Code"
    marked = marked or head.lstrip().startswith(("**", "__"))
    name = re.sub(r"^(?:(?:step|part|section)\s*)?(?:\d+|[ivx]+|[a-d])[.)]\s+", "", head.strip("*_ "), flags=re.I)
    marked = marked or name.startswith(("**", "__"))  # "1. **Reference Code**"
    name = name.strip("*_ ")
    rest = rest.strip().lstrip("*_").strip()
    if marked:
        name = re.sub(r"\([^)]*\)", " ", name.strip("`"))  # "Reference Code (Python)"
    elif "`" in name:
        return None
    name = re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()
    section = _SECTION_OF.get(re.sub(r"\s+section$", "", name))
    if section is None:
        return None
    return section, rest, marked or not rest


def _unwrap_markdown_fence(answer: str) -> str:
    """Drop one outer ```markdown fence around the whole answer (it hides the inner fences)."""
    lines = answer.strip().splitlines()
    if (
        len(lines) >= 2
        and re.fullmatch(r"[ \t]*(`{3,}|~{3,})[ \t]*(markdown|md|text)[ \t]*", lines[0], re.I)
        and re.fullmatch(r"[ \t]*(`{3,}|~{3,})[ \t]*", lines[-1])
    ):
        return "\n".join(lines[1:-1])
    return answer


def _closes(fence: str, match: re.Match[str] | None) -> bool:
    """Whether a fence line closes the block opened by ``fence`` (same char, no shorter, no tag)."""
    return (
        match is not None
        and match.group(1)[0] == fence[0]
        and len(match.group(1)) >= len(fence)
        and not match.group(2)
    )


def _split_sections(answer: str) -> dict[str, str]:
    """Section name -> text, from heading lines outside code fences.

    Per section the first strong heading is used, else the first weak one; a section runs to
    the next used heading. Other heading-like lines stay part of the text.
    """
    lines = answer.splitlines()
    strong: dict[str, tuple[int, str]] = {}
    weak: dict[str, tuple[int, str]] = {}
    fence: str | None = None
    for index, line in enumerate(lines):
        fence_match = _FENCE_LINE.match(line)
        if fence is not None:
            if _closes(fence, fence_match):
                fence = None
        elif fence_match:
            fence = fence_match.group(1)
        elif (heading := _heading(line)) is not None:
            section, rest, is_strong = heading
            (strong if is_strong else weak).setdefault(section, (index, rest))
    chosen = sorted((*strong.get(name, weak.get(name)), name) for name in strong.keys() | weak.keys())
    sections: dict[str, str] = {}
    for position, (index, rest, name) in enumerate(chosen):
        stop = chosen[position + 1][0] if position + 1 < len(chosen) else len(lines)
        body = lines[index + 1 : stop]
        sections[name] = "\n".join(([rest] if rest else []) + body)
    return sections


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, body) of every fenced block; a block left open runs to the end of the text."""
    blocks: list[tuple[str, str]] = []
    fence: str | None = None
    tag = ""
    body: list[str] = []
    for line in text.splitlines():
        fence_match = _FENCE_LINE.match(line)
        if fence is None:
            if fence_match:
                fence, tag, body = fence_match.group(1), fence_match.group(2).lower(), []
        elif _closes(fence, fence_match):
            blocks.append((tag, textwrap.dedent("\n".join(body))))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        blocks.append((tag, textwrap.dedent("\n".join(body))))
    return blocks


def _section_code(text: str) -> tuple[str, bool]:
    """(code, fenced) of a section: its python/untagged fenced blocks joined, else the bare text."""
    blocks = _code_blocks(text)
    if not blocks:
        return textwrap.dedent(text).strip("\n"), False
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS] or [body for _, body in blocks]
    return "\n\n".join(body.strip("\n") for body in python), True


def _prose(text: str, last: bool) -> str:
    """Section prose without surrounding rules; in the last section, text after a rule is an
    afterword of the model ("Let me know if ..."), not part of the section."""
    lines = text.strip().splitlines()
    if last:
        for index, line in enumerate(lines):
            if index > 0 and _RULE_LINE.match(line):
                lines = lines[:index]
                break
    while lines and (not lines[0].strip() or _RULE_LINE.match(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _RULE_LINE.match(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip()


# ---------------------------------------------------------------------------------------------
# Code checks


def _compile(source: str, what: str) -> ast.Module:
    try:
        compile(source, f"<{what}>", "exec", dont_inherit=True)
        return ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise TransformRejected("syntax_error", f"{what}: {exc.__class__.__name__}: {getattr(exc, 'msg', exc)}{where}") from None


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and {ast.unparse(test.left), ast.unparse(test.comparators[0])} == {"__name__", "'__main__'"}
    )


def _example_statements(module: ast.Module, entry: str = ENTRY_POINT) -> list[ast.stmt]:
    """Top-level statements that call the entry point or ``input_generator`` (an LLM's
    "Example usage:" block: ``print(main_solution(5))  # 120``, ``r = main_solution(n=6)``),
    and the statements after them that use a name only such a statement bound (``assert r ==
    720``). The reference code is shown in every prompt, so a worked call states an input and
    its output just as a doctest would; it also runs every time the code is loaded."""
    found: list[ast.stmt] = []
    tainted: set[str] = set()
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        calls = any(
            isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in (entry, GENERATOR)
            for inner in ast.walk(node)
        )
        loads = {inner.id for inner in ast.walk(node) if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load)}
        if calls or loads & tainted:
            found.append(node)
            tainted |= {inner.id for inner in ast.walk(node) if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store)}
    return found


def remove_example_usage(code: str, entry: str = ENTRY_POINT) -> tuple[str, int]:
    """``code`` without its ``__main__`` blocks and example statements (``_example_statements``
    for ``entry``), and how many example statements went: what a transformed function's code
    loses, for code that did not come through the transform (records imported in the unified
    shape). Code that does not parse, or has nothing to remove, comes back unchanged."""
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return code, 0
    guards = [n for n in module.body if _is_main_guard(n)]
    examples = [n for n in _example_statements(module, entry) if n not in guards]
    if not guards and not examples:
        return code, 0
    return _without(code, guards + examples) + "\n", len(examples)


def _without(source: str, nodes: list[ast.stmt]) -> str:
    """``source`` with the lines of top-level ``nodes`` (and their decorators) removed."""
    lines = source.splitlines()
    for node in sorted(nodes, key=lambda n: n.lineno, reverse=True):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        del lines[first - 1 : node.end_lineno]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _segment(source: str, node: ast.stmt) -> str:
    lines = source.splitlines()
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1 : node.end_lineno])


def _top_level(module: ast.Module, name: str) -> list[ast.stmt]:
    return [
        node
        for node in module.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
    ]


def _nested_home(module: ast.Module, name: str) -> str | None:
    """Name of the class or function where ``name`` is defined below module level, if any."""
    for outer in module.body:
        if isinstance(outer, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(outer):
                if inner is not outer and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.name == name:
                    return outer.name
    return None


def _missing_function(module: ast.Module, name: str, reason: str) -> TransformRejected:
    home = _nested_home(module, name)
    where = f"only inside {home!r}" if home else "nowhere"
    return TransformRejected(reason, f"`def {name}` is defined {where}; it must be at module level")


def entry_arg_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    """The names an input dict may key ``main_solution``'s parameters by (it is called with
    ``**input``); TransformRejected when it cannot be called that way."""
    args = node.args
    if args.posonlyargs:
        raise TransformRejected("positional_only_args", f"{ENTRY_POINT} is called with keyword arguments")
    names = tuple(arg.arg for arg in args.args + args.kwonlyargs)
    if not names:
        raise TransformRejected("entry_without_args", f"{ENTRY_POINT} needs at least one named parameter")
    return names


def _check_generator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    if isinstance(node, ast.AsyncFunctionDef):
        raise TransformRejected("no_input_generator", f"{GENERATOR} is async")
    args = node.args
    positional = args.posonlyargs + args.args
    if len(positional) > len(args.defaults) or any(default is None for default in args.kw_defaults):
        raise TransformRejected("generator_requires_args", f"{GENERATOR} must be callable without arguments")
    for inner in _own_nodes(node):
        if isinstance(inner, (ast.Yield, ast.YieldFrom)):
            raise TransformRejected("generator_yields", f"{GENERATOR} must return a dict, not yield")


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """Nodes of ``function``'s body, not descending into nested functions, classes, lambdas."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _generator_from_section(text: str | None, has_inline: bool) -> tuple[str, ast.Module | None]:
    """(code, module) of the generator section; module is None when the section holds no
    usable ``input_generator`` (then code is what was found, possibly empty)."""
    if text is None:
        return "", None
    code, fenced = _section_code(text)
    if not code.strip():
        return "", None
    if not fenced:
        # Unfenced text is code only if it compiles; prose such as "see above" is not.
        try:
            compile(code, "<input generator>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return "", None
    elif has_inline and GENERATOR not in code:
        return "", None
    module = _compile(code, "input generator")
    return code, (module if _top_level(module, GENERATOR) else None)


# ---------------------------------------------------------------------------------------------


def parse_transform(answer: str) -> ParsedFunction:
    """The unified-format function in an LLM transform answer; raises TransformRejected.

    Reasons: 'empty_answer', 'missing_section:<refcode|io_description|input_generator|query>',
    'empty_section:<name>', 'syntax_error', 'no_entry_point', 'entry_without_args',
    'positional_only_args', 'no_input_generator', 'generator_requires_args', 'generator_yields'.
    """
    if not answer or not answer.strip():
        raise TransformRejected("empty_answer")
    # A reasoning model's thinking may hold a draft with the same headings: the first heading
    # of a section is the one used, so the thinking must go.
    answer = answer_part(answer)
    if not answer.strip():
        raise TransformRejected("empty_answer", "nothing after the thinking")
    sections = _split_sections(_unwrap_markdown_fence(answer))
    for name, heading in (("refcode", "Reference Code"), ("io_description", "Input/Output Description"), ("query", "Query")):
        if name not in sections:
            raise TransformRejected(f"missing_section:{name}", f"no {heading!r} heading")
    last_section = list(sections)[-1]

    refcode, _ = _section_code(sections["refcode"])
    if not refcode.strip():
        raise TransformRejected("empty_section:refcode")
    module = _compile(refcode, "reference code")

    entries = _top_level(module, ENTRY_POINT)
    if not entries:
        raise _missing_function(module, ENTRY_POINT, "no_entry_point")
    entry = entries[-1]  # Python keeps the last definition
    if isinstance(entry, ast.AsyncFunctionDef):
        raise TransformRejected("no_entry_point", f"{ENTRY_POINT} is async")
    arg_names = entry_arg_names(entry)

    # The generator: code in its own section wins; otherwise it may sit in the reference code.
    inline_generators = _top_level(module, GENERATOR)
    generator_code, generator_module = _generator_from_section(sections.get("input_generator"), bool(inline_generators))
    if generator_module is None:
        if inline_generators:
            generator_code = _segment(refcode, inline_generators[-1])
            generator_module = ast.parse(generator_code)
        elif "input_generator" not in sections:
            raise TransformRejected("missing_section:input_generator", "no 'Input Generator' heading")
        elif not generator_code.strip():
            raise TransformRejected("no_input_generator", "the 'Input Generator' section has no code")
        else:
            raise _missing_function(ast.parse(generator_code), GENERATOR, "no_input_generator")
    _check_generator(_top_level(generator_module, GENERATOR)[-1])

    # Clean: no __main__ blocks anywhere, no generator in the refcode, no entry-point copy in
    # the generator (it would replace main_solution when the two are run together).
    guards = [n for n in module.body if _is_main_guard(n)]
    ref_examples = [n for n in _example_statements(module) if n not in guards]
    refcode = _without(refcode, inline_generators + guards + ref_examples)
    generator_guards = [n for n in generator_module.body if _is_main_guard(n)]
    generator_examples = [n for n in _example_statements(generator_module) if n not in generator_guards]
    generator_code = _without(
        generator_code,
        _top_level(generator_module, ENTRY_POINT) + generator_guards + generator_examples,
    )

    io_description = _prose(sections["io_description"], last_section == "io_description")
    query = _prose(sections["query"], last_section == "query")
    for name, text in (("io_description", io_description), ("query", query)):
        if not text:
            raise TransformRejected(f"empty_section:{name}")

    _compile(refcode + "\n\n" + generator_code, "reference code + input generator")
    return ParsedFunction(
        refcode=refcode,
        input_generator=generator_code,
        io_description=io_description,
        query=query,
        arg_names=arg_names,
        example_statements_removed=len(ref_examples) + len(generator_examples),
    )
