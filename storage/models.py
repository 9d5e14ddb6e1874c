"""Pydantic record models: one per record of the pipeline, each keyed by a content hash.

raw file (content) -> function (unified fields) -> I/O pair (function, canonical input)
-> prediction task (pair, kind, prompt) -> LLM call (model, messages, params, sample index)
-> attempt (task, turn, call) -> training sample (assembled at export).

Shard tasks return these records (as rows) and the flow process writes them; nothing here
talks to DuckDB.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storage.ids import canonical_json, content_id, content_id_of_encoded

SourceKind = Literal["mixed", "educational", "curated"]
TaskKind = Literal["input", "output"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def row(self) -> dict[str, Any]:
        """The record as a flat row for the store (JSON-typed fields serialised)."""
        return self.model_dump()


class IngestEntry(Record):
    """One input file or corpus row as it was seen, whether it was kept or not."""

    id: str  # content_id(source, locator, sha256 of bytes): the same row seen twice is one entry
    source: str
    locator: str  # path, or "file.jsonl:LINE" for corpus rows
    bytes_sha256: str
    size_bytes: int
    status: Literal["ok", "duplicate", "rejected"]
    reason: str | None = None
    detail: str | None = None
    raw_id: str | None = None


class RawFile(Record):
    """A unique piece of raw Python source (deduplicated by content)."""

    id: str  # content_id("raw", content)
    source: str
    source_kind: SourceKind
    origin: Literal["raw", "unified"] = "raw"
    path: str
    repo_name: str | None = None
    content: str
    size_bytes: int

    @staticmethod
    def make_id(content: str) -> str:
        return content_id("raw", content)


class Function(Record):
    """A function in the unified format."""

    id: str
    raw_id: str
    source: str
    source_kind: SourceKind
    origin: str  # 'llm', 'offline', 'import'
    model: str
    refcode: str
    input_generator: str | None
    io_description: str
    query: str
    arg_names: list[str]
    entry: str = "main_solution"
    seed_ios: list[dict[str, Any]] | None = None  # recorded pairs of imported functions


    @staticmethod
    def make_id(refcode: str, input_generator: str | None, io_description: str, query: str) -> str:
        return content_id("function", refcode, input_generator, io_description, query)

    def row(self) -> dict[str, Any]:
        d = self.model_dump()
        d["arg_names"] = canonical_json(self.arg_names)
        d["seed_ios_json"] = None if self.seed_ios is None else canonical_json(d.pop("seed_ios"))
        d.pop("seed_ios", None)
        return d


class IOPair(Record):
    id: str
    function_id: str
    input: dict[str, Any]
    output: Any
    ordinal: int

    @staticmethod
    def make_id(function_id: str, inputs: dict[str, Any]) -> str:
        return content_id("io", function_id, inputs)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function_id": self.function_id,
            "input_json": canonical_json(self.input),
            "output_json": canonical_json(self.output),
            "ordinal": self.ordinal,
        }


def mark_same_output(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set each pair row's ``same_output_as``: the smallest id among the rows of its function
    with the same output when that is another row's, else None (the row is the first with its
    output). ``pairs`` must hold all of each of its functions' pairs, as a sample_io shard
    does. Returns ``pairs``."""
    first: dict[tuple[str, str], str] = {}
    for p in pairs:
        key = (p["function_id"], p["output_json"])
        if key not in first or p["id"] < first[key]:
            first[key] = p["id"]
    for p in pairs:
        smallest = first[(p["function_id"], p["output_json"])]
        p["same_output_as"] = smallest if smallest != p["id"] else None
    return pairs


class PredictionTask(Record):
    id: str
    pair_id: str
    function_id: str
    kind: TaskKind
    messages: list[dict[str, str]]

    @staticmethod
    def make_id(pair_id: str, kind: str, messages: list[dict[str, str]]) -> str:
        return content_id("task", pair_id, kind, messages)

    @staticmethod
    def row_of(pair_id: str, function_id: str, kind: TaskKind, messages: list[dict[str, str]]) -> dict[str, Any]:
        """``PredictionTask(id=make_id(...), ...).row()``, with the messages serialised once
        (the prompts stage makes one per task)."""
        messages_json = canonical_json(messages)
        task_id = content_id_of_encoded('"task"', canonical_json(pair_id), canonical_json(kind), messages_json)
        return {"id": task_id, "pair_id": pair_id, "function_id": function_id, "kind": kind,
                "messages_json": messages_json}

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pair_id": self.pair_id,
            "function_id": self.function_id,
            "kind": self.kind,
            "messages_json": canonical_json(self.messages),
        }


class LLMCall(Record):
    """One completed chat call: the ledger row that makes a resumed run free."""

    key: str
    model: str
    stage: str
    content: str | None
    finish_reason: str | None
    truncated: bool = False
    prompt_tokens: int | None = 0  # None: the server's answer did not say (no usage)
    completion_tokens: int | None = 0
    latency_s: float = 0.0


class Attempt(Record):
    """One answer turn for a prediction task, with its verdict and the feedback it earned."""

    id: str
    task_id: str
    turn: int
    call_key: str
    model: str
    response: str | None
    truncated: bool = False
    extract_status: str  # 'ok', 'no_answer', 'bad_format', 'call_failed', 'truncated'
    answer: Any = None
    verdict: str  # 'correct', 'wrong', 'exception', 'timeout', 'no_answer', 'bad_format', 'call_failed'
    feedback: str
    actual_output: Any = None

    @staticmethod
    def make_id(task_id: str, turn: int, call_key: str) -> str:
        return content_id("attempt", task_id, turn, call_key)

    def row(self) -> dict[str, Any]:
        # The validated fields as they are (all plain values), without a model_dump pass.
        d = dict(self.__dict__)
        answer, actual = d.pop("answer"), d.pop("actual_output")
        d["answer_json"] = None if answer is None else canonical_json(answer)
        d["actual_output_json"] = None if actual is None else canonical_json(actual)
        return d


class Outcome(Record):
    """A stage's verdict on one of its input rows: kept, dropped with a reason, or ``retry``:
    not done this time for a passing reason (an LLM call that failed on transient errors after
    all its retries), so the row is pending again for the next run, which replaces this
    outcome with its own. ``failed_runs``: for ``retry`` (and a row dropped after too many),
    how many runs in a row have left the row so."""

    item_id: str
    status: Literal["ok", "dropped", "retry"]
    reason: str | None = None
    detail: str | None = None
    failed_runs: int | None = None


class ShardResult(BaseModel):
    """What a shard task hands back to the flow: rows per table plus one outcome per input row."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    config_key: str
    rows: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    outcomes: list[Outcome] = Field(default_factory=list)
    counters: dict[str, float] = Field(default_factory=dict)
    run_id: str = ""  # the run that computed it; another run's id means a cache hit
