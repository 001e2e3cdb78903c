"""Judge-free metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from replan_eval.image_metrics import PSNR_CAP_DB, box_union_mask, region_metrics, ssim_map


def flat(value: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def test_box_mask_covers_touched_pixels_and_clips() -> None:
    mask = box_union_mask([(1.5, 0.2, 3.1, 1.0), (8, 8, 20, 20)], width=10, height=10)
    assert mask[0:1, 1:4].all() and mask.sum() == 3 + 4  # cols 1..3 of row 0; rows/cols 8..9
    assert mask[8:, 8:].all()
    assert not box_union_mask([(5, 5, 5, 9)], 10, 10).any()  # zero-width box covers nothing


def test_identical_images() -> None:
    m = region_metrics(flat(90), flat(90), [(10, 10, 20, 20)])
    assert m.psnr_outside_db == PSNR_CAP_DB
    assert m.ssim_outside == pytest.approx(1.0)
    assert m.mean_abs_change_inside == 0.0
    assert m.outside_fraction == pytest.approx(1 - 100 / 1200)


def test_change_confined_to_the_box_leaves_outside_perfect() -> None:
    original = flat(100)
    edited = flat(100)
    edited.paste((140, 140, 140), (10, 10, 20, 20))
    m = region_metrics(original, edited, [(10, 10, 20, 20)])
    assert m.psnr_outside_db == PSNR_CAP_DB
    assert m.ssim_outside == pytest.approx(1.0)  # the grown exclusion keeps windows off the box
    assert m.mean_abs_change_inside == pytest.approx(40.0)


def test_uniform_offset_outside_matches_hand_psnr_and_flat_ssim() -> None:
    m = region_metrics(flat(100), flat(110), [(0, 0, 5, 5)])
    # every channel differs by 10: MSE = 100, PSNR = 10·log10(255² / 100) ≈ 28.1308 dB
    assert m.psnr_outside_db == pytest.approx(10 * math.log10(255**2 / 100))
    # flat images have zero variance and covariance, so SSIM = (2·μa·μb + C1) / (μa² + μb² + C1)
    c1 = (0.01 * 255) ** 2
    assert m.ssim_outside == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))
    assert m.mean_abs_change_inside == pytest.approx(10.0)


def test_no_boxes_means_the_whole_image_is_outside() -> None:
    m = region_metrics(flat(100), flat(110), [])
    assert m.mean_abs_change_inside is None
    assert m.outside_fraction == 1.0


def test_box_covering_everything_leaves_nothing_outside() -> None:
    m = region_metrics(flat(100), flat(0), [(0, 0, 40, 30)])
    assert (m.psnr_outside_db, m.ssim_outside, m.outside_fraction) == (None, None, 0.0)
    assert m.mean_abs_change_inside == pytest.approx(100.0)


def test_ssim_is_symmetric_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (32, 32))
    slightly = np.clip(a + rng.normal(0, 5, a.shape), 0, 255)
    heavily = np.clip(a + rng.normal(0, 60, a.shape), 0, 255)
    assert ssim_map(a, slightly) == pytest.approx(ssim_map(slightly, a))
    assert ssim_map(a, a) == pytest.approx(np.ones_like(a))
    assert 1.0 > ssim_map(a, slightly).mean() > ssim_map(a, heavily).mean()


def test_edited_image_of_another_size_is_resized_first() -> None:
    m = region_metrics(flat(100), flat(100, size=(80, 60)), [(0, 0, 4, 4)])
    assert m.resized
    assert m.psnr_outside_db == PSNR_CAP_DB
