"""IV-Edit aggregation: per-sample Overall and Weighted, and mean tables by category (facts §5).

Per sample, with Q, T, E, C the four judge scores and a failed or missing score counted as 0::

    Overall  = (Q + T + E + C) / 4
    Weighted = (T + E + Q·E/5 + C·E/5) / 4      quality and consistency count only as far as the edit worked

A table row averages each column over its samples; every sample of the dataset counts, including those
that were never generated or judged (all zeros), exactly as the original evaluator's denominators.
Rows: the whole set, each referring type (7), each task type (16) and each task group (3), in the
taxonomy's order, with unknown names after the known ones and missing names as "Unknown".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from replan_eval.judge import Dimension, JudgeVerdict
from replan_eval.taxonomy import REFERRING_TYPES, TASK_TYPES, TaskGroup, task_group

__all__ = ["UNKNOWN", "Aggregate", "SampleScores", "ScoreRow", "aggregate", "summarize"]

UNKNOWN = "Unknown"


@dataclass(frozen=True)
class SampleScores:
    """One sample's four judge scores (None: failed or missing) and its categories."""

    image_id: str
    task_type: str | None = None
    referring_type: str | None = None
    quality: float | None = None
    target: float | None = None
    effect: float | None = None
    consistency: float | None = None

    @classmethod
    def from_verdicts(
        cls,
        image_id: str,
        verdicts: Mapping[Dimension, JudgeVerdict],
        *,
        task_type: str | None = None,
        referring_type: str | None = None,
    ) -> SampleScores:
        def score(dimension: Dimension) -> float | None:
            verdict = verdicts.get(dimension)
            return verdict.score if verdict is not None else None

        return cls(
            image_id=image_id,
            task_type=task_type,
            referring_type=referring_type,
            quality=score(Dimension.QUALITY),
            target=score(Dimension.TARGET),
            effect=score(Dimension.EFFECT),
            consistency=score(Dimension.CONSISTENCY),
        )

    @property
    def complete(self) -> bool:
        return None not in (self.quality, self.target, self.effect, self.consistency)

    def _zeros(self) -> tuple[float, float, float, float]:
        return (self.quality or 0.0, self.target or 0.0, self.effect or 0.0, self.consistency or 0.0)

    @property
    def overall(self) -> float:
        q, t, e, c = self._zeros()
        return (q + t + e + c) / 4.0

    @property
    def weighted(self) -> float:
        q, t, e, c = self._zeros()
        return (t + e + q * e / 5.0 + c * e / 5.0) / 4.0


@dataclass(frozen=True)
class ScoreRow:
    """Means over ``count`` samples; ``incomplete`` of them had at least one failed or missing score."""

    label: str
    count: int
    quality: float
    target: float
    effect: float
    consistency: float
    overall: float
    weighted: float
    incomplete: int


@dataclass(frozen=True)
class Aggregate:
    overall: ScoreRow
    by_referring_type: tuple[ScoreRow, ...]
    by_task_type: tuple[ScoreRow, ...]
    by_task_group: tuple[ScoreRow, ...]


def summarize(label: str, samples: Sequence[SampleScores]) -> ScoreRow:
    """Mean of each column over ``samples`` (failed/missing scores as 0); all zeros when empty."""
    n = len(samples)
    if n == 0:
        return ScoreRow(label, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n

    return ScoreRow(
        label=label,
        count=n,
        quality=mean(s.quality or 0.0 for s in samples),
        target=mean(s.target or 0.0 for s in samples),
        effect=mean(s.effect or 0.0 for s in samples),
        consistency=mean(s.consistency or 0.0 for s in samples),
        overall=mean(s.overall for s in samples),
        weighted=mean(s.weighted for s in samples),
        incomplete=sum(not s.complete for s in samples),
    )


def _grouped(
    samples: Sequence[SampleScores], key: Callable[[SampleScores], str], order: Sequence[str]
) -> tuple[ScoreRow, ...]:
    groups: dict[str, list[SampleScores]] = {}
    for sample in samples:
        groups.setdefault(key(sample), []).append(sample)
    known = [label for label in order if label in groups]
    rest = sorted(label for label in groups if label not in order and label != UNKNOWN)
    tail = [UNKNOWN] if UNKNOWN in groups else []
    return tuple(summarize(label, groups[label]) for label in [*known, *rest, *tail])


def _group_label(sample: SampleScores) -> str:
    group = task_group(sample.task_type)
    return group.value if group is not None else UNKNOWN


def aggregate(samples: Sequence[SampleScores], *, label: str = "All") -> Aggregate:
    """The whole set and the per-category tables."""
    return Aggregate(
        overall=summarize(label, samples),
        by_referring_type=_grouped(samples, lambda s: s.referring_type or UNKNOWN, list(REFERRING_TYPES)),
        by_task_type=_grouped(samples, lambda s: s.task_type or UNKNOWN, list(TASK_TYPES)),
        by_task_group=_grouped(samples, _group_label, [g.value for g in TaskGroup]),
    )
