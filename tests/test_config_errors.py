"""Config loading: errors are one line that names every problem, with a hint for a misspelt key, and a
file in another format told which formats are accepted. load_config only: no Prefect run."""

from __future__ import annotations

import json

import pytest

from flows.config import ACCEPTED_FORMATS, BuildConfig, load_config
from flows.errors import UserError


def _error(path=None, overrides=None) -> str:
    with pytest.raises(UserError) as info:
        load_config(str(path) if path else None, overrides)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _toml(tmp_path, text: str, name: str = "c.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_every_error_is_named_unknown_keys_first(tmp_path):
    p = _toml(tmp_path, 'shard_size = -1\nfoo = 1\n[llm]\nmodle = "x"\n')
    assert _error(p) == (
        "invalid config: llm.modle: unknown setting (did you mean 'model'?); foo: unknown setting; "
        "shard_size: Input should be greater than or equal to 1"
    )


def test_a_misspelt_required_key_is_named_before_the_missing_one(tmp_path):
    p = _toml(tmp_path, '[[sources]]\npth = "/data/corpus"\n')
    assert _error(p) == (
        "invalid config: sources.0.pth: unknown setting (did you mean 'path'?); sources.0.path: Field required"
    )


def test_many_errors_are_capped_without_hiding_unknown_keys():
    over = {"shard_size": 0, "task_retries": 99, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}
    assert _error(None, over) == (
        "invalid config: a: unknown setting; b: unknown setting; c: unknown setting; d: unknown setting; "
        "e: unknown setting; and 3 more"
    )
    assert _error(None, {"a": 1, "b": 2, "c": 3, "d": 4, "shard_size": 0}) == (
        "invalid config: a: unknown setting; b: unknown setting; c: unknown setting; d: unknown setting; "
        "shard_size: Input should be greater than or equal to 1"
    )


@pytest.mark.parametrize("key, hint", [
    ("parallel_shards", "'max_parallel_shards'"),  # a suffix of the setting's name
    ("parallel", "'max_parallel_shards'"),
    ("db", "'db_path'"),  # the start of a word, never the middle (not sanDBox)
    ("shard_sise", "'shard_size'"),  # close by difflib
    ("Shard-Size", "'shard_size'"),  # case and dashes
    ("max", "'max_parallel_shards' or 'max_file_bytes'"),
    ("model", "'llm.model'"),  # a setting of a section, at the top level
    ("base_url", "'llm.base_url'"),
])
def test_unknown_top_level_key_hint(key, hint):
    assert _error(None, {key: 1}) == f"invalid config: {key}: unknown setting (did you mean {hint}?)"


def test_no_hint_when_nothing_is_close():
    assert _error(None, {"foo": 1, "s": 2}) == "invalid config: foo: unknown setting; s: unknown setting"


def test_hints_use_the_fields_of_the_section_the_key_is_in(tmp_path):
    p = _toml(tmp_path, '[sandbox]\ncpu = 1\n[llm]\nmax_concurency = 2\n[export]\nmodes = "rejection"\n'
                        '[[sources]]\npath = "x"\nkinds = "mixed"\n')
    assert _error(p) == (
        "invalid config: sources.0.kinds: unknown setting (did you mean 'kind'?); "
        "llm.max_concurency: unknown setting (did you mean 'max_concurrency'?); "
        "sandbox.cpu: unknown setting (did you mean 'cpu_seconds'?); "
        "export.modes: unknown setting (did you mean 'mode'?)"
    )


def test_validator_messages_lose_pydantics_prefix():
    assert _error(None, {"sources": []}) == "invalid config: sources: at least one source is required"
    assert _error(None, {"llm": {"min_concurrency": 5, "max_concurrency": 2}}) == (
        "invalid config: llm: min_concurrency must not exceed max_concurrency"
    )


def test_odd_keys_stay_on_one_line():
    assert _error(None, {"": 1, "a b": 2, "x\ny": 3}) == (
        'invalid config: "": unknown setting; "a b": unknown setting; "x\\ny": unknown setting'
    )


@pytest.mark.parametrize("name, text", [
    ("c.yaml", "shard_size: 5\nllm:\n  model: x\n"),
    ("c.yml", ""),
    ("config", "shard_size: 5\n"),
])
def test_other_formats_are_told_what_is_accepted(tmp_path, name, text):
    p = _toml(tmp_path, text, name)
    assert _error(p) == f"config file {p}: only TOML (.toml) and JSON (.json) configs are accepted"
    assert ACCEPTED_FORMATS == "only TOML (.toml) and JSON (.json) configs are accepted"


def test_toml_under_another_name_is_told_to_be_renamed(tmp_path):
    p = _toml(tmp_path, "shard_size = 5\n", "build.cfg")
    assert _error(p) == f"config file {p}: {ACCEPTED_FORMATS}; it reads as TOML, so name it build.toml"


def test_broken_json_under_another_name_says_why(tmp_path):
    p = _toml(tmp_path, '{"shard_size": 5,}\n', "build.conf")
    assert _error(p) == (
        f"config file {p}: {ACCEPTED_FORMATS}; read as JSON it fails: "
        "Expecting property name enclosed in double quotes: line 1 column 18 (char 17)"
    )


def test_what_was_accepted_still_is(tmp_path):
    """Any file that is not .toml is read as JSON, as before; .TOML is now TOML too."""
    for name in ("c.json", "c.JSON", "c.conf", "config", "c.yaml", "c.TOML"):
        p = tmp_path / name
        p.write_text(json.dumps({"shard_size": 7}), encoding="utf-8")
        assert load_config(str(p)).shard_size == 7
    assert load_config(str(_toml(tmp_path, "shard_size = 8\n", "d.TOML"))).shard_size == 8
    assert load_config(str(_toml(tmp_path, "shard_size = 9\n"))).shard_size == 9


def test_parse_errors_of_toml_and_json_files(tmp_path):
    p = _toml(tmp_path, "shard_size = \n")
    assert _error(p) == f"config file {p} cannot be parsed: Invalid value (at line 1, column 14)"
    p = _toml(tmp_path, "shard_size: 5\n", "c.json")
    assert _error(p) == f"config file {p} cannot be parsed: Expecting value: line 1 column 1 (char 0)"
    assert _error(tmp_path / "none.toml") == f"config file {tmp_path / 'none.toml'} not found"


@pytest.mark.parametrize("text, kind", [("[1, 2]", "an array"), ("null", "null"), ('"x"', "a string"),
                                        ("3", "a number")])
def test_json_that_is_not_an_object(tmp_path, text, kind):
    p = _toml(tmp_path, text, "c.json")
    assert _error(p, {"db_path": "x.duckdb"}) == f"config file {p} must hold an object of settings, not {kind}"


def test_a_build_exports_beside_its_database_unless_told_otherwise(tmp_path):
    assert BuildConfig().output_dir == "codeio-out/export"  # beside the default database
    elsewhere = load_config(None, {"db_path": str(tmp_path / "b" / "codeio.duckdb")})
    assert elsewhere.output_dir == str(tmp_path / "b" / "export")
    cfg = tmp_path / "build.json"
    cfg.write_text(json.dumps({"output_dir": str(tmp_path / "mine")}))
    assert load_config(str(cfg), {"db_path": str(tmp_path / "b" / "codeio.duckdb")}).output_dir == str(tmp_path / "mine")


def test_every_setting_has_a_description():
    """The schema says what each setting does, the nested sections' settings (llm.*) too."""
    schema = BuildConfig.model_json_schema()
    models = {"BuildConfig": schema, **schema["$defs"]}
    missing = [f"{model}.{name}" for model, spec in models.items()
               for name, prop in spec.get("properties", {}).items() if not prop.get("description")]
    assert not missing
    assert set(schema["$defs"]) >= {"LLMSettings", "SandboxSettings", "SamplingSettings", "SourceSpec"}


@pytest.mark.parametrize("kinds, problem", [([], "name at least one of 'input' and 'output'"),
                                            (["output", "output"], "name each kind once")])
def test_prediction_kinds_name_some_kind_once_each(kinds, problem):
    """No kind built no task (an empty export at the end of the build); a kind named twice made
    each task twice and stopped the build at its first answer shard with a store error."""
    assert _error(overrides={"prediction": {"kinds": kinds}}) == f"invalid config: prediction.kinds: {problem}"
