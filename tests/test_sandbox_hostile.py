"""Hostile programs get fixed verdicts, and the pool keeps serving correctly after each.

The programs live in ``tests/hostile/*.py``; each states its expected verdict in header
comments (``# expect: status``, optionally ``# error_type:``, ``# value:`` and
``# limits: name=value, ...``). Each runs as a two-call job (the first call in a child of the
job process, the last one, where the kernel allows, in the job process itself) and as a
one-call job. Scenarios that need the test's cooperation (a listener, a secret in the
environment, killing a worker) are written out below.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox import Job, Limits, SandboxPool

HOSTILE_DIR = Path(__file__).parent / "hostile"
LIMITS = Limits(cpu_seconds=0.5)
GOOD = "def main_solution(x):\n    return {'double': x * 2}\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=LIMITS) as pool:
        yield pool


def assert_healthy(pool: SandboxPool) -> None:
    """The pool still gives correct verdicts, and nothing of the last job survives."""
    results = pool.run(GOOD, [{"x": 1}, {"x": 2}])
    assert [(r.status, r.value) for r in results] == [("ok", {"double": 2}), ("ok", {"double": 4})]
    assert leftover_processes(pool) == []
    assert leftover_files(pool) == []


def leftover_processes(pool: SandboxPool) -> list[str]:
    """Processes of the children's uids, and zombies under the workers."""
    return processes_of(set(pool.worker_uids), {str(pid) for pid in pool.worker_pids})


def processes_of(uids: set[int], workers: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Processes running as one of ``uids``, and zombies whose parent is one of ``workers``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        uid = int(status.split("Uid:")[1].split()[0])
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if uid in uids or (state == "Z" and ppid in workers):
            found.append(f"{entry.name} uid={uid} state={state} ppid={ppid}")
    return found


def leftover_files(pool: SandboxPool) -> list[str]:
    """Anything under the temp root but the workers' own (empty) dirs, seen from the host and
    from inside each worker's mount namespace (where its temp dir is a private tmpfs)."""
    root = Path(pool.temp_root)
    found = [str(p) for p in root.rglob("*") if not (p.is_dir() and p.parent == root)]
    for pid in pool.worker_pids:
        found += [str(p) for p in Path(f"/proc/{pid}/root{root}/w{pid}").rglob("*")]
    return found


def load_hostile(path: Path) -> dict:
    spec = {"code": path.read_text(), "limits": LIMITS, "error_type": None, "value": None, "has_value": False}
    for line in spec["code"].splitlines():
        if not line.startswith("# ") or ":" not in line:
            continue
        key, _, text = line[2:].partition(":")
        text = text.strip()
        if key == "expect":
            spec["status"] = text
        elif key == "error_type":
            spec["error_type"] = text
        elif key == "value":
            try:
                spec["value"] = json.loads(text)
            except ValueError:
                spec["value"] = text
            spec["has_value"] = True
        elif key == "limits":
            fields = {}
            for item in text.split(","):
                name, _, raw = item.strip().partition("=")
                fields[name] = type(getattr(LIMITS, name))(raw)
            spec["limits"] = replace(LIMITS, **fields)
    return spec


HOSTILE = sorted(HOSTILE_DIR.glob("*.py"))


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_program_gets_its_verdict(pool, path):
    spec = load_hostile(path)
    results = pool.run(spec["code"], [{}, {}], limits=spec["limits"])
    results += pool.run(spec["code"], [{}], limits=spec["limits"])
    for result in results:
        assert result.status == spec["status"], result
        if spec["error_type"]:
            assert result.error_type == spec["error_type"], result
        if spec["has_value"]:
            assert result.value == spec["value"]
        if result.status != "ok":
            assert result.value is None
            assert result.error_message is not None and len(result.error_message) <= 500
    assert_healthy(pool)


def test_nothing_is_written_outside_the_temp_dir(pool):
    probe = Path("/tmp/codeio-sandbox-escape-probe")
    probe.unlink(missing_ok=True)
    code = (
        "import os\n"
        "def main_solution(path):\n"
        "    try:\n"
        "        with open(path, 'a') as fh:\n"
        "            fh.write('escaped')\n"
        "        return 'written'\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
    )
    targets = [str(probe), "/etc/passwd", "/etc/codeio-probe", f"{pool.temp_root}/x", "/dev/shm/codeio-probe"]
    results = pool.run(code, [{"path": t} for t in targets])
    assert [r.value for r in results] == ["PermissionError"] * len(targets)
    assert not probe.exists() and not Path("/etc/codeio-probe").exists()
    assert_healthy(pool)


def test_the_environment_holds_no_secrets(pool, monkeypatch):
    monkeypatch.setenv("CODEIO_FAKE_SECRET", "hunter2-do-not-leak")
    code = (
        "import os\n"
        "def main_solution(pid):\n"
        "    seen = dict(os.environ)\n"
        "    for target in (pid, 1, os.getppid()):\n"
        "        try:\n"
        "            with open(f'/proc/{target}/environ', 'rb') as fh:\n"
        "                seen[str(target)] = fh.read().decode('utf-8', 'replace')\n"
        "        except OSError as exc:\n"
        "            seen[str(target)] = type(exc).__name__\n"
        "    return str(seen)\n"
    )
    result = pool.run(code, [{"pid": os.getpid()}], limits=replace(LIMITS, check_size=False))[0]
    assert result.status == "ok", result
    assert "hunter2" not in result.value and "CODEIO_FAKE_SECRET" not in result.value
    seen = ast.literal_eval(result.value)
    # The pool's own environment is not readable (not even there, with the worker's private /proc).
    assert seen[str(os.getpid())] in ("PermissionError", "FileNotFoundError"), seen
    env_code = "import os\ndef main_solution():\n    return sorted(os.environ)\n"
    names = pool.run(env_code, [{}], limits=replace(LIMITS, check_size=False))[0].value
    assert set(names) <= {"PATH", "PYTHONHASHSEED", "TZ", "LANG", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "HOME", "TMPDIR"}


def test_no_network_even_to_a_loopback_listener(pool):
    if not pool.isolation.network_namespace and not pool.isolation.filesystem_confined:
        pytest.skip("no network isolation on this machine")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "def main_solution(port):\n"
        "    socket.create_connection(('127.0.0.1', port), timeout=2).sendall(b'leak')\n"
        "    return 'connected'\n"
    )
    result = pool.run(code, [{"port": port}])[0]
    assert result.status == "error" and result.error_type in ("PermissionError", "OSError", "ConnectionRefusedError"), result
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
    assert_healthy(pool)


