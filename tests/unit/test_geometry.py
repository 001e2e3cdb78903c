"""Box geometry and the maps between original, planner, working and token-grid spaces.

Where a library defines the map (diffusers' Kontext buckets and Qwen-Image-Edit sizing, transformers'
Qwen2-VL `smart_resize`), the test compares against the library itself rather than a copy of it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from replan_common.errors import InvalidRegion
from replan_common.geometry import (
    KONTEXT_RESOLUTIONS,
    PIXELS_PER_TOKEN,
    QWEN_VL_FACTOR,
    QWEN_VL_MAX_PIXELS,
    QWEN_VL_MIN_PIXELS,
    ExpandMode,
    Size,
    TokenSpan,
    box_to_token_span,
    clip_box,
    expand_box,
    is_degenerate,
    kontext_working_size,
    qwen_edit_working_size,
    scale_box,
    smart_resize,
    token_grid,
    validate_box,
)

Box = tuple[float, float, float, float]
#: No per-example deadline: a loaded 2-core CI box must not fail a property on timing.
relaxed = settings(deadline=None)

sides = st.integers(min_value=8, max_value=8192)
image_sizes = st.builds(Size, sides, sides)
# No subnormals: a box 5e-324 px tall underflows to zero height when scaled, which no planner writes.
coordinates = st.floats(min_value=-10_000, max_value=10_000, allow_nan=False, allow_subnormal=False)


@st.composite
def boxes(draw: st.DrawFn, size: Size | None = None) -> Box:
    """A non-degenerate box; inside `size` when given."""
    if size is None:
        x1, x2 = sorted(draw(st.lists(coordinates, min_size=2, max_size=2, unique=True)))
        y1, y2 = sorted(draw(st.lists(coordinates, min_size=2, max_size=2, unique=True)))
    else:
        x1, x2 = sorted(draw(st.lists(st.integers(0, size.width), min_size=2, max_size=2, unique=True)))
        y1, y2 = sorted(draw(st.lists(st.integers(0, size.height), min_size=2, max_size=2, unique=True)))
    return (x1, y1, x2, y2)


@st.composite
def sizes_and_inner_boxes(draw: st.DrawFn) -> tuple[Size, Box]:
    size = draw(image_sizes)
    return size, draw(boxes(size))


def inside(box: Box, size: Size) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 <= x2 <= size.width and 0 <= y1 <= y2 <= size.height


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


# --- clip, expand, validate ----------------------------------------------------------------------------


@relaxed
@given(boxes(), image_sizes)
def test_clip_keeps_boxes_inside_the_image(box: Box, size: Size) -> None:
    assert inside(clip_box(box, size), size) or is_degenerate(clip_box(box, size))
    x1, y1, x2, y2 = clip_box(box, size)
    assert 0 <= x1 <= size.width and 0 <= x2 <= size.width and 0 <= y1 <= size.height and 0 <= y2 <= size.height


@relaxed
@given(sizes_and_inner_boxes())
def test_clip_leaves_a_box_inside_the_image_unchanged(size_box: tuple[Size, Box]) -> None:
    size, box = size_box
    assert clip_box(box, size) == box


@relaxed
@given(sizes_and_inner_boxes(), st.floats(min_value=0, max_value=3))
def test_expand_ratio_moves_each_side_by_a_fraction_of_the_box_then_clips(
    size_box: tuple[Size, Box], ratio: float
) -> None:
    size, (x1, y1, x2, y2) = size_box
    dx, dy = ratio * (x2 - x1), ratio * (y2 - y1)
    ex1, ey1, ex2, ey2 = expand_box((x1, y1, x2, y2), ratio, ExpandMode.RATIO, size)
    assert ex1 == pytest.approx(max(0, x1 - dx)) and ex2 == pytest.approx(min(size.width, x2 + dx))
    assert ey1 == pytest.approx(max(0, y1 - dy)) and ey2 == pytest.approx(min(size.height, y2 + dy))
    assert inside((ex1, ey1, ex2, ey2), size)
    assert ex1 <= x1 and ey1 <= y1 and ex2 >= x2 and ey2 >= y2


@relaxed
@given(sizes_and_inner_boxes(), st.integers(min_value=0, max_value=500))
def test_expand_pixels_moves_each_side_by_that_many_pixels_then_clips(size_box: tuple[Size, Box], pixels: int) -> None:
    size, (x1, y1, x2, y2) = size_box
    expanded = expand_box((x1, y1, x2, y2), pixels, ExpandMode.PIXELS, size)
    assert expanded == (
        max(0, x1 - pixels),
        max(0, y1 - pixels),
        min(size.width, x2 + pixels),
        min(size.height, y2 + pixels),
    )


def test_expand_ratio_example_from_the_default_settings() -> None:
    # 0.15 is the default expand value: a 100×40 box grows 15 px left/right and 6 px up/down.
    assert expand_box((100, 100, 200, 140), 0.15, ExpandMode.RATIO, Size(1000, 1000)) == pytest.approx(
        (85, 94, 215, 146)
    )


def test_negative_expand_value_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        expand_box((0, 0, 10, 10), -0.1, ExpandMode.RATIO, Size(100, 100))


@relaxed
@given(sizes_and_inner_boxes())
def test_validate_box_keeps_a_box_inside_the_image(size_box: tuple[Size, Box]) -> None:
    size, box = size_box
    assert validate_box(box, size, param="regions[0].bbox") == box


@relaxed
@given(sizes_and_inner_boxes(), st.floats(0, 0.49), st.sampled_from(["left", "top", "right", "bottom"]))
def test_validate_box_clips_a_small_overhang(size_box: tuple[Size, Box], fraction: float, side: str) -> None:
    size, (x1, y1, x2, y2) = size_box
    # Move the box so that `fraction` of it hangs over one edge.
    w, h = x2 - x1, y2 - y1
    shifted = {
        "left": (-fraction * w, y1, (1 - fraction) * w, y2),
        "top": (x1, -fraction * h, x2, (1 - fraction) * h),
        "right": (size.width - (1 - fraction) * w, y1, size.width + fraction * w, y2),
        "bottom": (x1, size.height - (1 - fraction) * h, x2, size.height + fraction * h),
    }[side]
    assume(not is_degenerate(shifted))
    validated = validate_box(shifted, size, param="regions[3].bbox")
    assert validated == clip_box(shifted, size)
    assert inside(validated, size)


@relaxed
@given(sizes_and_inner_boxes(), st.floats(0.51, 0.99), st.sampled_from(["left", "right"]))
def test_validate_box_rejects_a_box_mostly_outside(size_box: tuple[Size, Box], fraction: float, side: str) -> None:
    size, (x1, y1, x2, y2) = size_box
    w = x2 - x1
    shifted = (
        (-fraction * w, y1, (1 - fraction) * w, y2)
        if side == "left"
        else (size.width - (1 - fraction) * w, y1, size.width + fraction * w, y2)
    )
    with pytest.raises(InvalidRegion) as caught:
        validate_box(shifted, size, param="regions[1].bbox")
    assert (caught.value.code, caught.value.param) == ("bbox_outside_image", "regions[1].bbox")
    assert "overhang" in caught.value.message


@relaxed
@given(image_sizes, st.floats(1, 1000), st.floats(1, 1000))
def test_validate_box_rejects_a_box_wholly_outside(size: Size, w: float, h: float) -> None:
    for box in [(size.width + 1, 0, size.width + 1 + w, h), (0, -h - 1, w, -1)]:
        with pytest.raises(InvalidRegion) as caught:
            validate_box(box, size, param="regions[0].bbox")
        assert caught.value.code == "bbox_outside_image"


@pytest.mark.parametrize("box", [(10, 10, 10, 50), (10, 50, 60, 20), (5, 5, 4, 4), (math.nan, 0, 10, 10)])
def test_validate_box_rejects_a_degenerate_box(box: Box) -> None:
    with pytest.raises(InvalidRegion) as caught:
        validate_box(box, Size(100, 100), param="regions[2].bbox")
    assert (caught.value.code, caught.value.param) == ("degenerate_bbox", "regions[2].bbox")
    assert caught.value.status == 422


# --- the planner's space: smart_resize -----------------------------------------------------------------

aspect_ok_sizes = st.builds(Size, st.integers(1, 40_000), st.integers(1, 40_000)).filter(
    lambda s: max(s.width, s.height) / min(s.width, s.height) <= 200
)


@relaxed
@given(aspect_ok_sizes)
def test_smart_resize_gives_multiples_of_28_within_the_pixel_bounds(size: Size) -> None:
    resized = smart_resize(size)
    assert resized.width % QWEN_VL_FACTOR == 0 and resized.height % QWEN_VL_FACTOR == 0
    assert QWEN_VL_MIN_PIXELS <= resized.area <= QWEN_VL_MAX_PIXELS


@relaxed
@given(
    st.builds(Size, st.integers(112, 40_000), st.integers(112, 40_000)).filter(
        lambda s: max(s.width, s.height) / min(s.width, s.height) <= 8
    )
)
def test_smart_resize_keeps_the_aspect_ratio_within_one_factor_per_side(size: Size) -> None:
    resized = smart_resize(size)
    # Each side is rounded (or floored/ceiled) to a multiple of 28 after one common scale, so each side is
    # off by less than 28 px: the aspect ratio can drift by at most that much per side.
    bound = -math.log1p(-QWEN_VL_FACTOR / resized.width) - math.log1p(-QWEN_VL_FACTOR / resized.height)
    drift = abs(math.log(resized.width / resized.height) - math.log(size.width / size.height))
    assert drift <= bound + 1e-12


@relaxed
@given(
    # From 15 px: below, transformers rounds a side to 0 where qwen_vl_utils (which we follow) keeps 28.
    st.builds(Size, st.integers(15, 40_000), st.integers(15, 40_000)).filter(
        lambda s: max(s.width, s.height) / min(s.width, s.height) <= 200
    ),
    st.sampled_from(
        [(QWEN_VL_MIN_PIXELS, QWEN_VL_MAX_PIXELS), (56 * 56, 28 * 28 * 1280), (256 * 28 * 28, 1280 * 28 * 28)]
    ),
)
def test_smart_resize_equals_the_qwen2_vl_image_processor(size: Size, bounds: tuple[int, int]) -> None:
    min_pixels, max_pixels = bounds
    height, width = hf_smart_resize(size.height, size.width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    assert smart_resize(size, min_pixels=min_pixels, max_pixels=max_pixels) == Size(width, height)


@pytest.mark.parametrize("size", [Size(0, 100), Size(100, -1), Size(201, 1), Size(1, 201)])
def test_smart_resize_rejects_empty_and_too_elongated_images(size: Size) -> None:
    with pytest.raises(ValueError):
        smart_resize(size)


@relaxed
@given(aspect_ok_sizes)
def test_smart_resize_is_idempotent_as_the_processor_resizes_again(size: Size) -> None:
    # qwen_vl_utils resizes the image, then the HF processor runs smart_resize on the result. (Near 200:1
    # the first resize can push the aspect over 200, and the processor then refuses the image, as upstream.)
    resized = smart_resize(size)
    assume(max(resized.width, resized.height) / min(resized.width, resized.height) <= 200)
    assert smart_resize(resized) == resized


@relaxed
@given(image_sizes.filter(lambda s: max(s.width, s.height) / min(s.width, s.height) <= 200), st.data())
def test_scale_box_round_trips_through_the_planner_space(size: Size, data: st.DataObject) -> None:
    box = data.draw(boxes(size))
    planner = smart_resize(size)
    back = scale_box(scale_box(box, size, planner), planner, size)
    assert back == pytest.approx(box, abs=1e-6)
    # The planner answers in whole pixels of its space: rounding there moves a side by at most half a
    # planner pixel, mapped back to original pixels.
    said = tuple(float(round(v)) for v in scale_box(box, size, planner))
    back = scale_box(said, planner, size)  # type: ignore[arg-type]
    tolerance = 0.5 * max(size.width / planner.width, size.height / planner.height) + 1e-9
    assert all(abs(a - b) <= tolerance for a, b in zip(back, box, strict=True))


def test_scale_box_maps_a_downscaled_planner_box_back_to_original_pixels() -> None:
    # A 6000×4000 photo is seen by the planner at 4368×2912; its box must grow back by 6000/4368.
    original = Size(6000, 4000)
    planner = smart_resize(original)
    assert planner == Size(4368, 2912)
    assert scale_box((0, 0, 4368, 2912), planner, original) == (0, 0, 6000, 4000)
    assert scale_box((1092, 728, 2184, 1456), planner, original) == pytest.approx((1500, 1000, 3000, 2000))


# --- the editor's working sizes ------------------------------------------------------------------------


def test_kontext_buckets_equal_diffusers() -> None:
    assert list(KONTEXT_RESOLUTIONS) == list(PREFERRED_KONTEXT_RESOLUTIONS)


def diffusers_kontext_choice(size: Size) -> Size:
    """What `FluxKontextPipeline.__call__` does with an input image (auto-resize, then snap to 16)."""
    aspect_ratio = size.width / size.height
    _, width, height = min((abs(aspect_ratio - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
    multiple_of = 16  # vae_scale_factor (8) * 2
    return Size(width // multiple_of * multiple_of, height // multiple_of * multiple_of)


@relaxed
@given(image_sizes)
def test_kontext_working_size_equals_diffusers_choice(size: Size) -> None:
    assert kontext_working_size(size) == diffusers_kontext_choice(size)


@relaxed
@given(aspect_ok_sizes.filter(lambda s: min(s.width, s.height) >= 8))
def test_qwen_edit_working_size_equals_diffusers_calculate_dimensions(size: Size) -> None:
    width, height, _ = calculate_dimensions(1024 * 1024, size.width / size.height)
    assert qwen_edit_working_size(size) == Size(width // 16 * 16, height // 16 * 16)


def test_qwen_edit_working_size_never_collapses_a_side_to_zero() -> None:
    # Deliberate difference: for a 1:10000 strip diffusers computes a width of 0 and fails later.
    assert calculate_dimensions(1024 * 1024, 1 / 10_000)[0] == 0
    working = qwen_edit_working_size(Size(8, 80_000))
    assert working.width >= 32 and working.height % 16 == 0


# --- the token grid ------------------------------------------------------------------------------------

working_sizes = st.one_of(st.sampled_from(KONTEXT_RESOLUTIONS).map(lambda wh: Size(*wh)), image_sizes)


def exact_span(box: Box, original: Size, working: Size, pad: Fraction = Fraction(0)) -> TokenSpan:
    """Every token whose 16×16 cell overlaps the scaled box (grown by `pad`), in exact arithmetic."""
    grid = token_grid(working)
    x1, y1, x2, y2 = (Fraction(v) for v in box)
    sx, sy = Fraction(working.width, original.width), Fraction(working.height, original.height)
    cols = [c for c in range(grid.width) if 16 * c < x2 * sx + pad and 16 * (c + 1) > x1 * sx - pad]
    rows = [r for r in range(grid.height) if 16 * r < y2 * sy + pad and 16 * (r + 1) > y1 * sy - pad]
    if not cols or not rows:
        return TokenSpan(0, 0, 0, 0)
    return TokenSpan(rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)


def covers(outer: TokenSpan, inner: TokenSpan) -> bool:
    if inner.is_empty:
        return True
    return (
        outer.row0 <= inner.row0 and inner.row1 <= outer.row1 and outer.col0 <= inner.col0 and inner.col1 <= outer.col1
    )


@relaxed
@given(sizes_and_inner_boxes(), working_sizes)
def test_token_span_floors_the_start_and_ceils_the_end(size_box: tuple[Size, Box], working: Size) -> None:
    original, box = size_box
    # Integer boxes: exact, including edges that fall exactly on a token boundary.
    span, expected = box_to_token_span(box, original, working), exact_span(box, original, working)
    if expected.is_empty:  # e.g. a working size under 16 px has no tokens
        assert span.is_empty
    else:
        assert span == expected


@relaxed
@given(image_sizes, working_sizes, st.data())
def test_token_span_of_any_box_stays_in_the_grid_and_covers_the_box(
    original: Size, working: Size, data: st.DataObject
) -> None:
    box = data.draw(boxes())
    span = box_to_token_span(box, original, working)
    grid = token_grid(working)
    assert 0 <= span.row0 <= span.row1 <= grid.height and 0 <= span.col0 <= span.col1 <= grid.width
    # Float boxes: at least the exact span, at most the exact span of a hair-wider box.
    assert covers(span, exact_span(box, original, working))
    assert covers(exact_span(box, original, working, pad=Fraction(1, 10**6)), span)


@relaxed
@given(image_sizes, working_sizes)
def test_box_covering_the_whole_image_covers_the_whole_grid(original: Size, working: Size) -> None:
    grid = token_grid(working)
    span = box_to_token_span((0, 0, original.width, original.height), original, working)
    assert span == TokenSpan(0, grid.height, 0, grid.width)
    assert len(span.token_indices(grid.width)) == grid.area


def test_token_edge_on_an_exact_boundary_adds_no_extra_token() -> None:
    # Guards the scale_box fix: 1496/2992 of a 1024-px working width is exactly 512 px = 32 tokens,
    # but `x * (1024 / 2992)` came out a hair off.
    span = box_to_token_span((1496, 1496, 2992, 2992), Size(2992, 2992), Size(1024, 1024))
    assert (span.col0, span.row0) == (32, 32)


def test_token_indices_are_raster_order() -> None:
    span = TokenSpan(row0=1, row1=3, col0=2, col1=4)
    assert span.token_indices(grid_width=10) == [12, 13, 22, 23]
    assert TokenSpan(2, 2, 0, 5).is_empty and TokenSpan(2, 2, 0, 5).token_indices(10) == []


def test_token_grid_is_sixteen_pixels_per_token() -> None:
    assert PIXELS_PER_TOKEN == 16
    assert token_grid(Size(1024, 1024)) == Size(64, 64)
    assert token_grid(Size(1568, 672)) == Size(98, 42)
