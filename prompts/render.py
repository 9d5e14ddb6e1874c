"""Prompt rendering: the text files in ``prompts/templates`` filled with ``$name`` fields.

Templates use :class:`string.Template` syntax, so braces in code and JSON (in the templates or in
the values) are ordinary text; only ``$name``/``${name}`` is a field and ``$$`` a literal dollar.
Rendering is strict: a missing or an unexpected field is an error, never a silent blank.
Templates are read once through :mod:`importlib.resources`, so they work from an installed wheel.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from string import Template
from typing import Any, Literal

from prompts.entry_params import EntryParams

Message = dict[str, str]

_SECTION_HEADER = re.compile(r"^\[\[([a-z_]+)\]\]\s*$")

# Limits stated in the transform prompt; they mirror the sandbox's size check (paper appendix A).
DEFAULT_MAX_BYTES = 1024
DEFAULT_MAX_ITEMS = 20
DEFAULT_MAX_CHARS = 100

# Long values are cut in feedback texts so one huge output cannot flood the revision prompt.
_FEEDBACK_VALUE_CHARS = 600


@functools.cache
def load_template(name: str) -> str:
    """The text of ``templates/<name>``, read once per process."""
    return resources.files(__package__).joinpath("templates").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def load_sections(name: str) -> dict[str, str]:
    """A sectioned template file (``[[section]]`` header lines) as {section: text}.

    Lines before the first header that start with ``#`` are comments. Each section's text has its
    surrounding blank lines removed.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in load_template(name).splitlines():
        header = _SECTION_HEADER.match(line)
        if header:
            if header.group(1) in sections:
                raise ValueError(f"template {name}: duplicate section {header.group(1)!r}")
            current = sections.setdefault(header.group(1), [])
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"template {name}: text before the first section: {line!r}")
    return {key: "\n".join(lines).strip("\n") for key, lines in sections.items()}


@functools.lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[Template, frozenset[str]]:
    """A template checked once, with its slot names (templates are few; fills are many)."""
    tmpl = Template(template)
    if not tmpl.is_valid():
        raise ValueError("template has a stray '$' (write '$$' for a literal dollar)")
    return tmpl, frozenset(tmpl.get_identifiers())


def fill(template: str, fields: Mapping[str, str]) -> str:
    """Substitute ``fields`` into ``template``; every field must be used and every slot filled."""
    tmpl, wanted = _parsed(template)
    given = set(fields)
    if wanted != given:
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        raise TypeError(f"template fields mismatch: missing={missing} unexpected={extra}")
    return tmpl.substitute(fields)


def template_digest(names: Iterable[str] | None = None) -> str:
    """sha256 over the named template files (all of them when None), names and texts: the
    stages that render a template put its digest in their config key, so an edited template
    makes them (and what follows) run again."""
    if names is None:
        folder = resources.files(__package__).joinpath("templates")
        names = [entry.name for entry in folder.iterdir() if entry.name.endswith(".txt")]
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0" + load_template(name).encode() + b"\0")
    return digest.hexdigest()


def prompt_json(value: Any) -> str:
    """JSON as shown to the model: sorted keys (canonical), readable separators, NaN allowed."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _user(content: str) -> Message:
    return {"role": "user", "content": content}


def render_transform(
    raw_code: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Message]:
    """Chat messages asking the LLM to rewrite ``raw_code`` into the unified four-part format."""
    text = fill(
        load_template("transform.txt"),
        {
            "raw_code": raw_code.strip("\n"),
            "max_bytes": str(max_bytes),
            "max_items": str(max_items),
            "max_chars": str(max_chars),
        },
    )
    return [_user(text.rstrip() + "\n")]


def render_prediction(
    kind: Literal["input", "output"],
    query: str,
    io_description: str,
    given: Any,
    refcode: str | None,
    arg_names: Sequence[str] | EntryParams,
) -> list[Message]:
    """Chat messages for one prediction task.

    ``given`` is the input kwargs dict (kind='output') or the output value (kind='input'), shown
    as sorted-key JSON. ``refcode=None`` leaves out the reference-code hint (the paper's
    data-format ablation). ``arg_names`` are listed for input prediction (given as
    ``EntryParams``, the ones with a default are listed last, as optional; plain names are all
    required); output prediction accepts them for a uniform call but does not show them.
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    tip = "" if refcode is None else fill(load_template("reference_tip.txt"), {"refcode": refcode.strip("\n")})
    fields = {
        "query": query.strip(),
        "io_description": io_description.strip(),
        "given": prompt_json(given),
        "tip": tip,
    }
    if kind == "input":
        if not (arg_names.names if isinstance(arg_names, EntryParams) else arg_names):
            raise ValueError("input prediction needs the argument names of main_solution")
        fields["arg_names"] = _quoted_names(arg_names)
    text = fill(load_template(f"predict_{kind}.txt"), fields)
    return [_user(text.rstrip() + "\n")]