def test_killing_the_parent_is_contained(pool):
    code = "import os, signal\ndef main_solution():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 'alive'\n"
    results = pool.run(code, [{}, {}, {}])
    expected = "error" if pool.isolation.signals_scoped else "crashed"
    assert [r.status for r in results] == [expected] * 3
    assert_healthy(pool)


def test_orphaned_grandchildren_are_killed(pool):
    code = (
        "import os, time\n"
        "def main_solution():\n"
        "    r, w = os.pipe()\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()\n"
        "            os.write(w, str(os.getpid()).encode())\n"
        "            while True:\n"
        "                time.sleep(1)\n"
        "        os._exit(0)\n"
        "    return int(os.read(r, 32))\n"
    )
    results = pool.run(code, [{}, {}])
    assert [r.status for r in results] == ["ok", "ok"]
    for result in results:
        assert not Path(f"/proc/{result.value}").exists()
    assert_healthy(pool)


def test_killing_a_worker_is_survived(pool):
    sleeper = (
        "import os, time\n"
        "def main_solution(x):\n"
        "    if x and os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(60)\n"
        "    time.sleep(x)\n"
        "    return x\n"
    )
    before = pool.worker_pids
    uids_before = set(pool.worker_uids)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(r=pool.run(sleeper, [{"x": 0}, {"x": 1}, {"x": 0}])))
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(_has_job(pid) for pid in before):
        time.sleep(0.02)
    victim = next(pid for pid in before if _has_job(pid))
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    thread.join(30)
    statuses = [r.status for r in outcome["r"]]
    assert statuses[1] == "crashed" and outcome["r"][1].error_type == "WorkerLost"
    assert statuses[2] == "ok"
    assert victim not in pool.worker_pids
    gone = uids_before - set(pool.worker_uids)  # the dead worker's children's uid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_of(gone):
        time.sleep(0.1)  # init reaps what the worker's death orphaned
    assert processes_of(gone) == []
    assert_healthy(pool)
    both = pool.run_many([Job(sleeper, [{"x": 0.3}]), Job(sleeper, [{"x": 0.3}])])  # the lost worker comes back
    assert [r[0].status for r in both] == ["ok", "ok"]
    assert len(pool.worker_pids) == 2


def _has_job(worker_pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split())
    except OSError:
        return any(
            (p / "stat").read_text().split(") ")[1].split()[1] == str(worker_pid)
            for p in Path("/proc").iterdir() if p.name.isdigit() and (p / "stat").exists()
        )


