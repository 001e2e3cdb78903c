"""Benchmark reports: Markdown and a self-contained HTML page, plus the published-results comparison.

Input is one or more `RunSummary` (a run's aggregate and judge-free metrics); output is text. The HTML
has inline CSS and inline SVG bar charts and references nothing outside itself (no scripts, fonts,
images or stylesheets), so it can be mailed or archived as one file. The published IV-Edit table
(facts §5) is package data (``data/published_results.json``); a run is compared with the row for its
method, with the caveat printed that numbers are comparable only under the same judge.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from replan_eval.aggregate import Aggregate, ScoreRow
from replan_eval.image_metrics import MetricsSummary

__all__ = [
    "PublishedResults",
    "PublishedRow",
    "RunSummary",
    "load_published_results",
    "render_html",
    "render_markdown",
    "svg_bar_chart",
]

_COLUMNS = (
    ("quality", "Q"),
    ("target", "T"),
    ("effect", "E"),
    ("consistency", "C"),
    ("overall", "Overall"),
    ("weighted", "Weighted"),
)
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


@dataclass(frozen=True)
class PublishedRow:
    model: str
    base: str | None
    quality: float
    target: float
    effect: float
    consistency: float
    overall: float
    weighted: float


@dataclass(frozen=True)
class PublishedResults:
    judge: str
    source: str
    rows: tuple[PublishedRow, ...]
    method_to_model: dict[str, str | None]

    def for_method(self, method: str) -> PublishedRow | None:
        model = self.method_to_model.get(method)
        return next((r for r in self.rows if r.model == model), None) if model else None


def load_published_results() -> PublishedResults:
    """The published IV-Edit table shipped with the package."""
    text = resources.files("replan_eval").joinpath("data", "published_results.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return PublishedResults(
        judge=data["judge"],
        source=data["source"],
        rows=tuple(PublishedRow(**row) for row in data["rows"]),
        method_to_model=dict(data["method_to_model"]),
    )


@dataclass(frozen=True)
class RunSummary:
    """What a report shows about one run."""

    name: str
    method: str
    judge: str
    aggregate: Aggregate
    metrics: MetricsSummary | None = None


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _delta(value: float) -> str:
    return f"{value:+.2f}"


def _row_values(row: ScoreRow | PublishedRow) -> list[float]:
    return [getattr(row, key) for key, _ in _COLUMNS]


# ----------------------------------------------------------------------------------------------- markdown


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows), ""]


def _score_rows(rows: Sequence[ScoreRow]) -> list[list[str]]:
    return [[r.label, str(r.count), *(_num(v) for v in _row_values(r)), str(r.incomplete)] for r in rows]


_SCORE_HEADER = ["", "n", *(label for _, label in _COLUMNS), "incomplete"]


def _comparison_rows(runs: Sequence[RunSummary], published: PublishedResults) -> list[list[str]]:
    rows = [[r.model, "published", *(_num(v) for v in _row_values(r))] for r in published.rows]
    for run in runs:
        ours = _row_values(run.aggregate.overall)
        rows.append([f"**{run.name}** ({run.method})", f"this run, {run.judge}", *(_num(v) for v in ours)])
        reference = published.for_method(run.method)
        if reference is not None:
            deltas = [a - b for a, b in zip(ours, _row_values(reference), strict=True)]
            rows.append([f"Δ vs {reference.model}", "", *(_delta(d) for d in deltas)])
    return rows


def render_markdown(runs: Sequence[RunSummary], published: PublishedResults | None = None) -> str:
    """A Markdown report of one or more runs."""
    published = published or load_published_results()
    out = ["# IV-Edit report", ""]
    for run in runs:
        row = run.aggregate.overall
        out.append(
            f"- **{run.name}**: method `{run.method}`, judge `{run.judge}`, {row.count} samples "
            f"({row.incomplete} with a failed or missing score, counted as 0)"
        )
    out += [
        "",
        "Scores are 1-5. Overall = mean(Q, T, E, C); Weighted = mean(T, E, Q·E/5, C·E/5), per sample, averaged.",
        "",
        "## Scores",
        "",
    ]
    out += _md_table(_SCORE_HEADER, _score_rows([r.aggregate.overall for r in runs]))
    out += ["## Compared with the published table", ""]
    out += [
        f"Published numbers: {published.source} Judge: `{published.judge}`. Differences mix the method with the "
        "judge, the judge prompts and the sample set; they are comparable only under the same judge.",
        "",
    ]
    out += _md_table(["Model", "Source", *(label for _, label in _COLUMNS)], _comparison_rows(runs, published))
    for title, attr in (
        ("By task group", "by_task_group"),
        ("By task type", "by_task_type"),
        ("By referring type", "by_referring_type"),
    ):
        out += [f"## {title}", ""]
        for run in runs:
            if len(runs) > 1:
                out += [f"### {run.name}", ""]
            out += _md_table(_SCORE_HEADER, _score_rows(getattr(run.aggregate, attr)))
    with_metrics = [r for r in runs if r.metrics is not None]
    if with_metrics:
        out += ["## Judge-free metrics", ""]
        out += [
            "Outside/inside the union of the plan's boxes. PSNR in dB (capped at 100 for identical pixels), "
            "SSIM on luma, mean absolute change on a 0-255 scale.",
            "",
        ]
        metric_rows = []
        for run in with_metrics:
            m = run.metrics
            assert m is not None
            metric_rows.append(
                [
                    run.name,
                    f"{_num(m.psnr_outside_db)} (n={m.psnr_count})",
                    f"{_num(m.ssim_outside, 4)} (n={m.ssim_count})",
                    f"{_num(m.mean_abs_change_inside)} (n={m.inside_count})",
                ]
            )
        out += _md_table(["Run", "PSNR outside", "SSIM outside", "Change inside"], metric_rows)
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------- html


def svg_bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    max_value: float = 5.0,
    height_px: int = 260,
) -> str:
    """A grouped vertical bar chart as inline SVG: one group per category, one bar per series."""
    left, top, bottom, legend_h = 36, 28, 70, 20 * len(series)
    group_w = max(48, 16 * len(series) + 24)
    width = left + group_w * max(1, len(categories)) + 16
    plot_h = height_px - top - bottom
    bar_w = (group_w - 16) / max(1, len(series))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height_px + legend_h}" '
        f'viewBox="0 0 {width} {height_px + legend_h}" font-family="sans-serif" font-size="11">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in range(int(max_value) + 1):
        y = top + plot_h - plot_h * tick / max_value
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for ci, category in enumerate(categories):
        x0 = left + ci * group_w + 8
        for si, (_, values) in enumerate(series):
            value = max(0.0, min(float(values[ci]), max_value))
            bar_h = plot_h * value / max_value
            x = x0 + si * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" height="{bar_h:.1f}" '
                f'fill="{_PALETTE[si % len(_PALETTE)]}"><title>{html.escape(category)}: {value:.2f}</title></rect>'
            )
        cx = x0 + (group_w - 16) / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + plot_h + 12})">{html.escape(category)}</text>'
        )
    for si, (name, _) in enumerate(series):
        y = height_px + 14 * si
        parts.append(f'<rect x="{left}" y="{y}" width="10" height="10" fill="{_PALETTE[si % len(_PALETTE)]}"/>')
        parts.append(f'<text x="{left + 16}" y="{y + 9}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
thead{background:#f3f3f3}
.note{color:#555;font-size:0.9rem}
svg{display:block;margin:0.5rem 0 1.5rem}
"""


