"""`codeio report`: one self-contained HTML page with the build's statistics as bar charts.

The charts are inline SVG written here (no plotting library, no script, no network): the funnel
per stage, the response types per turn (the paper's figure 7), I/O pairs per function, drop
reasons and token use. Each chart has a data table beside it. The page depends only on the
store's content (no timestamp of its own), and is written atomically.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from storage.atomic import atomic_write_text
from storage.stats import RESPONSE_TYPES, funnel, response_types, token_usage
from storage.store import Store

PAGE_TITLE = "CodeI/O build report"
FUNNEL_TITLE = "Funnel per stage"
RESPONSE_TITLE = "Response types per turn"
PAIRS_TITLE = "I/O pairs per function"
DROPS_TITLE = "Drop reasons"
TOKENS_TITLE = "Token use per stage"
CHART_TITLES = (FUNNEL_TITLE, RESPONSE_TITLE, PAIRS_TITLE, DROPS_TITLE, TOKENS_TITLE)

# What one input row of each stage is, for the funnel's labels.
STAGE_UNITS = {
    "ingest": "files",
    "transform": "files",
    "sample_io": "functions",
    "prompts": "I/O pairs",
    "answer": "tasks",
    "revise1": "wrong answers",
    "revise2": "wrong answers",
}

STATUS_COLORS = {"ok": "#2e7d32", "duplicate": "#90a4ae", "rejected": "#ef6c00", "dropped": "#c62828"}
TYPE_COLORS = {"correct": "#2e7d32", "wrong": "#c62828", "no_answer": "#f9a825", "error": "#6a1b9a",
               "other": "#757575"}
TOKEN_COLORS = {"prompt": "#1565c0", "completion": "#64b5f6"}
_FALLBACK_COLORS = ("#00838f", "#8d6e63", "#ad1457", "#5d4037", "#455a64")

_WIDTH = 960
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
_CHAR_W = 7.0  # average width of a 12 px character, for laying out labels


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, as tables (the store is not needed to render it)."""

    funnel: pl.DataFrame
    response_types: pl.DataFrame
    tokens: pl.DataFrame
    pairs_per_function: pl.DataFrame  # pairs, functions
    last_run: dict[str, Any] | None
    db_path: str


def collect(store: Store, keys: dict[str, str]) -> ReportData:
    """Read the report's tables for the build named by ``keys`` (stage name -> config key)."""
    runs = store.query_dicts(
        "SELECT run_id, started_at, finished_at, status, summary_json FROM runs "
        "ORDER BY started_at DESC, run_id LIMIT 1"
    )
    return ReportData(
        funnel=funnel(store, keys),
        response_types=response_types(store, keys),
        tokens=token_usage(store),
        pairs_per_function=pairs_per_function(store, keys),
        last_run=runs[0] if runs else None,
        db_path=str(store.path),
    )


def pairs_per_function(store: Store, keys: dict[str, str]) -> pl.DataFrame:
    """How many functions got 0, 1, 2, ... I/O pairs: every function sample_io judged counts,
    those it dropped with 0."""
    schema = {"pairs": pl.Int64, "functions": pl.Int64}
    if not keys.get("sample_io"):
        return pl.DataFrame([], schema=schema, orient="row")
    rows = store.query(
        """
        SELECT n, count(*) FROM (
            SELECT o.item_id, count(p.id) AS n FROM stage_outcomes o
            LEFT JOIN io_pairs p ON p.function_id = o.item_id AND p.config_key = o.config_key
            WHERE o.stage = 'sample_io' AND o.config_key = ?
            GROUP BY o.item_id
        ) GROUP BY n ORDER BY n
        """,
        [keys["sample_io"]],
    )
    return pl.DataFrame(rows, schema=schema, orient="row")


def write_report(store: Store, keys: dict[str, str], path: str | Path) -> Path:
    """Write the HTML report of the build named by ``keys`` to ``path`` (atomically)."""
    target = Path(path)
    atomic_write_text(target, render_html(collect(store, keys)))
    return target


