"""Export the CODEI/O and CODEI/O++ training sets from the store.

One sample per prediction task of the current build that has a turn-1 attempt, except a task
whose prompt repeats that of another (same kind, same text; the one with the smallest id is
kept, and stats.json counts the rest as ``duplicate_prompt``); its id is the task id. In
``out_dir``, per set (``codeio``, ``codeio_pp``):

- ``<set>.jsonl``: the released dataset's shape, keys in this order: id, kind, prompt, turn_1,
  feedback_1, turn_2, feedback_2, [turn_3, feedback_3 when revision_turns == 2], verdict (of the
  last turn in the sample), model (of that turn), function_id, pair_id,
  [ground_truth_appended in mode 'ground_truth'], [contaminated with decontam_action 'flag'].
  Absent turns and feedbacks are null. CODEI/O samples hold turn 1 only (feedback_1 is its
  stored feedback, for reference; it is not part of the training text).
- ``<set>.messages.jsonl``: ``{"id": id, "messages": [{"role": "user", "content": prompt},
  {"role": "assistant", "content": response}]}`` on the same line numbers as ``<set>.jsonl``
  (the id is the sample's, so a filtered or shuffled copy still links back);
  the CODEI/O response is turn 1, the CODEI/O++ response is
  ``prompts.render.assemble_multiturn(turns, feedbacks)``.
- ``<set>.parquet``: the same columns as ``<set>.jsonl``.
- ``stats.json``: rows per file, sample counts, mode, decontamination counts (with the ids of
  the first contaminated samples, so dropped ones can be looked up), ``duplicate_examples``
  (the first duplicates left out, each with the id of the sample it repeats),
  ``exported_verdicts`` (per set, task kind and final verdict: what the files hold) and
  ``build_response_types`` (every attempt of the build per turn and kind, before the mode
  and decontamination choose samples: the paper's figure 7).

Modes: 'keep_all' keeps every sample; 'rejection' keeps samples whose final verdict is
'correct'; 'ground_truth' keeps every sample and, when the final verdict is not 'correct',
appends to the last turn a corrected final answer taken from the I/O pair::

    <last turn, right-stripped>

    The correct final answer is:
    ```json
    {"output": <recorded output>}        (output prediction)
    {"input": {<recorded input>}}        (input prediction)
    ```

so the response's last JSON object (the one the answer parser reads) is the ground truth; that
turn's feedback, which judged the replaced answer, is set to null and left out of the response.

Rows are read a page of task ids at a time (``batch_rows``), in task id order, so memory stays
bounded however large the build; every file is written through ``storage.atomic``; the same
store content gives byte-identical files (no timestamps; stable key order; fixed Parquet
settings). A file is whole or absent: a failed export leaves the previous files as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_open, atomic_path, atomic_write_text
from storage.decontam import Decontaminator
from storage.stages import TURN_STAGES
from storage.stats import response_types
from storage.store import Store

Mode = Literal["keep_all", "rejection", "ground_truth"]
MODES = ("keep_all", "rejection", "ground_truth")
DATASETS = ("codeio", "codeio_pp")

GROUND_TRUTH_NOTE = "The correct final answer is:"

# stats.json names this many contaminated samples by id (action 'flag' marks all in the files),
# and as many samples left out as duplicates (with the sample each repeats).
CONTAMINATED_EXAMPLES = 100
DUPLICATE_EXAMPLES = 100

# Parquet settings are fixed so the same rows always give the same bytes.
_PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
}

_TURN_COLUMNS = ("response", "verdict", "feedback", "model")

# Samples are read a page of task ids at a time: a narrow sorted scan of the ids gives the page
# bounds, then each page's wide rows (prompts and responses) are joined and sorted on their own,
# so no query result holds more than one page of text (one ORDER BY over every response would
# make DuckDB materialise them all).
_PAGE_BOUNDS_SQL = """
SELECT id FROM (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS position
    FROM prediction_tasks WHERE config_key = $prompts
) WHERE position % $page = 0 ORDER BY id
"""

_PAGE_SQL = """
WITH
tasks AS (
    SELECT id, pair_id, function_id, kind, messages_json FROM prediction_tasks
    WHERE config_key = $prompts AND id >= $low AND ($high IS NULL OR id < $high)
),
{turn_ctes}
SELECT tasks.id, tasks.kind, tasks.messages_json, tasks.function_id, tasks.pair_id,
       {columns}
