"""Reliability against bad inputs and a hostile environment (issue 9): a corrupt corpus, a
database held by another process, a disk that fills up during the export. Each is the
`codeio` command as a user runs it; each must end in data or in one clear line, never in a
traceback or a half-written file."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.config import SAMPLE_CORPUS
from reliability_helpers import cli_env, export_digest, one_line_error, run_cli

pytestmark = pytest.mark.slow

# Sample files the offline transform turns into functions.
VALID = ["bubble_sort.py", "caesar.py", "collatz.py", "roman_numerals.py", "two_sum.py", "run_length.py"]


def _corrupt_corpus(root: Path) -> tuple[list[Path], dict[str, int]]:
    """Two sources mixing every kind of bad input; returns them and the expected rejections."""
    files = root / "files"
    files.mkdir(parents=True)
    for name in VALID:
        shutil.copy(SAMPLE_CORPUS / name, files / name)
    shutil.copy(SAMPLE_CORPUS / VALID[0], files / "copy_of_bubble_sort.py")  # duplicate content
    (files / "binary.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4)
    (files / "huge.py").write_bytes(b"x = 1\n" * 600_000)  # 3.6 MB of valid Python
    (files / "latin1.py").write_bytes("# café au lait\nprice = 'déjà'\n".encode("latin-1"))
    (files / "syntax_error.py").write_text("def broken(:\n    return\n")
    (files / "deep_nesting.py").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    (files / "empty.py").write_bytes(b"")
    (files / "blank.py").write_text("\n   \n\t\n")
    (files / "bom.py").write_bytes(b"\xef\xbb\xbfdef f(x):\n    return x + 1\n")
    rows = root / "rows.jsonl"
    lines = [
        json.dumps({"content": "def double(x):\n    return 2 * x\n", "repo_name": "r/a", "path": "a.py"}),
        "{this is not json",
        json.dumps(["an", "array", "not", "an", "object"]),
        json.dumps({"content": 12345, "path": "number.py"}),  # not text: empty
        json.dumps({"content": "x = '\u0000'", "path": "nul.py"}),  # NUL byte: binary
        json.dumps({"content": (SAMPLE_CORPUS / VALID[1]).read_text(), "path": "dup.py"}),  # duplicate across sources
        "",  # a blank line is not a record
    ]
    rows.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # bom.py (a UTF-8 byte-order mark, which Python accepts) is left out: it only has to be
    # accounted for, as 'ok' or as a syntax error.
    expected = {"binary": 2, "too_large": 1, "not_utf8": 1, "empty": 3, "bad_record": 2, "duplicate_content": 2}
    return [files, rows], expected


@pytest.fixture(scope="module")
def corrupt_build(tmp_path_factory: pytest.TempPathFactory, prefect_harness: str) -> dict:
    """`codeio run` (offline provider) over the corrupt corpus; its stats and its store."""
    base = tmp_path_factory.mktemp("corrupt")
    sources, expected = _corrupt_corpus(base / "corpus")
    config = {
        "sources": [{"path": str(sources[0]), "name": "files", "kind": "educational"},
                    {"path": str(sources[1]), "name": "rows", "kind": "mixed"}],
        "db_path": str(base / "db" / "codeio.duckdb"),
        "output_dir": str(base / "out"),
        "shard_size": 5,
        "sandbox": {"workers": 2},
        "sampling": {"generator_calls": 50},
    }
    (base / "build.json").write_text(json.dumps(config))
    env = cli_env(base / "prefect", prefect_harness)
    rc, _out, err = run_cli(["run", "--config", str(base / "build.json")], env, base, "run")
    assert rc == 0, err[-3000:]
    rc, stats, err = run_cli(["stats", "--db", config["db_path"], "--json"], env, base, "stats")
    assert rc == 0, err[-3000:]
    items = len(list(sources[0].iterdir())) + sum(1 for ln in sources[1].read_text().splitlines() if ln.strip())
    return {"base": base, "env": env, "stats": json.loads(stats), "expected": expected, "items": items,
            "db": Path(config["db_path"]), "out": base / "out"}


def test_corrupt_inputs_are_accounted_for(corrupt_build):
    """Binary, huge, non-UTF-8, unparsable, empty, duplicate files and bad JSONL lines: the run
    finishes, and `codeio stats --json` accounts for every item with a reason."""
    funnel = corrupt_build["stats"]["funnel"]
    ingest = [r for r in funnel if r["stage"] == "ingest"]
    assert sum(r["count"] for r in ingest) == corrupt_build["items"]  # nothing dropped silently
    reasons = {r["reason"]: r["count"] for r in ingest if r["status"] != "ok"}
    assert all(r["reason"] for r in ingest if r["status"] != "ok")
    for reason, n in corrupt_build["expected"].items():
        assert reasons.get(reason) == n, (reason, reasons)
    assert reasons.get("syntax_error") in (2, 3), reasons  # syntax_error.py, deep_nesting.py (, bom.py)
    kept = sum(r["count"] for r in ingest if r["status"] == "ok")
    transformed = sum(r["count"] for r in funnel if r["stage"] == "transform")
    assert transformed == kept  # every kept file has a transform outcome
    assert all(r["reason"] for r in funnel if r["status"] == "dropped")
    assert any(r["stage"] == "answer" and r["status"] == "ok" for r in funnel)  # and the rest went on
    assert (corrupt_build["out"] / "codeio.jsonl").stat().st_size > 0


@pytest.fixture
def locked_db(tmp_path: Path):
    """A codeio database that another process holds open for writing."""
    from storage.store import Store

    db = tmp_path / "locked.duckdb"
    Store(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(600)", str(db)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield db
    finally:
        holder.kill()
        holder.wait(10)


def test_locked_database_is_one_clear_line(locked_db, corrupt_build, tmp_path):
    """`codeio run` and `codeio stats` on a database in use: one line, non-zero exit."""
    env = corrupt_build["env"]
    problems = []
    for args in (["stats", "--db", str(locked_db)],
                 ["run", "--db", str(locked_db), "--corpus", str(SAMPLE_CORPUS / VALID[0]), "--out", str(tmp_path / "o")]):
        rc, _out, err = run_cli(args, env, tmp_path, args[0])
        assert rc != 0, err[-2000:]
        line = one_line_error(err)
        if not (line.startswith("codeio: error: database") and "in use by another process" in line):
            problems.append(f"`codeio {args[0]}`: last line {line!r}")
        if "Traceback" in err:
            problems.append(f"`codeio {args[0]}`: traceback on stderr:\n{err[err.index('Traceback') - 200:][:1500]}")
    assert not problems, "\n".join(problems)


def _mount_tiny_tmpfs(target: Path) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def test_disk_full_export_leaves_no_partial_file(corrupt_build, tmp_path, monkeypatch):
    """Exporting onto a full disk: a clear error, a non-zero exit, and every file in the
    output directory either whole (identical to a normal export) or absent."""
    full = tmp_path / "full"
    if _mount_tiny_tmpfs(full):  # a real ENOSPC from a 64 KiB file system
        try:
            rc, _out, err = run_cli(["export", "--db", str(corrupt_build["db"]), "--out", str(full)],
                                    corrupt_build["env"], tmp_path, "export")
            left = {p.name: p.read_bytes() for p in full.iterdir()}
        finally:
            subprocess.run(["umount", str(full)], check=True)
        assert rc != 0, err[-2000:]
        line = one_line_error(err)
        assert line.startswith("codeio: error:") and "No space left on device" in line, err[-2000:]
        assert "Traceback" not in err, err[-3000:]
    else:  # no mount permission: the same failure, simulated where the export syncs its data
        import storage.atomic
        from flows import cli

        def no_space(_path: Path) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(storage.atomic, "_fsync_file", no_space)
        rc = cli.main(["export", "--db", str(corrupt_build["db"]), "--out", str(full)])
        assert rc != 0
        left = {p.name: p.read_bytes() for p in full.iterdir()} if full.exists() else {}
    whole = corrupt_build["out"]
    assert all(not name.startswith(".") and not name.endswith(".tmp") for name in left), sorted(left)
    for name, data in left.items():
        assert data == (whole / name).read_bytes(), f"{name} is partial"
    assert set(export_digest(whole)) - set(left), "the tiny disk should not hold the whole export"
