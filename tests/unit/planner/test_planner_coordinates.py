"""Box mapping from the model's resized view back to original pixels: big photos, small images, other
pixel limits, overhangs (clipped) and boxes outside the image (dropped), each reported with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replan_common.errors import InvalidImage
from replan_common.geometry import Size
from replan_common.plan import Region, RegionPlan
from replan_planner.coordinates import map_to_original, model_view_size
from replan_planner.output import ModelPlan
from replan_planner.settings import TRAINING_MAX_PIXELS, TRAINING_MIN_PIXELS, BoxSpace

TRAINING = {"min_pixels": TRAINING_MIN_PIXELS, "max_pixels": TRAINING_MAX_PIXELS}


def model_plan(*boxes: tuple[float, float, float, float]) -> ModelPlan:
    regions = tuple(Region(bbox=b, hint=f"hint {i}") for i, b in enumerate(boxes))
    return ModelPlan(
        plan=RegionPlan(global_prompt="g", regions=regions), source_indices=tuple(range(len(boxes))), adjustments=()
    )


def test_4000x3000_photo_with_training_limits() -> None:
    original = Size(4000, 3000)
    view = model_view_size(original, **TRAINING)
    assert view == Size(4004, 2996)  # multiples of 28, under 12,845,056 pixels: almost the identity
    plan, adjustments = map_to_original(model_plan((1001, 749, 3003, 2247)), view=view, original=original)
    assert plan.regions[0].bbox == pytest.approx(
        (1001 * 4000 / 4004, 749 * 3000 / 2996, 3003 * 4000 / 4004, 2247 * 3000 / 2996), abs=0.01
    )
    assert adjustments == []


def test_4000x3000_photo_downscaled_by_a_smaller_server_limit() -> None:
    """vLLM deployments often cap max_pixels at 1280*28*28; the model then sees ~1148x868 and boxes need x3.5."""
    original = Size(4000, 3000)
    view = model_view_size(original, min_pixels=TRAINING_MIN_PIXELS, max_pixels=1280 * 28 * 28)
    assert view.width * view.height <= 1280 * 28 * 28 and view.width % 28 == 0 and view.height % 28 == 0
    full = (0.0, 0.0, float(view.width), float(view.height))
    centre = (view.width / 4, view.height / 4, 3 * view.width / 4, 3 * view.height / 4)
    plan, adjustments = map_to_original(model_plan(full, centre), view=view, original=original)
    assert plan.regions[0].bbox == (0.0, 0.0, 4000.0, 3000.0)
    assert plan.regions[1].bbox == pytest.approx((1000, 750, 3000, 2250), abs=0.01)
    assert adjustments == []


def test_300x200_image_is_upscaled_by_the_processor_and_mapped_back() -> None:
    original = Size(300, 200)
    view = model_view_size(original, **TRAINING)
    assert view == Size(308, 196)
    plan, _ = map_to_original(model_plan((0, 0, 308, 196), (154, 98, 231, 147)), view=view, original=original)
    assert plan.regions[0].bbox == (0.0, 0.0, 300.0, 200.0)
    assert plan.regions[1].bbox == pytest.approx((150, 100, 225, 150), abs=0.01)


def test_overhang_is_clipped_and_reported() -> None:
    original = Size(300, 200)
    plan, adjustments = map_to_original(model_plan((280, 10, 320, 50)), view=Size(300, 200), original=original)
    assert plan.regions[0].bbox == (280.0, 10.0, 300.0, 50.0)
    (adjustment,) = adjustments
    assert adjustment.action == "clipped" and adjustment.index == 0
    assert "overhangs the 300x200 image" in adjustment.reason and "clipped to [280, 10, 300, 50]" in adjustment.reason


@pytest.mark.parametrize(
    ("box", "code"),
    [((400, 10, 500, 50), "bbox_outside_image"), ((250, 10, 450, 50), "bbox_outside_image")],
    ids=["wholly-outside", "mostly-outside"],
)
def test_box_outside_the_image_is_dropped_with_its_reason(box: tuple[float, float, float, float], code: str) -> None:
    plan, adjustments = map_to_original(model_plan((10, 10, 50, 50), box), view=Size(300, 200), original=Size(300, 200))
    assert [r.bbox for r in plan.regions] == [(10.0, 10.0, 50.0, 50.0)]
    (adjustment,) = adjustments
    assert (adjustment.index, adjustment.action) == (1, "dropped")
    assert adjustment.reason.startswith(code) and "300x200 view" in adjustment.reason


def test_adjustments_name_the_model_index_not_the_kept_index() -> None:
    read = ModelPlan(
        plan=RegionPlan(global_prompt="g", regions=(Region(bbox=(900, 900, 950, 950), hint="h"),)),
        source_indices=(3,),
        adjustments=(),
    )
    _, adjustments = map_to_original(read, view=Size(300, 200), original=Size(300, 200))
    assert adjustments[0].index == 3


def test_norm1000_boxes() -> None:
    plan, _ = map_to_original(
        model_plan((250, 500, 750, 1000)), view=Size(308, 196), original=Size(400, 200), box_space=BoxSpace.NORM1000
    )
    assert plan.regions[0].bbox == (100.0, 100.0, 300.0, 200.0)


def test_impossible_aspect_ratio_is_a_client_error() -> None:
    with pytest.raises(InvalidImage) as caught:
        model_view_size(Size(10_000, 20), **TRAINING)
    assert caught.value.code == "unsupported_aspect_ratio" and caught.value.status == 400


@given(
    width=st.integers(16, 6000),
    height=st.integers(16, 6000),
    fx=st.tuples(st.floats(0, 0.9), st.floats(0.05, 0.1)),
    fy=st.tuples(st.floats(0, 0.9), st.floats(0.05, 0.1)),
)
def test_box_in_the_view_lands_on_the_same_fraction_of_the_original(
    width: int, height: int, fx: tuple[float, float], fy: tuple[float, float]
) -> None:
    if max(width, height) / min(width, height) > 200:
        return
    original = Size(width, height)
    view = model_view_size(original, **TRAINING)
    box = (fx[0] * view.width, fy[0] * view.height, (fx[0] + fx[1]) * view.width, (fy[0] + fy[1]) * view.height)
    plan, adjustments = map_to_original(model_plan(box), view=view, original=original)
    assert adjustments == []
    x1, y1, x2, y2 = plan.regions[0].bbox
    assert x1 == pytest.approx(fx[0] * width, abs=0.01) and x2 == pytest.approx((fx[0] + fx[1]) * width, abs=0.01)
    assert y1 == pytest.approx(fy[0] * height, abs=0.01) and y2 == pytest.approx((fy[0] + fy[1]) * height, abs=0.01)
