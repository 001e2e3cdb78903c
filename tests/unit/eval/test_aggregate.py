"""Aggregation against values computed by hand on a fixed five-sample table.

Table (None = failed or missing, counted as 0):

    id  referring  task                    group      Q     T  E     C
    s1  Spatial    Attribute Modification  Common     5     5  5     5
    s2  Spatial    Prediction              Reasoning  4     5  3     3
    s3  Feature    Text Content            Text       3     1  1     5
    s4  Feature    Prediction              Reasoning  None  5  None  3
    s5  Knowledge  Deletion                Common     (never generated: all None)

Per sample, Overall = (Q+T+E+C)/4 and Weighted = (T + E + Q·E/5 + C·E/5)/4:

    s1  Overall 20/4 = 5       Weighted (5 + 5 + 5 + 5)/4           = 5
    s2  Overall 15/4 = 3.75    Weighted (5 + 3 + 12/5 + 9/5)/4      = 12.2/4 = 3.05
    s3  Overall 10/4 = 2.5     Weighted (1 + 1 + 3/5 + 5/5)/4       = 3.6/4  = 0.9
    s4  Overall 8/4  = 2       Weighted (5 + 0 + 0 + 0)/4           = 1.25
    s5  Overall 0              Weighted 0
"""

from __future__ import annotations

import pytest

from replan_eval.aggregate import SampleScores, ScoreRow, aggregate
from replan_eval.judge import Dimension, JudgeVerdict, ParseMethod

TABLE = [
    SampleScores("s1", "Attribute Modification", "Spatial", 5, 5, 5, 5),
    SampleScores("s2", "Prediction", "Spatial", 4, 5, 3, 3),
    SampleScores("s3", "Text Content", "Feature", 3, 1, 1, 5),
    SampleScores("s4", "Prediction", "Feature", None, 5, None, 3),
    SampleScores("s5", "Deletion", "Knowledge"),
]


def row_values(row: ScoreRow) -> tuple[float, ...]:
    return (row.quality, row.target, row.effect, row.consistency, row.overall, row.weighted)


def test_per_sample_overall_and_weighted() -> None:
    assert [s.overall for s in TABLE] == pytest.approx([5.0, 3.75, 2.5, 2.0, 0.0])
    assert [s.weighted for s in TABLE] == pytest.approx([5.0, 3.05, 0.9, 1.25, 0.0])


def test_whole_set_means() -> None:
    row = aggregate(TABLE).overall
    # Q (5+4+3+0+0)/5 = 2.4; T (5+5+1+5+0)/5 = 3.2; E (5+3+1+0+0)/5 = 1.8; C (5+3+5+3+0)/5 = 3.2
    # Overall (5+3.75+2.5+2+0)/5 = 2.65 (= mean of the four column means); Weighted (5+3.05+0.9+1.25)/5 = 2.04
    assert row_values(row) == pytest.approx((2.4, 3.2, 1.8, 3.2, 2.65, 2.04))
    assert (row.label, row.count, row.incomplete) == ("All", 5, 2)


def test_by_referring_type_in_taxonomy_order() -> None:
    rows = aggregate(TABLE).by_referring_type
    assert [(r.label, r.count) for r in rows] == [("Spatial", 2), ("Feature", 2), ("Knowledge", 1)]
    # Spatial: Q 4.5, T 5, E 4, C 4, Overall (5+3.75)/2 = 4.375, Weighted (5+3.05)/2 = 4.025
    assert row_values(rows[0]) == pytest.approx((4.5, 5.0, 4.0, 4.0, 4.375, 4.025))
    # Feature: Q 1.5, T 3, E 0.5, C 4, Overall (2.5+2)/2 = 2.25, Weighted (0.9+1.25)/2 = 1.075
    assert row_values(rows[1]) == pytest.approx((1.5, 3.0, 0.5, 4.0, 2.25, 1.075))
    assert row_values(rows[2]) == pytest.approx((0.0,) * 6)


def test_by_task_group() -> None:
    rows = aggregate(TABLE).by_task_group
    assert [(r.label, r.count) for r in rows] == [
        ("Common Editing", 2),
        ("Reasoning Editing", 2),
        ("Text Editing", 1),
    ]
    # Common (s1, s5): Overall (5+0)/2 = 2.5, Weighted 2.5
    assert (rows[0].overall, rows[0].weighted) == pytest.approx((2.5, 2.5))
    # Reasoning (s2, s4): Q 2, T 5, E 1.5, C 3, Overall (3.75+2)/2 = 2.875, Weighted (3.05+1.25)/2 = 2.15
    assert row_values(rows[1]) == pytest.approx((2.0, 5.0, 1.5, 3.0, 2.875, 2.15))
    assert (rows[2].overall, rows[2].weighted) == pytest.approx((2.5, 0.9))


def test_by_task_type_order_and_values() -> None:
    rows = aggregate(TABLE).by_task_type
    assert [r.label for r in rows] == ["Attribute Modification", "Deletion", "Prediction", "Text Content"]
    prediction = rows[2]
    assert (prediction.count, prediction.overall, prediction.weighted) == (2, pytest.approx(2.875), pytest.approx(2.15))


def test_unknown_categories_come_last() -> None:
    rows = aggregate([SampleScores("a"), SampleScores("b", "Recolour", "Made-up")]).by_task_type
    assert [r.label for r in rows] == ["Recolour", "Unknown"]
    groups = aggregate([SampleScores("a"), SampleScores("b", "Recolour")]).by_task_group
    assert [(r.label, r.count) for r in groups] == [("Unknown", 2)]


def test_from_verdicts_takes_failed_verdicts_as_missing() -> None:
    def verdict(dimension: Dimension, score: float | None) -> JudgeVerdict:
        method = ParseMethod.JSON if score is not None else ParseMethod.FAILED
        return JudgeVerdict(dimension=dimension, score=score, method=method)

    scores = SampleScores.from_verdicts(
        "x",
        {Dimension.QUALITY: verdict(Dimension.QUALITY, 4), Dimension.EFFECT: verdict(Dimension.EFFECT, None)},
        task_type="Deletion",
    )
    assert (scores.quality, scores.target, scores.effect, scores.consistency) == (4, None, None, None)
    assert scores.overall == 1.0  # (4 + 0 + 0 + 0)/4
    assert not scores.complete


def test_empty_table() -> None:
    row = aggregate([]).overall
    assert (row.count, row.overall, row.weighted) == (0, 0.0, 0.0)
