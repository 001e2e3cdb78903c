"""Fixtures for the region-edit pipeline tests: tiny pipelines (CPU), a test image and plans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from replan_common.plan import Region, RegionPlan
from replan_common.protocol import Backbone
from replan_editor.attention.registry import region_attention
from replan_editor.pipelines import RegionEditPipeline

#: An input whose size is not a working size, so snapping and the resize back are exercised.
IMAGE_SIZE = (150, 120)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; with several, CPU contention makes them 10-30x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def two_region_plan() -> RegionPlan:
    return RegionPlan(
        global_prompt="keep remaining part of image unchanged.",
        regions=(
            Region(bbox=(10, 10, 60, 50), hint="a small potted plant"),
            Region(bbox=(70, 40, 140, 110), hint="a red cup"),
        ),
    )


@pytest.fixture(scope="session")
def empty_plan() -> RegionPlan:
    return RegionPlan(global_prompt="make the cup blue")


@pytest.fixture(scope="session", params=list(Backbone), ids=lambda b: b.value)
def backbone(request: pytest.FixtureRequest) -> Backbone:
    return request.param


_PIPELINES: dict[Backbone, RegionEditPipeline] = {}


def tiny_pipeline(backbone: Backbone) -> RegionEditPipeline:
    """The tiny preset of `backbone`, built once per session (edits leave no state behind)."""
    if backbone not in _PIPELINES:
        _PIPELINES[backbone] = RegionEditPipeline.tiny(backbone, seed=0)
    return _PIPELINES[backbone]


@pytest.fixture
def region_pipeline(backbone: Backbone) -> RegionEditPipeline:
    return tiny_pipeline(backbone)


@pytest.fixture
def qwen_pipeline() -> RegionEditPipeline:
    return tiny_pipeline(Backbone.QWEN_IMAGE_EDIT)


@pytest.fixture
def kontext_pipeline() -> RegionEditPipeline:
    return tiny_pipeline(Backbone.FLUX_KONTEXT)


@pytest.fixture
def attention_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every `region_attention` call the processors make, as the mask plan it used (in call order)."""
    calls: list[Any] = []

    def spy(q: Any, k: Any, v: Any, plan: Any, **kwargs: Any) -> Any:
        calls.append(plan)
        return region_attention(q, k, v, plan, **kwargs)

    monkeypatch.setattr("replan_editor.pipelines.engine.region_attention", spy)
    yield calls