def test_a_job_process_that_closes_its_control_pipe_costs_the_worker_no_cpu(pool):
    """The worker waits for the job process to end without polling the hung-up pipe."""
    code = "import os, time\nos.closerange(3, 1 << 16)\ntime.sleep(1)\ndef main_solution():\n    return 1\n"
    before = {pid: _cpu_ticks(pid) for pid in pool.worker_pids}
    result = pool.run(code, [{}])[0]
    used = sum(_cpu_ticks(pid) - ticks for pid, ticks in before.items()) / os.sysconf("SC_CLK_TCK")
    assert result.status == "crashed" and used < 0.5, (result, used)
    assert_healthy(pool)


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return sum(int(field) for field in stat[stat.rindex(")") + 2 :].split()[11:13])  # utime, stime


def test_a_deep_unremovable_tree_is_removed(pool):
    code = (
        "import os\n"
        "def main_solution():\n"
        "    for _ in range(3000):\n"
        "        os.mkdir('d' * 200)\n"
        "        os.chdir('d' * 200)\n"
        "    os.chmod('.', 0)\n"
        "    return 'deep'\n"
    )
    result = pool.run(code, [{}], limits=replace(LIMITS, cpu_seconds=2.0))[0]
    assert result.status == "ok", result
    assert_healthy(pool)


@pytest.mark.slow
def test_printing_a_gigabyte_through_print_with_capture(pool):
    code = (
        "import sys\n"
        "def main_solution():\n"
        "    line = 'x' * (1 << 20)\n"
        "    for _ in range(1024):\n"
        "        print(line)\n"
        "        print(line, file=sys.stderr)\n"
        "    return 'printed'\n"
    )
    limits = replace(LIMITS, cpu_seconds=10.0, stdio_bytes=1000)
    result = pool.run(code, [{}], limits=limits)[0]
    assert result.status == "ok", result
    assert len(result.stdio) == 1000 and set(result.stdio) == {"x"}
    assert_healthy(pool)


@pytest.mark.slow
def test_signal_games_stop_at_the_hard_cpu_limit(pool):
    """With SIGPROF and SIGXCPU ignored and a long watchdog, RLIMIT_CPU's hard limit kills."""
    code = (HOSTILE_DIR / "signals_ignored.py").read_text()
    result = pool.run(code, [{}], limits=replace(LIMITS, wall_factor=20.0))[0]
    assert result.status == "timeout", result
    assert result.cpu_seconds >= LIMITS.cpu_seconds
    assert_healthy(pool)


FORGE_DEEP_MESSAGE = (
    "import os, struct\n"
    "def main_solution(x):\n"
    "    payload = b'[' * 50000\n"
    "    fds = [int(fd) for fd in os.listdir('/proc/self/fd') if int(fd) >= 1000]\n"
    "    if 1010 in fds:  # a child: its result pipe\n"
    "        os.write(1010, payload)\n"
    "    else:  # the last call, run in the job process: a result frame on its control pipe\n"
    "        os.write(fds[0], struct.pack('<BiiBdI', 3, x, 0, 0, 0.0, len(payload)) + payload)\n"
    "    os._exit(0)\n"
)


def test_a_message_nested_too_deep_for_json_is_a_crash_of_the_call_alone(pool):
    before = pool.worker_pids
    for _ in range(3):  # once killed the worker, and the last worker out took the temp root
        results = pool.run(FORGE_DEEP_MESSAGE, [{"x": 0}, {"x": 1}])
        assert [r.status for r in results] == ["crashed", "crashed"], results
        assert all(r.error_type == "Crashed" for r in results), results
    generated = pool.generate(FORGE_DEEP_MESSAGE.replace("(x)", "(x=0)").replace("payload)", "payload + b'\\n')"), entry="main_solution", count=1)
    assert generated.status == "crashed" and generated.values == []
    assert pool.worker_pids == before
    assert_healthy(pool)


def test_a_worker_that_fails_leaves_the_temp_root_to_its_replacement():
    with SandboxPool(workers=1, limits=LIMITS) as pool:
        (worker,) = pool.worker_pids
        os.kill(worker, signal.SIGINT)  # KeyboardInterrupt: the worker ends through its clean-up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{worker}").exists() and \
                Path(f"/proc/{worker}/stat").read_text().split(") ")[1][0] != "Z":
            time.sleep(0.05)
        assert Path(pool.temp_root).is_dir()
        pool.run(GOOD, [{"x": 1}])  # finds the worker gone
        assert_healthy(pool)