FROM tasks
JOIN turn1 ON turn1.task_id = tasks.id
{joins}
ORDER BY {order}
"""

# Tasks whose prompt is the same text, for the same kind, as that of a task with a smaller id
# (both with a turn-1 response). Two functions that differ only in their input generator (two
# near-identical source files rewritten alike) give their shared inputs the same prompts, and
# a prompt's call is cached by its text, so the two samples are the same training text twice.
# A pass over 64-bit hashes of the prompts finds the few that may repeat; only those are
# compared by their text, so no step groups or sorts every prompt.
_DUPLICATES_SQL = """
SELECT id, kept FROM (
    SELECT t.id, first_value(t.id) OVER (PARTITION BY t.kind, t.messages_json ORDER BY t.id) AS kept
    FROM prediction_tasks t
    WHERE t.config_key = $prompts
      AND (t.kind, hash(t.messages_json)) IN (
          SELECT (kind, hash(messages_json)) FROM prediction_tasks WHERE config_key = $prompts
          GROUP BY ALL HAVING count(*) > 1)
      AND EXISTS (SELECT 1 FROM attempts a WHERE a.config_key = $answer AND a.turn = 1 AND a.task_id = t.id
                  AND a.response IS NOT NULL)
) WHERE id <> kept ORDER BY id
"""

# Attempts of one turn in the page. Should a task have two attempts for a turn under one key,
# the one with the smallest attempt id is used (the first row per task id after the ORDER BY).
_TURN_CTE = """turn{turn} AS (
    SELECT id, task_id, {columns} FROM attempts
    WHERE config_key = ${key} AND turn = {turn}
      AND task_id >= $low AND ($high IS NULL OR task_id < $high)
)"""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: file name -> path, file name -> rows, and the stats.json content."""

    paths: dict[str, Path]
    counts: dict[str, int]
    stats: dict[str, Any]


@dataclass(frozen=True)
class _Turn:
    response: str
    verdict: str
    feedback: str
    model: str


