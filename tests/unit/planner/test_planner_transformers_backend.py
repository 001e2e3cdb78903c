"""The in-process transformers backend with the tiny random-weight Qwen2.5-VL: grammar-constrained answers
parse for any seed and temperature, the processor's view matches `smart_resize`, and loading states map
to 503s instead of crashes. Also `replan plan --preset tiny` in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from replan_common.errors import ServiceUnavailable
from replan_common.geometry import Size
from replan_common.protocol import PlanMode
from replan_planner.backends.base import GenerationInput
from replan_planner.backends.transformers import TransformersBackend
from replan_planner.coordinates import model_view_size
from replan_planner.output import read_model_output
from replan_planner.prompts import load_template
from replan_planner.settings import PlannerSettings


def backend_for(settings: PlannerSettings) -> TransformersBackend:
    return TransformersBackend(
        settings.transformers,
        model=settings.model,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        grammar=settings.grammar.to_limits(),
    )


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[TransformersBackend, PlannerSettings, asyncio.AbstractEventLoop]]:
    settings = PlannerSettings(preset="tiny")
    backend = backend_for(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(backend.wait_until_loaded())
    yield backend, settings, loop
    loop.run_until_complete(backend.aclose())
    loop.close()


def generate(
    tiny: tuple[TransformersBackend, PlannerSettings, asyncio.AbstractEventLoop],
    size: tuple[int, int],
    mode: PlanMode = PlanMode.REGIONS,
    **kwargs: object,
) -> tuple[str, Size, Size]:
    backend, settings, loop = tiny
    view = model_view_size(Size(*size), min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    request = GenerationInput(
        image=Image.new("RGB", size, (90, 60, 30)),
        view=view,
        prompt=load_template(mode, "v1").render("replace the cup with a plant"),
        mode=mode,
        max_new_tokens=1024,
        **kwargs,  # type: ignore[arg-type]
    )
    answer = loop.run_until_complete(backend.generate(request))
    assert answer.finish_reason == "stop" and answer.completion_tokens
    return answer.text, answer.view, view


@pytest.mark.parametrize("size", [(1600, 1200), (56, 700)])
def test_processor_view_matches_smart_resize(tiny: tuple, size: tuple[int, int]) -> None:  # type: ignore[type-arg]
    _, seen, expected = generate(tiny, size)
    assert seen == expected


@pytest.mark.parametrize(("temperature", "seed"), [(None, None), (1.0, 1), (1.5, 3)])
def test_random_weights_still_give_a_parseable_plan(tiny: tuple, temperature: float | None, seed: int | None) -> None:  # type: ignore[type-arg]
    text, _, _ = generate(tiny, (320, 240), temperature=temperature, seed=seed)
    read = read_model_output(text, mode=PlanMode.REGIONS)
    assert 1 <= len(read.plan.regions) + len(read.adjustments) <= 2  # the tiny grammar asks for 1 or 2 regions


def test_rephrase_answer_has_no_region(tiny: tuple) -> None:  # type: ignore[type-arg]
    text, _, _ = generate(tiny, (320, 240), mode=PlanMode.REPHRASE)
    assert "<region>" not in text
    assert read_model_output(text, mode=PlanMode.REPHRASE).plan.global_prompt


def test_same_seed_same_answer(tiny: tuple) -> None:  # type: ignore[type-arg]
    a, _, _ = generate(tiny, (320, 240), temperature=1.0, seed=11)
    b, _, _ = generate(tiny, (320, 240), temperature=1.0, seed=11)
    assert a == b


def test_loading_and_failed_states_answer_503(tmp_path: Path) -> None:
    settings = PlannerSettings(
        backend="transformers", model=str(tmp_path / "missing"), transformers={"local_files_only": True}
    )
    backend = backend_for(settings)
    request = GenerationInput(
        image=Image.new("RGB", (64, 64)), view=Size(56, 56), prompt="p", mode=PlanMode.REGIONS, max_new_tokens=8
    )

    async def scenario() -> None:
        with pytest.raises(ServiceUnavailable) as loading:
            await backend.generate(request)  # not started: still "loading"
        assert loading.value.code == "planner_loading" and loading.value.retry_after_s
        with pytest.raises(OSError):
            await backend.wait_until_loaded()
        state = await backend.state()
        assert (state.ready, state.status) == (False, "failed") and "missing" in (state.detail or "")
        with pytest.raises(ServiceUnavailable) as failed:
            await backend.generate(request)
        assert failed.value.code == "planner_load_failed"
        await backend.aclose()

    asyncio.run(scenario())


def test_cli_plan_in_process_with_the_tiny_preset(tmp_path: Path) -> None:
    from replan_common.cli.main import app

    image = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(image)
    result = CliRunner().invoke(
        app, ["plan", "--image", str(image), "--instruction", "make it red", "--preset", "tiny"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["model"] == "tiny-qwen2.5-vl-random" and "plan" in body


def test_cli_plan_reports_a_refused_request_with_exit_2(tmp_path: Path) -> None:
    from replan_common.cli.main import app

    image = tmp_path / "not-an-image.png"
    image.write_bytes(b"definitely not a png")
    result = CliRunner().invoke(app, ["plan", "--image", str(image), "--instruction", "x", "--preset", "tiny"])
    assert result.exit_code == 2
    assert "error: invalid_image:" in result.output
