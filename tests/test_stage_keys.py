"""Config keys: what changes them and what must not.

A stage's key covers the settings that differ from their defaults, so adding a setting whose
default keeps today's behaviour leaves every existing build's keys (and rows) as they are.
The other side of that rule: changing a default changes what a stage makes under the same
key, so it needs the stage's version bumped. The defaults pinned below make such a change
visible: if this test fails, bump the version of every stage that reads the setting
(tasks/sample_io.py, tasks/answer.py) and then update the pinned values.
"""

from __future__ import annotations

from flows.config import BuildConfig, SamplingSettings, SandboxSettings
from tasks.registry import stage_keys


def test_the_defaults_the_keys_rely_on_are_pinned():
    assert SamplingSettings().model_dump() == {
        "generator_calls": 1000, "function_budget_s": 30.0,
        "pairs_per_kind": {"mixed": 3, "educational": 6, "curated": 10}, "min_pairs": 2,
        "check_determinism": True, "distinct_outputs_search": 4,
    }
    assert SandboxSettings().model_dump(exclude={"workers"}) == {
        "cpu_seconds": 5.0, "wall_factor": 3.0, "memory_mb": 2048}


def test_a_value_equal_to_its_default_is_not_a_change_and_another_value_is():
    base = stage_keys(BuildConfig())
    explicit = stage_keys(BuildConfig.model_validate({"sampling": {"generator_calls": 1000},
                                                      "sandbox": {"cpu_seconds": 5.0, "workers": 1}}))
    assert explicit == base  # workers never change what is made
    changed = stage_keys(BuildConfig.model_validate({"sampling": {"generator_calls": 200}}))
    assert {k for k in base if base[k] != changed[k]} == {"sample_io", "prompts", "answer", "revise1", "revise2"}
    sandbox = stage_keys(BuildConfig.model_validate({"sandbox": {"cpu_seconds": 2.0}}))
    assert {k for k in base if base[k] != sandbox[k]} == {"sample_io", "prompts", "answer", "revise1", "revise2"}


def test_the_registry_builds_the_stages_in_pipeline_order():
    """storage.stages names the stages for the store and the statistics; the registry's
    stages (and their config keys) follow it, so a new stage cannot be left out of either."""
    from storage.stages import STAGE_ORDER, TURN_STAGES
    from tasks.registry import STAGES

    assert ("ingest", *(s.name for s in STAGES)) == STAGE_ORDER
    assert tuple(stage_keys(BuildConfig())) == STAGE_ORDER
    assert [s.upstream for s in STAGES] == list(STAGE_ORDER[:-1])
    assert set(TURN_STAGES.values()) <= set(STAGE_ORDER)


def test_an_edited_template_changes_the_keys_of_the_stages_that_render_it(monkeypatch):
    """A team tuning the prompt wording edits prompts/templates: the stages that render the
    edited file, and those after them, run again; the others keep their rows."""
    import prompts.render as render

    base = stage_keys(BuildConfig())
    original = render.load_template

    def changed(edited: str) -> set[str]:
        monkeypatch.setattr(render, "load_template",
                            lambda name: original(name) + ("\nThink step by step.\n" if name == edited else ""))
        keys = stage_keys(BuildConfig())
        monkeypatch.setattr(render, "load_template", original)
        return {k for k in base if base[k] != keys[k]}

    after_prompts = {"prompts", "answer", "revise1", "revise2"}
    assert changed("transform.txt") == {"transform", "sample_io"} | after_prompts
    assert changed("predict_input.txt") == after_prompts
    assert changed("reference_tip.txt") == after_prompts
    assert changed("feedback.txt") == {"answer", "revise1", "revise2"}
    assert changed("revise.txt") == {"revise1", "revise2"}
    assert changed("multiturn.txt") == set()  # export renders it anew each time; no stage stores it
    assert stage_keys(BuildConfig()) == base


def test_extra_body_changes_the_keys_of_every_stage_that_calls_the_llm():
    """extra_body is in every call's key (a chat template's enable_thinking, top_p, ...): the
    transform, whose rewrites it changes, runs again too, not only the answer stages."""
    http = {"provider": "http", "llm": {"model": "m"}}
    base = stage_keys(BuildConfig.model_validate(http))
    changed = stage_keys(BuildConfig.model_validate(
        {**http, "llm": {"model": "m", "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}}))
    assert {k for k in base if base[k] != changed[k]} == {
        "transform", "sample_io", "prompts", "answer", "revise1", "revise2"}
