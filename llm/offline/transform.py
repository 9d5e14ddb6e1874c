"""Rewrite a raw Python file into the unified CodeI/O format without an LLM, when it can be done.

``offline_transform(source)`` returns an :class:`OfflineFunction` for files that already have a
clean, JSON-typed function, and :class:`NeedsLLM` with a one-word reason for everything else,
so the pipeline can send those to a model.

Choice of the entry function (``ast`` only, nothing is executed):

1. Candidates are public module-level ``def`` functions (no leading underscore, not ``main``);
   when ``__all__`` is a literal list naming some of them, only those.
2. A candidate is eligible when it has at least one parameter, every required parameter gets a
   JSON type -- from its annotation (int, float, str, bool, None, list/List/Sequence[...],
   tuple[...], dict/Dict/Mapping[str, ...], Optional/Union/``X | None``, nested), else from
   literal doctest examples (``>>> f(3, [1, 2])``) anywhere in the file, else from a literal
   default -- and its return annotation, if any, is JSON-like. Defaulted parameters whose type
   cannot be told, or that look like recursion state (``memo``, ``cache``, ...), keep their
   default and are not inputs.
3. Among eligible candidates the entry is the first by: not called by another module-level
   function (the API, not a helper); has a docstring; more inputs; defined later in the file.

The refcode is the original text minus top-level statements with side effects (the
``__main__`` block, top-level calls and loops, assignments that read files or stdin), plus a
``main_solution`` wrapper. The file is refused when the entry depends on what was dropped
(``side_effects_at_top_level``), reaches file, network or process I/O (``performs_io``), or
draws unseeded randomness or the clock (``nondeterministic``).
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

ENTRY_POINT = "main_solution"
GENERATOR = "input_generator"


@dataclass(frozen=True)
class OfflineFunction:
    """One function in the unified format, built without an LLM.

    ``arg_names`` are the keyword arguments of ``main_solution`` and exactly the keys of the
    dict that ``input_generator()`` returns; ``entry`` names the original function.
    """

    refcode: str
    input_generator: str
    io_description: str
    query: str
    arg_names: tuple[str, ...]
    entry: str = ""


@dataclass(frozen=True)
class NeedsLLM:
    """The file cannot be transformed offline; ``reason`` is a short code for stats."""

    reason: str
    detail: str = ""


# ----------------------------------------------------------------------------- JSON types


@dataclass(frozen=True)
class JsonType:
    """A JSON-representable parameter type: kind in int, float, str, bool, none, list, tuple,
    dict (string keys), optional, union, or unknown (a bare ``list``/``Any`` still to learn)."""

    kind: str
    args: tuple[JsonType, ...] = ()

    def resolved(self) -> bool:
        return self.kind != "unknown" and all(arg.resolved() for arg in self.args)

    def describe(self) -> str:
        """English name of the type as used in the I/O description."""
        if self.kind == "none":
            return "None"
        if self.kind in ("int", "float", "str", "bool"):
            return self.kind
        if self.kind == "list":
            return f"list of {self.args[0].describe()}"
        if self.kind == "tuple":
            return "list [" + ", ".join(arg.describe() for arg in self.args) + "]"
        if self.kind == "dict":
            return f"dict mapping str to {self.args[0].describe()}"
        if self.kind == "optional":
            return f"{self.args[0].describe()} or None"
        if self.kind == "union":
            return " or ".join(arg.describe() for arg in self.args)
        return "JSON value"


INT, FLOAT, STR, BOOL, NONE = (JsonType(k) for k in ("int", "float", "str", "bool", "none"))
UNKNOWN = JsonType("unknown")
_SCALAR_KINDS = ("int", "float", "str", "bool", "none")
_SCALAR_NAMES = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "None": NONE}
_LIST_NAMES = {"list", "List", "Sequence", "MutableSequence", "Iterable", "Collection"}
_DICT_NAMES = {"dict", "Dict", "Mapping", "MutableMapping"}
_TUPLE_NAMES = {"tuple", "Tuple"}
_OPAQUE_NAMES = {"Any", "object"}
# Defaulted parameters with these names carry recursion state, not inputs.
_STATE_PARAMS = {"memo", "cache", "seen", "visited", "acc", "accumulator", "_memo", "_cache"}


def _optional(inner: JsonType) -> JsonType:
    return inner if inner.kind in ("optional", "none") else JsonType("optional", (inner,))


def _union(members: list[JsonType]) -> JsonType | None:
    flat: list[JsonType] = []
    for member in members:
        for item in member.args if member.kind == "union" else (member,):
            if item not in flat:
                flat.append(item)
    has_none = NONE in flat
    rest = [item for item in flat if item != NONE]
    if not rest:
        return NONE
    if set(item.kind for item in rest) == {"int", "float"}:
        rest = [FLOAT]
    body = rest[0] if len(rest) == 1 else JsonType("union", tuple(rest))
    if len(rest) > 3:
        return None
    return _optional(body) if has_none else body


def _type_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def annotation_type(node: ast.AST | None) -> JsonType | None:
    """The JSON type an annotation denotes, UNKNOWN for bare containers/Any, None if not JSON."""
    if node is None:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        if node.value is None:
            return NONE
        if isinstance(node.value, str):
            try:
                return annotation_type(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return None
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = annotation_type(node.left), annotation_type(node.right)
        return None if left is None or right is None else _union([left, right])
    name = _type_name(node)
    if name is not None:
        if name in _SCALAR_NAMES:
            return _SCALAR_NAMES[name]
        if name in _LIST_NAMES:
            return JsonType("list", (UNKNOWN,))
        if name in _DICT_NAMES:
            return JsonType("dict", (UNKNOWN,))
        if name in _TUPLE_NAMES:
            return JsonType("list", (UNKNOWN,))
        if name in _OPAQUE_NAMES:
            return UNKNOWN
        return None
    if not isinstance(node, ast.Subscript):
        return None
    outer = _type_name(node.value)
    items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if outer == "Annotated":
        return annotation_type(items[0])
    if outer == "Optional" and len(items) == 1:
        inner = annotation_type(items[0])
        return None if inner is None else _optional(inner)
    if outer == "Union":
        members = [annotation_type(item) for item in items]
        return None if any(m is None for m in members) else _union(members)  # type: ignore[arg-type]
    if outer in _LIST_NAMES and len(items) == 1:
        inner = annotation_type(items[0])
        return None if inner is None else JsonType("list", (inner,))
    if outer in _TUPLE_NAMES:
        if len(items) == 2 and isinstance(items[1], ast.Constant) and items[1].value is Ellipsis:
            inner = annotation_type(items[0])
            return None if inner is None else JsonType("list", (inner,))
        members = [annotation_type(item) for item in items]
        if any(m is None for m in members):
            return None
        return JsonType("tuple", tuple(members))  # type: ignore[arg-type]
    if outer in _DICT_NAMES and len(items) == 2:
        key, value = annotation_type(items[0]), annotation_type(items[1])
        if key not in (STR, UNKNOWN) or value is None:
            return None  # JSON objects only have string keys
        return JsonType("dict", (value,))
    return None


def value_type(value: Any) -> JsonType | None:
    """The JSON type of a literal example value, or None when it is not JSON-like."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if isinstance(value, (list, tuple)):
        element: JsonType | None = UNKNOWN
        for item in value:
            item_type = value_type(item)
            element = None if item_type is None or element is None else merge_types(element, item_type)
            if element is None:
                return None
        return JsonType("list", (element,))  # type: ignore[arg-type]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return None
        element = UNKNOWN
        for item in value.values():
            item_type = value_type(item)
            element = None if item_type is None or element is None else merge_types(element, item_type)
            if element is None:
                return None
        return JsonType("dict", (element,))  # type: ignore[arg-type]
    return None


