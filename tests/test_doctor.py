"""`codeio doctor`: each check against the real thing (a live test LLM server, a closed port,
a path blocked by a file, a database held by another process), and the exit code."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from flows.config import BuildConfig
from flows.doctor import Check, check_database, check_llm, check_output, check_prefect, main, run_doctor


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _http_cfg(base_url: str, model: str = "test-model", api_key_env: str | None = None) -> BuildConfig:
    return BuildConfig.model_validate(
        {"provider": "http", "llm": {"base_url": base_url, "model": model, "api_key_env": api_key_env}}
    )


def test_llm_endpoint_up_and_model_listed(monkeypatch):
    from llm.testserver import serve

    monkeypatch.setenv("CODEIO_TEST_KEY", "sk-very-secret")
    with serve(model="coder-7b", api_key="sk-very-secret") as server:
        ok = check_llm(_http_cfg(server.base_url, "coder-7b", "CODEIO_TEST_KEY"))
        missing = check_llm(_http_cfg(server.base_url, "other-model", "CODEIO_TEST_KEY"))
    assert ok.status == "ok", ok.line()
    assert "coder-7b" in ok.detail
    assert "sk-very-secret" not in ok.line()
    assert missing.status == "fail"
    assert "listed: coder-7b" in missing.detail and "--model" in missing.fix


def test_llm_model_listed_but_refusing_the_builds_requests_fails(monkeypatch):
    """A listed model that refuses the request body a build sends (here max_tokens, as
    OpenAI's reasoning models do) fails the check, with the endpoint's reason; with the field
    it takes, the same endpoint answers."""
    from llm.testserver import Fault, serve

    refusal = Fault("400", match=lambda body: "max_tokens" in body, error={
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                   "Use 'max_completion_tokens' instead."})
    with serve(faults=[refusal]) as server:
        cfg = _http_cfg(server.base_url)
        refused = check_llm(cfg)
        fixed = check_llm(cfg.model_copy(update={"llm": cfg.llm.model_copy(
            update={"max_tokens_field": "max_completion_tokens"})}))
        sent = server.counts["400"]
    assert refused.status == "fail", refused.line()
    assert "refused a chat request" in refused.detail and "max_completion_tokens" in refused.detail
    assert "llm.max_tokens_field" in refused.fix
    assert fixed.status == "ok" and "answered a chat request" in fixed.detail, fixed.line()
    assert sent == 1  # one request, not retried


def _prompt_chars(body: dict) -> int:
    return sum(len(m["content"]) for m in body["messages"])


def test_llm_endpoint_that_cuts_long_prompts_fails():
    """An endpoint that cuts a long prompt without an error (Ollama with a context of 8192
    tokens keeps 4098 of a longer prompt and counts only those) fails the check; one that
    counts every token of the same prompts passes. The long probe is as long as a revision
    turn carrying a first answer of llm.max_tokens, so a smaller max_tokens fits."""
    from llm.testserver import serve

    def cutting(body: dict) -> dict:  # ~4 characters a token, at most 4098 kept
        return {"content": "OK", "prompt_tokens": min(_prompt_chars(body) // 4 + 1, 4098)}

    with serve(cutting) as server:
        cut = check_llm(_http_cfg(server.base_url))
        small = _http_cfg(server.base_url)
        small = small.model_copy(update={"llm": small.llm.model_copy(update={"max_tokens": 1024})})
        fits = check_llm(small)
        longest = max(_prompt_chars(b) for b in server.requests)
    with serve() as server:
        whole = check_llm(_http_cfg(server.base_url))
        sent = len(server.requests)
    assert cut.status == "fail", cut.line()
    assert "cut a prompt of about" in cut.detail and "to 4098" in cut.detail
    assert "OLLAMA_CONTEXT_LENGTH" in cut.fix and "llm.max_tokens" in cut.fix
    assert longest // 4 >= 4096 + 2048  # the default max_tokens plus the room for the rest of a prompt
    assert fits.status == "ok", fits.line()
    assert whole.status == "ok" and "took a prompt of about 6" in whole.detail, whole.line()
    assert sent == 3  # the chat request and the two probes


def test_llm_endpoint_that_counts_no_tokens_passes_and_says_so():
    from llm.testserver import serve

    answer = {"id": "c1", "object": "chat.completion", "model": "test-model",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}]}
    with serve(lambda body: {"body": answer}) as server:
        check = check_llm(_http_cfg(server.base_url))
    assert check.status == "ok", check.line()
    assert "count no prompt tokens" in check.detail


def test_llm_endpoint_refusing_long_prompts_is_a_warning():
    """An endpoint that refuses a prompt longer than its context (vLLM, SGLang: HTTP 400) says
    so, so nothing is lost silently: the check warns that such rows drop as prompt_too_long."""
    from llm.testserver import Fault, serve

    too_long = Fault("400", match=lambda body: _prompt_chars(body) > 8000)
    with serve(faults=[too_long]) as server:
        check = check_llm(_http_cfg(server.base_url))
    assert check.status == "warn", check.line()
    assert "prompt_too_long" in check.detail and "maximum context length" in check.detail
    assert "longer context" in check.fix


def test_llm_key_variable_unset_is_a_warning(monkeypatch):
    from llm.testserver import serve

    monkeypatch.delenv("CODEIO_UNSET_KEY", raising=False)
    with serve() as server:
        check = check_llm(_http_cfg(server.base_url, api_key_env="CODEIO_UNSET_KEY"))
    assert check.status == "warn" and "$CODEIO_UNSET_KEY is not set" in check.line()


def test_llm_endpoint_down_fails_with_a_fix():
    check = check_llm(_http_cfg(f"http://127.0.0.1:{_closed_port()}/v1"))
    assert check.status == "fail"
    assert "unreachable" in check.detail
    assert check.fix and "--base-url" in check.fix
    assert check.line().startswith("[fail] llm: ") and " — start the server" in check.line()


def test_llm_skipped_offline():
    assert check_llm(BuildConfig()).status == "skip"


def test_database_dir_blocked_by_a_file(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    cfg = BuildConfig(db_path=str(tmp_path / "data" / "sub" / "codeio.duckdb"), output_dir=str(tmp_path / "data" / "out"))
    db = check_database(cfg)
    assert db.status == "fail"
    assert "is a file, not a directory" in db.detail and db.fix
    assert check_output(cfg).status == "fail"


def test_database_new_existing_and_locked(tmp_path):
    from storage.store import Store

    cfg = BuildConfig(db_path=str(tmp_path / "codeio.duckdb"))
    new = check_database(cfg)
    assert new.status == "ok" and "will be created" in new.detail
    assert list(tmp_path.iterdir()) == []  # the scratch file is gone
    Store(cfg.db_path).close()
    assert check_database(cfg).status == "ok"
    # The last run did not finish: said so, with its error when it failed.
    with Store(cfg.db_path) as store:
        store.start_run("r1", {})
    interrupted = check_database(cfg)
    assert interrupted.status == "warn" and "the last run was interrupted" in interrupted.detail
    with Store(cfg.db_path) as store:
        store.finish_run("r1", "failed", {"error": "3 row(s) left to retry: HTTP 500"})
    failed = check_database(cfg)
    assert failed.status == "warn" and "the last run failed: 3 row(s) left to retry" in failed.detail
    with Store(cfg.db_path) as store:
        store.start_run("r2", {})
        store.finish_run("r2", "completed", {})
    assert check_database(cfg).status == "ok"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)",
         cfg.db_path],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        locked = check_database(cfg)
    finally:
        holder.kill()
        holder.wait()
    assert locked.status == "warn" and "in use by another process" in locked.detail
    assert f"process {holder.pid} " in locked.detail and "running build?" not in locked.detail


def test_prefect_api(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{_closed_port()}/api"}):
        down = check_prefect()
    assert down.status == "fail" and "unset PREFECT_API_URL" in down.fix
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        unset = check_prefect()
    assert unset.status == "ok" and "temporary local server" in unset.detail


def test_prefect_api_healthy(prefect_harness):
    check = check_prefect()
    assert check.status == "ok" and "healthy" in check.detail


def test_run_doctor_and_exit_code(tmp_path, capsys):
    cfg = BuildConfig(db_path=str(tmp_path / "db" / "codeio.duckdb"), output_dir=str(tmp_path / "out"))
    checks = run_doctor(cfg)
    assert [c.name for c in checks] == ["python", "database", "export", "sandbox", "prefect", "llm"]
    sandbox = checks[3]
    assert sandbox.status in ("ok", "warn") and "network namespace" in sandbox.detail
    assert "reads confined" in sandbox.detail
    assert main(cfg) == (1 if any(c.status == "fail" for c in checks) else 0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(checks) and all(line.startswith(("[ok]", "[warn]", "[fail]", "[skip]")) for line in lines)

    blocked = BuildConfig(provider="http", llm={"base_url": f"http://127.0.0.1:{_closed_port()}/v1"},
                          db_path=str(tmp_path / "db" / "codeio.duckdb"))
    assert main(blocked) == 1
    assert "[fail] llm:" in capsys.readouterr().out


def test_check_line_shows_the_fix_only_when_needed():
    assert Check("x", "ok", "fine", "never shown").line() == "[ok] x: fine"
    assert Check("x", "fail", "broken", "do this").line() == "[fail] x: broken — do this"


@pytest.mark.parametrize("status", ["warn", "fail"])
def test_fix_hint_present_for_every_problem(tmp_path, status):
    (tmp_path / "f").write_text("")
    cfg = BuildConfig(provider="http", llm={"base_url": f"http://127.0.0.1:{_closed_port()}/v1"},
                      db_path=str(tmp_path / "f" / "x.duckdb"), output_dir=str(tmp_path / "f" / "out"))
    for check in run_doctor(cfg):
        if check.status == status:
            assert check.fix, check.line()


def test_llm_base_url_without_v1_or_with_the_chat_path_fails_naming_the_right_one():
    from llm.testserver import serve

    with serve() as server:
        root = server.base_url.removesuffix("/v1")
        bare = check_llm(_http_cfg(root))
        chat = check_llm(_http_cfg(server.base_url + "/chat/completions"))
        elsewhere = check_llm(_http_cfg(root + "/api"))  # lists models nowhere it can find
    assert bare.status == "fail" and bare.fix == f"set llm.base_url / --base-url to {server.base_url}"
    assert chat.status == "fail" and chat.fix == f"set llm.base_url / --base-url to {server.base_url}"
    assert elsewhere.status == "warn" and "ends in /v1" in elsewhere.fix


def test_llm_model_named_without_ollamas_latest_tag_is_served():
    from llm.testserver import serve

    with serve(model="qwen2.5-coder:latest") as server:
        check = check_llm(_http_cfg(server.base_url, "qwen2.5-coder"))
    assert check.status == "ok", check.line()
