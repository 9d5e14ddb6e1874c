"""Execution tracer that runs inside a sandbox child, appended after a function's refcode.

This file is shipped as text (``llm.offline.trace.TRACER_SOURCE``) and executed in the same
namespace as the untrusted reference code, so every top-level name here starts with
``__codeio_`` and it imports nothing outside the standard library. It must not use
``from __future__`` imports (they are only legal at the top of the combined program).

``__codeio_trace__(kwargs_json, budget_events, source=None)`` runs ``main_solution(**kwargs)``
under ``sys.settrace`` and returns a bounded, JSON-able record. Tracing has three tiers:

1. detail (the first ``budget_events`` events): calls with arguments, line-to-line edges in
   order, and local-variable changes of the first activation of each function;
2. counting (up to ``__CODEIO_COUNT_FACTOR__`` times the budget): only line-edge and call
   counts, which is what loop iteration and branch counts are made of;
3. detached: tracing is switched off and the function runs at full speed; counts become
   lower bounds (``complete`` is False).

Branch and loop facts need the source text. It comes from the ``source`` argument or, when the
sandbox compiled the program from a real or registered file, from ``linecache``. Without it the
raw edges are returned (``summarized`` False) and ``llm.offline.trace.annotate_trace`` adds the
branch and loop facts afterwards, outside the sandbox.
"""

import ast as __codeio_ast
import json as __codeio_json
import linecache as __codeio_linecache
import re as __codeio_re
import sys as __codeio_sys


def __codeio_marker__():
    """Its first line marks where the tracer starts when it shares a file name with user code."""


__CODEIO_COUNT_FACTOR__ = 100
__CODEIO_COUNT_MIN__ = 200_000
__CODEIO_COUNT_MAX__ = 1_000_000
__CODEIO_MAX_CALLS__ = 24
__CODEIO_MAX_SEQUENCE__ = 300
__CODEIO_MAX_EDGES__ = 400
__CODEIO_MAX_CHANGES__ = 80
__CODEIO_MAX_CHANGES_PER_VAR__ = 8
__CODEIO_MAX_TRACKED__ = 4
__CODEIO_MAX_VARS__ = 12
__CODEIO_MAX_STR__ = 40
__CODEIO_MAX_ITEMS__ = 6
__CODEIO_MAX_RETURN_BYTES__ = 4096
__CODEIO_LINE_BASE__ = 1_000_000


def __codeio_abridge__(value, depth=0):
    """A small JSON-able picture of ``value``: long strings, containers and numbers are cut.

    Anything that is not a JSON type becomes ``{"__repr__": "..."}`` so a reader can tell a
    rendered object from a real string.
    """
    try:
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str) and len(value) > __CODEIO_MAX_STR__:
                return value[: __CODEIO_MAX_STR__ - 3] + "..."
            return value
        if isinstance(value, int):
            if value.bit_length() > 50:
                return {"__repr__": "<int of about %d digits>" % int(value.bit_length() * 0.30103 + 1)}
            return value
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return {"__repr__": repr(value)}
            return value
        if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
            if getattr(value, "size", 1) <= 64:
                return __codeio_abridge__(value.tolist(), depth)
        if isinstance(value, (list, tuple)):
            if depth >= 2:
                return {"__repr__": "<%s of %d items>" % (type(value).__name__, len(value))}
            items = [__codeio_abridge__(item, depth + 1) for item in value[: __CODEIO_MAX_ITEMS__]]
            if len(value) > __CODEIO_MAX_ITEMS__:
                items.append({"__repr__": "... (+%d more)" % (len(value) - __CODEIO_MAX_ITEMS__)})
            return items
        if isinstance(value, dict):
            if depth >= 2:
                return {"__repr__": "<dict of %d items>" % len(value)}
            out = {}
            for index, (key, item) in enumerate(value.items()):
                if index == __CODEIO_MAX_ITEMS__:
                    out["..."] = {"__repr__": "(+%d more)" % (len(value) - __CODEIO_MAX_ITEMS__)}
                    break
                out[str(key)[:20]] = __codeio_abridge__(item, depth + 1)
            return out
        # Memory addresses differ from run to run; the record must not.
        text = __codeio_re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(repr(value).split()))
        if len(text) > __CODEIO_MAX_STR__:
            text = text[: __CODEIO_MAX_STR__ - 3] + "..."
        return {"__repr__": text}
    except Exception:  # a hostile __repr__ must not break tracing
        return {"__repr__": "<%s>" % type(value).__name__}


def __codeio_exact__(value):
    """(value after a JSON round trip, True) when small enough, else (abridged, False)."""
    try:
        text = __codeio_json.dumps(value)
        if len(text) <= __CODEIO_MAX_RETURN_BYTES__:
            return __codeio_json.loads(text), True
    except (TypeError, ValueError, RecursionError):
        pass
    return __codeio_abridge__(value), False