def export_datasets(
    store: Store,
    keys: dict[str, str],
    out_dir: str | Path,
    *,
    mode: Mode = "keep_all",
    revision_turns: int = 1,
    decontam: Decontaminator | None = None,
    decontam_action: Literal["drop", "flag"] = "drop",
    batch_rows: int = 10_000,
) -> ExportResult:
    """Write the CODEI/O and CODEI/O++ files of the build named by ``keys`` into ``out_dir``.

    ``keys`` maps stage name -> config key ('prompts' and 'answer' required; 'revise1' and
    'revise2' supply turns 2 and 3). ``revision_turns`` (0-2) caps the CODEI/O++ turns after
    the first. ``decontam`` checks the prompt and every response of a sample; 'drop' leaves a
    contaminated sample out of both sets, 'flag' keeps it with ``"contaminated": true``.
    ``batch_rows`` is the page size of the reads and the Parquet row-group size.
    """
    from prompts.render import assemble_multiturn  # the prompt package owns the ++ wording

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if revision_turns not in (0, 1, 2):
        raise ValueError(f"revision_turns must be 0, 1 or 2, not {revision_turns!r}")
    if decontam_action not in ("drop", "flag"):
        raise ValueError(f"decontam_action must be 'drop' or 'flag', not {decontam_action!r}")
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    missing = [k for k in ("prompts", "answer") if not keys.get(k)]
    if missing:
        raise ValueError(f"keys lack the config key of {missing}")

    out = Path(out_dir)
    flag = decontam is not None and decontam_action == "flag"
    columns = _columns(revision_turns, mode == "ground_truth", flag)
    schema = pa.schema(
        [(c, pa.bool_() if c in ("ground_truth_appended", "contaminated") else pa.string()) for c in columns]
    )
    counts: dict[str, int] = {
        "tasks": 0,
        "skipped_no_prompt": 0,
        "skipped_no_response": 0,
        "revisions_without_response": 0,
        "contaminated": 0,
        "duplicate_prompt": 0,
    }
    for name in DATASETS:
        counts.update({f"{name}.rejected": 0, f"{name}.ground_truth_appended": 0, f"{name}.no_ground_truth": 0})
    contaminated_ids: list[str] = []

    with ExitStack() as stack:
        sinks = {name: _DatasetSink(stack, out, name, schema, batch_rows) for name in DATASETS}
        # A cursor of its own, so the store's connection is left as it was.
        cursor = store.con.cursor()
        stack.callback(cursor.close)
        # Duplicate task id -> the task it repeats; a few per mille of a build, held in memory.
        duplicates = dict(cursor.execute(_DUPLICATES_SQL, {k: keys[k] for k in ("prompts", "answer")}).fetchall())
        for row in _sample_rows(cursor, keys, revision_turns, batch_rows, mode == "ground_truth"):
            counts["tasks"] += 1
            if row["id"] in duplicates:
                counts["duplicate_prompt"] += 1
                continue
            prompt = _prompt(row["messages_json"])
            if prompt is None:
                counts["skipped_no_prompt"] += 1
                continue
            turns = _turns(row, revision_turns, counts)
            if turns is None:
                counts["skipped_no_response"] += 1
                continue
            contaminated = False
            if decontam is not None:
                contaminated = decontam.contaminated_any([prompt, *(t.response for t in turns)])
                counts["contaminated"] += contaminated
                if contaminated and len(contaminated_ids) < CONTAMINATED_EXAMPLES:
                    contaminated_ids.append(row["id"])
                if contaminated and decontam_action == "drop":
                    continue
            for name, sample_turns in (("codeio", turns[:1]), ("codeio_pp", turns)):
                built = _sample(row, prompt, sample_turns, mode, revision_turns, counts, name)
                if built is None:
                    continue
                record, texts, feedbacks = built
                if flag:
                    record["contaminated"] = contaminated
                if name == "codeio":
                    response = texts[0]
                else:
                    response = assemble_multiturn(texts, feedbacks)
                sinks[name].write(record, prompt, response)
        for sink in sinks.values():
            sink.finish()

    files = {f: n for sink in sinks.values() for f, n in sink.rows_per_file().items()}
    paths = {f: out / f for f in files}
    verdicts = {name: {kind: dict(sorted(v.items())) for kind, v in sorted(sink.verdicts.items())}
                for name, sink in sinks.items()}
    stats = _stats(store, keys, mode, revision_turns, decontam, decontam_action, files, counts, verdicts,
                   contaminated_ids, dict(list(duplicates.items())[:DUPLICATE_EXAMPLES]))
    atomic_write_text(out / "stats.json", json.dumps(stats, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    paths["stats.json"] = out / "stats.json"
    return ExportResult(paths=paths, counts=files, stats=stats)


def _columns(revision_turns: int, ground_truth: bool, flag: bool) -> list[str]:
    cols = ["id", "kind", "prompt", "turn_1", "feedback_1", "turn_2", "feedback_2"]
    if revision_turns == 2:
        cols += ["turn_3", "feedback_3"]
    cols += ["verdict", "model", "function_id", "pair_id"]
    if ground_truth:
        cols.append("ground_truth_appended")
    if flag:
        cols.append("contaminated")
    return cols


def _sample_rows(
    cursor: Any, keys: dict[str, str], revision_turns: int, page: int, with_pairs: bool
) -> Iterator[dict[str, Any]]:
    """One row per task of keys['prompts'] with a turn-1 attempt, in task id order: the task,
    ``<column>_<turn>`` for each turn's attempt (None when absent), and with ``with_pairs`` its
    I/O pair's input_json and output_json."""
    turns = range(1, revision_turns + 2)
    params: dict[str, Any] = {"prompts": keys["prompts"]}
    ctes, cols, joins = [], [], []
    if with_pairs:
        cols.append("pairs.input_json, pairs.output_json")
        if not keys.get("sample_io"):
            raise ValueError("keys lack the config key of sample_io, which ground-truth export reads")
        params["sample_io"] = keys["sample_io"]
        joins.append("LEFT JOIN io_pairs AS pairs ON pairs.id = tasks.pair_id AND pairs.config_key = $sample_io")
    for turn in turns:
        key = TURN_STAGES[turn]
        params[key] = keys.get(key)
        ctes.append(_TURN_CTE.format(turn=turn, key=key, columns=", ".join(_TURN_COLUMNS)))
        cols += [f"turn{turn}.{c} AS {c}_{turn}" for c in _TURN_COLUMNS]
        if turn > 1:
            joins.append(f"LEFT JOIN turn{turn} ON turn{turn}.task_id = tasks.id")
    sql = _PAGE_SQL.format(
        turn_ctes=",\n".join(ctes),
        columns=", ".join(cols),
        joins="\n".join(joins),
        order=", ".join(["tasks.id", *(f"turn{t}.id" for t in turns)]),
    )
    bounds = [r[0] for r in cursor.execute(_PAGE_BOUNDS_SQL, {"prompts": keys["prompts"], "page": page}).fetchall()]
    previous = None
    for low, high in zip(bounds, [*bounds[1:], None]):
        cursor.execute(sql, {**params, "low": low, "high": high})
        names = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values))
            if row["id"] != previous:
                previous = row["id"]
                yield row


