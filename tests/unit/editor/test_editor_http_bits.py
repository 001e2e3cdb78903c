"""Small pure pieces of the editor service: content negotiation, settings defaults, box drawing."""

from __future__ import annotations

import pytest
from PIL import Image

from replan_common.geometry import Size
from replan_common.plan import Region, RegionPlan
from replan_editor.deps import NotAcceptable, negotiate
from replan_editor.protocol import ResponseFormat
from replan_editor.settings import DType, EditorSettings, Preset
from replan_editor.visualize import BOX_COLORS, box_line_width, draw_plan


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ResponseFormat.JSON),
        ("", ResponseFormat.JSON),
        ("*/*", ResponseFormat.JSON),
        ("application/json", ResponseFormat.JSON),
        ("image/png", ResponseFormat.PNG),
        ("text/event-stream", ResponseFormat.EVENT_STREAM),
        ("image/png;q=0.5, text/event-stream", ResponseFormat.EVENT_STREAM),
        ("text/event-stream;q=0.1, image/*;q=0.9", ResponseFormat.PNG),
        ("image/webp, application/json;q=0.2", ResponseFormat.JSON),
    ],
)
def test_accept_header_picks_the_response_format(accept: str | None, expected: ResponseFormat) -> None:
    assert negotiate(accept) is expected


def test_unanswerable_accept_header_is_a_406() -> None:
    with pytest.raises(NotAcceptable) as caught:
        negotiate("image/jpeg")
    assert caught.value.status == 406 and caught.value.code == "not_acceptable"


def test_settings_defaults_follow_the_preset_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = EditorSettings(preset=Preset.TINY)
    assert (tiny.resolved_device, tiny.resolved_dtype) == ("cpu", DType.FLOAT32)
    assert tiny.resolved_model == "tiny-flux-kontext"
    real = EditorSettings()
    assert (real.port, real.resolved_device, real.resolved_dtype) == (8200, "cuda:0", DType.BFLOAT16)
    assert real.resolved_model == "black-forest-labs/FLUX.1-Kontext-dev"
    assert not real.warmup_enabled and EditorSettings(compile=True).warmup_enabled
    monkeypatch.setenv("REPLAN_EDITOR_DEVICE", "cuda:3")
    monkeypatch.setenv("REPLAN_EDITOR_MAX_QUEUE", "2")
    monkeypatch.setenv("REPLAN_EDITOR_IMAGES__MAX_PIXELS", "5000")
    monkeypatch.setenv("REPLAN_EDITOR_WARMUP_SIZES", '["1024x1024", "1184x880"]')
    from_env = EditorSettings()
    assert (from_env.resolved_device, from_env.max_queue, from_env.images.max_pixels) == ("cuda:3", 2, 5000)
    assert from_env.resolved_warmup_sizes == [(1024, 1024), (1184, 880)]
    assert tiny.resolved_warmup_sizes == [(64, 64)]


@pytest.mark.parametrize(("name", "value"), [("DEVICE", "gpu0"), ("WARMUP_SIZES", '["1024"]'), ("MAX_QUEUE", "-1")])
def test_bad_setting_fails_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"REPLAN_EDITOR_{name}", value)
    with pytest.raises(ValueError, match=name.lower()):
        EditorSettings()


def test_visualization_draws_each_box_in_its_colour() -> None:
    image = Image.new("RGB", (200, 120), (128, 128, 128))
    plan = RegionPlan(
        global_prompt="g",
        regions=(Region(bbox=(20, 30, 90, 100), hint="a red cup"), Region(bbox=(110, 10, 190, 60), hint="sky")),
    )
    drawn = draw_plan(image, plan, expand_value=0.1)
    assert drawn.size == image.size and image.getpixel((20, 60)) == (128, 128, 128)  # the input is untouched
    width = box_line_width(Size(200, 120))
    for index, region in enumerate(plan.regions):
        x1, y1, x2, y2 = (round(v) for v in region.bbox)
        mid_y = (y1 + y2) // 2
        for x in (x1, x1 + width - 1, x2 - 1):
            assert drawn.getpixel((x, mid_y)) == BOX_COLORS[index]
        assert drawn.getpixel(((x1 + x2) // 2, y2 - 1)) == BOX_COLORS[index]
    assert drawn.getpixel((100, 110)) == (128, 128, 128)  # outside every box
