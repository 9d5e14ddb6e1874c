"""Shared pieces of the reliability suite (and of ``benchmarks/bench_pipeline.py``).

- A fixture corpus of tiny raw files, each carrying a marker, and ``llm_script``: a test-server
  script that answers the transform prompt of each file with a canned unified-format answer and
  answers prediction prompts by running the reference code shown in the prompt, wrong on turn 1
  for about a third of the prompts (chosen by a hash of the prompt) so revision turns happen.
- ``RecordingServer``: ``llm.testserver.serve`` plus a log of when each 200 answer went out, per
  request body, so a test can tell which calls had completed before a kill.
- ``PrefectServer``: one real ``prefect server start`` per process, shared by every CLI
  subprocess (a temporary server per ``codeio run`` costs ~15-20 s), for the benchmark (the
  tests use conftest's ``prefect_harness`` server the same way); ``seeded_prefect_home``:
  a new PREFECT_HOME whose server database is already migrated (migrating costs ~6 s of CPU
  of every start on a new home).
- ``CLIRun``: ``codeio ...`` as a subprocess with its stderr in a file, to poll and to kill.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CODEIO = str(Path(sys.executable).parent / "codeio")
MODEL = "test-model"

# ---------------------------------------------------------------------------------------------
# The fixture corpus and its canned transform answers

MARKER = "reliability-fixture"
_MARKER_RE = re.compile(MARKER + r": (\d+)")

# family -> (reference code, input generator); ``{k}`` is a per-file constant, so every file
# gives a distinct function.
FAMILIES: dict[str, tuple[str, str]] = {
    "linear": (
        'FAMILY = "linear"\nSCALE = {k}\n\n\ndef main_solution(x, y):\n    return x * SCALE + y\n',
        "import random\n\n\ndef input_generator():\n"
        '    return {{"x": random.randint(-50, 50), "y": random.randint(-50, 50)}}\n',
    ),
    "reverse": (
        'FAMILY = "reverse"\nTAG = "t{k}"\n\n\ndef main_solution(word):\n    return word[::-1] + TAG\n',
        "import random\nimport string\n\n\ndef input_generator():\n"
        "    n = random.randint(1, 8)\n"
        '    return {{"word": "".join(random.choice(string.ascii_lowercase) for _ in range(n))}}\n',
    ),
    "topk": (
        'FAMILY = "topk"\nK = {k}\n\n\ndef main_solution(nums):\n    return sorted(nums)[:K]\n',
        "import random\n\n\ndef input_generator():\n"
        '    return {{"nums": [random.randint(0, 30) for _ in range(random.randint(1, 8))]}}\n',
    ),
    "stats": (
        'FAMILY = "stats"\nOFFSET = {k}\n\n\ndef main_solution(nums):\n'
        '    return {{"count": len(nums), "total": sum(nums) + OFFSET}}\n',
        "import random\n\n\ndef input_generator():\n"
        '    return {{"nums": [random.randint(-9, 9) for _ in range(random.randint(1, 6))]}}\n',
    ),
}
FAMILY_ORDER = ("linear", "reverse", "topk", "stats")
_ARGS = {"linear": "`x` (int) and `y` (int), each between -50 and 50", "reverse": "`word` (str): a short lower-case word",
         "topk": "`nums` (list of int): up to 8 integers", "stats": "`nums` (list of int): up to 6 integers"}

# Files whose canned answer is unusable, so the funnel has transform drops too.
BROKEN_NO_QUERY = 5  # answer lacks the Query section -> missing_section:query
TRUNCATED = 11  # answer cut off (finish_reason length) -> truncated_response


def family_of(i: int) -> str:
    return FAMILY_ORDER[i % len(FAMILY_ORDER)]


def _constant(i: int) -> int:
    return (i % 5) + 1 if family_of(i) == "topk" else i + 2


def raw_file(i: int) -> str:
    """A small raw Python file with a marker: what a scraped repository might hold."""
    fam, k = family_of(i), _constant(i)
    body = {
        "linear": f"def compute(x, y):\n    result = x * {k} + y\n    print('result', result)\n    return result\n",
        "reverse": f"def tag_reverse(word):\n    out = word[::-1] + 't{k}'\n    print(out)\n    return out\n",
        "topk": f"def smallest(nums):\n    nums = sorted(nums)\n    return nums[:{k}]\n\nprint(smallest([5, 3, 9]))\n",
        "stats": f"def summary(nums):\n    return {{'count': len(nums), 'total': sum(nums) + {k}}}\n",
    }[fam]
    return f"# {MARKER}: {i}\n\"\"\"Utility number {i} from an old scripts folder.\"\"\"\n\n{body}"


def write_corpus(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (directory / f"util_{i:03d}.py").write_text(raw_file(i), encoding="utf-8")
    return directory


def transform_answer(i: int) -> str | dict:
    """The canned LLM rewrite of fixture file ``i`` in the layout of transform.txt."""
    fam, k = family_of(i), _constant(i)
    refcode, generator = (part.format(k=k) for part in FAMILIES[fam])
    query = {
        "linear": f"Given two integers x and y, what is x times {k} plus y?",
        "reverse": f"Given a word, what do you get when you reverse it and append the tag 't{k}'?",
        "topk": f"Given a list of integers, which are the {k} smallest values in ascending order?",
        "stats": f"Given a list of integers, how many are there and what is their sum plus {k}?",
    }[fam]
    text = (
        "Here is the rewrite.\n\n### Reference Code\n```python\n" + refcode + "```\n\n"
        "### Input/Output Description\nInput:\n- " + _ARGS[fam] + "\nOutput:\n- return: the result "
        "of the computation described in the query.\n\n"
        "### Input Generator\n```python\n" + generator + "```\n\n"
        "### Query\n" + query + "\n"
    )
    if i == BROKEN_NO_QUERY:
        return text.split("### Query")[0]
    if i == TRUNCATED:
        return {"content": text[: len(text) // 2], "finish_reason": "length"}
    return text


# ---------------------------------------------------------------------------------------------
# Prediction answers

_GIVEN = re.compile(r"Here is the (input|output):\n\n(.*?)\n\n(?:Predict the output|Find an input)", re.S)
_CODE = re.compile(r"```python\n(.*?)\n```", re.S)


def _invert(ns: dict[str, Any], out: Any) -> dict[str, Any]:
    """An input that makes the fixture function return ``out``."""
    fam = ns["FAMILY"]
    if fam == "linear":
        return {"x": 0, "y": out}
    if fam == "reverse":
        return {"word": out[: len(out) - len(ns["TAG"])][::-1]}
    if fam == "topk":
        return {"nums": out}
    n, total = out["count"], out["total"] - ns["OFFSET"]
    return {"nums": ([total] + [0] * (n - 1)) if n else []}


def _perturb(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "z"
    if isinstance(value, list):
        return value + [97]
    if isinstance(value, dict):
        return {k: _perturb(v) for k, v in value.items()}
    return [value]


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


@functools.lru_cache(maxsize=4096)
def _namespace(code: str) -> dict[str, Any]:
    """Our own fixture code, run once per program (see module doc); its functions are pure."""
    ns: dict[str, Any] = {}
    exec(compile(code, "<refcode>", "exec"), ns)
    return ns


def prediction_answer(messages: list[dict[str, str]]) -> str:
    """A chain-of-thought answer ending in a JSON object.

    Turn 1 (one message): wrong for digest % 3 == 0, no JSON answer for digest % 7 == 1, right
    otherwise. Later turns: right, except when the digest of the whole conversation % 4 == 0.
    """
    prompt = messages[0]["content"]
    m = _GIVEN.search(prompt)
    code = _CODE.search(prompt)
    if not m or not code:
        return "I cannot read this problem."
    kind = "output" if m.group(1) == "input" else "input"
    given = json.loads(m.group(2))
    ns = _namespace(code.group(1))
    right = ns["main_solution"](**given) if kind == "output" else _invert(ns, given)
    turn = (len(messages) + 1) // 2
    if turn == 1:
        h = _digest(prompt)
        if h % 7 == 1:
            return "Let me think about this step by step. The code is short, but I am not sure of the result."
        wrong = h % 3 == 0
    else:
        wrong = _digest(json.dumps(messages, sort_keys=True)) % 4 == 0
    value = _perturb(right) if wrong else right
    reasoning = (
        f"Let me reason step by step (turn {turn}). The query asks for the {kind}. "
        "Following the reference logic with the given values, I work out each step in words.\n\n"
    )
    return reasoning + "Final answer: " + json.dumps({kind: value}, sort_keys=True)


def llm_script(body: dict) -> str | dict:
    """Test-server script: canned transform answers and computed prediction answers."""
    messages = body["messages"]
    first = messages[0]["content"]
    if first.startswith("Your task is to turn a raw Python file"):
        m = _MARKER_RE.search(first.split("Raw file:", 1)[-1])
        if not m:
            return "I could not find the main computation in this file."
        return transform_answer(int(m.group(1)))
    return prediction_answer(messages)


# ---------------------------------------------------------------------------------------------
# The LLM test server, recording when each successful answer went out


def body_key(body: Any) -> str:
    data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if isinstance(body, dict) else str(body).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass
class ServerLog:
    """Per request body: how often it arrived and when its 200 answers were sent."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: Counter = field(default_factory=Counter)
    answered: dict[str, list[float]] = field(default_factory=dict)
    bodies: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> tuple[Counter, dict[str, list[float]]]:
        with self.lock:
            return Counter(self.received), {k: list(v) for k, v in self.answered.items()}

    def answered_between(self, start: float, end: float) -> set[str]:
        """Bodies with a 200 answer sent in [start, end] (monotonic clock)."""
        with self.lock:
            return {k for k, ts in self.answered.items() if any(start <= x <= end for x in ts)}

    def ledger_key(self, key: str) -> str:
        """The pipeline's cache key (llm.types.ChatRequest.key) of a received body."""
        from llm.types import ChatRequest

        with self.lock:
            body = dict(self.bodies[key])
        model, messages = body.pop("model"), body.pop("messages")
        request = ChatRequest(messages=messages, temperature=body.pop("temperature"), max_tokens=body.pop("max_tokens"))
        return request.key(model, body or None)


