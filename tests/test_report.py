"""`codeio report`: the HTML page's numbers and charts, its safety with odd data, its atomic
write, and that headless Chromium renders it (the charts are in the DOM, the page is not blank).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from flows.report import (
    CHART_TITLES,
    STAGE_UNITS,
    collect,
    nice_axis,
    pairs_per_function,
    render_html,
    write_report,
)
from storage.models import Outcome, ShardResult
from storage.store import Store
from test_export_fixtures import KEYS, build_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = build_store(tmp_path / "codeio.duckdb")
    yield s
    s.close()


def test_page_has_every_chart_with_the_fixture_numbers(store):
    page = render_html(collect(store, KEYS))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg ") == len(CHART_TITLES)
    for title in CHART_TITLES:
        assert f">{title}</title>" in page  # the chart's accessible name
        assert f"<h2>{title}</h2>" in page
    # funnel: per stage, its unit and what it kept
    assert "transform (files)" in page and "2 of 3 kept" in page
    assert "ingest (files)" in page and "3 of 5 kept" in page
    # response types per turn and kind (figure 7), shares in percent
    assert "turn 3 · output" in page and "turn 1 · input" in page
    assert "<td>no_answer</td>" in page and "50.0%" in page
    # drop reasons, one bar each
    for reason in ("transform: parse_failure", "sample_io: non_deterministic", "ingest: too_large",
                   "ingest: duplicate_content", "answer: call_failed"):
        assert reason in page
    # token use: prompt + completion per stage
    assert "4,148 in 2 calls" in page
    # key numbers: 1 of 5 tasks correct at turn 1, 3 of 5 after the revision turns
    assert "<b>20.0%</b><span>correct at turn 1</span>" in page
    assert "<b>60.0%</b><span>correct after revision</span>" in page


def test_every_stage_has_a_unit():
    from storage.stages import STAGE_ORDER

    assert tuple(STAGE_UNITS) == STAGE_ORDER


def test_pairs_per_function_counts_dropped_functions_as_zero(store):
    # fn-1 kept 5 pairs; fn-2 was dropped by sample_io (non_deterministic) with none
    assert pairs_per_function(store, KEYS).rows() == [(0, 1), (5, 1)]
    assert pairs_per_function(store, {"ingest": "k-ingest"}).height == 0


def test_empty_store_still_shows_every_chart(tmp_path):
    with Store(tmp_path / "empty.duckdb") as store:
        page = render_html(collect(store, KEYS))
    for title in CHART_TITLES:
        assert f">{title}</title>" in page
    assert "(no stage has run yet)" in page and "(no LLM calls in the ledger)" in page


def test_text_from_the_store_is_escaped(store):
    store.write_shard(ShardResult(stage="transform", config_key=KEYS["transform"], outcomes=[
        Outcome(item_id="raw-x", status="dropped", reason='<script>alert("x")</script>'),
    ]))
    page = render_html(collect(store, KEYS))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_write_is_atomic_and_repeatable(store, tmp_path, monkeypatch):
    out = tmp_path / "site" / "report.html"
    assert write_report(store, KEYS, out) == out
    first = out.read_bytes()
    write_report(store, KEYS, out)
    assert out.read_bytes() == first  # the same store gives the same page

    import flows.report as report

    def broken(_data):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_report(store, KEYS, out)
    assert out.read_bytes() == first  # the previous page is left whole
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left


@pytest.mark.parametrize(("top", "end", "ticks"), [
    (0, 1, 2), (1, 1, 2), (6, 6, 4), (36, 40, 5), (22375, 25000, 6), (999, 1000, 6),
])
def test_axis_ends_on_a_round_number(top, end, ticks):
    got_end, got_ticks = nice_axis(top)
    assert (got_end, len(got_ticks)) == (end, ticks)
    assert got_ticks[0] == 0 and got_ticks[-1] == got_end >= top


def test_cli_report_command(store, tmp_path, capsys):
    from flows.cli import main

    store.close()
    out = tmp_path / "cli" / "report.html"
    assert main(["report", "--db", str(tmp_path / "codeio.duckdb"), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert all(f">{title}</title>" in out.read_text(encoding="utf-8") for title in CHART_TITLES)
    assert main(["report", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- rendered by a browser -------------------------------------------------------------------


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1200,2000", *extra, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_the_charts(store, tmp_path):
    page = write_report(store, KEYS, tmp_path / "report.html")

    dom = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for title in CHART_TITLES:
        assert f">{title}</title>" in dom.stdout
    assert dom.stdout.count("<svg") == len(CHART_TITLES)
    assert "sample_io: non_deterministic" in dom.stdout

    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert _png_size(shot) == (1200, 2000)

    # The same browser on a blank page: the report's picture must hold far more than that.
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    blank_shot = tmp_path / "blank.png"
    _chromium(tmp_path, blank.as_uri(), f"--screenshot={blank_shot}")
    assert shot.stat().st_size > 5 * blank_shot.stat().st_size