def _quoted_names(names: Sequence[str] | EntryParams) -> str:
    """The names as JSON strings: '"n", "k"'; with optional ones '"n" and optionally "mod"'.
    Without optional names the text is what it always was, so those prompts (and their cached
    answers) stay the same."""
    if not isinstance(names, EntryParams):
        return ", ".join(json.dumps(name) for name in names)
    required = ", ".join(json.dumps(name) for name in names.required)
    optional = ", ".join(json.dumps(name) for name in names.names if name in names.optional)
    if not optional:
        return required
    return f"{required} and optionally {optional}" if required else f"optionally {optional}"


def _feedback_value(value: Any) -> str:
    text = prompt_json(value)
    if len(text) > _FEEDBACK_VALUE_CHARS:
        text = text[:_FEEDBACK_VALUE_CHARS] + "…"
    return text


def _feedback_text(value: Any) -> str:
    text = " ".join(str(value).split())
    if len(text) > _FEEDBACK_VALUE_CHARS:
        text = text[:_FEEDBACK_VALUE_CHARS] + "…"
    return text


# How each detail is written into a feedback text.
_FEEDBACK_FORMATTERS = {
    "predicted": _feedback_value,
    "actual_output": _feedback_value,
    "given_output": _feedback_value,
    "error_type": _feedback_text,
    "error_message": _feedback_text,
    "detail": _feedback_text,
    "arg_names": _quoted_names,
}

VERDICTS = ("correct", "wrong", "exception", "timeout", "no_answer", "bad_format")


def render_feedback(verdict: str, **details: Any) -> str:
    """The execution-feedback text for one verdict.

    Details per verdict (``kind`` is accepted by all, required where marked):

    - ``correct``: none.
    - ``wrong``: ``kind`` required. kind='output': ``predicted``; the expected output is never
      revealed. kind='input': ``predicted``, ``actual_output`` (what the predicted input
      produced), ``given_output``.
    - ``exception``: ``predicted``, ``error_type``, ``error_message``.
    - ``timeout``: ``predicted``.
    - ``no_answer``: none.
    - ``bad_format``: ``kind`` required and ``detail`` (what is wrong); kind='input' also
      ``arg_names`` (the expected keys, names or ``EntryParams`` as for ``render_prediction``).

    JSON values are written as sorted-key JSON; long values and messages are shortened.
    A missing or unexpected detail raises TypeError.
    """
    kind = details.pop("kind", None)
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
    if kind not in (None, "input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    section = verdict
    if verdict in ("wrong", "bad_format"):
        if kind is None:
            raise TypeError(f"verdict {verdict!r} needs kind='input' or kind='output'")
        section = f"{verdict}_{kind}"
    unknown = sorted(set(details) - set(_FEEDBACK_FORMATTERS))
    if unknown:
        raise TypeError(f"unexpected feedback details: {unknown}")
    fields = {name: _FEEDBACK_FORMATTERS[name](value) for name, value in details.items()}
    return fill(load_sections("feedback.txt")[section], fields)


def render_revision(feedback: str) -> Message:
    """The user message of a revision turn: the feedback and a request for a new answer."""
    return _user(fill(load_template("revise.txt"), {"feedback": feedback.strip()}).rstrip() + "\n")


def assemble_multiturn(turns: Sequence[str], feedbacks: Sequence[str]) -> str:
    """The CODEI/O++ response: turns and feedbacks joined by fixed connecting phrases.

    Exact shape, for turns t1..tn (each right-stripped) and feedbacks f1..fk (each stripped),
    with k == n or k == n - 1::

        t1 + "\\n\\n" + "Execution feedback: " + f1 + "\\n\\n"
           + "Let me reconsider the problem with this feedback in mind and work through it again."
           + "\\n\\n" + t2 + ... + tn
           [+ "\\n\\n" + "Execution feedback: " + fn]      # only when k == n

    So two turns with two feedbacks give turn 1 + feedback 1 + turn 2 + feedback 2; one turn
    with one feedback gives turn 1 + feedback 1; one turn with none gives turn 1 unchanged
    (apart from trailing whitespace).
    """
    if not turns:
        raise ValueError("assemble_multiturn needs at least one turn")
    if len(feedbacks) not in (len(turns), len(turns) - 1):
        raise ValueError(
            f"{len(turns)} turns need {len(turns) - 1} or {len(turns)} feedbacks, got {len(feedbacks)}"
        )
    phrases = load_sections("multiturn.txt")
    retry = fill(phrases["retry"], {})
    parts = [turns[0].rstrip()]
    for index, feedback in enumerate(feedbacks):
        parts.append(fill(phrases["feedback"], {"feedback": feedback.strip()}))
        if index + 1 < len(turns):
            parts.append(retry)
            parts.append(turns[index + 1].rstrip())
    return "\n\n".join(parts)
