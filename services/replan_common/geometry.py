"""Box geometry and the maps between the four coordinate spaces of an edit.

1. *original* pixels: the user's image; plans are stored here.
2. *planner* pixels: the image after Qwen2.5-VL's `smart_resize` (multiples of 28, bounded pixel count);
   the VLM answers in this space, so its boxes must be mapped back to original pixels.
3. *working* pixels: the editor's resolution (a Kontext preferred bucket, or about 1024² for Qwen).
4. the *token grid*: one latent token per 16×16 working pixels (VAE ×8, then 2×2 packing).

Pure Python; no torch, no PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from replan_common.errors import InvalidRegion
from replan_common.plan import BBox

#: Working pixels per latent token: VAE downsampling ×8, then 2×2 patch packing.
PIXELS_PER_TOKEN = 16

#: Qwen2.5-VL patch (14) × spatial merge (2).
QWEN_VL_FACTOR = 28
QWEN_VL_MIN_PIXELS = 4 * 28 * 28
QWEN_VL_MAX_PIXELS = 16384 * 28 * 28
QWEN_VL_MAX_ASPECT = 200

#: FLUX.1 Kontext's preferred (width, height) buckets, as in diffusers' `PREFERRED_KONTEXT_RESOLUTIONS`.
KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
)


class ExpandMode(str, Enum):
    """How `expand_value` grows a box: a fraction of its size per side, or absolute pixels per side."""

    RATIO = "ratio"
    PIXELS = "pixels"


@dataclass(frozen=True)
class Size:
    """Width and height in pixels."""

    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class TokenSpan:
    """Rows `[row0, row1)` and columns `[col0, col1)` of the latent token grid."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def is_empty(self) -> bool:
        return self.row1 <= self.row0 or self.col1 <= self.col0

    def token_indices(self, grid_width: int) -> list[int]:
        """Raster indices `r * grid_width + c` of the covered tokens."""
        return [r * grid_width + c for r in range(self.row0, self.row1) for c in range(self.col0, self.col1)]


def is_degenerate(box: BBox) -> bool:
    """A box with no area (or NaN coordinates) cannot guide anything."""
    x1, y1, x2, y2 = box
    return not (x2 > x1 and y2 > y1)


def clip_box(box: BBox, size: Size) -> BBox:
    """Clip to the image; the result may be degenerate if the box lies outside."""
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), size.width),
        min(max(y1, 0.0), size.height),
        min(max(x2, 0.0), size.width),
        min(max(y2, 0.0), size.height),
    )


def expand_box(box: BBox, value: float, mode: ExpandMode, size: Size) -> BBox:
    """Grow every side of `box` (by `value`× its width/height, or by `value` pixels), clipped to the image."""
    if value < 0:
        raise ValueError(f"expand value must be >= 0, got {value}")
    x1, y1, x2, y2 = box
    if mode is ExpandMode.RATIO:
        dx, dy = value * (x2 - x1), value * (y2 - y1)
    else:
        dx = dy = value
    return clip_box((x1 - dx, y1 - dy, x2 + dx, y2 + dy), size)


def validate_box(box: BBox, size: Size, *, param: str, max_overhang: float = 0.5) -> BBox:
    """Clip a box that overhangs the image a little; reject one that is degenerate or mostly outside.

    Args:
        max_overhang: the largest fraction of the box's area that may lie outside the image before the
            box is rejected rather than clipped.
    """
    if is_degenerate(box):
        raise InvalidRegion(
            f"box {list(box)} has no area: need x2 > x1 and y2 > y1", code="degenerate_bbox", param=param
        )
    clipped = clip_box(box, size)
    if is_degenerate(clipped):
        raise InvalidRegion(
            f"box {list(box)} lies outside the {size.width}x{size.height} image",
            code="bbox_outside_image",
            param=param,
        )
    inside = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
    total = (box[2] - box[0]) * (box[3] - box[1])
    if inside < (1.0 - max_overhang) * total:
        raise InvalidRegion(
            f"box {list(box)} lies mostly outside the {size.width}x{size.height} image "
            f"({100 * (1 - inside / total):.0f}% of its area; "
            f"at most {100 * max_overhang:.0f}% may overhang)",
            code="bbox_outside_image",
            param=param,
        )
    return clipped


def scale_box(box: BBox, src: Size, dst: Size) -> BBox:
    """Map a box from one pixel space to another of the same image (independent x and y scales)."""
    # Multiply before dividing: `x * (dst / src)` rounds twice, so an edge that lands exactly on a token
    # boundary (e.g. 500 px of 1000 -> 512 of 1024) could come out a hair off and gain a token row.
    x1, y1, x2, y2 = box
    return (
        x1 * dst.width / src.width,
        y1 * dst.height / src.height,
        x2 * dst.width / src.width,
        y2 * dst.height / src.height,
    )


def _round_by(value: float, factor: int) -> int:
    return round(value / factor) * factor


def _floor_by(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def _ceil_by(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def smart_resize(
    size: Size,
    *,
    factor: int = QWEN_VL_FACTOR,
    min_pixels: int = QWEN_VL_MIN_PIXELS,
    max_pixels: int = QWEN_VL_MAX_PIXELS,
) -> Size:
    """The size Qwen2.5-VL's processor resizes an image to: multiples of `factor`, pixels in [min, max].

    Same algorithm as `qwen_vl_utils.smart_resize`; the planner's boxes are in this space.
    """
    width, height = size.width, size.height
    if min(width, height) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > QWEN_VL_MAX_ASPECT:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds {QWEN_VL_MAX_ASPECT}")
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, _floor_by(height / beta, factor))
        w_bar = max(factor, _floor_by(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return Size(w_bar, h_bar)


def kontext_working_size(size: Size) -> Size:
    """The Kontext preferred bucket closest in aspect ratio (what `FluxKontextPipeline` snaps to)."""
    ratio = size.width / size.height
    _, width, height = min((abs(ratio - w / h), w, h) for w, h in KONTEXT_RESOLUTIONS)
    return Size(width, height)


def qwen_edit_working_size(size: Size, *, target_area: int = 1024 * 1024) -> Size:
    """About `target_area` pixels at the input's aspect, multiples of 32 (then of 16), as Qwen-Image-Edit."""
    ratio = size.width / size.height
    width = math.sqrt(target_area * ratio)
    height = width / ratio
    width32, height32 = round(width / 32) * 32, round(height / 32) * 32
    return Size(max(32, width32 // 16 * 16), max(32, height32 // 16 * 16))


def token_grid(working: Size, pixels_per_token: int = PIXELS_PER_TOKEN) -> Size:
    """Token grid (columns, rows) of a working resolution."""
    return Size(working.width // pixels_per_token, working.height // pixels_per_token)


def box_to_token_span(box: BBox, original: Size, working: Size, pixels_per_token: int = PIXELS_PER_TOKEN) -> TokenSpan:
    """Tokens covered by an original-pixel box: scale to working pixels, floor start, ceil end, clip."""
    grid = token_grid(working, pixels_per_token)
    x1, y1, x2, y2 = scale_box(box, original, working)
    col0 = min(max(math.floor(x1 / pixels_per_token), 0), grid.width)
    row0 = min(max(math.floor(y1 / pixels_per_token), 0), grid.height)
    col1 = min(max(math.ceil(x2 / pixels_per_token), 0), grid.width)
    row1 = min(max(math.ceil(y2 / pixels_per_token), 0), grid.height)
    return TokenSpan(row0, row1, col0, col1)