def _prompt(messages_json: str) -> str | None:
    """The content of the last user message of a task's chat messages."""
    try:
        messages = orjson.loads(messages_json)
    except (TypeError, orjson.JSONDecodeError):
        return None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) and content.strip() else None
    return None


def _turns(row: dict[str, Any], revision_turns: int, counts: dict[str, int]) -> list[_Turn] | None:
    """The turns of the CODEI/O++ sample: turn 1, then a revision after each wrong turn.

    None when turn 1 has no response (a failed call); a revision without a response ends the
    chain at the turn before it.
    """
    turns: list[_Turn] = []
    for turn in range(1, revision_turns + 2):
        if turns and turns[-1].verdict == "correct":
            break
        response = row.get(f"response_{turn}")
        if row.get(f"verdict_{turn}") is None:  # no attempt for this turn
            break
        if not response or not response.strip():
            if turn == 1:
                return None
            counts["revisions_without_response"] += 1
            break
        turns.append(
            _Turn(response, row[f"verdict_{turn}"], row[f"feedback_{turn}"] or "", row[f"model_{turn}"])
        )
    return turns


def _sample(
    row: dict[str, Any],
    prompt: str,
    turns: list[_Turn],
    mode: Mode,
    revision_turns: int,
    counts: dict[str, int],
    name: str,
) -> tuple[dict[str, Any], list[str], list[str]] | None:
    """(record, turn texts, feedbacks in the response) of one sample, or None when the mode
    leaves it out."""
    final = turns[-1]
    texts = [t.response for t in turns]
    feedbacks: list[str | None] = [t.feedback for t in turns]
    corrected = False
    if final.verdict != "correct":
        if mode == "rejection":
            counts[f"{name}.rejected"] += 1
            return None
        if mode == "ground_truth":
            block = _ground_truth_block(row)
            if block is None:
                counts[f"{name}.no_ground_truth"] += 1
                return None
            texts[-1] = texts[-1].rstrip() + "\n\n" + block
            feedbacks[-1] = None
            corrected = True
            counts[f"{name}.ground_truth_appended"] += 1
    record: dict[str, Any] = {"id": row["id"], "kind": row["kind"], "prompt": prompt}
    slots = 3 if revision_turns == 2 else 2
    for turn in range(1, slots + 1):
        record[f"turn_{turn}"] = texts[turn - 1] if turn <= len(texts) else None
        record[f"feedback_{turn}"] = feedbacks[turn - 1] if turn <= len(feedbacks) else None
    record.update(
        verdict=final.verdict, model=final.model, function_id=row["function_id"], pair_id=row["pair_id"]
    )
    if mode == "ground_truth":
        record["ground_truth_appended"] = corrected
    return record, texts, [f for f in feedbacks if f is not None]


def _ground_truth_block(row: dict[str, Any]) -> str | None:
    """The corrected final answer from the task's I/O pair (None when the pair is missing)."""
    if row["kind"] == "output":
        if row["output_json"] is None:
            return None
        answer = {"output": json.loads(row["output_json"])}
    else:
        if row["input_json"] is None:
            return None
        answer = {"input": json.loads(row["input_json"])}
    text = json.dumps(answer, ensure_ascii=False, sort_keys=True)
    return f"{GROUND_TRUTH_NOTE}\n```json\n{text}\n```"


_FILE_BUFFER = 1 << 20


