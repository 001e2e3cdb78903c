"""Drawing a region plan on its input image (the CLI's `visualization.png`): one coloured box per region,
numbered and labelled with its hint, plus a thin outline of the box as grown by `expand_value` (the area
the region attention actually covers). Plain PIL; boxes are in original-image pixels, as in the plan.
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
    font = _font(max(10, min(size.width, size.height) // 32))
    for index, region in enumerate(plan.regions):
        color = BOX_COLORS[index % len(BOX_COLORS)]
        if expand_value > 0:
            grown = expand_box(region.bbox, expand_value, expand_mode, size)
            draw.rectangle(_pixels(grown), outline=color, width=1)
        x1, y1, x2, y2 = _pixels(region.bbox)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        _label(draw, f"{index + 1}: {_shorten(region.hint)}", (x1 + width, y1 + width), color, font, size)
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
    at: tuple[int, int],
    color: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    size: Size,
) -> None:
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    # Keep the label on the image: shift it left/up when it would run off the right or bottom edge.
    dx = min(0, size.width - 1 - right)
    dy = min(0, size.height - 1 - bottom)
    background = (left + dx - 2, top + dy - 1, right + dx + 2, bottom + dy + 1)
    draw.rectangle(background, fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text((at[0] + dx, at[1] + dy), text, fill=(0, 0, 0) if luminance > 150 else (255, 255, 255), font=font)


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
