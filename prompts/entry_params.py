"""Which input dicts an entry point takes, read from its signature.

Every input is passed as ``main_solution(**input)``. An input fits when its keys include each
parameter without a default and every key is a parameter the entry point takes by keyword; a
parameter with a default may be left out. ``*args`` adds no key (a keyword call never fills
it). A ``**kwargs`` parameter takes any further key, so an entry point with one accepts keys
beyond its named parameters. ``prompts.answers.check_input_keys`` applies this rule, to
generated inputs and to predicted ones alike.

The names are the ones stored with the function (``functions.arg_names``); which of them have
defaults, and whether there is ``**kwargs``, is read from the code with ``ast`` where rows are
used, so functions stored before this rule need no migration.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EntryParams:
    """The keyword parameters of an entry point, as its input dicts must have them."""

    names: tuple[str, ...]  # every named parameter, in signature order
    optional: frozenset[str] = frozenset()  # those with a default: an input may leave them out
    extra_keys: bool = False  # a ``**kwargs`` parameter: keys beyond ``names`` are taken too

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name not in self.optional)


@functools.lru_cache(maxsize=1024)
def _entry_params(code: str, entry: str, arg_names: tuple[str, ...]) -> EntryParams:
    strict = EntryParams(arg_names)
    # Most entry points have neither defaults nor **kwargs: when the text of the last
    # `def entry(` up to its first ')' has no '=', '*', '(' or '#', there is nothing a parse
    # could find (a parse costs 0.1-0.5 ms, and the prompts stage asks once per pair).
    head = code.rfind(f"def {entry}(")
    close = code.find(")", head) if head >= 0 else -1
    if close >= 0 and not any(mark in code[head + len(entry) + 5 : close] for mark in "=*(#"):
        return strict
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return strict  # the run will fail and say why; the keys are checked as before
    defs = [node for node in module.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry]
    if not defs:
        return strict
    args = defs[-1].args  # Python keeps the last definition
    positional = args.posonlyargs + args.args
    defaulted = {a.arg for a in positional[len(positional) - len(args.defaults):]} if args.defaults else set()
    defaulted |= {a.arg for a, default in zip(args.kwonlyargs, args.kw_defaults) if default is not None}
    return EntryParams(arg_names, frozenset(name for name in arg_names if name in defaulted), args.kwarg is not None)


def entry_params(code: str, entry: str, arg_names: Sequence[str]) -> EntryParams:
    """The parameters of ``entry`` in ``code`` (the program its calls run) under the stored
    ``arg_names``. When the entry point is not a plain module-level ``def`` (or the code does
    not parse), every name is taken as required and no other key as accepted: the rule that
    held before defaults were read."""
    return _entry_params(code, entry, tuple(arg_names))
