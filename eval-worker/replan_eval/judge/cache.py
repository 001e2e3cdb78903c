"""Per-sample verdict cache: one JSON file per sample per dimension, under the run directory.

Files sit at ``<run>/<sample_key>/judge/<dimension>.json`` (see `replan_eval.run_layout`), so a run
directory carries its own judgements and a resumed run asks the judge only what it has not answered.
A cached verdict is reused only when it came from the same judge model and the same prompt wording.
Verdicts from failed *calls* (network, 5xx) are never written, so a rerun tries them again; verdicts
whose *reply* could not be parsed are written, because at temperature 0 asking again gives the same
reply. Writes are atomic.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from replan_eval.judge.dimensions import Dimension
from replan_eval.judge.verdict import JudgeVerdict
from replan_eval.run_layout import RunLayout, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["JudgeCache"]


class JudgeCache:
    """Verdict files under ``root`` (a run directory)."""

    def __init__(self, root: Path) -> None:
        self._layout = RunLayout(root)

    @property
    def root(self) -> Path:
        return self._layout.root

    def path(self, sample_key: str, dimension: Dimension) -> Path:
        return self._layout.judge_file(sample_key, dimension.value)

    def read(self, sample_key: str, dimension: Dimension) -> JudgeVerdict | None:
        """Whatever verdict is on file, from any judge (for reports); None if absent or unreadable."""
        path = self.path(sample_key, dimension)
        if not path.is_file():
            return None
        try:
            return JudgeVerdict.model_validate_json(path.read_text(encoding="utf-8"))
        except (ValidationError, OSError, UnicodeDecodeError) as exc:
            logger.warning("ignoring unreadable judge cache file %s: %s", path, exc)
            return None

    def get(self, sample_key: str, dimension: Dimension, *, judge: str, prompt_version: str) -> JudgeVerdict | None:
        """The cached verdict if it exists and matches the judge and prompt, else None."""
        verdict = self.read(sample_key, dimension)
        if verdict is None or verdict.judge != judge or verdict.prompt_version != prompt_version:
            return None
        return verdict

    def put(self, sample_key: str, verdict: JudgeVerdict) -> None:
        if verdict.error is not None:
            return  # a failed call is not an answer; leave it for the next run to ask again
        atomic_write_text(self.path(sample_key, verdict.dimension), verdict.model_dump_json(indent=2))
