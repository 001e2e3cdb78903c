"""Judge-free edit metrics: how much changed outside the plan's boxes, and how much inside.

* **PSNR outside** (dB): over every pixel and RGB channel outside the union of the boxes, peak 255.
  Identical pixels give infinity; we report `PSNR_CAP_DB` instead so the number stays finite in JSON.
* **SSIM outside**: SSIM (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03) on
  BT.601 luma, averaged over pixels whose whole window lies outside the boxes (the union grown by the
  window radius), so an edit inside a box cannot leak into the "outside" score through the window.
* **Mean absolute change inside** (0-255): mean |edited − original| over the pixels and channels inside
  the union; None when there are no boxes.

A box covers every pixel it touches (floor of the start, ceiling of the end), clipped to the image. An
edited image of another size is resized to the original's (bicubic) first, and the result says so.
Methods without a plan can be measured against another run's boxes (e.g. the RePlan run's), which is
the only fair way to compare "background preserved" across methods. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "PSNR_CAP_DB",
    "MetricsSummary",
    "RegionMetrics",
    "box_union_mask",
    "psnr",
    "region_metrics",
    "ssim_map",
    "summarize_region_metrics",
]

PSNR_CAP_DB = 100.0
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_PEAK = 255.0

Box = Sequence[float]
FloatImage = NDArray[np.float64]
BoolMask = NDArray[np.bool_]


@dataclass(frozen=True)
class RegionMetrics:
    psnr_outside_db: float | None
    ssim_outside: float | None
    mean_abs_change_inside: float | None
    outside_fraction: float
    resized: bool = False


def box_union_mask(boxes: Sequence[Box], width: int, height: int, *, grow_px: int = 0) -> BoolMask:
    """``[H, W]`` True inside any box (each grown by ``grow_px`` per side), clipped to the image."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x1, y1, x2, y2 = box
        c0 = max(0, math.floor(x1) - grow_px)
        r0 = max(0, math.floor(y1) - grow_px)
        c1 = min(width, math.ceil(x2) + grow_px)
        r1 = min(height, math.ceil(y2) + grow_px)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def psnr(original: FloatImage, edited: FloatImage, where: BoolMask) -> float | None:
    """PSNR in dB over the ``[H, W]`` pixels selected by ``where`` (all channels); None if none selected."""
    if not where.any():
        return None
    mse = float(np.mean((original[where] - edited[where]) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(_PEAK**2 / mse))


def _gaussian_kernel(sigma: float, radius: int) -> FloatImage:
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return np.asarray(kernel / kernel.sum(), dtype=np.float64)


def _blur(image: FloatImage, kernel: FloatImage) -> FloatImage:
    """Separable filtering of ``[H, W]`` with reflected borders; output has the input's shape."""
    radius = (len(kernel) - 1) // 2
    height, width = image.shape
    padded = np.pad(image, radius, mode="reflect" if min(height, width) > radius else "edge")
    rows = np.zeros((padded.shape[0], width), dtype=np.float64)
    for k, weight in enumerate(kernel):
        rows += weight * padded[:, k : k + width]
    out = np.zeros((height, width), dtype=np.float64)
    for k, weight in enumerate(kernel):
        out += weight * rows[k : k + height, :]
    return out


def ssim_map(a: FloatImage, b: FloatImage, *, sigma: float = _SSIM_SIGMA, radius: int = _SSIM_RADIUS) -> FloatImage:
    """Per-pixel SSIM of two ``[H, W]`` images on a 0-255 scale."""
    kernel = _gaussian_kernel(sigma, radius)
    c1, c2 = (_SSIM_K1 * _PEAK) ** 2, (_SSIM_K2 * _PEAK) ** 2
    mu_a, mu_b = _blur(a, kernel), _blur(b, kernel)
    var_a = _blur(a * a, kernel) - mu_a**2
    var_b = _blur(b * b, kernel) - mu_b**2
    cov = _blur(a * b, kernel) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _luma(rgb: FloatImage) -> FloatImage:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def region_metrics(original: Image.Image, edited: Image.Image, boxes: Sequence[Box]) -> RegionMetrics:
    """All three metrics for one sample; boxes in original-image pixels."""
    resized = edited.size != original.size
    if resized:
        edited = edited.resize(original.size, Image.Resampling.BICUBIC)
    a = np.asarray(original.convert("RGB"), dtype=np.float64)
    b = np.asarray(edited.convert("RGB"), dtype=np.float64)
    width, height = original.size
    inside = box_union_mask(boxes, width, height)
    outside = ~inside
    window_clear = ~box_union_mask(boxes, width, height, grow_px=_SSIM_RADIUS)
    ssim_value = float(ssim_map(_luma(a), _luma(b))[window_clear].mean()) if window_clear.any() else None
    change = float(np.abs(a[inside] - b[inside]).mean()) if inside.any() else None
    return RegionMetrics(
        psnr_outside_db=psnr(a, b, outside),
        ssim_outside=ssim_value,
        mean_abs_change_inside=change,
        outside_fraction=float(outside.mean()),
        resized=resized,
    )


@dataclass(frozen=True)
class MetricsSummary:
    """Means over the samples that have each metric (a sample without boxes has no inside change)."""

    psnr_outside_db: float | None
    ssim_outside: float | None
    mean_abs_change_inside: float | None
    psnr_count: int
    ssim_count: int
    inside_count: int


def summarize_region_metrics(metrics: Sequence[RegionMetrics]) -> MetricsSummary:
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    psnrs = [m.psnr_outside_db for m in metrics if m.psnr_outside_db is not None]
    ssims = [m.ssim_outside for m in metrics if m.ssim_outside is not None]
    inside = [m.mean_abs_change_inside for m in metrics if m.mean_abs_change_inside is not None]
    return MetricsSummary(mean(psnrs), mean(ssims), mean(inside), len(psnrs), len(ssims), len(inside))