# -- the page -------------------------------------------------------------------------------

_CSS = """
body { margin: 0; background: #f5f6f8; color: #1f2328; font: 15px/1.5 %(font)s; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 6px; }
p.meta { color: #57606a; margin: 0 0 20px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 8px; padding: 16px 18px;
          margin: 0 0 18px; }
section p { margin: 0 0 10px; color: #3d444d; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 12px;
         background: none; border: 0; padding: 0; }
.card { background: #fff; border: 1px solid #d8dee4; border-radius: 8px;
        padding: 10px 14px; }
.card b { display: block; font-size: 22px; }
.card span { color: #57606a; font-size: 13px; }
svg.chart { display: block; max-width: 100%%; height: auto; }
details { margin-top: 8px; }
summary { cursor: pointer; color: #0969da; }
table { border-collapse: collapse; margin-top: 6px; font-size: 13px; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 3px 10px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 13px; background: #eef1f4; padding: 1px 4px; border-radius: 4px; }
""" % {"font": _FONT}


def render_html(data: ReportData) -> str:
    """The whole page as a string."""
    sections = [
        _cards(data),
        _section(
            "funnel", FUNNEL_TITLE,
            "Input rows of each stage and what became of them: kept (ok) or dropped, with the reason "
            "below. Each stage counts its own unit, named in brackets.",
            funnel_svg(data.funnel), _table(data.funnel),
        ),
        _section(
            "response-types", RESPONSE_TITLE,
            "Share of correct, wrong, no-answer and error responses per turn and task kind (the "
            "paper's figure 7). Turn 1 answers every task; later turns revise the wrong ones with "
            "execution feedback.",
            response_types_svg(data.response_types), _table(data.response_types, percent=("share",)),
        ),
        _section(
            "pairs", PAIRS_TITLE,
            "How many verified input/output pairs each function got from sampling (0: dropped).",
            pairs_svg(data.pairs_per_function), _table(data.pairs_per_function),
        ),
        _section(
            "drops", DROPS_TITLE,
            "Every dropped, rejected or duplicate row by stage and reason.",
            drops_svg(data.funnel), _table(_drops(data.funnel)),
        ),
        _section(
            "tokens", TOKENS_TITLE,
            "Prompt and completion tokens of every LLM call in the ledger (cached calls count once).",
            tokens_svg(data.tokens), _table(data.tokens),
        ),
    ]
    meta = [f"database <code>{_e(data.db_path)}</code>"] if data.db_path else []
    if data.last_run:
        run = data.last_run
        meta.append(f"last run <code>{_e(str(run['run_id'])[:8])}</code> {_e(run['status'])}")
        if run.get("started_at") and run.get("finished_at"):
            meta.append(f"finished {_e(str(run['finished_at'])[:19])} UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(PAGE_TITLE)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(PAGE_TITLE)}</h1>\n<p class=\"meta\">{' · '.join(meta)}</p>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _cards(data: ReportData) -> str:
    f = data.funnel

    def count(stage: str, status: str | None = None) -> int:
        part = f.filter(pl.col("stage") == stage)
        if status:
            part = part.filter(pl.col("status") == status)
        return int(part["count"].sum()) if part.height else 0

    pairs = data.pairs_per_function
    n_pairs = int((pairs["pairs"] * pairs["functions"]).sum()) if pairs.height else 0
    rt = data.response_types
    first = rt.filter(pl.col("turn") == 1) if rt.height else rt
    tasks = int(first["count"].sum()) if rt.height else 0
    correct_1 = int(first.filter(pl.col("type") == "correct")["count"].sum()) if rt.height else 0
    # Later turns revise only what was not correct, so correct answers of all turns add up.
    correct_all = int(rt.filter(pl.col("type") == "correct")["count"].sum()) if rt.height else 0
    tokens = data.tokens
    calls = int(tokens["calls"].sum()) if tokens.height else 0
    cards = [
        (f"{count('ingest'):,}", "files read"),
        (f"{count('transform', 'ok'):,}", "functions"),
        (f"{n_pairs:,}", "I/O pairs"),
        (f"{tasks:,}", "prediction tasks answered"),
        (_pct(correct_1, tasks), "correct at turn 1"),
        (_pct(correct_all, tasks), "correct after revision"),
        (f"{calls:,}", "LLM calls"),
    ]
    body = "".join(f"<div class=\"card\"><b>{_e(v)}</b><span>{_e(label)}</span></div>" for v, label in cards)
    return f"<section class=\"cards\" aria-label=\"key numbers\">{body}</section>"


def _section(anchor: str, title: str, text: str, svg: str, table: str) -> str:
    return (
        f"<section id=\"{anchor}\">\n<h2>{_e(title)}</h2>\n<p>{_e(text)}</p>\n{svg}\n"
        f"<details><summary>Data</summary>{table}</details>\n</section>"
    )


def _table(frame: pl.DataFrame, percent: Sequence[str] = ()) -> str:
    if not frame.height:
        return "<p>(no rows)</p>"
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    head = "".join(f"<th class=\"num\">{_e(c)}</th>" if c in numeric else f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c, v in row.items():
            if c in percent and v is not None:
                text = f"{v * 100:.1f}%"
            elif isinstance(v, float):
                text = f"{v:,.2f}"
            elif isinstance(v, int) and not isinstance(v, bool):
                text = f"{v:,}"
            else:
                text = "" if v is None else str(v)
            cells.append(f"<td class=\"num\">{_e(text)}</td>" if c in numeric else f"<td>{_e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# -- the charts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label, one value per series (stacked), and a note after it."""

    label: str
    values: tuple[float, ...]
    note: str = ""


def funnel_svg(frame: pl.DataFrame) -> str:
    """Stacked bars: per stage, its input rows split by status."""
    if not frame.height:
        return empty_svg(FUNNEL_TITLE, "no stage has run yet")
    statuses = _ordered(frame["status"].unique().to_list(), tuple(STATUS_COLORS))
    bars = []
    for stage in frame["stage"].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("stage") == stage)
        by_status = {s: int(part.filter(pl.col("status") == s)["count"].sum()) for s in statuses}
        total = sum(by_status.values())
        unit = STAGE_UNITS.get(stage)
        label = f"{stage} ({unit})" if unit else stage
        bars.append(Bar(label, tuple(by_status[s] for s in statuses), f"{by_status.get('ok', 0):,} of {total:,} kept"))
    return bar_chart_svg(FUNNEL_TITLE, _series(statuses, STATUS_COLORS), bars)


def response_types_svg(frame: pl.DataFrame) -> str:
    """100% stacked bars: per turn and task kind, the share of each response type."""
    if not frame.height:
        return empty_svg(RESPONSE_TITLE, "no answers yet")
    types = _ordered(frame["type"].unique().to_list(), (*RESPONSE_TYPES, "other"))
    bars = []
    for (turn, kind), part in frame.group_by(["turn", "kind"], maintain_order=True):
        shares = {r["type"]: r["share"] for r in part.iter_rows(named=True)}
        total = int(part["count"].sum())
        bars.append(Bar(f"turn {turn} · {kind}", tuple(shares.get(t, 0.0) for t in types), f"{total:,} responses"))
    return bar_chart_svg(RESPONSE_TITLE, _series(types, TYPE_COLORS), bars, scale_max=1.0, fmt=_percent_of_one)


def drops_svg(funnel_frame: pl.DataFrame) -> str:
    """Bars: rows not kept, per stage and reason, largest first."""
    drops = _drops(funnel_frame)
    if not drops.height:
        return empty_svg(DROPS_TITLE, "nothing was dropped")
    bars = [Bar(f"{r['stage']}: {r['reason']}", (r["count"],), f"{r['count']:,}") for r in drops.iter_rows(named=True)]
    return bar_chart_svg(DROPS_TITLE, [("rows", "#c62828")], bars, legend=False)


def tokens_svg(frame: pl.DataFrame) -> str:
    """Stacked bars: prompt and completion tokens per LLM stage."""
    if not frame.height:
        return empty_svg(TOKENS_TITLE, "no LLM calls in the ledger")
    bars = [
        Bar(r["stage"], (r["prompt_tokens"], r["completion_tokens"]),
            f"{r['prompt_tokens'] + r['completion_tokens']:,} in {r['calls']:,} calls"
            + (f" (tokens of {r['usage_unknown']:,} unknown)" if r["usage_unknown"] else ""))
        for r in frame.iter_rows(named=True)
    ]
    series = [("prompt tokens", TOKEN_COLORS["prompt"]), ("completion tokens", TOKEN_COLORS["completion"])]
    return bar_chart_svg(TOKENS_TITLE, series, bars)


def pairs_svg(frame: pl.DataFrame) -> str:
    """Columns: number of functions per count of I/O pairs."""
    if not frame.height:
        return empty_svg(PAIRS_TITLE, "no function was sampled yet")
    counts = dict(frame.select("pairs", "functions").iter_rows())
    columns = [(str(k), counts.get(k, 0)) for k in range(0, max(counts) + 1)]
    return column_chart_svg(PAIRS_TITLE, columns, x_title="I/O pairs of a function", y_title="functions")


def _drops(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.height:
        return pl.DataFrame([], schema={"stage": pl.String, "reason": pl.String, "count": pl.Int64}, orient="row")
    return (
        frame.filter(pl.col("status") != "ok")
        .with_columns(pl.coalesce(pl.col("reason"), pl.col("status")).alias("reason"))
        .group_by(["stage", "reason"], maintain_order=True)
        .agg(pl.col("count").sum())
        .sort(["count", "stage", "reason"], descending=[True, False, False], maintain_order=True)
    )


def bar_chart_svg(
    title: str,
    series: Sequence[tuple[str, str]],
    bars: Sequence[Bar],
    *,
    scale_max: float | None = None,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    legend: bool = True,
) -> str:
    """Horizontal (stacked) bars with labels on the left, notes on the right, a value axis."""
    label_w = min(330.0, max(_text_w(b.label) for b in bars) + 16)
    note_w = min(200.0, max((_text_w(b.note) for b in bars), default=0) + 16)
    left, right = label_w, _WIDTH - note_w
    span = right - left
    top = 34 if legend else 10
    row_h, bar_h = 28, 18
    axis_y = top + row_h * len(bars) + 4
    height = axis_y + 24
    if scale_max:
        scale, ticks = scale_max, [scale_max * i / 4 for i in range(5)]
    else:
        scale, ticks = nice_axis(max((sum(b.values) for b in bars), default=0))

    parts = [_svg_open(title, height)]
    if legend:
        parts.append(_legend(series, 16))
    for tick in ticks:
        x = left + span * tick / scale
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e1e4e8"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#57606a">{_e(fmt(tick))}</text>')
    for n, bar in enumerate(bars):
        y = top + row_h * n
        parts.append(
            f'<text x="{left - 8:.1f}" y="{y + bar_h - 5}" text-anchor="end">{_e(bar.label)}</text>'
        )
        x = left
        for (name, color), value in zip(series, bar.values, strict=True):
            if value <= 0:
                continue
            w = span * value / scale
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1.0):.1f}" height="{bar_h}" fill="{color}">'
                f"<title>{_e(bar.label)} · {_e(name)}: {_e(fmt(value))}</title></rect>"
            )
            text = fmt(value)
            if w >= _text_w(text) + 8:
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h - 5}" text-anchor="middle" fill="{_ink_on(color)}">'
                    f"{_e(text)}</text>"
                )
            x += w
        if bar.note:
            parts.append(f'<text x="{right + 8:.1f}" y="{y + bar_h - 5}" fill="#57606a">{_e(bar.note)}</text>')
    parts.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{axis_y}" stroke="#8c959f"/>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart_svg(title: str, columns: Sequence[tuple[str, float]], *, x_title: str, y_title: str) -> str:
    """Vertical bars (a histogram): one column per label, its value above it."""
    height, top, bottom, left, right = 270, 20, 220, 70, _WIDTH - 20
    scale, ticks = nice_axis(max((v for _, v in columns), default=0))
    slot = (right - left) / max(len(columns), 1)
    col_w = min(60.0, slot * 0.7)
    parts = [_svg_open(title, height)]
    for tick in ticks:
        y = bottom - (bottom - top) * tick / scale
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e1e4e8"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#57606a">{tick:,.0f}</text>')
    for n, (label, value) in enumerate(columns):
        cx = left + slot * (n + 0.5)
        h = (bottom - top) * value / scale
        if value > 0:
            parts.append(
                f'<rect x="{cx - col_w / 2:.1f}" y="{bottom - h:.1f}" width="{col_w:.1f}" height="{max(h, 1.0):.1f}" '
                f'fill="#1565c0"><title>{_e(label)}: {value:,.0f} {_e(y_title)}</title></rect>'
            )
        parts.append(f'<text x="{cx:.1f}" y="{bottom - h - 6:.1f}" text-anchor="middle">{value:,.0f}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#57606a">{_e(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#8c959f"/>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 40}" text-anchor="middle">{_e(x_title)}</text>')
    parts.append(
        f'<text x="18" y="{(top + bottom) / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(top + bottom) / 2:.1f})">{_e(y_title)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def empty_svg(title: str, message: str) -> str:
    """A chart frame saying there is nothing to show (so every chart keeps its place)."""
    return _svg_open(title, 30) + f'<text x="0" y="20" fill="#57606a">({_e(message)})</text></svg>'


def nice_axis(top: float) -> tuple[float, list[float]]:
    """An axis end >= ``top`` and its ticks from 0, in round steps (1, 2 or 5 times a power of
    ten, at least 1: the charts count whole rows or tokens)."""
    raw = max(top, 1.0) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0)
    n = max(1, math.ceil(top / step - 1e-9))
    return step * n, [step * i for i in range(n + 1)]


