"""Build artifacts under a real (temporary) Prefect server: progress per stage, and the
summary (funnel with drop reasons, response types per turn, LLM usage with cost) read back
through the client; and no artifact at all outside a flow run."""

from __future__ import annotations

import json
import shutil

import pytest

from flows.config import SAMPLE_CORPUS, BuildConfig

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness):
    """A real store: the build over three sample files plus one that does not parse. Its
    task results are kept apart, so a cached shard of another session cannot stand in."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    from flows.build import run_build

    root = tmp_path_factory.mktemp("artifacts")
    corpus = root / "corpus"
    corpus.mkdir()
    for f in sorted(SAMPLE_CORPUS.glob("*.py"))[:3]:
        shutil.copy(f, corpus / f.name)
    (corpus / "broken.py").write_text("def f(:\n")
    cfg = BuildConfig.model_validate({
        "sources": [{"path": str(corpus), "kind": "mixed"}],
        "db_path": str(root / "db" / "codeio.duckdb"),
        "output_dir": str(root / "out"),
        "sandbox": {"workers": 1},
        "sampling": {"generator_calls": 100},
        "llm": {"price_per_1k_prompt": 1.0, "price_per_1k_completion": 2.0},
    })
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: root / "results"}):
        report = run_build(cfg)
    return cfg, report


def _artifacts(flow_run_id) -> dict[str, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    by_key: dict[str, list] = {}
    for a in found:
        by_key.setdefault(a.key, []).append(a)
    return by_key


def _table(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def test_summary_and_progress_artifacts(built):
    from prefect import flow
    from prefect.context import get_run_context

    from flows.artifacts import publish_stage_progress, publish_summary
    from storage.stats import funnel, response_types
    from storage.store import Store
    from tasks.registry import stage_keys

    cfg, report = built
    keys = stage_keys(cfg)

    @flow(name="artifacts-probe")
    def probe() -> str:
        first = publish_stage_progress("sample_io", 0, 4)
        assert publish_stage_progress("sample_io", 3, 4) == first  # updated, not re-created
        with Store(cfg.db_path, read_only=True) as store:
            ids = publish_summary(store, keys, report, cfg.llm)
        assert len(ids) == 4, ids
        return str(get_run_context().flow_run.id)

    arts = _artifacts(probe())
    progress = arts["codeio-sample-io-progress"]
    assert len(progress) == 1 and progress[0].type == "progress"
    assert float(progress[0].data) == 75.0
    assert progress[0].description == "sample_io: 3 of 4 shard(s) written"

    with Store(cfg.db_path, read_only=True) as store:
        expected_funnel = funnel(store, keys).to_dicts()
        expected_types = response_types(store, keys)
    funnel_rows = _table(arts["codeio-funnel"][0])
    assert funnel_rows == expected_funnel
    ingest = {(r["status"], r["reason"]): r["count"] for r in funnel_rows if r["stage"] == "ingest"}
    assert ingest[("rejected", "syntax_error")] == 1 and ingest[("ok", None)] == 3

    types = _table(arts["codeio-response-types"][0])
    turn1 = [r for r in types if r["turn"] == 1]
    assert {r["kind"] for r in turn1} == {"input", "output"}
    for r in types:
        assert sum(r[f"{t} %"] for t in ("correct", "wrong", "no_answer", "error")) == pytest.approx(100.0, abs=0.2)
        counts = expected_types.filter((expected_types["turn"] == r["turn"]) & (expected_types["kind"] == r["kind"]))
        assert r["attempts"] == counts["count"].sum()

    usage = _table(arts["codeio-llm-usage"][0])
    total = usage[-1]
    assert total["stage"] == "total" and total["calls"] == sum(r["calls"] for r in usage[:-1]) > 0
    assert total["cost_usd"] == pytest.approx(
        round(total["prompt_tokens"] / 1000 * 1.0 + total["completion_tokens"] / 1000 * 2.0, 4), abs=1e-3
    )

    markdown = arts["codeio-summary"][0].data
    assert "## Funnel" in markdown and "**ingest**: 3 kept of 4" in markdown
    assert "| ingest | rejected | syntax_error | 1 |" in markdown
    assert "## Response types (paper figure 7)" in markdown and "| 1 | input |" in markdown
    assert "## LLM usage" in markdown and "| total |" in markdown


def test_outside_a_flow_run_nothing_is_published(built, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.artifacts import publish_stage_progress, publish_summary
    from storage.store import Store
    from tasks.registry import stage_keys

    cfg, report = built
    with get_client(sync_client=True) as client:
        before = len(client.read_artifacts())
    assert publish_stage_progress("answer", 1, 2) is None
    with Store(cfg.db_path, read_only=True) as store:
        assert publish_summary(store, stage_keys(cfg), report) == {}
    with get_client(sync_client=True) as client:
        assert len(client.read_artifacts()) == before


def test_an_api_error_does_not_fail_the_caller(monkeypatch, built):
    """A failing artifact API is logged and swallowed: the build must go on."""
    import prefect.artifacts
    from prefect import flow

    from flows import artifacts

    def boom(*_a, **_k):
        raise RuntimeError("API down")

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", boom)
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", boom)

    @flow(name="artifacts-fail-probe")
    def probe() -> tuple:
        from storage.store import Store
        from tasks.registry import stage_keys

        cfg, report = built
        with Store(cfg.db_path, read_only=True) as store:
            return artifacts.publish_stage_progress("answer", 1, 2), artifacts.publish_summary(store, stage_keys(cfg), report)

    assert probe() == (None, {})


def test_answers_of_the_offline_provider_are_not_called_llm_calls():
    from flows.artifacts import calls_text

    assert calls_text({"llm_calls_sent": 1200, "provider": "http"}) == "1,200 LLM call(s) sent"
    assert calls_text({"llm_calls_sent": 26, "provider": "offline"}) == "26 answer(s) from the offline provider (no LLM)"
    cached = {"llm_calls_sent": 0, "provider": "http", "stages": {"answer": {"cached_shards": 3}, "revise1": {}}}
    assert calls_text(cached) == "0 LLM call(s) sent (3 shard(s) taken from Prefect's result cache)"
