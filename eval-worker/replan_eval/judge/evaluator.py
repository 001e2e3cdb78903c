"""`Judge`: prompt → provider call → parsed, clamped verdict, with the per-sample cache in front.

The one place that decides what a failure is worth: a call that fails after its retries, or a reply
with no readable score, becomes a verdict with ``score=None`` (0 in every aggregate, as the original),
logged at WARNING; nothing is raised to the caller, so one bad sample never stops a run. Dimensions of
one sample are asked in parallel (they are independent calls, as in the original reward).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from replan_common.errors import ReplanError
from replan_eval.judge.cache import JudgeCache
from replan_eval.judge.clients import JudgeClient, JudgeRequest
from replan_eval.judge.dimensions import Dimension, spec
from replan_eval.judge.parsing import ParseMethod, parse_reply
from replan_eval.judge.prompts import JudgeInputs, PromptTemplates
from replan_eval.judge.verdict import JudgeVerdict

logger = logging.getLogger(__name__)

__all__ = ["Judge"]


class Judge:
    """Scores samples on the IV-Edit dimensions with one judge client."""

    def __init__(
        self,
        client: JudgeClient,
        *,
        templates: PromptTemplates | None = None,
        cache: JudgeCache | None = None,
    ) -> None:
        self._client = client
        self._templates = templates or PromptTemplates.builtin()
        self._cache = cache

    @property
    def judge_id(self) -> str:
        return self._client.judge_id

    def evaluate(self, inputs: JudgeInputs, dimension: Dimension, *, sample_key: str | None = None) -> JudgeVerdict:
        """One dimension of one sample; cached under ``sample_key`` when a cache is configured."""
        version = self._templates.version(dimension)
        if self._cache is not None and sample_key is not None:
            cached = self._cache.get(sample_key, dimension, judge=self.judge_id, prompt_version=version)
            if cached is not None:
                return cached
        verdict = self._ask(inputs, dimension, version)
        if self._cache is not None and sample_key is not None:
            self._cache.put(sample_key, verdict)
        return verdict

    def evaluate_many(
        self,
        inputs: JudgeInputs,
        dimensions: Iterable[Dimension],
        *,
        sample_key: str | None = None,
    ) -> dict[Dimension, JudgeVerdict]:
        """Several dimensions of one sample, asked concurrently."""
        dims = list(dict.fromkeys(dimensions))
        if len(dims) <= 1:
            return {d: self.evaluate(inputs, d, sample_key=sample_key) for d in dims}
        with ThreadPoolExecutor(max_workers=len(dims), thread_name_prefix="judge") as pool:
            futures = {d: pool.submit(self.evaluate, inputs, d, sample_key=sample_key) for d in dims}
            return {d: f.result() for d, f in futures.items()}

    def _ask(self, inputs: JudgeInputs, dimension: Dimension, version: str) -> JudgeVerdict:
        dim = spec(dimension)
        request = JudgeRequest(self._templates.render(dimension, inputs), dim.json_schema())
        try:
            reply = self._client.complete(request)
        except ReplanError as exc:
            logger.warning("judge %s failed on %s: %s", self.judge_id, dimension.value, exc)
            return JudgeVerdict(
                dimension=dimension,
                score=None,
                method=ParseMethod.FAILED,
                error=str(exc),
                judge=self.judge_id,
                prompt_version=version,
            )
        parsed = parse_reply(reply, dimension)
        if parsed.method is ParseMethod.FAILED:
            logger.warning("judge %s gave no readable %s score: %.200r", self.judge_id, dimension.value, reply)
        return JudgeVerdict(
            dimension=dimension,
            score=parsed.score,
            raw_score=parsed.raw_score,
            reasoning=parsed.reasoning,
            method=parsed.method,
            judge=self.judge_id,
            prompt_version=version,
            reply=reply,
        )
