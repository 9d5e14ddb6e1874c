"""`codeio doctor`: check what a build depends on before it starts, and say how to fix it.

One line per check, ``[ok|warn|fail|skip] name: detail — how to fix``; the exit code is
non-zero when any check fails. Checks never print secrets (the API key is sent, never shown).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from flows.config import BuildConfig

Status = Literal["ok", "warn", "fail", "skip"]
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``fix`` says what to do when it is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status}] {self.name}: {self.detail}"
        return f"{text} — {self.fix}" if self.fix and self.status in ("warn", "fail") else text


def check_python() -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] == (3, 11):
        return Check("python", "ok", f"{version} ({sys.executable})")
    return Check("python", "fail", f"{version}; the project supports 3.11 only",
                 "create the venv with python3.11 (see README, Set up)")


def check_sandbox(cfg: BuildConfig) -> Check:
    """Start a one-worker pool and report what isolation its children get."""
    from sandbox import SandboxPool
    from tasks.runtime import limits_for

    try:
        pool = SandboxPool(workers=1, limits=limits_for(cfg.sandbox))
    except Exception as exc:  # noqa: BLE001 - any failure to start is the finding
        return Check("sandbox", "fail", f"the worker pool does not start: {type(exc).__name__}: {exc}",
                     "run on Linux with /proc and fork; see the sandbox package docstring")
    try:
        iso = pool.isolation
    finally:
        pool.close()
    facts = {
        "network namespace": iso.network_namespace,
        "unprivileged user": iso.unprivileged_user,
        "filesystem confined": iso.filesystem_confined,
        "reads confined": iso.reads_confined,
        "signals scoped": iso.signals_scoped,
    }
    have = ", ".join(k for k, v in facts.items() if v) or "none"
    missing = [k for k, v in facts.items() if not v]
    notes = f" ({'; '.join(iso.notes)})" if iso.notes else ""
    if not missing:
        return Check("sandbox", "ok", f"{have}{notes}")
    fixes = []
    if not iso.network_namespace:
        fixes.append("allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root")
    if not iso.unprivileged_user:
        fixes.append("run as root so children get a uid of their own")
    if not iso.filesystem_confined or not iso.reads_confined or not iso.signals_scoped:
        fixes.append("use a kernel with Landlock enabled (5.13+; ABI 6 for signal scoping)")
    # Builds still run (the design asks for each guard "where the kernel allows it"), with
    # less between untrusted code and this machine: a warning, not a failure.
    return Check("sandbox", "warn", f"missing: {', '.join(missing)}; in force: {have}{notes}", "; ".join(fixes))


def check_prefect() -> Check:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return Check("prefect", "ok", "PREFECT_API_URL is not set: each run starts a temporary local server "
                     "(run history ends with the run; `codeio serve` keeps one)")
    try:
        resp = httpx.get(f"{url.rstrip('/')}/health", timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Check("prefect", "fail", f"API {url} unreachable ({type(exc).__name__})",
                     "start it (`prefect server start`) or unset PREFECT_API_URL to use a temporary server")
    if resp.status_code != 200:
        return Check("prefect", "fail", f"API {url}/health answered HTTP {resp.status_code}",
                     "check PREFECT_API_URL (it ends in /api) and the server's log")
    return Check("prefect", "ok", f"API {url} healthy")


def check_llm(cfg: BuildConfig) -> Check:
    """GET {base_url}/models with the configured key; the model must be listed."""
    if cfg.provider == "offline":
        return Check("llm", "skip", "provider offline: no endpoint needed")
    s = cfg.llm
    headers = {}
    key_note = ""
    if s.api_key_env:
        key = os.environ.get(s.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            key_note = f"; ${s.api_key_env} is not set"
    url = f"{s.base_url}/models"
    try:
        resp = httpx.get(url, headers=headers, timeout=min(HTTP_TIMEOUT_S, s.connect_timeout_s + 5))
    except httpx.HTTPError as exc:
        return Check("llm", "fail", f"{url} unreachable ({type(exc).__name__}){key_note}",
                     "start the server (vLLM, SGLang, Ollama ...) or fix llm.base_url / --base-url")
    if resp.status_code in (401, 403):
        return Check("llm", "fail", f"{url} refused the key (HTTP {resp.status_code}){key_note}",
                     f"export a valid key in ${s.api_key_env}" if s.api_key_env else "set llm.api_key_env")
    if resp.status_code == 404:
        return _no_model_list(cfg, headers, key_note)
    if resp.status_code != 200:
        return Check("llm", "fail", f"{url} answered HTTP {resp.status_code}{key_note}",
                     "check the endpoint's log")
    try:
        models = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return Check("llm", "fail", f"{url} did not answer an OpenAI model list",
                     "point llm.base_url at an OpenAI-compatible API (…/v1)")
    if s.model not in models and f"{s.model}:latest" not in models:  # Ollama lists name:tag
        shown = ", ".join(str(m) for m in models[:8]) or "none"
        return Check("llm", "fail", f"model {s.model!r} is not served at {s.base_url} (listed: {shown})",
                     "set llm.model / --model to a listed model")
    refused, cut = _chat_checks(cfg)
    if refused is not None:
        return refused
    if isinstance(cut, Check):
        return cut
    status: Status = "warn" if key_note else "ok"
    return Check("llm", status, f"{s.base_url} serves {s.model!r} and answered a chat request{cut}{key_note}",
                 f"export ${s.api_key_env}, or set llm.api_key_env to none if the endpoint needs no key")


# The longest prompts of a build are its revision turns': the task's prompt, the first answer
# (up to llm.max_tokens) and the execution feedback. The long probe is about that long.
PROBE_TOKENS_BEYOND_MAX_TOKENS = 2048
_PROBE_SHORT_LINES = 100
# A long probe counted below this share of its expected prompt tokens was cut by the endpoint.
_CUT_BELOW = 0.8
_NO_TOKEN_COUNTS = " (its answers count no prompt tokens, so a cut prompt cannot be told)"


def _probe_text(tag: str, lines: int) -> str:
    """A prompt of ``lines`` assignments that share no prefix with another tag's (a server
    caching prompt prefixes may count only the tokens it had to read)."""
    body = "".join(f"{tag}_{i} = {i * 7919 % 10007}\n" for i in range(lines))
    return f"{body}Ignore the assignments above and reply with the word OK."


def _chat_checks(cfg: BuildConfig) -> tuple[Check | None, Check | str]:
    """Chat requests as the build sends them (the client, its body fields, extra_body and
    max_tokens field; one completion token each, no retry).

    First one short request: the check when it was not answered. A listed model can still
    refuse every request of a build: a body field it does not take (max_tokens for OpenAI's
    reasoning models), an extra_body it rejects, no chat template. Then two probes, a short
    and a long one, for an endpoint that cuts long prompts without an error (Ollama, whose
    default context is a few thousand tokens): the long one's prompt-token count must grow
    with its length as the short one's rate says. The second item is about that: a check, or
    what to add to the line of a passed one."""
    import asyncio

    from llm.errors import ConfigError, EndpointDown
    from llm.http import HTTPProvider

    s = cfg.llm.model_copy(update={"max_retries": 0, "timeout_s": min(cfg.llm.timeout_s, 60.0)})

    def request(text: str) -> Any:
        return s.request([{"role": "user", "content": text}], stage="doctor").model_copy(update={"max_tokens": 1})

    async def send() -> tuple[Any, Any, Any, int]:
        async with HTTPProvider(s) as provider:
            first = (await provider.complete([request("Reply with the word OK.")]))[0]
            if first.error is not None:
                return first, None, None, 0
            short = (await provider.complete([request(_probe_text("alpha", _PROBE_SHORT_LINES))]))[0]
            if short.error is not None or not short.prompt_tokens:
                return first, short, None, 0
            per_line = short.prompt_tokens / _PROBE_SHORT_LINES
            lines = int((s.max_tokens + PROBE_TOKENS_BEYOND_MAX_TOKENS) / per_line) + 1
            long = (await provider.complete([request(_probe_text("omega", lines))]))[0]
            return first, short, long, lines

    try:
        first, short, long, lines = asyncio.run(send())
    except (ConfigError, EndpointDown) as exc:
        return Check("llm", "fail", f"{s.base_url} refused a chat request for {s.model!r}: {exc}",
                     "check llm.model, the key and the endpoint's log"), ""
    if first.error is not None:
        if first.retryable:
            return Check("llm", "warn", f"{s.base_url} lists {s.model!r} but did not answer a chat request: "
                         f"{first.error}", "check the endpoint's log (a model still loading answers 503)"), ""
        return Check("llm", "fail", f"{s.base_url} refused a chat request for {s.model!r}: {first.error}",
                     "check llm.max_tokens_field, llm.extra_body and the model's chat template: every request "
                     "of a build is sent this way"), ""
    return None, _prompt_cut(s, short, long, lines)


def _prompt_cut(s: Any, short: Any, long: Any, lines: int) -> Check | str:
    """The check on the probes' answers (``_chat_checks``), or what a passed check's line adds."""
    unchecked = "could not check whether it cuts long prompts"
    if short.error is not None:
        return Check("llm", "warn", f"{s.base_url} answered a chat request for {s.model!r} but not the short "
                     f"probe: {short.error}; {unchecked}", "check the endpoint's log")
    if not short.prompt_tokens:
        return _NO_TOKEN_COUNTS
    expected = round(short.prompt_tokens / _PROBE_SHORT_LINES * lines)
    if long.error is not None:
        if long.failure == "prompt_too_long":
            return Check("llm", "warn", f"{s.base_url} refused a prompt of about {expected} tokens ({long.error}): "
                         "rows whose prompts are that long (a revision turn carries the first answer, up to "
                         f"llm.max_tokens = {s.max_tokens}) are dropped as prompt_too_long",
                         "serve the model with a longer context, or lower llm.max_tokens")
        return Check("llm", "warn", f"{s.base_url} did not answer a prompt of about {expected} tokens: "
                     f"{long.error}; {unchecked}", "check the endpoint's log")
    if long.prompt_tokens is not None and long.prompt_tokens < _CUT_BELOW * expected:
        context = 2 * s.max_tokens + PROBE_TOKENS_BEYOND_MAX_TOKENS  # the long probe and an answer
        return Check("llm", "fail", f"{s.base_url} cut a prompt of about {expected} tokens to {long.prompt_tokens} "
                     "without an error: the model would answer prompts whose beginning it never saw (a revision "
                     f"turn carries the first answer, up to llm.max_tokens = {s.max_tokens})",
                     f"give the model a context of at least {context} tokens (Ollama: OLLAMA_CONTEXT_LENGTH="
                     f"{context} ollama serve), or lower llm.max_tokens")
    if long.prompt_tokens is None:
        return _NO_TOKEN_COUNTS
    return f" and took a prompt of about {expected} tokens whole"


def ollama_version(base_url: str) -> str | None:
    """The version an Ollama server at ``base_url`` reports (``GET /api/version`` beside its
    ``/v1``); None for another endpoint or none at all."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        resp = httpx.get(f"{root}/api/version", timeout=HTTP_TIMEOUT_S)
        version = resp.json().get("version") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None