def _svg_open(title: str, height: float) -> str:
    ident = "chart-" + "".join(c if c.isalnum() else "-" for c in title.lower())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-labelledby="{ident}" '
        f'width="{_WIDTH}" height="{height:.0f}" viewBox="0 0 {_WIDTH} {height:.0f}" '
        f'font-family="{_e(_FONT)}" font-size="12" fill="#1f2328">'
        f'<title id="{ident}">{_e(title)}</title>'
    )


def _legend(series: Sequence[tuple[str, str]], y: float) -> str:
    parts, x = [], 0.0
    for name, color in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 10}" width="12" height="12" rx="2" fill="{color}"/>')
        parts.append(f'<text x="{x + 17:.1f}" y="{y}">{_e(name)}</text>')
        x += 17 + _text_w(name) + 18
    return "".join(parts)


def _series(names: Sequence[str], colors: dict[str, str]) -> list[tuple[str, str]]:
    spare = iter(_FALLBACK_COLORS * (1 + len(names) // len(_FALLBACK_COLORS)))
    return [(n, colors.get(n) or next(spare)) for n in names]


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


def _ink_on(color: str) -> str:
    """Black or white text, whichever reads better on ``color`` (#rrggbb)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#1f2328" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _text_w(text: str) -> float:
    return len(text) * _CHAR_W


def _percent_of_one(v: float) -> str:
    return f"{v * 100:.0f}%"


def _pct(n: int, total: int) -> str:
    return f"{n / total * 100:.1f}%" if total else "–"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)