def merge_types(a: JsonType, b: JsonType) -> JsonType | None:
    """The narrowest type covering both, learned from several examples."""
    if a == b:
        return a
    if a.kind == "unknown":
        return b
    if b.kind == "unknown":
        return a
    if {a.kind, b.kind} == {"int", "float"}:
        return FLOAT
    if a.kind == "optional" or b.kind == "optional" or NONE in (a, b):
        inner_a = a.args[0] if a.kind == "optional" else a
        inner_b = b.args[0] if b.kind == "optional" else b
        if inner_a == NONE:
            return _optional(inner_b)
        if inner_b == NONE:
            return _optional(inner_a)
        inner = merge_types(inner_a, inner_b)
        return None if inner is None else _optional(inner)
    if a.kind == b.kind and a.kind in ("list", "dict"):
        inner = merge_types(a.args[0], b.args[0])
        return None if inner is None else JsonType(a.kind, (inner,))
    return _union([a, b])


def refine(declared: JsonType, learned: JsonType | None) -> JsonType:
    """Fill the unknown parts of an annotation from a type learned from examples."""
    if learned is None or declared.resolved():
        return declared
    if declared.kind == "unknown":
        return learned
    if declared.kind == learned.kind and declared.kind in ("list", "dict"):
        return JsonType(declared.kind, (refine(declared.args[0], learned.args[0]),))
    if declared.kind == "optional":
        inner = learned.args[0] if learned.kind == "optional" else learned
        return _optional(refine(declared.args[0], inner))
    return declared