# Endpoints (base URL, model, max_tokens) whose probes passed in this process, and when: the
# CLI checks before the flow does, and a notebook or `codeio serve` builds again and again.
_PASSED: dict[tuple[str, str, int], float] = {}
PASSED_FOR_S = 3600.0


def stop_if_prompts_are_cut(cfg: BuildConfig) -> None:
    """Before a build against Ollama, whose default context is a few thousand tokens and
    which cuts a longer prompt without an error: the doctor's probes (three requests of one
    completion token, sent directly, not through the ledger). An endpoint that cuts them stops
    the build before any work, with doctor's line; anything else is left to the build."""
    import time

    if cfg.provider != "http":
        return
    endpoint = (cfg.llm.base_url, cfg.llm.model, cfg.llm.max_tokens)
    if time.monotonic() - _PASSED.get(endpoint, -PASSED_FOR_S) < PASSED_FOR_S:
        return
    if ollama_version(cfg.llm.base_url) is None:
        return
    _refused, cut = _chat_checks(cfg)
    if isinstance(cut, Check) and cut.status == "fail":
        from flows.errors import UserError

        raise UserError(f"{cut.detail}; {cut.fix}")
    _PASSED[endpoint] = time.monotonic()


def _no_model_list(cfg: BuildConfig, headers: dict[str, str], key_note: str) -> Check:
    """``{base_url}/models`` answered 404: a base_url that lacks the ``/v1`` vLLM, SGLang,
    Ollama and OpenAI serve their API under, or holds the chat path (the client adds it), or
    an endpoint that lists no models."""
    base, model = cfg.llm.base_url, cfg.llm.model
    if base.endswith("/chat/completions"):
        return Check("llm", "fail", f"llm.base_url {base} holds the chat path{key_note}",
                     f"set llm.base_url / --base-url to {base.removesuffix('/chat/completions')}")
    if not base.endswith("/v1"):
        try:
            listed = httpx.get(f"{base}/v1/models", headers=headers, timeout=HTTP_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            listed = False
        if listed:
            return Check("llm", "fail", f"{base}/models answered 404, {base}/v1/models lists models{key_note}",
                         f"set llm.base_url / --base-url to {base}/v1")
    return Check("llm", "warn", f"{base}/models answered 404: the endpoint does not list models, "
                 f"so {model!r} cannot be checked{key_note}", "make sure llm.base_url ends in /v1")


def _run_error(summary_json: str | None) -> str:
    """The error a failed run recorded, in one short line."""
    try:
        error = str(json.loads(summary_json or "{}").get("error") or "")
    except ValueError:
        return ""
    line = " ".join(error.split())
    return line if len(line) <= 160 else line[:157] + "..."


def check_database(cfg: BuildConfig) -> Check:
    """The DuckDB file: open it read-only if it exists, else create a scratch one beside it."""
    import duckdb

    from storage.store import Store, StoreError, StoreLocked

    path = Path(cfg.db_path)
    if path.is_dir():
        return Check("database", "fail", f"{path} is a directory", "set db_path / --db to a file path")
    if path.exists():
        try:
            with Store(path, read_only=True) as store:
                version = store.schema_version()
                runs = store.query("SELECT count(*) FROM runs")[0][0]
                last = store.query("SELECT status, summary_json FROM runs ORDER BY started_at DESC LIMIT 1")
        except StoreLocked as exc:
            return Check("database", "warn", f"{path} is in use by another process: {exc.holder} is writing it",
                         "wait for it to finish, or use another --db")
        except StoreError as exc:
            return Check("database", "fail", str(exc), "point --db at a codeio database or a new path")
        if not os.access(path, os.W_OK) or _not_writable_dir(path.parent):
            return Check("database", "fail", f"{path} exists but is not writable",
                         "fix its permissions or use another --db")
        if last and last[0][0] != "completed":  # interrupted (still 'running') or failed
            how = "was interrupted" if last[0][0] == "running" else "failed"
            error = _run_error(last[0][1])
            return Check("database", "warn", f"{path} (schema {version}, {runs} run(s)); the last run {how}"
                         + (f": {error}" if error else ""),
                         "run `codeio run` again to finish it; `codeio stats` shows what is pending")
        return Check("database", "ok", f"{path} (schema {version}, {runs} run(s))")
    problem = _not_writable_dir(path.parent)
    if problem:
        return Check("database", "fail", problem, "set db_path / --db to a path under a writable directory")
    if not path.parent.exists():
        return Check("database", "ok", f"{path} will be created (with {path.parent})")
    scratch = path.parent / f".codeio-doctor-{uuid.uuid4().hex}.duckdb"
    try:
        duckdb.connect(str(scratch)).close()
    except duckdb.Error as exc:
        return Check("database", "fail", f"cannot create a DuckDB file in {path.parent}: {str(exc).splitlines()[0]}",
                     "use a local, writable filesystem for --db")
    finally:
        for leftover in (scratch, Path(f"{scratch}.wal")):
            leftover.unlink(missing_ok=True)
    return Check("database", "ok", f"{path} will be created; {path.parent} is writable")


def check_output(cfg: BuildConfig) -> Check:
    path = Path(cfg.output_dir)
    if path.exists() and not path.is_dir():
        return Check("export", "fail", f"{path} is a file", "set output_dir / --out to a directory")
    problem = _not_writable_dir(path if path.exists() else path.parent)
    if problem:
        return Check("export", "fail", problem, "set output_dir / --out under a writable directory")
    return Check("export", "ok", f"{path} is writable" if path.exists() else f"{path} will be created")


def _not_writable_dir(directory: Path) -> str | None:
    """Why files cannot be created in ``directory`` (or, when it does not exist yet, in the
    nearest existing ancestor); None when they can. Tries a real file: as root, access()
    says yes even on a read-only mount."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory" + (f" (needed for {directory})" if probe != directory else "")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".codeio-doctor-"):
            pass
    except OSError as exc:
        return f"cannot create files in {probe}: {exc.strerror or exc}"
    return None


def run_doctor(cfg: BuildConfig) -> list[Check]:
    """Every check, in the order a build meets them."""
    return [
        check_python(),
        check_database(cfg),
        check_output(cfg),
        check_sandbox(cfg),
        check_prefect(),
        check_llm(cfg),
    ]


def main(cfg: BuildConfig) -> int:
    """Print one line per check; 1 if any failed, else 0."""
    checks = run_doctor(cfg)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
