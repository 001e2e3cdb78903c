"""The four IV-Edit judging dimensions, their scales and their reply schema.

Target {1, 5}, Effect {1, 3, 5}, Consistency {1, 3, 5}, Quality 1-5 (facts §5). A dimension also says
which images its prompt shows (Quality looks at the edited image alone) and the JSON key its score comes
back under (``<dim>_score``). Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["DIMENSIONS", "Dimension", "DimensionSpec", "spec"]


class Dimension(str, Enum):
    """A judging dimension; the value is its JSON/file name."""

    QUALITY = "quality"
    TARGET = "target"
    EFFECT = "effect"
    CONSISTENCY = "consistency"


@dataclass(frozen=True)
class DimensionSpec:
    """How one dimension is asked and scored."""

    dimension: Dimension
    allowed_scores: tuple[int, ...]
    shows_original: bool

    @property
    def score_key(self) -> str:
        return f"{self.dimension.value}_score"

    @property
    def min_score(self) -> int:
        return min(self.allowed_scores)

    @property
    def max_score(self) -> int:
        return max(self.allowed_scores)

    def clamp(self, score: float) -> float:
        """Clamp into [min, max]. An in-range value off the grid (a 4 on Target) is kept as the judge gave it."""
        return float(min(max(score, self.min_score), self.max_score))

    def json_schema(self) -> dict[str, object]:
        """The reply schema: reasoning first, so a schema-following model reasons before it scores."""
        return {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "description": "The reasoning steps, briefly."},
                self.score_key: {
                    "type": "integer",
                    "enum": list(self.allowed_scores),
                    "description": f"One of {', '.join(str(s) for s in self.allowed_scores)}.",
                },
            },
            "required": ["reasoning", self.score_key],
        }


DIMENSIONS: dict[Dimension, DimensionSpec] = {
    Dimension.QUALITY: DimensionSpec(Dimension.QUALITY, (1, 2, 3, 4, 5), shows_original=False),
    Dimension.TARGET: DimensionSpec(Dimension.TARGET, (1, 5), shows_original=True),
    Dimension.EFFECT: DimensionSpec(Dimension.EFFECT, (1, 3, 5), shows_original=True),
    Dimension.CONSISTENCY: DimensionSpec(Dimension.CONSISTENCY, (1, 3, 5), shows_original=True),
}


def spec(dimension: Dimension) -> DimensionSpec:
    return DIMENSIONS[dimension]