def __codeio_trace__(kwargs_json, budget_events=2000, source=None):
    """Run ``main_solution(**json.loads(kwargs_json))`` traced; return the bounded record."""
    sys = __codeio_sys
    abridge = __codeio_abridge__
    kwargs = __codeio_json.loads(kwargs_json)
    entry = globals()["main_solution"]
    user_file = entry.__code__.co_filename
    tracer_start = __codeio_marker__.__code__.co_firstlineno
    if __codeio_marker__.__code__.co_filename != user_file:
        tracer_start = 1 << 60
    budget = max(0, int(budget_events))
    count_cap = min(max(budget * __CODEIO_COUNT_FACTOR__, __CODEIO_COUNT_MIN__), __CODEIO_COUNT_MAX__)
    base = __CODEIO_LINE_BASE__

    events = [0]
    detached = [False]
    depth = [0]
    max_depth = [0]
    is_user = {}
    calls = []
    call_counts = {}
    edges = {}
    sequence = []
    changes = []
    changes_per_var = {}
    tracked_codes = set()
    final_locals = {}

    def user_code(code):
        known = is_user.get(code)
        if known is None:
            known = code.co_filename == user_file and code.co_firstlineno < tracer_start
            is_user[code] = known
        return known

    def detach(frame):
        detached[0] = True
        sys.settrace(None)
        while frame is not None:
            if is_user.get(frame.f_code):
                frame.f_trace = None
            frame = frame.f_back

    def note_change(fn, line, name, value):
        if len(changes) >= __CODEIO_MAX_CHANGES__:
            return
        key = (fn, name)
        seen = changes_per_var.get(key, 0)
        if seen >= __CODEIO_MAX_CHANGES_PER_VAR__:
            return
        changes_per_var[key] = seen + 1
        changes.append({"fn": fn, "line": line, "var": name, "value": value})

    def global_tracer(frame, event, arg):
        code = frame.f_code
        if event != "call" or not user_code(code):
            return None
        events[0] += 1
        if events[0] > count_cap:
            detach(frame)
            return None
        name = code.co_name
        label = getattr(code, "co_qualname", name).replace(".<locals>.", ".")
        synthetic = name.startswith("<")
        if not synthetic:
            call_counts[label] = call_counts.get(label, 0) + 1
        depth[0] += 1
        if depth[0] > max_depth[0]:
            max_depth[0] = depth[0]
        detail = events[0] <= budget
        call_index = -1
        if detail and not synthetic and len(calls) < __CODEIO_MAX_CALLS__:
            n_args = code.co_argcount + code.co_kwonlyargcount
            local_vars = frame.f_locals
            args = {}
            for arg_name in code.co_varnames[:n_args]:
                if arg_name in local_vars:
                    args[arg_name] = abridge(local_vars[arg_name])
            call_index = len(calls)
            calls.append({"fn": label, "depth": depth[0], "args": args})
        tracked = (
            detail
            and not synthetic
            and code not in tracked_codes
            and len(tracked_codes) < __CODEIO_MAX_TRACKED__
        )
        if tracked:
            tracked_codes.add(code)
        snapshot = {}
        prev = 0

        def local_tracer(frame, event, arg):
            nonlocal prev, snapshot
            events[0] += 1
            if events[0] > count_cap:
                detach(frame)
                return None
            if event == "line":
                cur = frame.f_lineno
                key = prev * base + cur
                if key in edges:
                    edges[key] += 1
                elif len(edges) < __CODEIO_MAX_EDGES__:
                    edges[key] = 1
                if events[0] <= budget:
                    if prev and len(sequence) < __CODEIO_MAX_SEQUENCE__:
                        sequence.append([prev, cur])
                    if tracked:
                        local_vars = frame.f_locals
                        fresh = {}
                        for var_name in list(local_vars)[: __CODEIO_MAX_VARS__]:
                            picture = abridge(local_vars[var_name])
                            fresh[var_name] = picture
                            if prev and snapshot.get(var_name, fresh) != picture:
                                note_change(name, prev, var_name, picture)
                        snapshot = fresh
                prev = cur
            elif event == "return":
                key = prev * base
                if key in edges:
                    edges[key] += 1
                elif len(edges) < __CODEIO_MAX_EDGES__:
                    edges[key] = 1
                if events[0] <= budget and prev and len(sequence) < __CODEIO_MAX_SEQUENCE__:
                    sequence.append([prev, 0])
                depth[0] -= 1
                if call_index >= 0:
                    calls[call_index]["ret"] = abridge(arg)
                if tracked:
                    local_vars = frame.f_locals
                    final_locals[name] = {
                        var_name: abridge(local_vars[var_name])
                        for var_name in list(local_vars)[: __CODEIO_MAX_VARS__]
                    }
            return local_tracer

        return local_tracer

    result = {"version": 1, "status": "ok", "error": None}
    previous_tracer = sys.gettrace()
    sys.settrace(global_tracer)
    try:
        value = entry(**kwargs)
    except BaseException as exc:  # the record says what went wrong; the sandbox sees a value
        result["status"] = "error"
        result["error"] = ("%s: %s" % (type(exc).__name__, exc))[:200]
        value = None
    finally:
        sys.settrace(previous_tracer)
    result["return_value"], result["return_exact"] = __codeio_exact__(value)
    result.update(
        events=events[0],
        budget_events=budget,
        complete=not detached[0],
        calls=calls,
        call_counts=call_counts,
        max_depth=max_depth[0],
        changes=changes,
        final_locals=final_locals,
        edges=[[key // base, key % base, n] for key, n in edges.items()],
        sequence=sequence,
        summarized=False,
    )
    if source is None:
        source = "".join(__codeio_linecache.getlines(user_file)) or None
    if source:
        result = __codeio_summarize__(result, source)
    return result


def __codeio_structures__(source):
    """Branches and loops of ``source``: one dict per if/elif/while/for statement."""
    tree = __codeio_ast.parse(source)
    lines = source.splitlines()
    found = []

    def text_of(line):
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return text if len(text) <= 80 else text[:77] + "..."

    def names_in(node):
        return sorted({n.id for n in __codeio_ast.walk(node) if isinstance(n, __codeio_ast.Name)})

    def visit(node, function):
        for child in __codeio_ast.iter_child_nodes(node):
            if isinstance(child, (__codeio_ast.FunctionDef, __codeio_ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            kind = None
            if isinstance(child, __codeio_ast.If):
                kind, head = "if", child.test
            elif isinstance(child, __codeio_ast.While):
                kind, head = "while", child.test
            elif isinstance(child, __codeio_ast.For):
                kind, head = "for", child.iter
            if kind is not None and child.body:
                head_start = child.lineno
                head_end = max(head.end_lineno, head_start)
                body_start = child.body[0].lineno
                body_end = max(getattr(s, "end_lineno", s.lineno) for s in child.body)
                item = {
                    "kind": kind,
                    "line": child.lineno,
                    "head": [head_start, head_end],
                    "body": [body_start, body_end],
                    "inline": body_start <= head_end,
                    "text": text_of(child.lineno),
                    "function": function,
                }
                if kind == "for":
                    item["targets"] = names_in(child.target)
                else:
                    item["targets"] = names_in(child.test)
                found.append(item)
            visit(child, function)

    visit(tree, "<module>")
    return found, text_of


def __codeio_summarize__(record, source):
    """Turn a raw record's edges into branch and loop facts with their source text.

    Returns a new record with ``branches``, ``loops`` and ``lines`` added and the raw
    ``edges``/``sequence`` removed; an unparsable source leaves the record as it is.
    """
    if record.get("summarized"):
        return record
    try:
        structures, text_of = __codeio_structures__(source)
    except (SyntaxError, ValueError, RecursionError):
        return record
    out_edges = {}
    for prev, cur, n in record.get("edges", []):
        out_edges.setdefault(prev, []).append((cur, n))
    branches = []
    loops = []
    for item in structures:
        head_start, head_end = item["head"]
        body_start, body_end = item["body"]

        def outcome(cur):
            if head_start <= cur <= head_end:
                return None
            return body_start <= cur <= body_end

        taken = skipped = 0
        for line in range(head_start, head_end + 1):
            for cur, n in out_edges.get(line, ()):
                verdict = outcome(cur)
                if verdict is True:
                    taken += n
                elif verdict is False:
                    skipped += n
        if taken + skipped == 0:
            continue
        first = []
        for prev, cur in record.get("sequence", []):
            if head_start <= prev <= head_end and len(first) < 8:
                verdict = outcome(cur)
                if verdict is not None:
                    first.append(verdict)
        if item["kind"] == "for":
            values = [
                c for c in record.get("changes", [])
                if c["line"] == item["line"] and c["var"] in item["targets"] and c["fn"] == item["function"]
            ]
        else:
            values = [
                c for c in record.get("changes", [])
                if c["var"] in item["targets"] and c["fn"] == item["function"]
            ]
        variables = {}
        final = record.get("final_locals", {}).get(item["function"], {})
        for name in item["targets"]:
            seen = [c["value"] for c in values if c["var"] == name][:4]
            if seen or name in final:
                variables[name] = {"first": seen}
                if name in final:
                    variables[name]["last"] = final[name]
        if item["kind"] in ("for", "while"):
            loops.append({
                "kind": item["kind"],
                "line": item["line"],
                "text": item["text"],
                "function": item["function"],
                "iterations": None if item["inline"] else taken,
                "exits": skipped,
                "vars": variables,
            })
        if item["kind"] != "for":
            entry = {
                "kind": item["kind"],
                "line": item["line"],
                "text": item["text"],
                "function": item["function"],
                "evaluated": taken + skipped,
            }
            if item["inline"]:
                entry.update(true=None, false=None, first=[])
            else:
                entry.update(true=taken, false=skipped, first=first)
            branches.append(entry)
    lines = {}
    for change in record.get("changes", []):
        if len(lines) < 40:
            lines[str(change["line"])] = text_of(change["line"])
    summary = {key: value for key, value in record.items() if key not in ("edges", "sequence")}
    summary.update(branches=branches, loops=loops, lines=lines, summarized=True)
    return summary