# ----------------------------------------------------------------------------- doctests


@dataclass
class _Examples:
    """Literal arguments seen in doctest calls of one function, per parameter position/name."""

    positional: list[list[Any]] = field(default_factory=list)
    keyword: list[dict[str, Any]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def _doctest_sources(docstring: str) -> list[tuple[str, str]]:
    """(source, expected output) of each ``>>>`` example in a docstring."""
    found: list[tuple[str, str]] = []
    lines = docstring.splitlines()
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped.startswith(">>>"):
            index += 1
            continue
        source = [stripped[3:].strip()]
        index += 1
        while index < len(lines) and lines[index].strip().startswith("..."):
            source.append(lines[index].strip()[3:].strip())
            index += 1
        expected = []
        while index < len(lines) and lines[index].strip() and not lines[index].strip().startswith(">>>"):
            expected.append(lines[index].strip())
            index += 1
        found.append((" ".join(source), " ".join(expected)))
    return found


def collect_examples(tree: ast.Module) -> dict[str, _Examples]:
    """Doctest calls with literal arguments, from every docstring in the module, by callee."""
    docstrings = [ast.get_docstring(tree) or ""]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            docstrings.append(ast.get_docstring(node) or "")
    examples: dict[str, _Examples] = {}
    for docstring in docstrings:
        for source, expected in _doctest_sources(docstring):
            try:
                call = ast.parse(source, mode="eval").body
            except SyntaxError:
                continue
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            try:
                args = [ast.literal_eval(arg) for arg in call.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
            except (ValueError, SyntaxError, TypeError):
                continue
            entry = examples.setdefault(call.func.id, _Examples())
            entry.positional.append(args)
            entry.keyword.append(kwargs)
            try:
                entry.results.append(ast.literal_eval(expected))
            except (ValueError, SyntaxError, TypeError):
                pass
    return examples


# ----------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class _Param:
    name: str
    type: JsonType
    samples: tuple[Any, ...]
    positional_only: bool
    description: str = ""


@dataclass(frozen=True)
class _Signature:
    params: tuple[_Param, ...]
    returns: JsonType | None


def _signature(fn: ast.FunctionDef, examples: _Examples | None) -> _Signature | str:
    """The JSON-typed inputs of ``fn``, or the reason it has none."""
    arguments = fn.args
    if arguments.vararg is not None:
        return f"takes *{arguments.vararg.arg}"
    ordered = [*arguments.posonlyargs, *arguments.args]
    defaults: dict[str, ast.expr] = {}
    for arg, default in zip(reversed(ordered), reversed(arguments.defaults)):
        defaults[arg.arg] = default
    for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults):
        if default is not None:
            defaults[arg.arg] = default
    keyword_only = {arg.arg for arg in arguments.kwonlyargs}
    params: list[_Param] = []
    for position, arg in enumerate([*ordered, *arguments.kwonlyargs]):
        samples: list[Any] = []
        if examples is not None:
            for args, kwargs in zip(examples.positional, examples.keyword):
                if arg.arg not in keyword_only and position < len(args):
                    samples.append(args[position])
                elif arg.arg in kwargs:
                    samples.append(kwargs[arg.arg])
        default = defaults.get(arg.arg)
        if default is not None:
            try:
                samples.append(ast.literal_eval(default))
            except (ValueError, SyntaxError, TypeError):
                pass
        declared = annotation_type(arg.annotation)
        learned: JsonType | None = UNKNOWN
        for sample in samples:
            sample_type = value_type(sample)
            learned = None if sample_type is None or learned is None else merge_types(learned, sample_type)
        resolved = refine(declared, learned) if declared is not None else None
        typed = resolved is not None and resolved.resolved() and resolved != NONE
        if arg.arg in defaults and (arg.arg in _STATE_PARAMS or not typed):
            continue
        if not typed:
            return f"parameter {arg.arg!r} has no JSON type"
        params.append(_Param(arg.arg, resolved, tuple(samples), arg in arguments.posonlyargs))  # type: ignore[arg-type]
    if not params:
        return "no parameters"
    returns: JsonType | None = None
    if fn.returns is not None:
        returns = annotation_type(fn.returns)
        if returns is None or returns == NONE:
            return "return type is not JSON"
        if not returns.resolved():
            returns = None
    if examples is not None and examples.results:
        learned_return: JsonType | None = UNKNOWN
        for result in examples.results:
            result_type = value_type(result)
            if result_type is None:
                return "an example returns a value that is not JSON"
            learned_return = None if learned_return is None else merge_types(learned_return, result_type)
        if returns is None and learned_return is not None and learned_return.resolved():
            returns = learned_return
    return _Signature(tuple(params), returns)


# ----------------------------------------------------------------------------- module analysis

_IO_BUILTINS = {"open", "input", "breakpoint"}
_IO_PREFIXES = (
    "os.", "subprocess", "socket", "urllib", "requests", "http", "shutil", "pathlib", "glob",
    "sqlite3", "tempfile", "ftplib", "smtplib", "webbrowser", "shelve", "sys.stdin", "sys.argv",
    "io.open", "numpy.load", "numpy.loadtxt", "numpy.save", "numpy.genfromtxt", "numpy.fromfile",
)
_HARMLESS_OS = {"os.path.join", "os.path.basename", "os.path.dirname", "os.path.splitext", "os.sep"}
_CLOCK = {
    "time.time", "time.time_ns", "time.perf_counter", "time.monotonic", "time.process_time",
    "time.localtime", "time.ctime", "datetime.datetime.now", "datetime.datetime.today",
    "datetime.datetime.utcnow", "datetime.date.today",
}
_SEEDED_FACTORIES = {"random.Random", "numpy.random.default_rng", "numpy.random.RandomState"}
_SEEDERS = {"random.seed", "numpy.random.seed"}
_MUTATING_METHODS = {
    "append", "extend", "insert", "update", "add", "setdefault", "pop", "popitem", "clear",
    "remove", "discard", "sort", "reverse",
}


def _is_main_guard(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    sides = [stmt.test.left, *stmt.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    texts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and texts == {"__main__"}


class _Imports:
    """Local name -> dotted module path, from the module's top-level imports."""

    def __init__(self, tree: ast.Module) -> None:
        self.names: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.names[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        self.names[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(self, node: ast.AST) -> str | None:
        """Dotted path of a Name/Attribute chain rooted at an import or builtin, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = self.names.get(node.id)
        if root is None:
            return f"builtins.{node.id}" if not parts and node.id in _IO_BUILTINS | {"id"} else None
        return ".".join([root, *reversed(parts)])


def _chains(nodes: list[ast.AST]) -> list[tuple[ast.AST, ast.Call | None]]:
    """Maximal Name/Attribute chains in ``nodes``, each with the Call it is the callee of."""
    found: list[tuple[ast.AST, ast.Call | None]] = []

    def visit(node: ast.AST, call: ast.Call | None) -> None:
        if isinstance(node, (ast.Attribute, ast.Name)):
            found.append((node, call))
            inner = node
            while isinstance(inner, ast.Attribute):
                inner = inner.value
            if not isinstance(inner, ast.Name):
                visit(inner, None)
            return
        if isinstance(node, ast.Call):
            visit(node.func, node)
            for child in [*node.args, *node.keywords]:
                visit(child, None)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, None)

    for node in nodes:
        visit(node, None)
    return found


def _effects(nodes: list[ast.AST], imports: _Imports) -> tuple[str | None, str | None]:
    """(I/O found, nondeterminism found) in ``nodes``, each a dotted name or None."""
    io_use = None
    random_uses: list[str] = []
    seeded = False
    for chain, call in _chains(nodes):
        dotted = imports.resolve(chain)
        if dotted is None or (dotted.startswith("builtins.") and call is None):
            continue
        if dotted in {f"builtins.{name}" for name in _IO_BUILTINS} or (
            dotted.startswith(_IO_PREFIXES) and dotted not in _HARMLESS_OS
        ):
            io_use = io_use or dotted
        if dotted in _CLOCK or dotted.startswith(("uuid", "secrets")) or dotted == "builtins.id":
            random_uses.append(dotted)
        elif dotted in _SEEDERS and call is not None and call.args:
            seeded = True
        elif dotted in _SEEDED_FACTORIES:
            if call is not None and not (call.args or call.keywords):
                random_uses.append(dotted + "()")
        elif dotted.startswith(("random.", "numpy.random.")) and dotted not in _SEEDERS | {"numpy.random.Generator"}:
            random_uses.append(dotted)
    unseeded = [use for use in random_uses if use.endswith("()") or use in _CLOCK or not seeded]
    return io_use, (unseeded[0] if unseeded else None)


def _bound_names(stmt: ast.stmt) -> set[str]:
    """Names a dropped top-level statement assigns or mutates."""
    names: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATING_METHODS
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(node.func.value.id)
        elif isinstance(node, ast.Global):
            names.update(node.names)
    return names


def _free_names(node: ast.AST) -> set[str]:
    """Global names a top-level statement reads (a function's own locals and parameters excluded).

    Approximate on purpose: a name stored anywhere inside a function counts as local to it.
    """
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return loaded
    local: set[str] = set()
    declared_global: set[str] = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, (ast.Store, ast.Del)):
            local.add(inner.id)
        elif isinstance(inner, ast.arg):
            local.add(inner.arg)
        elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and inner is not node:
            local.add(inner.name)
        elif isinstance(inner, (ast.Global, ast.Nonlocal)):
            declared_global.update(inner.names)
    if isinstance(node, ast.ClassDef):
        local -= _class_level_names(node)
    return (loaded - local) | (loaded & declared_global)


def _class_level_names(node: ast.ClassDef) -> set[str]:
    """Names stored directly in a class body: they are class attributes, not globals."""
    return {
        n.id for stmt in node.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


class _Module:
    """Top-level statements of a parsed file, split into what the refcode keeps and drops."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.imports = _Imports(tree)
        self.kept: list[ast.stmt] = []
        self.dropped: list[ast.stmt] = []
        for stmt in tree.body:
            (self.kept if self._keeps(stmt) else self.dropped).append(stmt)
        self.definitions: dict[str, list[ast.stmt]] = {}
        for stmt in self.kept:
            for name in self._defined_names(stmt):
                self.definitions.setdefault(name, []).append(stmt)

    def _keeps(self, stmt: ast.stmt) -> bool:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)):
            return True
        if isinstance(stmt, ast.Expr):
            return isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            io_use, _ = _effects([stmt], self.imports)
            return io_use is None and not any(
                isinstance(chain, ast.Name) and chain.id == "print" for chain, _ in _chains([stmt])
            )
        if isinstance(stmt, ast.If) and not _is_main_guard(stmt):
            return all(self._keeps(s) for s in [*stmt.body, *stmt.orelse])
        if isinstance(stmt, ast.Try):
            inner = [*stmt.body, *stmt.orelse, *stmt.finalbody]
            inner += [s for handler in stmt.handlers for s in handler.body]
            return all(self._keeps(s) for s in inner)
        return False

    @staticmethod
    def _defined_names(stmt: ast.stmt) -> set[str]:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return {stmt.name}
        names = set()
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
        return names

    def functions(self) -> list[ast.FunctionDef]:
        return [stmt for stmt in self.kept if isinstance(stmt, ast.FunctionDef)]

    def exported(self) -> set[str] | None:
        for stmt in self.kept:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets
            ):
                try:
                    names = ast.literal_eval(stmt.value)
                except (ValueError, SyntaxError, TypeError):
                    return None
                if not isinstance(names, (list, tuple)):
                    return None
                return {name for name in names if isinstance(name, str)}
        return None

    def reachable(self, entry: ast.FunctionDef) -> tuple[list[ast.stmt], set[str]]:
        """Kept statements the entry can reach by name, and the global names they read."""
        seen: list[ast.stmt] = []
        names: set[str] = set()
        pending: list[ast.stmt] = [entry]
        while pending:
            stmt = pending.pop()
            if any(stmt is s for s in seen):
                continue
            seen.append(stmt)
            loaded = _free_names(stmt)
            names |= loaded
            for name in loaded:
                pending.extend(self.definitions.get(name, []))
        return seen, names


def _callers(functions: list[ast.FunctionDef]) -> set[str]:
    """Names of module functions that some other module function calls."""
    names = {fn.name for fn in functions}
    called: set[str] = set()
    for fn in functions:
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id in names and node.id != fn.name:
                called.add(node.id)
    return called


# ----------------------------------------------------------------------------- docstrings

_SECTION = re.compile(r"^(args|arguments|parameters|params|returns?|yields?|raises|examples?|notes?)\s*:?\s*$", re.I)
_GOOGLE_PARAM = re.compile(r"^\*{0,2}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
_NUMPY_PARAM = re.compile(r"^(\w+)\s+:\s*.*$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[\w\[\], ]+\s+)?(\w+)\s*:\s*(.*)$")
_SPHINX_RETURN = re.compile(r"^:returns?\s*:\s*(.*)$")
_TYPE_PREFIX = re.compile(r"^[\w\[\]., |]+:\s+(.*)$")


def _docstring_parts(docstring: str) -> tuple[str, dict[str, str], str]:
    """(first paragraph, parameter descriptions, return description) of a docstring.

    Understands Google (``Args:``), numpy (``Parameters`` + dashes) and Sphinx (``:param x:``)
    layouts; anything else just yields the first paragraph.
    """
    lines = docstring.strip().splitlines()
    summary: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith((">>>", ":")) or _SECTION.match(stripped):
            break
        summary.append(stripped)
    params: dict[str, str] = {}
    returns: list[str] = []
    section = ""
    current: str | None = None
    base_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        sphinx = _SPHINX_PARAM.match(stripped)
        if sphinx:
            params[sphinx.group(1)] = sphinx.group(2).strip()
            continue
        sphinx_return = _SPHINX_RETURN.match(stripped)
        if sphinx_return:
            returns = [sphinx_return.group(1).strip()]
            continue
        header = _SECTION.match(stripped)
        if header and indent == 0:
            word = header.group(1).lower()
            section = "params" if word.startswith(("arg", "param")) else "returns" if word.startswith("return") else ""
            current, base_indent = None, None
            continue
        if stripped.startswith(">>>"):
            section, current = "", None  # examples end any section
            continue
        if not stripped or set(stripped) <= {"-", "="}:
            continue
        if base_indent is None:
            base_indent = indent
        if section == "params":
            google = _GOOGLE_PARAM.match(stripped)
            numpy_style = _NUMPY_PARAM.match(stripped)
            if indent <= base_indent and (google or numpy_style):
                current = (google or numpy_style).group(1)  # type: ignore[union-attr]
                params[current] = google.group(2).strip() if google else ""
            elif current is not None:
                params[current] = (params[current] + " " + stripped).strip()
        elif section == "returns":
            if not returns and indent <= base_indent:
                typed = _TYPE_PREFIX.match(stripped)
                if typed:
                    returns.append(typed.group(1))
                elif " " not in stripped:
                    continue  # a numpy-style bare type line
                else:
                    returns.append(stripped)
            else:
                returns.append(stripped)
    return " ".join(summary), params, " ".join(returns)


# ----------------------------------------------------------------------------- input generator

_TEXT_PARAMS = {"text", "sentence", "phrase", "message", "line", "paragraph", "document", "doc", "words_text"}
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _flatten(values: list[Any], kind: str) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if kind == "list" and isinstance(value, (list, tuple)):
            out.extend(value)
        elif kind == "dict" and isinstance(value, dict):
            out.extend(value.values())
    return out


def _int_range(samples: list[int], name: str) -> tuple[int, int]:
    if name == "seed" or name.endswith("_seed"):
        return 0, 1000
    if not samples:
        return 0, 20
    low, high = min(samples), max(samples)
    if len(samples) >= 4 and len(set(samples)) <= 2:
        return low, high  # flags such as the 0/1 cells of a grid
    magnitude = min(max(abs(low), abs(high), 10), 5000)
    if low < 0:
        return -magnitude, magnitude
    return (1 if low >= 1 else 0), magnitude


def _matches(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("list", "tuple"):
        return isinstance(value, (list, tuple))
    if kind == "dict":
        return isinstance(value, dict)
    return False


def _str_expr(samples: list[str], name: str, nested: bool) -> str:
    """A generator expression for a string, shaped after the example strings when there are any."""
    samples = [s for s in samples if isinstance(s, str)]
    if samples and any(samples):
        pool = "".join(samples)[:80]
        if " " in pool.strip():
            words = sorted({word for s in samples for word in s.split()})[:30]
            most = min(max(5, max(len(s.split()) for s in samples)), 10)
            return f"' '.join(random.choice({words!r}) for _ in range(random.randint(0, {most})))"
        if all(len(s) == 1 for s in samples):
            return f"random.choice({''.join(sorted(set(pool)))!r})"
        longest = min(max(8, max(len(s) for s in samples)), 30)
        shortest = 1 if nested else 0
        chars = f"''.join(random.choice({pool!r}) for _ in range(random.randint({shortest}, {longest})))"
        vocabulary = sorted(set(samples))
        if nested and len(vocabulary) >= 2:
            return f"(random.choice({vocabulary!r}) if random.random() < 0.75 else {chars})"
        return chars
    if name in _TEXT_PARAMS or name.endswith("_text"):
        word = "''.join(random.choice('abcdefg') for _ in range(random.randint(1, 5)))"
        return f"' '.join({word} for _ in range(random.randint(0, 6)))"
    if nested:
        return "''.join(random.choice('abcdefgh') for _ in range(random.randint(1, 4)))"
    return f"''.join(random.choice({_ALPHABET!r}) for _ in range(random.randint(0, 8)))"


def _generator_expr(kind: JsonType, samples: list[Any], name: str, level: int = 0) -> str:
    """Python expression drawing one value of ``kind``, in ranges learned from ``samples``."""
    if kind.kind == "int":
        low, high = _int_range([s for s in samples if _matches(s, "int")], name)
        return f"random.randint({low}, {high})"
    if kind.kind == "float":
        numbers = [float(s) for s in samples if _matches(s, "float")]
        low = min([0.0, *numbers])
        high = max([10.0, *numbers]) if numbers else 10.0
        low = -high if low < 0 else 0.0
        return f"round(random.uniform({low!r}, {high!r}), 2)"
    if kind.kind == "bool":
        return "random.choice([True, False])"
    if kind.kind == "none":
        return "None"
    if kind.kind == "str":
        return _str_expr(samples, name, nested=level > 0)
    if kind.kind == "optional":
        inner = _generator_expr(kind.args[0], [s for s in samples if s is not None], name, level)
        return f"(None if random.random() < 0.2 else {inner})"
    if kind.kind == "union":
        options = [
            "lambda: " + _generator_expr(option, [s for s in samples if _matches(s, option.kind)], name, level)
            for option in kind.args
        ]
        return f"random.choice([{', '.join(options)}])()"
    if kind.kind == "tuple":
        columns = [[s[i] for s in samples if isinstance(s, (list, tuple)) and len(s) > i] for i in range(len(kind.args))]
        return "[" + ", ".join(
            _generator_expr(option, column, name, level + 1) for option, column in zip(kind.args, columns)
        ) + "]"
    if kind.kind == "dict":
        dicts = [s for s in samples if isinstance(s, dict)]
        keys = sorted({key for d in dicts for key in d})
        value = _generator_expr(kind.args[0], _flatten(dicts, "dict"), name, level + 1)
        most = min(max(4, max((len(d) for d in dicts), default=0)), 6)
        key = _str_expr(keys, "", nested=True)
        return f"{{{key}: {value} for _ in range(random.randint(0, {most}))}}"
    if kind.kind == "list":
        lists = [s for s in samples if isinstance(s, (list, tuple))]
        element_kind = kind.args[0]
        element = _generator_expr(element_kind, _flatten(lists, "list"), name, level + 1)
        lengths = [len(s) for s in lists]
        container_elements = element_kind.kind in ("list", "tuple", "dict")
        cap = 6 if (level > 0 or container_elements) else 12
        floor = 4 if (level > 0 or container_elements) else 8
        most = min(max(floor, max(lengths, default=0)), cap)
        if level > 0 and lengths and len(set(lengths)) == 1 and lengths[0] > 0:
            return f"[{element} for _ in range({lengths[0]})]"
        if element_kind.kind == "list" and element_kind.args[0].kind in _SCALAR_KINDS:
            inner_lengths = {len(s) for lst in lists for s in lst if isinstance(s, (list, tuple))}
            if len(inner_lengths) != 1:
                inner = _generator_expr(element_kind.args[0], _flatten(_flatten(lists, "list"), "list"), name, level + 2)
                return (
                    f"(lambda _cols: [[{inner} for _ in range(_cols)] "
                    f"for _ in range(random.randint(0, {most}))])(random.randint(1, 4))"
                )
        return f"[{element} for _ in range(random.randint(0, {most}))]"
    raise ValueError(f"cannot generate {kind}")


def _kept_sorted(param: _Param) -> bool:
    """A list of scalars the function wants in order: its name says so (``sorted_values``), or
    every example of it with two or more items is in ascending order (two examples at least)."""
    if param.type.kind != "list" or param.type.args[0].kind not in ("int", "float", "str"):
        return False
    if "sorted" in param.name.lower():
        return True
    longer = [s for s in param.samples if isinstance(s, (list, tuple)) and len(s) >= 2]
    try:
        return len(longer) >= 2 and all(list(s) == sorted(s) for s in longer)
    except TypeError:  # mixed item types do not compare
        return False


def _generator_source(params: tuple[_Param, ...]) -> str:
    lines = [f"def {GENERATOR}():", "    import random", "", "    return {"]
    for param in params:
        expr = _generator_expr(param.type, list(param.samples), param.name)
        if _kept_sorted(param):
            expr = f"sorted({expr})"
        lines.append(f"        {param.name!r}: {expr},")
    lines.append("    }")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- assembly


def _refcode(source: str, module: _Module, entry: ast.FunctionDef, params: tuple[_Param, ...]) -> str:
    lines = source.splitlines()
    drop: set[int] = set()
    for stmt in module.dropped:
        drop.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    kept_lines = {
        line for stmt in module.kept
        for line in range(_first_line(stmt), (stmt.end_lineno or stmt.lineno) + 1)
    }
    if drop & kept_lines:  # statements sharing a line: fall back to regenerated text
        body = ast.unparse(ast.Module(body=module.kept, type_ignores=[]))
    else:
        body = "\n".join(line for number, line in enumerate(lines, 1) if number not in drop)
    body = re.sub(r"\n{3,}", "\n\n\n", body.rstrip()) + "\n"
    if entry.name == ENTRY_POINT:
        return body
    names = ", ".join(p.name for p in params)
    call = ", ".join(p.name if p.positional_only else f"{p.name}={p.name}" for p in params)
    return body + f"\n\ndef {ENTRY_POINT}({names}):\n    return {entry.name}({call})\n"


def _first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


def _io_description(params: tuple[_Param, ...], returns: JsonType | None, docs: dict[str, str], returns_doc: str) -> str:
    lines = ["Input:"]
    for param in params:
        text = f"  - `{param.name}` ({param.type.describe()})"
        if docs.get(param.name):
            text += f": {docs[param.name]}"
        lines.append(text)
    lines.append("Output:")
    text = f"  - return value ({returns.describe() if returns else 'JSON value'})"
    if returns_doc:
        text += f": {returns_doc}"
    lines.append(text)
    return "\n".join(lines)


def _join_names(names: list[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


_QUESTIONS = (
    "Given {names}, what does `{fn}` return?",
    "What result is produced for particular values of {names}?",
    "For given {names}, what is the output of `{fn}`?",
    "If you are handed {names}, what value comes back from `{fn}`?",
)


def _query(entry: ast.FunctionDef, params: tuple[_Param, ...], summary: str) -> str:
    names = _join_names([p.name for p in params])
    if not summary:
        summary = f"The function `{entry.name}` takes {names} and computes a result from them."
    pick = int(hashlib.sha256(entry.name.encode()).hexdigest(), 16) % len(_QUESTIONS)
    return summary + "\n\n" + _QUESTIONS[pick].format(names=names, fn=entry.name)


def offline_transform(source: str) -> OfflineFunction | NeedsLLM:
    """Unified-format record for ``source``, or why it needs an LLM (see the module docstring)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return NeedsLLM("syntax_error", str(exc).splitlines()[0][:120])
    module = _Module(tree)
    functions = [
        fn for fn in module.functions()
        if not fn.name.startswith("_") and fn.name not in ("main", GENERATOR)
    ]
    exported = module.exported()
    if exported is not None and any(fn.name in exported for fn in functions):
        functions = [fn for fn in functions if fn.name in exported]
    if not functions:
        return NeedsLLM("no_public_function", "no public module-level function to call")
    examples = collect_examples(tree)
    eligible: list[tuple[ast.FunctionDef, _Signature]] = []
    failures: list[str] = []
    for fn in functions:
        signature = _signature(fn, examples.get(fn.name))
        if isinstance(signature, str):
            failures.append(f"{fn.name}: {signature}")
        else:
            eligible.append((fn, signature))
    if not eligible:
        return NeedsLLM("no_json_typed_entry", "; ".join(failures)[:200])
    called = _callers(module.functions())
    order = {fn.name: index for index, fn in enumerate(functions)}
    entry, signature = max(
        eligible,
        key=lambda item: (
            item[0].name not in called,
            ast.get_docstring(item[0]) is not None,
            len(item[1].params),
            order[item[0].name],
        ),
    )
    reached, globals_used = module.reachable(entry)
    for stmt in module.dropped:
        if _is_main_guard(stmt):
            continue
        touched = _bound_names(stmt) & globals_used
        if touched:
            return NeedsLLM("side_effects_at_top_level", f"{sorted(touched)[0]!r} is set by top-level code")
    io_use, randomness = _effects(list(reached), module.imports)
    if io_use:
        return NeedsLLM("performs_io", f"{entry.name} reaches {io_use}")
    if randomness:
        return NeedsLLM("nondeterministic", f"{entry.name} reaches {randomness}")
    defined = {name for name in module.definitions}
    if GENERATOR in defined or (ENTRY_POINT in defined and entry.name != ENTRY_POINT):
        return NeedsLLM("name_collision", f"the file already defines {ENTRY_POINT} or {GENERATOR}")
    if any(p.name in (entry.name, ENTRY_POINT) for p in signature.params):
        return NeedsLLM("name_collision", "a parameter shadows the entry function")
    summary, param_docs, returns_doc = _docstring_parts(ast.get_docstring(entry) or "")
    params = tuple(
        _Param(p.name, p.type, p.samples, p.positional_only, param_docs.get(p.name, ""))
        for p in signature.params
    )
    return OfflineFunction(
        refcode=_refcode(source, module, entry, params),
        input_generator=_generator_source(params),
        io_description=_io_description(params, signature.returns, param_docs, returns_doc),
        query=_query(entry, params, summary),
        arg_names=tuple(p.name for p in params),
        entry=entry.name,
    )