class RecordingServer:
    """``llm.testserver.serve`` whose answers are logged per body in ``log`` (shared across
    restarts on the same port, so an endpoint can go down and come back)."""

    def __init__(self, script: Any = llm_script, latency_s: float = 0.02, faults: list | None = None,
                 port: int = 0, log: ServerLog | None = None) -> None:
        self.script, self.latency_s, self.faults = script, latency_s, faults
        self.port = port
        self.log = log or ServerLog()
        self._cm: Any = None
        self.handle: Any = None

    def start(self) -> "RecordingServer":
        from llm.testserver import serve

        self._cm = serve(self.script, self.latency_s, self.faults, port=self.port)
        self.handle = self._cm.__enter__()
        self.port = self.handle.port
        app, log = self.handle.app, self.log
        original = app._respond

        async def respond(send: Any, body: Any, headers: Any, fault: Any, answer: Any) -> None:
            key = body_key(body)
            with log.lock:
                log.received[key] += 1
                log.bodies.setdefault(key, body)
            await original(send, body, headers, fault, answer)
            if fault is None and answer is not None and "error" not in answer:
                with log.lock:
                    log.answered.setdefault(key, []).append(time.monotonic())

        app._respond = respond  # instance attribute: ChatApp.__call__ looks it up on self
        return self

    def stop(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def counts(self) -> Counter:
        return self.handle.counts

    def __enter__(self) -> "RecordingServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# One Prefect server for the test process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def migrated_prefect_db() -> Path:
    """An empty Prefect database with every migration applied, made once per test process.

    A server started on a new PREFECT_HOME first migrates its own (114 migrations, ~6 s of
    CPU, as much as the rest of its start-up); tests that start servers on homes of their own
    give each home a copy of this one instead (``seeded_prefect_home``)."""
    template = Path(tempfile.mkdtemp(prefix="codeio-prefect-template-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(quiet_env(), PREFECT_HOME=str(template))
    done = subprocess.run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not (template / "prefect.db").is_file():
        raise RuntimeError(f"prefect server database upgrade failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")
    return template / "prefect.db"


def seeded_prefect_home(home: Path) -> Path:
    """``home`` as a new PREFECT_HOME whose server database is a copy of the migrated one."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(migrated_prefect_db(), home / "prefect.db")
    return home


# Runs a command (argv[2:]) that gets SIGTERM when the process argv[1] dies: a test run or a
# benchmark that is killed (a CI time limit, Ctrl-C twice, SIGKILL) leaves no server behind.
_DIES_WITH_PARENT = (
    "import os, signal, sys\n"
    "from sandbox.isolation import set_parent_death_signal\n"
    "parent = int(sys.argv[1])\n"
    "if parent:\n"
    "    set_parent_death_signal(signal.SIGTERM)\n"
    "    if os.getppid() != parent:\n"
    "        sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class PrefectServer:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME; it stops
    when the process that started it ends, however it ends."""

    _instance: "PrefectServer | None" = None

    def __init__(self) -> None:
        self.home = seeded_prefect_home(Path(tempfile.mkdtemp(prefix="codeio-prefect-server-")))
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = {**os.environ, **quiet_env(), "PREFECT_HOME": str(self.home)}
        env.pop("PREFECT_API_URL", None)
        self.log_path = self.home / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # The parent-death signal comes when the thread that started the process ends: asked
        # for only from the main thread (0 otherwise).
        parent = os.getpid() if threading.current_thread() is threading.main_thread() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _DIES_WITH_PARENT, str(parent), str(Path(sys.executable).parent / "prefect"),
             "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-services", "--no-ui",
             "--analytics-off"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("prefect server did not start within 120 s")
            time.sleep(0.25)

    @classmethod
    def shared(cls) -> "PrefectServer":
        """The test process's server, started on first use (or the one at
        $CODEIO_TEST_PREFECT_API_URL, to reuse a running server while iterating)."""
        if cls._instance is None:
            url = os.environ.get("CODEIO_TEST_PREFECT_API_URL")
            cls._instance = _ExistingPrefect(url) if url else cls()
            atexit.register(cls._instance.stop)
        return cls._instance

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)


class _ExistingPrefect(PrefectServer):
    def __init__(self, api_url: str) -> None:  # noqa: D107 - nothing to start
        self.api_url = api_url.rstrip("/")

    def stop(self) -> None:
        pass


def quiet_env() -> dict[str, str]:
    return {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}


def cli_env(prefect_home: Path, api_url: str) -> dict[str, str]:
    """Environment of a ``codeio`` subprocess: the shared Prefect server, and a PREFECT_HOME of
    its own (Prefect keeps persisted task results, the shard cache, under it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(quiet_env())
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(prefect_home))
    return env


# ---------------------------------------------------------------------------------------------
# The CLI as a subprocess


class CLIRun:
    """``codeio ARGS`` in the background; stderr (Prefect's log lines) goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, tag: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.err_path = workdir / f"{tag}.stderr"
        self.out_path = workdir / f"{tag}.stdout"
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self._out = open(self.out_path, "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen([CODEIO, *args], stdout=self._out, stderr=self._err, env=env,
                                     cwd=workdir, start_new_session=True)
        self.killed_at: float | None = None

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> list[str]:
        """SIGKILL the flow process alone, as the OOM killer would. Returns the descendants
        (sandbox workers, ...) still alive 3 s later, which are then killed too."""
        family = descendants(self.proc.pid)
        self.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        deadline = time.monotonic() + 3.0
        alive = family
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = {pid: name for pid, name in alive.items() if _alive(pid, name)}
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._close()
        return sorted(f"{pid}:{name}" for pid, name in alive.items())

    def _close(self) -> None:
        self._err.close()
        self._out.close()

    def wait(self, timeout: float = 300) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"codeio did not finish in {timeout}s; stderr tail:\n{self.stderr()[-3000:]}")
        self._close()
        return rc

    def poll_until(self, cond: Callable[[str], bool], timeout: float = 300, step: float = 0.02) -> bool:
        """Poll stderr until ``cond(stderr)`` holds (True) or the process ends (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond(self.stderr()):
                return True
            if self.proc.poll() is not None:
                return cond(self.stderr())
            time.sleep(step)
        raise AssertionError(f"timed out waiting; stderr tail:\n{self.stderr()[-3000:]}")


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, name), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        table[int(entry)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), name)
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid``: pid -> process name."""
    table = _proc_table()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, name) in table.items():
            if ppid == parent and child not in found:
                found[child] = name
                frontier.append(child)
    return found


def _alive(pid: int, name: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.index("(") + 1 : stat.rindex(")")] == name and stat[stat.rindex(")") + 2] != "Z"


def run_cli(args: list[str], env: dict[str, str], workdir: Path, tag: str,
            timeout: float = 300) -> tuple[int, str, str]:
    run = CLIRun(args, env, workdir, tag)
    rc = run.wait(timeout)
    return rc, run.stdout(), run.stderr()


# ---------------------------------------------------------------------------------------------
# Configs and exports


def http_config(base: Path, corpus: Path, base_url: str, **overrides: Any) -> dict[str, Any]:
    """A small http build: shards of 4, the test server as endpoint, quick retries."""
    cfg: dict[str, Any] = {
        "sources": [{"path": str(corpus), "name": "fixture", "kind": "mixed"}],
        "db_path": str(base / "db" / "codeio.duckdb"),
        "output_dir": str(base / "out"),
        "shard_size": 4,
        "max_parallel_shards": 2,
        "provider": "http",
        "llm": {"base_url": base_url, "model": MODEL, "api_key_env": None, "max_concurrency": 8,
                "timeout_s": 10.0, "max_retries": 8, "backoff_base_s": 0.05, "backoff_max_s": 0.5},
        "sandbox": {"workers": 2, "cpu_seconds": 2.0},
        "sampling": {"generator_calls": 30},
        "prediction": {"revision_turns": 2},
        "task_retries": 1,
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


def recorded_calls(db_path: Path) -> set[str]:
    """Cache keys of the LLM calls a (stopped) build has recorded: the store's ledger table plus
    the journals of shards it had not written yet."""
    import duckdb

    from llm.ledger import read_journal

    keys: set[str] = set()
    if Path(db_path).exists():
        con = duckdb.connect(str(db_path), read_only=True)
        try:
            keys |= {r[0] for r in con.execute("SELECT key FROM llm_calls").fetchall()}
        finally:
            con.close()
    for journal in sorted((Path(db_path).parent / "ledger").glob("*.jsonl")):
        keys |= {r.key for r in read_journal(journal) if r.error is None and r.content is not None}
    return keys


def export_digest(out: Path) -> dict[str, str]:
    """sha256 of every exported file (temp files included, so a leftover one shows up)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).iterdir()) if p.is_file()}


def one_line_error(stderr: str) -> str:
    """The last non-empty stderr line (the CLI's error line)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes spinning on a core each, for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "1m") mounted at ``path``: a disk that fills up. Skips the test
    where mounting is not allowed (not root). Unmounted lazily, so a file a failing test left
    open does not keep it mounted."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                   capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs (a disk that fills up) needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