@pytest.mark.skipif(os.geteuid() != 0, reason="IPC namespaces need root")
def test_no_ipc_object_is_shared_between_calls_or_outlives_the_pool():
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\n"
        "libc.mq_open.restype = ctypes.c_int\n"
        "def main_solution(op):\n"
        "    if op == 'store':\n"
        "        shm = libc.shmget(0x0C0DE11, 1 << 20, 0o1666)\n"
        "        msg = libc.msgget(0x0C0DE12, 0o1666)\n"
        "        mq = libc.mq_open(b'/codeio-probe', os.O_CREAT | os.O_RDWR, 0o666, None)\n"
        "        return [shm >= 0, msg >= 0, mq >= 0]\n"
        "    return [libc.shmget(0x0C0DE11, 0, 0) >= 0, libc.msgget(0x0C0DE12, 0) >= 0,\n"
        "            libc.mq_open(b'/codeio-probe', os.O_RDWR, 0, None) >= 0]\n"
    )
    def host_objects() -> list[str]:
        return [line for name in ("shm", "msg") for line in Path(f"/proc/sysvipc/{name}").read_text().splitlines()
                if line.split()[:1] in (["12639761"], ["12639762"])]  # the keys, in decimal
    with SandboxPool(workers=1, limits=LIMITS) as pool:
        results = pool.run(code, [{"op": "store"}, {"op": "load"}]) + pool.run(code, [{"op": "load"}])
        assert [(r.status, r.value) for r in results] == [("ok", [False, False, False])] + [("ok", [False] * 3)] * 2
        assert host_objects() == []
    assert host_objects() == []


def test_cpu_of_helpers_nobody_waits_for_counts_against_the_limit(pool):
    """Each helper stays under its own RLIMIT_CPU; together they use twice the call's limit."""
    code = (
        "import os, time\n"
        "def main_solution(helpers, seconds):\n"
        "    pipes = []\n"
        "    for _ in range(helpers):\n"
        "        r, w = os.pipe()\n"
        "        if os.fork() == 0:\n"
        "            end = time.process_time() + seconds\n"
        "            while time.process_time() < end:\n"
        "                pass\n"
        "            os.write(w, b'1')\n"
        "            os._exit(0)\n"
        "        os.close(w)\n"
        "        pipes.append(r)\n"
        "    return sum(len(os.read(r, 1)) for r in pipes)\n"
    )
    calls = [{"helpers": 3, "seconds": 0.35}] * 2  # a call in a child, the last one in the job process
    results = pool.run(code, calls, limits=replace(LIMITS, wall_factor=10.0))
    assert [r.status for r in results] == ["timeout", "timeout"], results
    assert all(r.cpu_seconds >= 1.0 for r in results), results
    small = pool.run(code, [{"helpers": 1, "seconds": 0.1}] * 2)
    assert [(r.status, r.value) for r in small] == [("ok", 1), ("ok", 1)], small
    assert_healthy(pool)


SIZE_LIMITS = Limits(cpu_seconds=2.0, check_size=True)
ALIASED = "def main_solution(kind):\n    return [['x' * 99] * 19] * 19\n"
FORGED = """
import json, os
def main_solution(kind):
    if kind == 'plain':  # the job's last call (run in the job process, another channel)
        return 1
    value = [['x' * 99] * 19] * 19 if kind == 'aliased' else int('9' * 4000)
    os.write(1010, b'{"s":"ok","v":' + json.dumps(value).encode() + b'}')
    os._exit(0)
"""
ALIASED_GENERATOR = """
def main_solution(v):
    return 1
def input_generator():
    return {'v': [['x' * 99] * 19] * 19}
"""


def test_values_within_asizeof_but_large_in_json_fail_the_size_check(pool):
    """asizeof counts an object shared by many references once: an aliased 19x19 table of
    99-char strings measures ~600 bytes but is 37 KB of JSON. Neither that, returned honestly
    or forged on the result pipe, nor a forged 4000-digit integer passes the size check; a
    generated input like it is not kept."""
    honest = pool.run(ALIASED, [{"kind": "a"}, {"kind": "b"}], limits=SIZE_LIMITS)
    assert [r.status for r in honest] == ["size_limit", "size_limit"]
    results = pool.run(FORGED, [{"kind": "aliased"}, {"kind": "int"}, {"kind": "plain"}], limits=SIZE_LIMITS)
    assert [r.status for r in results] == ["size_limit", "size_limit", "ok"], [(r.status, r.error_message) for r in results]
    assert "JSON of" in results[0].error_message and "bits" in results[1].error_message
    generated = pool.generate(ALIASED_GENERATOR, count=3, limits=SIZE_LIMITS)
    assert generated.values == [] and generated.failures.get("size_limit") == 3, generated
    assert_healthy(pool)