def render_html(runs: Sequence[RunSummary], published: PublishedResults | None = None) -> str:
    """A self-contained HTML report of one or more runs."""
    published = published or load_published_results()
    labels = [label for _, label in _COLUMNS]
    body: list[str] = ["<h1>IV-Edit report</h1>", "<ul>"]
    for run in runs:
        row = run.aggregate.overall
        body.append(
            f"<li><b>{html.escape(run.name)}</b>: method <code>{html.escape(run.method)}</code>, judge "
            f"<code>{html.escape(run.judge)}</code>, {row.count} samples ({row.incomplete} with a failed or "
            "missing score, counted as 0)</li>"
        )
    body += [
        "</ul>",
        '<p class="note">Scores are 1-5. Overall = mean(Q, T, E, C); Weighted = mean(T, E, Q·E/5, C·E/5), '
        "per sample, averaged.</p>",
        "<h2>Scores</h2>",
        _html_table(_SCORE_HEADER, _score_rows([r.aggregate.overall for r in runs])),
    ]
    chart_series: list[tuple[str, Sequence[float]]] = [(r.name, _row_values(r.aggregate.overall)) for r in runs]
    for run in runs:
        reference = published.for_method(run.method)
        if reference is not None and all(reference.model != name for name, _ in chart_series):
            chart_series.append((f"{reference.model} (published)", _row_values(reference)))
    body.append(svg_bar_chart("Scores", labels, chart_series))
    body += [
        "<h2>Compared with the published table</h2>",
        f'<p class="note">Published numbers: {html.escape(published.source)} Judge: '
        f"<code>{html.escape(published.judge)}</code>. Comparable only under the same judge.</p>",
        _html_table(
            ["Model", "Source", *labels],
            [[c.replace("**", "") for c in row] for row in _comparison_rows(runs, published)],
        ),
    ]
    for title, attr in (
        ("By task group", "by_task_group"),
        ("By task type", "by_task_type"),
        ("By referring type", "by_referring_type"),
    ):
        body.append(f"<h2>{html.escape(title)}</h2>")
        # One chart per breakdown over the union of categories, Overall per run.
        categories: list[str] = []
        for run in runs:
            categories += [r.label for r in getattr(run.aggregate, attr) if r.label not in categories]
        series: list[tuple[str, Sequence[float]]] = []
        for run in runs:
            by_label = {r.label: r.overall for r in getattr(run.aggregate, attr)}
            series.append((f"{run.name} Overall", [by_label.get(c, 0.0) for c in categories]))
        body.append(svg_bar_chart(f"Overall {title.lower()}", categories, series))
        for run in runs:
            if len(runs) > 1:
                body.append(f"<h3>{html.escape(run.name)}</h3>")
            body.append(_html_table(_SCORE_HEADER, _score_rows(getattr(run.aggregate, attr))))
    with_metrics = [r for r in runs if r.metrics is not None]
    if with_metrics:
        rows = []
        for run in with_metrics:
            m = run.metrics
            assert m is not None
            rows.append(
                [
                    run.name,
                    f"{_num(m.psnr_outside_db)} (n={m.psnr_count})",
                    f"{_num(m.ssim_outside, 4)} (n={m.ssim_count})",
                    f"{_num(m.mean_abs_change_inside)} (n={m.inside_count})",
                ]
            )
        body += [
            "<h2>Judge-free metrics</h2>",
            '<p class="note">Outside/inside the union of the plan\'s boxes. PSNR in dB (capped at 100), SSIM on '
            "luma, mean absolute change on a 0-255 scale.</p>",
            _html_table(["Run", "PSNR outside", "SSIM outside", "Change inside"], rows),
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>IV-Edit report</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
