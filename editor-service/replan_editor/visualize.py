"""Drawing a region plan on its input image (the CLI's `visualization.png`): one coloured box per region,
numbered and labelled with its hint, plus a thin outline of the box as grown by `expand_value` (the area
the region attention actually covers). Plain PIL; boxes are in original-image pixels, as in the plan.
Box outlines are drawn last, so labels never hide an edge.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from replan_common.geometry import ExpandMode, Size, expand_box
from replan_common.plan import RegionPlan

#: Box colours, region i gets BOX_COLORS[i % len]: saturated and far apart, readable on photos.
BOX_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (255, 225, 25),
)

_MAX_LABEL_CHARS = 60
#: Below this side length only the region numbers fit; the hints are in plan.json.
_MIN_SIDE_FOR_HINTS = 160


def box_line_width(size: Size) -> int:
    """Outline width in pixels: visible on small and large images alike."""
    return max(2, round(min(size.width, size.height) / 160))


def draw_plan(
    image: Image.Image,
    plan: RegionPlan,
    *,
    expand_value: float = 0.0,
    expand_mode: ExpandMode = ExpandMode.RATIO,
) -> Image.Image:
    """A copy of `image` with every region's box and hint drawn on it."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = Size(canvas.width, canvas.height)
    width = box_line_width(size)
    font = _font(max(8, min(size.width, size.height) // 32))
    boxes = [_pixels(region.bbox) for region in plan.regions]
    colors = [BOX_COLORS[i % len(BOX_COLORS)] for i in range(len(boxes))]
    if expand_value > 0:
        for region, color in zip(plan.regions, colors, strict=True):
            grown = expand_box(region.bbox, expand_value, expand_mode, size)
            draw.rectangle(_pixels(grown), outline=color, width=1)
    with_hints = min(size.width, size.height) >= _MIN_SIDE_FOR_HINTS
    for index, (region, box, color) in enumerate(zip(plan.regions, boxes, colors, strict=True)):
        text = f"{index + 1}: {_shorten(region.hint)}" if with_hints else str(index + 1)
        _label(draw, text, box, width, color, font, size)
    # Outlines last, so no label ever hides a box edge.
    for box, color in zip(boxes, colors, strict=True):
        draw.rectangle(box, outline=color, width=width)
    return canvas


def _pixels(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return round(x1), round(y1), max(round(x1), round(x2) - 1), max(round(y1), round(y2) - 1)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LABEL_CHARS else text[: _MAX_LABEL_CHARS - 1] + "…"


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: tuple[int, int, int, int],
    line_width: int,
    color: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    size: Size,
) -> None:
    """The hint on a filled tag just above the box (inside its top edge when there is no room above)."""
    x1, y1, _, _ = box
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left, bottom - top
    x = min(max(0, x1), max(0, size.width - text_w - 2))
    y = y1 - text_h - 3 if y1 - text_h - 3 >= 0 else y1 + line_width + 1
    draw.rectangle((x, y, x + text_w + 2, y + text_h + 2), fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    draw.text((x + 1 - left, y + 1 - top), text, fill=ink, font=font)


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
