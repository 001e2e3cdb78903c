"""Reports: the published table, the comparison deltas, Markdown tables and a self-contained HTML page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from replan_eval.aggregate import SampleScores, aggregate
from replan_eval.image_metrics import MetricsSummary
from replan_eval.report import RunSummary, load_published_results, render_html, render_markdown, svg_bar_chart

from .test_aggregate import TABLE


def run(name: str = "kontext-replan", method: str = "replan-flux-kontext") -> RunSummary:
    return RunSummary(
        name=name,
        method=method,
        judge="gemini:gemini-2.5-pro",
        aggregate=aggregate(TABLE),
        metrics=MetricsSummary(31.5, 0.9712, 42.0, 5, 5, 4),
    )


def test_published_table_matches_the_facts_file() -> None:
    published = load_published_results()
    assert len(published.rows) == 9
    assert published.judge == "gemini-2.5-pro"
    kontext = published.for_method("replan-flux-kontext")
    assert kontext is not None
    assert (kontext.model, kontext.base) == ("Flux.1 Kontext dev + RePlan", "Flux.1 Kontext dev")
    assert (kontext.quality, kontext.target, kontext.effect, kontext.consistency) == (4.16, 3.47, 2.59, 3.64)
    assert (kontext.overall, kontext.weighted) == (3.46, 2.55)
    qwen = published.for_method("replan-qwen-image-edit")
    assert qwen is not None and (qwen.overall, qwen.weighted) == (3.51, 2.91)
    assert published.for_method("flux-kontext-rephrase") is None
    # The published Overall is the mean of the four columns, up to rounding to 2 decimals.
    for row in published.rows:
        assert (row.quality + row.target + row.effect + row.consistency) / 4 == pytest.approx(row.overall, abs=0.011)


def test_markdown_has_scores_delta_and_breakdowns() -> None:
    text = render_markdown([run()])
    # our whole-set row (hand values in test_aggregate.py): 2.40 3.20 1.80 3.20 2.65 2.04, 2 incomplete
    assert "| All | 5 | 2.40 | 3.20 | 1.80 | 3.20 | 2.65 | 2.04 | 2 |" in text
    # Δ vs Flux.1 Kontext dev + RePlan: 2.40−4.16, 3.20−3.47, 1.80−2.59, 3.20−3.64, 2.65−3.46, 2.04−2.55
    assert "| Δ vs Flux.1 Kontext dev + RePlan |  | -1.76 | -0.27 | -0.79 | -0.44 | -0.81 | -0.51 |" in text
    assert "| Qwen-Image-Edit + RePlan | published | 3.86 | 3.77 | 3.16 | 3.24 | 3.51 | 2.91 |" in text
    for heading in ("## By task group", "## By task type", "## By referring type", "## Judge-free metrics"):
        assert heading in text
    assert "| Reasoning Editing | 2 | 2.00 | 5.00 | 1.50 | 3.00 | 2.88 | 2.15 | 1 |" in text
    assert "| kontext-replan | 31.50 (n=5) | 0.9712 (n=5) | 42.00 (n=4) |" in text


def test_markdown_for_several_runs_has_a_section_per_run() -> None:
    text = render_markdown([run("a", "flux-kontext"), run("b", "replan-flux-kontext")])
    assert "### a" in text and "### b" in text
    assert "Δ vs Flux.1 Kontext dev |" in text and "Δ vs Flux.1 Kontext dev + RePlan |" in text


class _TagChecker(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "link", "input", "hr", "rect", "line"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def test_html_is_self_contained_well_formed_and_escaped() -> None:
    page = render_html([run(name="<script>alert(1)</script>")])
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    # no external resources of any kind
    for pattern in (r"<script", r"<link", r"<img", r"\bsrc=", r"\bhref=", r"@import", r"url\("):
        assert not re.search(pattern, page), pattern
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")
    assert page.count("<svg") == 4  # scores + three breakdowns
    checker = _TagChecker()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []
    assert "Flux.1 Kontext dev + RePlan (published)" in page


def test_bar_chart_clamps_and_labels() -> None:
    svg = svg_bar_chart("t", ["a", "b"], [("s", [7.0, -1.0])])
    heights = [float(h) for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg)]
    assert heights[0] == pytest.approx(260 - 28 - 70)  # clamped to 5 = full plot height
    assert heights[1] == 0.0


def test_empty_categories_still_render() -> None:
    page = render_html([RunSummary("r", "flux-kontext", "j", aggregate([SampleScores("x")]))])
    assert "Judge-free metrics" not in page
