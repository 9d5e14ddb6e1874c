"""Children read only what the interpreter needs: its installation, the system's shared
libraries, time zone data, /proc, a few devices and their own temp dir. A host file is a
PermissionError to the program (an ``error`` verdict), however readable it is, and Python
still does everything it does lazily inside a call: imports, tracebacks, time zones, ctypes.

Plain denials with fixed verdicts are hostile programs (``tests/hostile/read_host_file.py``,
``list_host_dir.py``, ``toplevel_read.py``); what needs the test's cooperation is here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox import Limits, SandboxPool, isolation
from sandbox.harness import PRELOADED_MODULES

LIMITS = Limits(cpu_seconds=2.0, check_size=False)
GOOD = "def main_solution(x):\n    return {'double': x * 2}\n"
REPO = Path(__file__).resolve().parent.parent  # the sandbox package's parent, on the worker's sys.path
TRY_READ = (
    "import os\n"
    "def main_solution(path):\n"
    "    try:\n"
    "        if os.path.isdir(path):\n"
    "            return ['listed', len(os.listdir(path))]\n"
    "        with open(path, 'rb') as fh:\n"
    "            return ['read', len(fh.read())]\n"
    "    except OSError as exc:\n"
    "        return type(exc).__name__\n"
)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=LIMITS) as pool:
        if not pool.isolation.reads_confined:
            pytest.skip("Landlock unavailable: children read what their uid may")
        yield pool


@pytest.fixture
def world_readable_file():
    """A stand-in for the build's database: 0644 in a 0755 directory of /tmp, outside the
    sandbox, where every uid may read it but for Landlock."""
    where = Path(tempfile.mkdtemp(prefix="codeio-host-", dir="/tmp"))
    os.chmod(where, 0o755)
    path = where / "codeio.duckdb"
    path.write_bytes(b"DUCK" * 64)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(where)


def assert_serves(pool: SandboxPool) -> None:
    results = pool.run(GOOD, [{"x": 1}, {"x": 2}])
    assert [(r.status, r.value) for r in results] == [("ok", {"double": 2}), ("ok", {"double": 4})]


def each_way(pool: SandboxPool, code: str, call: dict) -> list:
    """The call as a child (first of two) and in the job process (last, and alone)."""
    return pool.run(code, [call, call]) + pool.run(code, [call])


def test_host_files_and_directories_cannot_be_read(pool, world_readable_file):
    targets = ["/etc/passwd", "/etc/hostname", "/etc", "/home", "/", "/tmp", str(world_readable_file),
               str(world_readable_file.parent), str(REPO / "README.md"), str(REPO), pool.temp_root]
    targets = [t for t in targets if os.path.exists(t)]
    assert os.stat(world_readable_file).st_mode & 0o004  # readable to the children's uid by its mode
    for target in targets:
        results = each_way(pool, TRY_READ, {"path": target})
        assert [r.value for r in results] == ["PermissionError"] * 3, (target, results)
    assert_serves(pool)


def test_an_unhandled_denied_read_is_an_error_verdict_and_the_pool_goes_on(pool, world_readable_file):
    code = f"def main_solution():\n    return open({str(world_readable_file)!r}).read()\n"
    results = each_way(pool, code, {})
    assert [(r.status, r.error_type) for r in results] == [("error", "PermissionError")] * 3, results
    assert "Permission denied" in results[0].error_message
    assert_serves(pool)


def test_stdlib_modules_not_preloaded_import_inside_a_call(pool):
    modules = ["fractions", "decimal", "statistics", "zoneinfo", "sqlite3", "csv", "difflib", "traceback"]
    assert not set(modules) & set(PRELOADED_MODULES)
    code = (
        "import importlib, sys\n"
        "def main_solution(name):\n"
        "    loaded_before = name in sys.modules\n"
        "    importlib.import_module(name)\n"
        "    return [loaded_before, name in sys.modules]\n"
    )
    for name in modules:
        assert [r.value for r in each_way(pool, code, {"name": name})] == [[False, True]] * 3, name
    maths = (
        "def main_solution():\n"
        "    from decimal import Decimal\n"
        "    from fractions import Fraction\n"
        "    import sqlite3, statistics\n"
        "    row = sqlite3.connect(':memory:').execute('select 6 * 7').fetchone()\n"
        "    return [str(Decimal(1) / Decimal(8)), str(Fraction(3, 6)), statistics.median([3, 1, 2]), row[0]]\n"
    )
    assert [r.value for r in each_way(pool, maths, {})] == [["0.125", "1/2", 2, 42]] * 3


def test_numpy_and_its_lazily_loaded_parts_work(pool):
    code = (
        "import sys\n"
        "import numpy as np\n"
        "def main_solution():\n"
        "    lazy = 'numpy.fft' in sys.modules or 'numpy.polynomial' in sys.modules\n"
        "    from numpy.fft import fft\n"
        "    from numpy.polynomial import Polynomial\n"
        "    return [lazy, round(float(np.linalg.det(np.eye(3) * 2)), 9), float(abs(fft([1, 2, 3]))[0]),\n"
        "            Polynomial([1, 2]).degree(), int(np.random.default_rng(1).integers(10))]\n"
    )
    results = each_way(pool, code, {})
    assert all(r.status == "ok" for r in results), results
    assert results[0].value[:4] == [False, 8.0, 6.0, 1]


def test_tracebacks_have_their_lines(pool):
    code = (
        "import json\n"
        "def main_solution():\n"
        "    import traceback\n"
        "    try:\n"
        "        json.loads('{')\n"
        "    except ValueError:\n"
        "        return traceback.format_exc()\n"
    )
    for result in each_way(pool, code, {}):
        assert result.status == "ok", result
        text = result.value
        assert 'File "<codeio>", line 5, in main_solution' in text and "json.loads('{')" in text, text
        assert "json/decoder.py" in text and "self.scan_once(s, idx)" in text, text  # a stdlib frame's source


def test_the_own_temp_dir_is_read_and_written(pool):
    code = (
        "import os, tempfile\n"
        "def main_solution():\n"
        "    with open('data.txt', 'w') as fh:\n"
        "        fh.write('kept')\n"
        "    with tempfile.NamedTemporaryFile('w', delete=False) as fh:\n"
        "        fh.write('temp')\n"
        "    return [open('data.txt').read(), open(fh.name).read(), sorted(os.listdir('.')) == sorted(\n"
        "            ['data.txt', os.path.basename(fh.name)]), os.path.dirname(fh.name) == os.getcwd()]\n"
    )
    assert [r.value for r in each_way(pool, code, {})] == [["kept", "temp", True, True]] * 3


def test_time_zones_come_from_the_time_zone_data_never_the_hosts_setting(pool):
    code = (
        "import datetime, os, time, zoneinfo\n"
        "def main_solution():\n"
        "    paris = datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris')).utcoffset()\n"
        "    before = list(time.tzname)\n"
        "    del os.environ['TZ']\n"
        "    time.tzset()  # now the host's /etc/localtime would decide\n"
        "    return [str(paris), before, list(time.tzname)]\n"
    )
    if not os.path.isdir("/usr/share/zoneinfo"):
        pytest.skip("no time zone data on this machine")
    assert [r.value for r in each_way(pool, code, {})] == [["1:00:00", ["UTC", "UTC"], ["UTC", "UTC"]]] * 3


def test_ctypes_loads_libraries_it_had_not_loaded(pool):
    """The dynamic loader finds a library through its index, /etc/ld.so.cache, the one file of
    /etc a child may read (without it, only the default directories would be searched)."""
    if not os.path.exists("/etc/ld.so.cache"):
        pytest.skip("no loader cache on this machine")
    code = (
        "import ctypes, ctypes.util\n"
        "def main_solution():\n"
        "    loaded_before = 'libsqlite3' in open('/proc/self/maps').read()\n"
        "    libsqlite3 = ctypes.CDLL('libsqlite3.so.0')\n"
        "    libsqlite3.sqlite3_libversion.restype = ctypes.c_char_p\n"
        "    cache = len(open('/etc/ld.so.cache', 'rb').read()) > 0\n"
        "    return [loaded_before, libsqlite3.sqlite3_libversion().decode()[:2], cache,\n"
        "            ctypes.util.find_library('m')]\n"
    )
    for result in each_way(pool, code, {}):
        assert result.status == "ok", result
        # find_library runs ldconfig or gcc, which children may not execute (unless the
        # interpreter is the system's, in /usr): it answers None, it does not fail.
        assert result.value[:3] == [False, "3.", True] and result.value[3] in (None, "libm.so.6"), result


def test_the_interpreter_runs_but_nothing_else_and_nothing_written(pool):
    """The interpreter (reached through the venv's symlink) may be executed, so its real
    location is allowed; a host program or a file the call wrote may not."""
    code = (
        "import os, shutil, subprocess, sys\n"
        "def main_solution(what):\n"
        "    if what == 'copy':\n"
        "        shutil.copy(os.path.realpath(sys.executable), 'python')\n"
        "        command = ['./python', '-c', 'print(42)']\n"
        "    else:\n"
        "        command = {'python': [sys.executable, '-c', 'import fractions; print(42)'],\n"
        "                   'shell': ['/bin/sh', '-c', 'echo 42']}[what]\n"
        "    try:\n"
        "        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
    )
    limits = replace(LIMITS, file_size_bytes=64 * 1024**2)
    values = {what: [r.value for r in pool.run(code, [{"what": what}] * 2, limits=limits)]
              for what in ("python", "shell", "copy")}
    assert values == {"python": ["42"] * 2, "shell": ["PermissionError"] * 2, "copy": ["PermissionError"] * 2}
    assert_serves(pool)


def test_a_path_of_the_allow_list_that_cannot_be_opened_is_left_out(tmp_path):
    """The job process builds its ruleset as the children's uid: a listed path that uid cannot
    reach, or one gone since the worker started, gives nothing to allow and fails nothing."""
    abi = isolation.landlock_abi()
    if not abi:
        pytest.skip("Landlock unavailable")
    ruleset = isolation.landlock_ruleset(abi, str(tmp_path), (str(tmp_path / "gone"), "/usr/lib"), True)
    os.close(ruleset)
    if os.geteuid() != 0:
        return
    private = tmp_path / "private"
    (private / "inner").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(private, 0o700)
    pid = os.fork()
    if pid == 0:  # as another uid, to which the inner directory is out of reach
        code = 1
        try:
            isolation.drop_privileges(65534)
            os.close(isolation.landlock_ruleset(abi, "/tmp", (str(private / "inner"), "/usr/lib"), True))
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_the_allow_list_is_real_paths_none_inside_another_without_the_hidden(tmp_path):
    real = tmp_path / "python-install"
    (real / "lib" / "site-packages").mkdir(parents=True)
    (tmp_path / "venv").symlink_to(real)
    hidden = tmp_path / "repo"
    hidden.mkdir()
    readable = isolation.readable_paths(
        [str(tmp_path / "venv"), str(real / "lib" / "site-packages"), str(tmp_path / "missing"), str(hidden)],
        (str(hidden),),
    )
    assert str(real) in readable
    assert not {str(tmp_path / "venv"), str(real / "lib" / "site-packages"), str(hidden)} & set(readable)
    assert all(os.path.realpath(p) == p and os.path.exists(p) for p in readable)
    assert not any(p.startswith(q + "/") for p in readable for q in readable)
