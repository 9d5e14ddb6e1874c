"""Chain-of-thought answers written from real execution, for the offline provider.

``narrate_output_prediction`` walks through a trace made by ``llm.offline.trace`` (calls,
loops, branches, how key variables changed) and ends with ```json {"output": ...}```;
``narrate_input_prediction`` reasons over candidate inputs whose outputs were obtained by
running them, rejects those that miss and ends with ```json {"input": {...}}```. Both are
correct by construction and stay within a token budget (about four characters a token): middle
detail is dropped first, the final answer never.

These texts are not a substitute for an LLM's free-form reasoning. They are templated, with
phrasing varied deterministically per input, and the CodeI/O paper found templated
trajectories weaker training data than model-written ones; they exist so the pipeline runs
end to end on a machine without a model.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from typing import Any

_MISSING = object()
_CHARS_PER_TOKEN = 4
_VALUE_CHARS = 80
_MAX_LOOPS = 6
_MAX_BRANCHES = 8
_MAX_VARS = 5
_MAX_HELPERS = 4
_MAX_CANDIDATES = 8


# ----------------------------------------------------------------------------- rendering


def _render(value: Any) -> str:
    """Compact JSON-like text of a (possibly abridged) value; ``{"__repr__": r}`` shows as r."""
    if isinstance(value, dict):
        if set(value) == {"__repr__"}:
            return str(value["__repr__"])
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _show(value: Any, limit: int = _VALUE_CHARS) -> str:
    text = _render(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arguments(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"`{name}` = {_show(value)}" for name, value in kwargs.items()) or "no arguments"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _answer_block(key: str, value: Any) -> str:
    return "```json\n" + json.dumps({key: value}, sort_keys=True, ensure_ascii=False) + "\n```"


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256("\x1f".join(_canonical(p) for p in parts).encode("utf-8")).hexdigest()
    return random.Random(int(digest[:16], 16))


def _output_type(io_description: str) -> str | None:
    """The return type named in an I/O description ("- return value (list of int): ...")."""
    tail = io_description.split("Output:", 1)[-1] if "Output:" in io_description else ""
    found = re.search(r"\(([^()]{1,60})\)", tail)
    return found.group(1) if found and found.group(1) != "JSON value" else None


def _fit(
    intro: list[str], details: list[str], ending: str, max_tokens: int, skipped_note: str,
    tail: str = "",
) -> str:
    """Join the parts within ``max_tokens`` (about four characters a token).

    Room goes first to ``ending`` (always kept), then the intro, then ``tail`` (the sentence
    leading to the answer), then the middle ``details`` in order; dropped details leave a note.
    """
    budget = max_tokens * _CHARS_PER_TOKEN
    room = budget - len(ending)
    head = "\n\n".join(intro)
    if len(head) + 2 > room:
        head = ""
    room -= len(head) + 2 if head else 0
    if len(tail) + 2 > room:
        tail = ""
    room -= len(tail) + 2 if tail else 0
    room -= len(skipped_note) + 2
    kept: list[str] = []
    dropped = False
    for detail in details:
        if len(detail) + 2 <= room:
            kept.append(detail)
            room -= len(detail) + 2
        else:
            dropped = True
    if dropped and room >= 0:
        kept.append(skipped_note)
    return "\n\n".join(part for part in (head, *kept, tail, ending) if part)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, floats within a relative 1e-9."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            if math.isnan(a) and math.isnan(b):
                return True
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(map(str, a)) == set(map(str, b)) and all(_same(a[k], b.get(k, b.get(str(k)))) for k in a)
    return a == b


# ----------------------------------------------------------------------------- output prediction

_OPENINGS = (
    "We need the value returned when the code runs with {args}.",
    "Let me trace the execution step by step with {args}.",
    "The task is to predict the result for {args}; I will follow the code as it runs.",
    "Start from the inputs {args} and follow what the code does with them.",
)
_TYPE_HINTS = (
    "According to the description, the result is {kind}.",
    "The answer should be {kind}.",
    "We are looking for {kind}.",
)
_FORWARDS = (
    "`main_solution` just passes its arguments on to `{fn}`.",
    "The entry point `main_solution` hands everything to `{fn}`.",
    "All the work happens in `{fn}`, which `main_solution` calls directly.",
)
_LEADS = ("Along the way ", "In addition, ", "Also, ")
_ENDINGS = (
    "So the function returns {value}.",
    "Therefore the output is {value}.",
    "Putting it together, the result is {value}.",
    "That gives the final result {value}.",
)


def _calls_part(trace: dict[str, Any], rng: random.Random) -> tuple[list[str], str | None]:
    """Sentences about who calls whom, and the name of the function doing the work."""
    calls = trace.get("calls") or []
    counts: dict[str, int] = trace.get("call_counts") or {}
    sentences: list[str] = []
    worker = None
    helpers = 0
    if len(calls) > 1 and calls[0].get("fn") == "main_solution" and calls[1].get("depth") == calls[0].get("depth", 1) + 1:
        worker = calls[1]["fn"]
        sentences.append(rng.choice(_FORWARDS).format(fn=worker))
    for name, count in counts.items():
        if name == "main_solution":
            continue
        own = [c for c in calls if c.get("fn") == name]
        depths = {c.get("depth", 0) for c in own}
        if count > 1 and len(depths) > 1:
            levels = max(trace.get("max_depth", 0) - min(depths) + 1, 2)
            sentences.append(
                f"`{name}` is recursive: it is called {_times(count)} in all, nesting up to {levels} levels deep."
            )
            finished = [c for c in own if "ret" in c][-3:]
            if finished:
                shown = "; ".join(f"`{name}({_arguments_plain(c['args'])})` returns {_show(c['ret'], 40)}" for c in finished)
                sentences.append(f"For instance, {shown}.")
        elif name == worker or helpers >= _MAX_HELPERS:
            continue
        elif name.endswith(".__init__"):
            made = "one `{0}` object is" if count == 1 else "{1} `{0}` objects are"
            lead = _LEADS[min(helpers, len(_LEADS) - 1)]
            helpers += 1
            sentences.append(lead + made.format(name[: -len(".__init__")], count) + " created.")
        elif own:
            ret = f", which returns {_show(own[0]['ret'], 40)}" if own[0].get("ret") is not None else ""
            lead = _LEADS[min(helpers, len(_LEADS) - 1)]
            helpers += 1
            sentences.append(
                f"{lead}the helper `{name}` is called {_times(count)}; the first call is "
                f"`{name}({_arguments_plain(own[0]['args'])})`{ret}."
            )
        else:
            helpers += 1
            sentences.append(f"The helper `{name}` is called {_times(count)}.")
    return sentences, worker


def _arguments_plain(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v, 30)}" for k, v in args.items() if k not in ("self", "cls"))


def _loops_part(trace: dict[str, Any], rng: random.Random) -> tuple[list[str], set[tuple[str, str]]]:
    sentences: list[str] = []
    covered: set[tuple[str, str]] = set()
    complete = trace.get("complete", True)
    for loop in sorted(trace.get("loops") or [], key=lambda item: item["line"])[:_MAX_LOOPS]:
        count = loop.get("iterations")
        text = loop.get("text") or f"loop on line {loop['line']}"
        if count is None:
            continue
        bound = "at least " if not complete else ""
        if count == 0:
            sentences.append(f"The loop `{text}` (line {loop['line']}) never enters its body.")
            continue
        if loop["kind"] == "for":
            sentence = rng.choice((
                "The loop `{text}` (line {line}) runs {bound}{n}.",
                "`{text}` (line {line}) iterates {bound}{n}.",
                "On line {line}, `{text}` goes round {bound}{n}.",
            )).format(text=text, line=loop["line"], bound=bound, n=_times(count))
        else:
            sentence = rng.choice((
                "The condition of `{text}` (line {line}) holds {bound}{n} before it fails.",
                "`{text}` (line {line}) repeats its body {bound}{n}.",
            )).format(text=text, line=loop["line"], bound=bound, n=_times(count))
        described = []
        for name, seen in (loop.get("vars") or {}).items():
            first = seen.get("first") or []
            if not first:
                continue
            covered.add((loop.get("function", ""), name))
            values = ", ".join(_show(v, 30) for v in first)
            more = count > len(first) if loop["kind"] == "for" else False
            last = seen.get("last", _MISSING)
            if more and last is not _MISSING and _canonical(last) != _canonical(first[-1]):
                described.append(f"`{name}` takes {values}, ... and finally {_show(last, 30)}")
            else:
                described.append(f"`{name}` takes {values}{', ...' if more else ''}")
        if described:
            sentence += " " + "; ".join(described) + "."
        sentences.append(sentence)
    return sentences, covered


def _branches_part(trace: dict[str, Any], rng: random.Random) -> list[str]:
    sentences: list[str] = []
    branches = [b for b in trace.get("branches") or [] if b.get("kind") == "if"]
    for branch in sorted(branches, key=lambda item: item["line"])[:_MAX_BRANCHES]:
        text = branch.get("text") or f"if on line {branch['line']}"
        true, false = branch.get("true"), branch.get("false")
        if true is None or false is None:
            sentences.append(f"The test in `{text}` (line {branch['line']}) is evaluated {_times(branch['evaluated'])}.")
            continue
        if true + false == 1:
            outcome = "true" if true else "false"
            sentences.append(rng.choice((
                "The check `{text}` (line {line}) is {outcome}, so {path}.",
                "At line {line}, `{text}` evaluates to {outcome}; {path}.",
            )).format(
                text=text, line=branch["line"], outcome=outcome,
                path="its body runs" if true else "its body is skipped",
            ))
            continue
        if not true or not false:
            sentences.append(
                f"`{text}` (line {branch['line']}) is {'true' if true else 'false'} every time "
                f"it is checked ({_times(true + false)})."
            )
            continue
        sentence = rng.choice((
            "The condition `{text}` (line {line}) is true {t} and false {f}.",
            "`{text}` (line {line}) succeeds {t} and fails {f}.",
            "Of the {n} checks of `{text}` (line {line}), {tc} are true and {fc} false.",
        )).format(text=text, line=branch["line"], t=_times(true), f=_times(false), n=true + false, tc=true, fc=false)
        first = branch.get("first") or []
        if len(first) > 1:
            order = ", ".join("true" if x else "false" for x in first[:6])
            sentence += f" In order, the first outcomes are: {order}."
        sentences.append(sentence)
    return sentences


def _is_function(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("__repr__", "")).startswith(("<function", "<bound method"))


def _changes_part(trace: dict[str, Any], worker: str | None, covered: set[tuple[str, str]]) -> list[str]:
    focus = worker or "main_solution"
    by_var: dict[str, list[Any]] = {}
    for change in trace.get("changes") or []:
        if change.get("fn") != focus or (focus, change.get("var")) in covered:
            continue
        by_var.setdefault(change["var"], []).append(change["value"])
    final = (trace.get("final_locals") or {}).get(focus, {})
    sentences = []
    by_var = {name: values for name, values in by_var.items() if not all(_is_function(v) for v in values)}
    for name, values in list(by_var.items())[:_MAX_VARS]:
        path = " -> ".join(_show(v, 40) for v in values[:6])
        if len(values) > 6:
            path += " -> ..."
        changed_later = name in final and _canonical(final[name]) != _canonical(values[-1])
        if changed_later:
            path += f" -> ... -> {_show(final[name], 40)} at the end"
        if len(values) == 1 and not changed_later:
            sentences.append(f"`{name}` is set to {path}.")
        else:
            sentences.append(f"`{name}` evolves as {path}.")
    if not sentences:
        return []
    return ["Tracking the variables of `" + focus + "`: " + " ".join(sentences)]


def narrate_output_prediction(
    trace: dict[str, Any], given_input: dict[str, Any], io_description: str, max_tokens: int,
    *, output: Any = _MISSING,
) -> str:
    """A walk through the traced run ending with ```json {"output": value}```.

    The value is ``output`` when given (the recorded output), else the trace's exact return
    value (``return_value`` with ``return_exact``, or ``return``). Raises ValueError when
    neither is known.
    """
    if output is _MISSING:
        if "return_value" in trace and trace.get("return_exact") and trace.get("status", "ok") == "ok":
            output = trace["return_value"]
        elif "return" in trace:
            output = trace["return"]
        else:
            raise ValueError("the trace carries no exact return value; pass output=")
    rng = _rng("output", given_input, io_description)
    intro = [rng.choice(_OPENINGS).format(args=_arguments(given_input))]
    kind = _output_type(io_description)
    if kind:
        intro[0] += " " + rng.choice(_TYPE_HINTS).format(kind=_with_article(kind))
    details: list[str] = []
    call_sentences, worker = _calls_part(trace, rng)
    if call_sentences:
        details.append(" ".join(call_sentences))
    loop_sentences, covered = _loops_part(trace, rng)
    details.extend(loop_sentences)
    details.extend(_branches_part(trace, rng))
    details.extend(_changes_part(trace, worker, covered))
    if trace.get("complete") is False:
        details.append(
            f"The computation runs far longer than is worth following line by line (I followed its "
            f"first {trace.get('events', 'many')} steps); the same pattern simply continues until it finishes."
        )
    if "return_value" in trace and trace.get("return_exact") and not _same(trace["return_value"], output):
        details.append("(The traced run and the recorded run disagree; I go with the recorded result.)")
    ending = rng.choice(_ENDINGS).format(value=_show(output, 200)) + "\n\n" + _answer_block("output", output)
    return _fit(intro, details, ending, max_tokens, "(Some intermediate steps are left out for brevity.)")


# ----------------------------------------------------------------------------- input prediction

_INPUT_OPENINGS = (
    "We need an input for which the function returns {out}.",
    "The goal is to find arguments that make the code produce {out}.",
    "Which input leads to the output {out}? Let me work it out.",
)
_STRATEGIES = (
    "Instead of inverting the code symbolically, I will try plausible inputs and check what each one produces.",
    "A practical approach: propose candidate inputs, run them through the logic, and keep the one that matches.",
    "I'll test a few candidates against the target and discard those that miss.",
)
_REJECTIONS = (
    "Trying {args}: this gives {out}, which {why}, so it is not the one.",
    "With {args} the result is {out}; that {why}. Rejected.",
    "Consider {args}. It produces {out}, and {out_short} {why}, so move on.",
)
_ACCEPTS = (
    "Now {args}: the function returns {out}, exactly the target.",
    "Next, {args}. This yields {out}, which matches the required output.",
    "Finally {args}: the result is {out}, the value we want.",
)


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _why_different(got: Any, want: Any) -> str:
    """A short reason why ``got`` is not ``want``."""
    if _type_word(got) != _type_word(want):
        return f"is a {_type_word(got)} where a {_type_word(want)} is needed"
    if isinstance(got, bool):
        return f"is not the {json.dumps(want)} we need"
    if isinstance(got, (int, float)):
        gap = want - got
        direction = "too small" if gap > 0 else "too large"
        return f"is {direction} by {_show(abs(gap), 30)}"
    if isinstance(got, str):
        if len(got) != len(want):
            return f"has {len(got)} characters instead of {len(want)}"
        index = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        return f"differs from the target at position {index}"
    if isinstance(got, (list, tuple)):
        if len(got) != len(want):
            return f"has {len(got)} items where {len(want)} are needed"
        index = next((i for i, (a, b) in enumerate(zip(got, want)) if not _same(a, b)), 0)
        return f"differs at index {index} ({_show(got[index], 30)} instead of {_show(want[index], 30)})"
    if isinstance(got, dict):
        if set(got) != set(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            if missing:
                return f"lacks the key {json.dumps(str(missing[0]))}"
            return f"has an extra key {json.dumps(str(extra[0]))}"
        key = next(k for k in want if not _same(got[k], want[k]))
        return f"has {json.dumps(str(key))} = {_show(got[key], 30)} rather than {_show(want[key], 30)}"
    return "does not match"


def _chosen_facts(trace: dict[str, Any] | None) -> str:
    if not trace:
        return ""
    rng = _rng("facts", trace.get("return_value"))
    facts = _loops_part(trace, rng)[0][:1] + _branches_part(trace, rng)[:1]
    return " ".join(facts)


def narrate_input_prediction(
    given_output: Any,
    candidates: list[tuple[dict[str, Any], Any]],
    chosen: dict[str, Any],
    io_description: str,
    max_tokens: int,
    *,
    chosen_trace: dict[str, Any] | None = None,
) -> str:
    """A search over ``candidates`` (input, real output) ending with ```json {"input": chosen}```.

    Candidates whose output differs from ``given_output`` are rejected with a reason; the
    chosen input is presented as the one that matches (its output is taken from
    ``candidates`` when listed there, else assumed to be ``given_output``). An optional
    ``chosen_trace`` adds a fact or two about how the chosen input runs.
    """
    rng = _rng("input", given_output, chosen, io_description)
    target = _show(given_output, 120)
    inputs = re.findall(r"^\s*-\s*`(\w+)`\s*\(([^()]*)\)", io_description, re.M)
    intro = [rng.choice(_INPUT_OPENINGS).format(out=target)]
    if inputs:
        listed = ", ".join(f"`{name}` ({kind})" for name, kind in inputs)
        intro[0] += f" The function takes {listed}."
    intro[0] += " " + rng.choice(_STRATEGIES)
    chosen_key = _canonical(chosen)
    chosen_output = given_output
    rejected: list[tuple[dict[str, Any], Any]] = []
    alternatives: list[dict[str, Any]] = []
    for candidate, result in candidates:
        if _canonical(candidate) == chosen_key:
            chosen_output = result
        elif _same(result, given_output):
            alternatives.append(candidate)
        else:
            rejected.append((candidate, result))
    details = []
    for candidate, result in rejected[:_MAX_CANDIDATES]:
        shown = _show(result, 60)
        details.append(rng.choice(_REJECTIONS).format(
            args=_arguments(candidate), out=shown, out_short=shown if len(shown) < 20 else "it",
            why=_why_different(result, given_output),
        ))
    if len(rejected) > _MAX_CANDIDATES:
        details.append(f"{len(rejected) - _MAX_CANDIDATES} more candidates miss the target in the same way.")
    accept = rng.choice(_ACCEPTS).format(args=_arguments(chosen), out=_show(chosen_output, 120))
    facts = _chosen_facts(chosen_trace)
    if facts:
        accept += " To double-check: " + facts
    if not _same(chosen_output, given_output):
        accept += f" (Its recorded output {_show(chosen_output, 60)} is what the verifier will compare.)"
    if alternatives:
        accept += (
            f" Another candidate, {_arguments(alternatives[0])}, also produces the target, so the answer is "
            "not unique; any of them is acceptable."
        )
    ending = "So a valid input is " + _arguments(chosen) + ".\n\n" + _answer_block("input", chosen)
    return _fit(intro, details, ending, max_tokens, "(A few more failed attempts are omitted.)", tail=accept)