class _DatasetSink:
    """The three files of one set, each written atomically, Parquet in row groups."""

    def __init__(self, stack: ExitStack, out: Path, name: str, schema: pa.Schema, batch_rows: int) -> None:
        self.name = name
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows = 0
        # Lines of a few KB each: with the default 8 KB buffer nearly every line was a syscall.
        self._jsonl = stack.enter_context(atomic_open(out / f"{name}.jsonl", "wb", buffering=_FILE_BUFFER))
        self._messages = stack.enter_context(
            atomic_open(out / f"{name}.messages.jsonl", "wb", buffering=_FILE_BUFFER)
        )
        parquet_tmp = stack.enter_context(atomic_path(out / f"{name}.parquet"))
        self._parquet = pq.ParquetWriter(parquet_tmp, schema, **_PARQUET_OPTIONS)
        self._buffer: dict[str, list[Any]] = {c: [] for c in schema.names}
        self.verdicts: dict[str, dict[str, int]] = {}  # kind -> final verdict -> samples
        # Registered after the Parquet temp file, so it runs before that file is committed.
        stack.callback(self._parquet.close)

    def write(self, record: dict[str, Any], prompt: str, response: str) -> None:
        self._jsonl.write(_json_line(record))
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        self._messages.write(_json_line({"id": record["id"], "messages": messages}))
        by_verdict = self.verdicts.setdefault(record["kind"], {})
        by_verdict[record["verdict"]] = by_verdict.get(record["verdict"], 0) + 1
        for column, values in self._buffer.items():
            values.append(record[column])
        self.rows += 1
        if len(self._buffer["id"]) >= self.batch_rows:
            self._flush()

    def finish(self) -> None:
        self._flush()

    def rows_per_file(self) -> dict[str, int]:
        return {f"{self.name}{suffix}": self.rows for suffix in (".jsonl", ".messages.jsonl", ".parquet")}

    def _flush(self) -> None:
        if not self._buffer["id"]:
            return
        self._parquet.write_table(pa.table(self._buffer, schema=self.schema))
        self._buffer = {c: [] for c in self.schema.names}


# Characters JSON leaves unescaped that Python's str.splitlines() (and JavaScript before
# ES2019) take for line breaks, as their UTF-8 bytes and JSON escapes. In valid UTF-8 these
# byte runs are always these characters, and orjson writes them only inside strings.
_LINE_BREAKS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def _json_line(value: dict[str, Any]) -> bytes:
    """One JSON object per line, UTF-8, compact (orjson: several times faster than json for
    the long prompt and response strings that dominate an export). U+0085, U+2028 and U+2029
    are escaped, so a line of the file is a line however it is split: code and model output
    carry them now and then, and ``text.splitlines()`` cut a sample in two."""
    line = orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    if line.isascii():  # most lines: one fast pass instead of three searches (~1 s per 100k)
        return line
    for raw, escaped in _LINE_BREAKS:
        if raw in line:
            line = line.replace(raw, escaped)
    return line


def _stats(
    store: Store,
    keys: dict[str, str],
    mode: str,
    revision_turns: int,
    decontam: Decontaminator | None,
    decontam_action: str,
    files: dict[str, int],
    counts: dict[str, int],
    verdicts: dict[str, dict[str, dict[str, int]]],
    contaminated_ids: list[str],
    duplicate_examples: dict[str, str],
) -> dict[str, Any]:
    # The response types of the turns this export uses.
    unused = {TURN_STAGES[turn] for turn in range(revision_turns + 2, 4)}
    turn_keys = {stage: key for stage, key in keys.items() if stage not in unused}
    decontamination = None
    if decontam is not None:
        decontamination = {
            "action": decontam_action,
            "contaminated": counts["contaminated"],
            "dropped": counts["contaminated"] if decontam_action == "drop" else 0,
            "flagged": counts["contaminated"] if decontam_action == "flag" else 0,
            "examples": contaminated_ids,
            "benchmark": decontam.summary,
        }
    return {
        "mode": mode,
        "revision_turns": revision_turns,
        "keys": dict(sorted(keys.items())),
        "files": files,
        "samples": counts,
        "duplicate_examples": duplicate_examples,
        "decontamination": decontamination,
        "exported_verdicts": verdicts,
        "build_response_types": response_types(store, turn_keys).to_dicts(),
    }
