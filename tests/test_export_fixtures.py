"""A small real store for the export, stats and decontamination tests.

Four prediction tasks of the current build (ids sort in this order):

- task-a (output): turn 1 correct.
- task-b (input): turn 1 wrong, turn 2 correct.
- task-c (output): turn 1 wrong, turn 2 wrong, turn 3 correct.
- task-d (input): turn 1 no_answer, turn 2 call_failed (no response).

plus task-e whose turn-1 call failed (skipped by the export), and rows under other config keys
that the current build must not see.
"""

from __future__ import annotations

from pathlib import Path

from storage.models import (
    Attempt,
    Function,
    IngestEntry,
    IOPair,
    LLMCall,
    Outcome,
    PredictionTask,
    RawFile,
    ShardResult,
)
from storage.store import Store

KEYS = {
    "ingest": "k-ingest",
    "transform": "k-transform",
    "sample_io": "k-sample",
    "prompts": "k-prompts",
    "answer": "k-answer",
    "revise1": "k-revise1",
    "revise2": "k-revise2",
}

# task-b's prompt shares a 13-word run with BENCH_13; task-c's only 12 words with BENCH_12.
SHARED_13 = "given a list of integers return the length of the longest strictly increasing subsequence"
SHARED_12 = "compute the number of distinct islands formed by ones in the binary grid"
PROMPTS = {
    "task-a": "You are given a function that adds two numbers. Predict the output for a=1, b=2.",
    "task-b": f"Problem: {SHARED_13}. Predict a feasible input for output 4.",
    "task-c": "Problem: " + " ".join(SHARED_12.split()[:12]) + " quickly please. Predict the output.",
    "task-d": "Predict an input of reverse_words that gives 'b a'.",
    "task-e": "Predict the output of identity for x=3.",
}
BENCH_13 = f"Write a function: {SHARED_13}, using dynamic programming."
BENCH_12 = " ".join(SHARED_12.split()[:12]) + " using depth first search"

RESPONSES = {
    ("task-a", 1): 'a+b = 3.\n```json\n{"output": 3}\n```',
    ("task-b", 1): 'Try [1].\n```json\n{"input": {"nums": [1]}}\n```',
    ("task-b", 2): 'Need 4 increasing.\n```json\n{"input": {"nums": [1, 2, 3, 4]}}\n```',
    ("task-c", 1): '```json\n{"output": 1}\n```',
    ("task-c", 2): '```json\n{"output": 2}\n```',
    ("task-c", 3): '```json\n{"output": 3}\n```',
    ("task-d", 1): "I am not sure.",
}
VERDICTS = {
    ("task-a", 1): "correct",
    ("task-b", 1): "wrong",
    ("task-b", 2): "correct",
    ("task-c", 1): "wrong",
    ("task-c", 2): "wrong",
    ("task-c", 3): "correct",
    ("task-d", 1): "no_answer",
    ("task-d", 2): "call_failed",
    ("task-e", 1): "call_failed",
}
FEEDBACK = {
    "correct": "Your answer is correct.",
    "wrong": "Your answer is incorrect.",
    "no_answer": "Your response does not contain a final answer in the required JSON format.",
    "call_failed": "The model call failed.",
}
KINDS = {"task-a": "output", "task-b": "input", "task-c": "output", "task-d": "input", "task-e": "output"}
PAIRS = {
    "task-a": ({"a": 1, "b": 2}, 3),
    "task-b": ({"nums": [5, 6, 7, 8]}, 4),
    "task-c": ({"grid": [[1]]}, 3),
    "task-d": ({"s": "a b"}, "b a"),
    "task-e": ({"x": 3}, 3),
}
TURN_KEY = {1: "answer", 2: "revise1", 3: "revise2"}
STAGE_OF_TURN = {1: "answer", 2: "revise1", 3: "revise2"}


def _attempt(task_id: str, turn: int) -> dict:
    verdict = VERDICTS[(task_id, turn)]
    call_key = f"call-{task_id}-{turn}"
    return Attempt(
        id=Attempt.make_id(task_id, turn, call_key),
        task_id=task_id,
        turn=turn,
        call_key=call_key,
        model="model-x",
        response=RESPONSES.get((task_id, turn)),
        extract_status="ok" if verdict in ("correct", "wrong") else verdict,
        verdict=verdict,
        feedback=FEEDBACK[verdict],
    ).row()


