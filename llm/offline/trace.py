"""Execution traces that ground the offline chain-of-thought answers.

The tracer itself lives in ``_child_tracer.py`` and is shipped as text: ``TRACER_SOURCE`` is
appended to a function's refcode and run in a sandbox child, for example::

    pool.run(refcode + TRACER_SOURCE,
             calls=[tracer_call(kwargs, refcode=refcode)],
             entry=TRACER_ENTRY, limits=Limits(check_size=False, output_bytes=64_000))

The child returns a bounded record (calls, local-variable changes, branch and loop counts, the
return value); a million-iteration loop yields a record of a few kilobytes. Branch and loop
facts need the source text: the child reads it from ``linecache`` (this project's sandbox
registers the program there) or from a ``source`` argument (``tracer_call(..., refcode=...)``).
A record made without either has ``summarized`` False; :func:`annotate_trace` completes it
outside the sandbox with the same summarizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm.offline import _child_tracer

TRACER_ENTRY = "__codeio_trace__"
DEFAULT_BUDGET_EVENTS = 2000

# Leading newlines: the refcode may not end with one, and line numbers of the user code must
# stay those of the refcode.
TRACER_SOURCE: str = "\n\n" + Path(_child_tracer.__file__).read_text(encoding="utf-8")


def tracer_call(
    kwargs: dict[str, Any], budget_events: int = DEFAULT_BUDGET_EVENTS, refcode: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of one ``__codeio_trace__`` call for the sandbox's ``calls`` list."""
    call: dict[str, Any] = {
        "kwargs_json": json.dumps(kwargs, sort_keys=True, ensure_ascii=False),
        "budget_events": budget_events,
    }
    if refcode is not None:
        call["source"] = refcode
    return call


def annotate_trace(trace: dict[str, Any], refcode: str) -> dict[str, Any]:
    """Add branch and loop facts with source text to a trace made without the source.

    A trace that is already summarized is returned unchanged.
    """
    return _child_tracer.__codeio_summarize__(trace, refcode)
