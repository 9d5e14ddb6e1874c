"""Decontamination by word 13-grams: matching, bad benchmark lines, and its use in the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import storage.decontam as decontam_module
from storage.decontam import Decontaminator
from storage.export import export_datasets
from test_export_fixtures import BENCH_12, BENCH_13, KEYS, SHARED_12, SHARED_13, build_store


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture()
def bench13(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "bench13.jsonl", [{"text": BENCH_13, "id": 1}])


@pytest.fixture()
def bench12(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "bench12.jsonl", [{"text": BENCH_12}])


def test_thirteen_shared_words_match_twelve_do_not():
    words = [f"w{i}" for i in range(30)]
    bench = Decontaminator.from_texts([" ".join(words)])
    assert bench.contaminated("intro " + " ".join(words[5:18]) + " outro")  # 13 words
    assert not bench.contaminated("intro " + " ".join(words[5:17]) + " outro")  # 12 words
    assert not bench.contaminated(" ".join(words[5:17] + ["x"] + words[17:29]))  # broken run


def test_match_ignores_case_and_punctuation(bench13):
    bench = Decontaminator.from_files([bench13])
    assert bench.contaminated(SHARED_13.upper().replace(" ", ", ") + "!")
    assert not bench.contaminated("")
    assert not Decontaminator.from_texts([]).contaminated(SHARED_13)


def test_bad_lines_are_skipped_and_recorded(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [
        {"text": BENCH_13},
        "not json at all",
        "",
        {"question": "no text field"},
        {"text": 5},
        "[1, 2]",
        {"text": "too short"},
    ])
    bench = Decontaminator.from_files([path])
    summary = bench.summary
    assert (summary["lines"], summary["bad_lines"], summary["texts"], summary["short_texts"]) == (6, 4, 2, 1)
    assert summary["bad_line_examples"][0] == f"{path}:2: not JSON (Expecting value)"
    assert summary["bad_line_examples"][1].endswith(":4: no field 'text'")
    assert summary["ngrams"] == len(bench) == len(BENCH_13.replace(",", "").split()) - 12
    assert bench.contaminated(SHARED_13)


def test_other_field_and_missing_file(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [{"prompt": BENCH_13}])
    assert Decontaminator.from_files([path], field="prompt").contaminated(SHARED_13)
    with pytest.raises(FileNotFoundError):
        Decontaminator.from_files([tmp_path / "missing.jsonl"])


def test_chunked_merging_gives_the_same_set(monkeypatch):
    texts = [" ".join(f"t{i}w{j}" for j in range(20)) for i in range(50)] * 2
    whole = Decontaminator.from_texts(texts)
    monkeypatch.setattr(decontam_module, "_MERGE_EVERY", 7)
    chunked = Decontaminator.from_texts(texts)
    assert len(whole) == len(chunked) == 50 * 8  # duplicates counted once
    assert list(whole._hashes) == list(chunked._hashes) == sorted(set(whole._hashes))
    assert chunked.contaminated(texts[37])


def test_export_drops_contaminated_samples(tmp_path, bench13, bench12):
    with build_store(tmp_path / "codeio.duckdb") as store:
        bench = Decontaminator.from_files([bench13, bench12])
        result = export_datasets(store, KEYS, tmp_path / "out", decontam=bench)
    for name in ("codeio", "codeio_pp"):
        ids = [json.loads(x)["id"] for x in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()]
        assert ids == ["task-a", "task-c", "task-d"]  # task-b shares 13 words; task-c only 12
    dec = result.stats["decontamination"]
    assert (dec["action"], dec["contaminated"], dec["dropped"], dec["flagged"]) == ("drop", 1, 1, 0)
    assert dec["examples"] == ["task-b"]  # a dropped sample can be looked up by id
    assert dec["benchmark"]["files"] == [str(bench13), str(bench12)]
    assert result.counts["codeio.messages.jsonl"] == 3


def test_export_flags_contaminated_samples(tmp_path, bench13):
    with build_store(tmp_path / "codeio.duckdb") as store:
        bench = Decontaminator.from_files([bench13])
        result = export_datasets(store, KEYS, tmp_path / "out", decontam=bench, decontam_action="flag")
    rows = [json.loads(x) for x in (tmp_path / "out" / "codeio_pp.jsonl").read_text().splitlines()]
    assert {r["id"]: r["contaminated"] for r in rows} == {
        "task-a": False, "task-b": True, "task-c": False, "task-d": False}
    assert list(rows[0])[-1] == "contaminated"
    assert result.stats["decontamination"]["flagged"] == 1


def test_response_text_is_checked_too(tmp_path):
    from test_export_fixtures import RESPONSES

    # a benchmark holding task-b's revision (turn 2) text only
    text = RESPONSES[("task-b", 2)] + " " + " ".join(f"pad{i}" for i in range(13))
    bench = Decontaminator.from_texts([text], n=5)
    with build_store(tmp_path / "codeio.duckdb") as store:
        result = export_datasets(store, KEYS, tmp_path / "out", decontam=bench)
    assert result.stats["decontamination"]["contaminated"] == 1
    assert result.counts["codeio.jsonl"] == 3


def test_twelve_word_overlap_alone_is_clean(tmp_path, bench12):
    assert SHARED_12  # the fixture's task-c prompt holds the first 12 of its words
    with build_store(tmp_path / "codeio.duckdb") as store:
        result = export_datasets(store, KEYS, tmp_path / "out", decontam=Decontaminator.from_files([bench12]))
    assert result.stats["decontamination"]["contaminated"] == 0
    assert result.counts["codeio_pp.jsonl"] == 4


def test_stats_name_contaminated_samples_up_to_the_cap(tmp_path, bench13, monkeypatch):
    import storage.export as export_module

    monkeypatch.setattr(export_module, "CONTAMINATED_EXAMPLES", 0)
    with build_store(tmp_path / "codeio.duckdb") as store:
        result = export_datasets(store, KEYS, tmp_path / "out", decontam=Decontaminator.from_files([bench13]))
    dec = result.stats["decontamination"]
    assert (dec["contaminated"], dec["examples"]) == (1, [])