def build_store(path: Path) -> Store:
    """Write the fixture rows through the store's own write paths; returns the open store."""
    store = Store(path)
    ingest = [
        IngestEntry(id=f"ing-{i}", source="s", locator=f"f{i}.py", bytes_sha256=f"h{i}", size_bytes=10,
                    status="ok", raw_id=f"raw-{i}").row()
        for i in range(3)
    ]
    ingest.append(IngestEntry(id="ing-dup", source="s", locator="dup.py", bytes_sha256="h0", size_bytes=10,
                              status="duplicate", reason="duplicate_content", raw_id="raw-0").row())
    ingest.append(IngestEntry(id="ing-big", source="s", locator="big.py", bytes_sha256="hb",
                              size_bytes=10**7, status="rejected", reason="too_large").row())
    raws = [RawFile(id=f"raw-{i}", source="s", source_kind="educational", path=f"f{i}.py",
                    content=f"def f{i}(): pass", size_bytes=15).row() for i in range(3)]
    store.write_ingest(ShardResult(stage="ingest", config_key=KEYS["ingest"],
                                   rows={"ingest_log": ingest, "raw_files": raws}))

    fn = Function(id="fn-1", raw_id="raw-0", source="s", source_kind="educational", origin="offline",
                  model="model-x", refcode="def main_solution(a, b): return a + b", input_generator=None,
                  io_description="two ints", query="add", arg_names=["a", "b"]).row()
    fn2 = Function(id="fn-2", raw_id="raw-1", source="s", source_kind="educational", origin="offline",
                   model="model-x", refcode="import random\ndef main_solution(a): return a + random.random()",
                   input_generator=None, io_description="an int", query="jitter", arg_names=["a"]).row()
    store.write_shard(ShardResult(
        stage="transform", config_key=KEYS["transform"], rows={"functions": [fn, fn2]},
        outcomes=[Outcome(item_id="raw-0", status="ok"), Outcome(item_id="raw-1", status="ok"),
                  Outcome(item_id="raw-2", status="dropped", reason="parse_failure")],
    ))
    # An older transform config: must not show in the current build's funnel.
    store.write_shard(ShardResult(stage="transform", config_key="k-old",
                                  outcomes=[Outcome(item_id="raw-2", status="dropped", reason="not_executable")]))

    pairs = []
    for ordinal, (task_id, (inp, out)) in enumerate(sorted(PAIRS.items())):
        pairs.append(IOPair(id=f"pair-{task_id}", function_id="fn-1", input=inp, output=out, ordinal=ordinal).row())
    store.write_shard(ShardResult(
        stage="sample_io", config_key=KEYS["sample_io"], rows={"io_pairs": pairs},
        outcomes=[Outcome(item_id="fn-1", status="ok"),
                  Outcome(item_id="fn-2", status="dropped", reason="non_deterministic")],
    ))

    tasks = [
        PredictionTask(id=task_id, pair_id=f"pair-{task_id}", function_id="fn-1", kind=KINDS[task_id],
                       messages=[{"role": "system", "content": "You are helpful."},
                                 {"role": "user", "content": prompt}]).row()
        for task_id, prompt in PROMPTS.items()
    ]
    store.write_shard(ShardResult(
        stage="prompts", config_key=KEYS["prompts"], rows={"prediction_tasks": tasks},
        outcomes=[Outcome(item_id=f"pair-{t}", status="ok") for t in PROMPTS],
    ))
    # A task of another prompt config, with a turn-1 attempt under the current answer key.
    other = PredictionTask(id="task-0-other", pair_id="pair-task-a", function_id="fn-1", kind="output",
                           messages=[{"role": "user", "content": "old prompt"}]).row()
    store.write_shard(ShardResult(stage="prompts", config_key="k-prompts-old", rows={"prediction_tasks": [other]}))

    for turn in (1, 2, 3):
        rows = [_attempt(task_id, t) for (task_id, t) in VERDICTS if t == turn]
        if turn == 1:
            rows.append({**_attempt("task-a", 1), "id": "att-other", "task_id": "task-0-other"})
        stage = STAGE_OF_TURN[turn]
        store.write_shard(ShardResult(
            stage=stage, config_key=KEYS[TURN_KEY[turn]], rows={"attempts": rows},
            outcomes=[Outcome(item_id=r["task_id"], status="ok") for r in rows if r["verdict"] != "call_failed"]
            + [Outcome(item_id=r["task_id"], status="dropped", reason="call_failed")
               for r in rows if r["verdict"] == "call_failed"],
        ))

    store.add_llm_calls([
        LLMCall(key="c1", model="model-x", stage="transform", content="x", finish_reason="stop",
                prompt_tokens=100, completion_tokens=50),
        LLMCall(key="c2", model="model-x", stage="answer", content="y", finish_reason="length",
                truncated=True, prompt_tokens=10, completion_tokens=4096),
        LLMCall(key="c3", model="model-x", stage="answer", content="z", finish_reason="stop",
                prompt_tokens=12, completion_tokens=30),
    ])
    return store
