"""Mapping the planner model's boxes back to original-image pixels, with a record of every change.

Qwen2.5-VL sees the image after `smart_resize` (multiples of 28, pixel count within the processor's
min/max) and answers with absolute pixels of *that* image. The original RePlan uses those numbers as
original pixels unchanged, which drifts as soon as the resize is not the identity (any image above about
12.8 MP, or any server configured with a smaller max_pixels). Here every box is scaled from the model's
view to the original size, then validated: a small overhang is clipped, a box mostly or wholly outside the
image is dropped, and each clip or drop becomes a `RegionAdjustment` with its reason.
"""

from __future__ import annotations

from replan_common.errors import InvalidImage, InvalidRegion
from replan_common.geometry import Size, scale_box, smart_resize, validate_box
from replan_common.plan import BBox, Region, RegionPlan
from replan_common.protocol import RegionAdjustment
from replan_planner.output import ModelPlan
from replan_planner.settings import BoxSpace

__all__ = ["map_to_original", "model_view_size"]

_DECIMALS = 2


def model_view_size(original: Size, *, min_pixels: int, max_pixels: int) -> Size:
    """The size the model's processor resizes `original` to; an impossible aspect ratio is a client error."""
    try:
        return smart_resize(original, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as exc:
        raise InvalidImage(
            f"the planner cannot take this image: {exc}", code="unsupported_aspect_ratio", param="image"
        ) from exc


def map_to_original(
    model_plan: ModelPlan,
    *,
    view: Size,
    original: Size,
    box_space: BoxSpace = BoxSpace.PIXELS,
    max_overhang: float = 0.5,
) -> tuple[RegionPlan, list[RegionAdjustment]]:
    """The plan with boxes in original pixels, and the clips and drops made on the way."""
    source = view if box_space is BoxSpace.PIXELS else Size(1000, 1000)
    regions: list[Region] = []
    adjustments = list(model_plan.adjustments)
    for region, index in zip(model_plan.plan.regions, model_plan.source_indices, strict=True):
        scaled = scale_box(region.bbox, source, original)
        try:
            valid = validate_box(scaled, original, param=f"regions[{index}].bbox", max_overhang=max_overhang)
        except InvalidRegion as exc:
            reason = f"{exc.code}: {exc.message} (the model's box was {_fmt(region.bbox)} in its {_dims(source)} view)"
            adjustments.append(RegionAdjustment(index=index, action="dropped", reason=reason))
            continue
        if valid != scaled:
            reason = (
                f"box {_fmt(scaled)} overhangs the {_dims(original)} image; clipped to {_fmt(valid)} "
                f"(the model's box was {_fmt(region.bbox)} in its {_dims(source)} view)"
            )
            adjustments.append(RegionAdjustment(index=index, action="clipped", reason=reason))
        regions.append(Region(bbox=_rounded(valid), hint=region.hint))
    adjustments.sort(key=lambda a: a.index)
    return model_plan.plan.model_copy(update={"regions": tuple(regions)}), adjustments


def _rounded(box: BBox) -> BBox:
    x1, y1, x2, y2 = (round(v, _DECIMALS) for v in box)
    return (x1, y1, x2, y2)


def _fmt(box: BBox) -> str:
    return "[" + ", ".join(f"{round(v, _DECIMALS):g}" for v in box) + "]"


def _dims(size: Size) -> str:
    return f"{size.width}x{size.height}"