@pytest.mark.parametrize("bits", [700, 720, 721, 800])
def test_the_integer_bound_of_the_reported_check_agrees_with_asizeof(bits):
    from pympler.asizeof import asizeof

    from sandbox.values import MAX_LEAF_BYTES, json_shape_violation

    for value in (2**bits - 1, -(2**bits - 1)):
        assert (json_shape_violation(value) is None) == (asizeof(value) < MAX_LEAF_BYTES)


def test_the_calls_are_the_oom_killers_first_choice(pool):
    """RLIMIT_AS bounds each process, not a call's tree: should a call's processes together
    exhaust the machine's memory, the OOM killer must take them, not the pipeline."""
    code = ("import os\ndef main_solution(x):\n"
            "    if os.fork() == 0:\n        os._exit(0 if open('/proc/self/oom_score_adj').read().strip() == '1000' else 3)\n"
            "    _, status = os.wait()\n"
            "    return [open('/proc/self/oom_score_adj').read().strip(), os.waitstatus_to_exitcode(status)]\n")
    results = pool.run(code, [{"x": 1}, {"x": 2}])
    assert [(r.status, r.value) for r in results] == [("ok", ["1000", 0])] * 2, results
    assert open("/proc/self/oom_score_adj").read().strip() != "1000"  # the pipeline's own stays


def test_the_sandbox_package_is_out_of_the_programs_reach(pool):
    """The worker's own modules are gone from sys.modules, in the program's top level and in
    every call (J removes them by a list the worker made), and importing them again fails."""
    code = ("import sys\n"
            "TOP = [m for m in sys.modules if m.split('.')[0] == 'sandbox']\n"
            "def main_solution(x):\n"
            "    now = [m for m in sys.modules if m.split('.')[0] == 'sandbox']\n"
            "    try:\n        import sandbox.harness\n        imported = True\n"
            "    except (ImportError, OSError):\n        imported = False\n"
            "    return [TOP, now, imported]\n")
    results = pool.run(code, [{"x": 1}, {"x": 2}])
    assert [(r.status, r.value) for r in results] == [("ok", [[], [], False])] * 2, results


def test_a_unix_socket_file_cannot_be_reached(pool):
    """A socket file (a host service's, in /tmp or /run) is outside every namespace and
    Landlock does not cover connecting to it: socket(AF_UNIX) is refused outright, while
    socketpair(), which names nothing, still works."""
    from sandbox import isolation

    if not isolation.unix_socket_filter_supported():
        pytest.skip("no seccomp filter for this architecture")
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="codeio-sock-", dir="/tmp"))  # a place any user may reach
    os.chmod(where, 0o777)
    path = where / "service.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    os.chmod(path, 0o777)
    code = (
        "import socket\n"
        "def main_solution(path):\n"
        "    a, b = socket.socketpair()\n"
        "    a.sendall(b'x')\n"
        "    paired = b.recv(1) == b'x'\n"
        "    try:\n"
        "        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "        s.connect(path)\n"
        "        return [paired, 'connected']\n"
        "    except OSError as exc:\n"
        "        return [paired, exc.errno]\n"
    )
    try:
        results = pool.run(code, [{"path": str(path)}, {"path": str(path)}])
    finally:
        server.close()
        shutil.rmtree(where, ignore_errors=True)
    assert [(r.status, r.value) for r in results] == [("ok", [True, 13])] * 2, results
    assert_healthy(pool)


def test_proc_shows_a_child_only_its_own_processes(pool):
    """Other processes' command lines (an API key given as an argument), environments and
    existence are not a child's to read: its /proc lists only its own uid's processes."""
    if os.geteuid() != 0:
        pytest.skip("a private /proc needs the worker's mount namespace (root)")
    code = (
        "import os\n"
        "def main_solution(pid):\n"
        "    listed = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        "    try:\n"
        "        open(f'/proc/{pid}/cmdline').read()\n"
        "        return ['read', listed]\n"
        "    except OSError:\n"
        "        return [os.getpid() in listed, all(os.stat(f'/proc/{p}').st_uid == os.getuid() for p in listed)]\n"
    )
    results = pool.run(code, [{"pid": os.getpid()}, {"pid": 1}])
    assert [(r.status, r.value) for r in results] == [("ok", [True, True])] * 2, results
    assert_healthy(pool)
