"""Batch reward function for verl and EasyR1, scoring rollouts on a RePlan reward server over HTTP.

Point either trainer at this file (both load a reward function from a file path and a name)::

    # verl (reward_model.reward_manager=batch)
    custom_reward_function.path=$(python -c "import replan_eval.adapters.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score
    # EasyR1 (worker.reward.reward_type=batch)
    worker.reward.reward_function=<that path>:compute_score

`compute_score` answers both calling conventions:

* verl's ``BatchRewardManager`` calls ``compute_score(data_sources=…, solution_strs=…, ground_truths=…,
  extra_infos=…, **reward_kwargs)`` and reads a list of floats (or of dicts with ``"score"`` when
  ``return_dict=True`` is among the reward kwargs: the other keys become ``reward_extra_info``);
* EasyR1's ``BatchFunctionRewardManager`` calls ``compute_score(reward_inputs)`` with a list of dicts
  (``response``, ``response_length``, ``ground_truth`` and whatever else the dataset carries) and reads a
  list of dicts whose ``"overall"`` is the reward; the other keys are logged as metrics.

Which stage scores a sample: the ``stage`` keyword (set it in the trainer's reward kwargs), else the
original task name (``text_refinement_edit`` → 1, ``edit_region_planning`` → 2) in the data source or in
``extra_info.task_name``, else ``REPLAN_REWARD_STAGE``, else 1. Stage 2 also needs the input image (in
``extra_info.image`` as base64 or a file path, or ``images``/``multi_modal_data``) and
``extra_info.instruction_details``. The server is ``REPLAN_REWARD_URL`` (see `RewardClientConfig`); a
rollout whose request fails for good scores 0, as the original did.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal, cast, overload

from replan_eval.adapters.client import RewardClient, RewardOutcome
from replan_eval.adapters.inputs import extra_info_dict, find_image, stage_for_task
from replan_eval.rewards.protocol import RewardSample, RewardSampleResult
from replan_eval.rewards.store import RewardStage

__all__ = ["compute_score", "reward_components"]


def _check_stage(stage: int | None, source: str) -> RewardStage | None:
    if stage is not None and stage not in (1, 2):
        raise ValueError(f"the reward stage must be 1 or 2 ({source}), got {stage!r}")
    return cast("RewardStage | None", stage)


def _env_stage() -> RewardStage | None:
    raw = os.environ.get("REPLAN_REWARD_STAGE", "").strip()
    return _check_stage((int(raw) if raw.isdigit() else -1) if raw else None, "REPLAN_REWARD_STAGE")


def reward_components(score: float, detail: RewardSampleResult | None) -> dict[str, float]:
    """The reward and its parts as floats (what trainers log); ``failed`` is 1 when the server never answered."""
    stage1 = detail.stage1 if detail is not None else None
    stage2 = detail.stage2 if detail is not None else None
    return {
        "overall": score,
        "format": stage1.format if stage1 else 0.0,
        "quality": stage1.quality if stage1 else 0.0,
        "region": stage1.region if stage1 else 0.0,
        "planning": stage2.planning if stage2 else 0.0,
        "failed": 1.0 if detail is None else 0.0,
    }


def _score(
    samples: list[RewardSample],
    task_names: Sequence[tuple[object, ...]],
    stage: RewardStage | None,
    client: RewardClient | None,
) -> RewardOutcome:
    # The stage kwarg, else the sample's task name, else REPLAN_REWARD_STAGE, else 1.
    fallback = _env_stage() or 1
    stages: list[RewardStage] = [
        stage if stage is not None else (stage_for_task(*names) or fallback) for names in task_names
    ]
    return (client or RewardClient()).score_mixed(samples, stages)


def _verl(
    data_sources: Sequence[object],
    solution_strs: Sequence[str],
    ground_truths: Sequence[object] | None,
    extra_infos: Sequence[object] | None,
    stage: RewardStage | None,
    return_dict: bool,
    client: RewardClient | None,
) -> list[float] | list[dict[str, float]]:
    n = len(solution_strs)
    extras = list(extra_infos) if extra_infos is not None else [None] * n
    truths = list(ground_truths) if ground_truths is not None else [None] * n
    samples, names = [], []
    for i in range(n):
        raw_extra = extras[i] if i < len(extras) else None
        # Without instruction details in extra_info they may travel as a JSON ground truth.
        extra = extra_info_dict(raw_extra) or extra_info_dict(truths[i] if i < len(truths) else None)
        samples.append(
            RewardSample(
                response=str(solution_strs[i]),
                image=find_image(raw_extra if isinstance(raw_extra, Mapping) else None),
                extra_info=extra,
            )
        )
        names.append((data_sources[i] if i < len(data_sources) else None, extra.get("task_name")))
    outcome = _score(samples, names, stage, client)
    if not return_dict:
        return outcome.scores
    return [
        {"score": score, **{k: v for k, v in reward_components(score, detail).items() if k != "overall"}}
        for score, detail in zip(outcome.scores, outcome.details, strict=True)
    ]


def _easyr1(
    reward_inputs: Sequence[Mapping[str, object]], stage: RewardStage | None, client: RewardClient | None
) -> list[dict[str, float]]:
    samples, names = [], []
    for item in reward_inputs:
        raw_extra = item.get("extra_info")
        extra = extra_info_dict(raw_extra)
        if not extra:
            # Without an extra_info column the instruction details may travel as a JSON ground truth.
            extra = extra_info_dict(item.get("ground_truth"))
        samples.append(
            RewardSample(
                response=str(item.get("response", "")),
                image=find_image(item, raw_extra if isinstance(raw_extra, Mapping) else None),
                extra_info=extra,
            )
        )
        names.append((item.get("task_name"), item.get("data_source"), extra.get("task_name")))
    outcome = _score(samples, names, stage, client)
    return [reward_components(s, d) for s, d in zip(outcome.scores, outcome.details, strict=True)]


@overload
def compute_score(
    reward_inputs: Sequence[Mapping[str, object]],
    *,
    stage: int | None = None,
    client: RewardClient | None = None,
) -> list[dict[str, float]]: ...


@overload
def compute_score(
    reward_inputs: None = None,
    *,
    data_sources: Sequence[object] | None = None,
    solution_strs: Sequence[str] | None = None,
    ground_truths: Sequence[object] | None = None,
    extra_infos: Sequence[object] | None = None,
    stage: int | None = None,
    return_dict: Literal[False] = False,
    client: RewardClient | None = None,
) -> list[float]: ...


@overload
def compute_score(
    reward_inputs: None = None,
    *,
    data_sources: Sequence[object] | None = None,
    solution_strs: Sequence[str] | None = None,
    ground_truths: Sequence[object] | None = None,
    extra_infos: Sequence[object] | None = None,
    stage: int | None = None,
    return_dict: Literal[True],
    client: RewardClient | None = None,
) -> list[dict[str, float]]: ...


def compute_score(
    reward_inputs: Sequence[Mapping[str, object]] | None = None,
    *,
    data_sources: Sequence[object] | None = None,
    solution_strs: Sequence[str] | None = None,
    ground_truths: Sequence[object] | None = None,
    extra_infos: Sequence[object] | None = None,
    stage: int | None = None,
    return_dict: bool = False,
    client: RewardClient | None = None,
    **_: object,
) -> list[float] | list[dict[str, float]]:
    """verl: list of floats (dicts with ``score`` if ``return_dict``); EasyR1: dicts with ``overall``.

    Args:
        client: the HTTP client to use (default: one configured from ``REPLAN_REWARD_*`` now).
    """
    if "solution_str" in _:
        raise TypeError(
            "verl called compute_score one sample at a time (its naive reward manager); this function scores "
            "batches: set reward_model.reward_manager=batch"
        )
    chosen = _check_stage(stage, "the stage keyword")
    if reward_inputs is not None:
        return _easyr1(reward_inputs, chosen, client)
    if solution_strs is None:
        raise TypeError(
            "compute_score takes EasyR1's reward_inputs list or verl's keywords "
            "(data_sources, solution_strs, ground_truths, extra_infos)"
        )
    sources = list(data_sources) if data_sources is not None else [None] * len(solution_strs)
    return _verl(sources, solution_strs, ground_truths, extra_infos, chosen, return_dict, client)
