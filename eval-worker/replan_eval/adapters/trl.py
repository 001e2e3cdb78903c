"""TRL ``reward_funcs`` callables scoring completions on a RePlan reward server over HTTP.

::

    from replan_eval.adapters.trl import make_reward_func
    trainer = GRPOTrainer(..., reward_funcs=[make_reward_func(stage=1)])

TRL calls a reward function as ``f(prompts=…, completions=…, completion_ids=…, **columns)`` where the
other dataset columns arrive as per-sample lists, plus ``trainer_state``, ``log_metric`` and
``log_extra``. Completions are strings, or chat messages whose last one holds the text. Stage 2 reads
the input image from the ``image`` or ``images`` column (a PIL image, bytes, a path or base64) and the
instruction details from an ``extra_info`` column. TRL names a reward by the function's ``__name__``,
so each callable gets a fixed one (``replan_stage1`` …). The server is ``REPLAN_REWARD_URL`` unless a
config is given (see `RewardClientConfig`); a request that fails for good scores its completions 0, as
the original did. When TRL passes ``log_metric``, the reward's parts are logged too (``replan/format`` …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Protocol

import httpx

from replan_eval.adapters.client import RewardClient, RewardClientConfig
from replan_eval.adapters.inputs import encode_image, extra_info_dict
from replan_eval.adapters.verl import reward_components
from replan_eval.rewards.protocol import RewardSample
from replan_eval.rewards.store import RewardStage

__all__ = ["RewardFunc", "completion_text", "make_reward_func", "replan_stage1", "replan_stage2"]

_IMAGE_COLUMNS = ("image", "images", "input_image_base64")


class RewardFunc(Protocol):
    """What TRL's ``GRPOTrainer`` accepts in ``reward_funcs``: one float per completion."""

    __name__: str

    def __call__(self, prompts: Sequence[object], completions: Sequence[object], **kwargs: object) -> list[float]: ...


def completion_text(completion: object) -> str:
    """The text of a completion: a string, or the content of the last chat message (text parts joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "text"
            )
    raise TypeError(f"cannot read text from a completion of type {type(completion).__name__}")


def _column(kwargs: Mapping[str, object], names: Sequence[str], index: int) -> object:
    for name in names:
        values = kwargs.get(name)
        if isinstance(values, Sequence) and not isinstance(values, str) and index < len(values):
            return values[index]
    return None


def make_reward_func(
    *,
    stage: RewardStage = 1,
    config: RewardClientConfig | None = None,
    name: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> RewardFunc:
    """A TRL reward function for ``stage``; ``config`` None reads ``REPLAN_REWARD_*`` at each call."""

    def reward(prompts: Sequence[object], completions: Sequence[object], **kwargs: object) -> list[float]:
        samples = []
        for i, completion in enumerate(completions):
            image = encode_image(_column(kwargs, _IMAGE_COLUMNS, i)) if stage == 2 else None
            samples.append(
                RewardSample(
                    response=completion_text(completion),
                    image=image,
                    extra_info=extra_info_dict(_column(kwargs, ("extra_info",), i)),
                )
            )
        client = RewardClient(config or RewardClientConfig.from_env(), transport=transport)
        outcome = client.score(samples, stage=stage)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and samples:
            parts = [reward_components(s, d) for s, d in zip(outcome.scores, outcome.details, strict=True)]
            for key in ("format", "quality", "region", "planning", "failed"):
                log_metric(f"replan/{key}", fmean(p[key] for p in parts))
        return outcome.scores

    reward.__name__ = name or f"replan_stage{stage}"
    reward.__qualname__ = reward.__name__
    return reward


#: Ready-made reward functions, configured from ``REPLAN_REWARD_*`` at each call.
replan_stage1 = make_reward_func(stage=1)
replan_stage2 = make_reward_func(stage=2)
