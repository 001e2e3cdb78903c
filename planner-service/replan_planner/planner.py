"""The planning use case: image + instruction → `PlanResponse`, independent of HTTP.

Owns the order of the steps (decode and check the image, pick the model's view size, render the prompt,
call the backend, read the answer, map the boxes back to original pixels), their timings and metrics.
Routes and the CLI call `Planner.plan`; backends only generate text. Errors are raised, never returned.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from PIL import Image

from replan_common.errors import BadRequest, ReplanError
from replan_common.geometry import Size
from replan_common.images import decode_base64_image_data, decode_image
from replan_common.protocol import PlanOptions, PlanResponse, Usage
from replan_planner.backends.base import GenerationInput, PlannerBackend
from replan_planner.coordinates import map_to_original, model_view_size
from replan_planner.metrics import PlannerMetrics
from replan_planner.output import PlannerOutputInvalid, read_model_output
from replan_planner.prompts import load_template
from replan_planner.settings import BoxSpace, PlannerSettings

__all__ = ["PlanInput", "Planner"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanInput:
    """One plan request as received: the image as base64/data URI (JSON) or raw bytes (multipart upload)."""

    image: str | bytes
    instruction: str
    options: PlanOptions


class Planner:
    """Turns one `PlanInput` into a `PlanResponse` with boxes in original-image pixels."""

    def __init__(self, backend: PlannerBackend, *, settings: PlannerSettings, metrics: PlannerMetrics) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self._limits = settings.images.to_limits()

    async def plan(self, request: PlanInput) -> PlanResponse:
        started = time.perf_counter()
        mode = request.options.mode
        try:
            response = await self._plan(request, started)
        except ReplanError as exc:
            self.metrics.plan_latency.labels(self.backend.name, mode.value, exc.code).observe(_since(started))
            raise
        self.metrics.plan_latency.labels(self.backend.name, mode.value, "ok").observe(_since(started))
        return response

    async def _plan(self, request: PlanInput, started: float) -> PlanResponse:
        timings: dict[str, float] = {}
        # 1. Check inputs
        instruction = request.instruction.strip()
        if not instruction:
            raise BadRequest("instruction is empty; say what to edit", code="empty_instruction", param="instruction")
        image = self._decode(request.image)
        original = Size(image.width, image.height)
        view = model_view_size(original, min_pixels=self.settings.min_pixels, max_pixels=self.settings.max_pixels)
        timings["decode_ms"] = _ms(started)

        # 2. Prompt and generation
        mode = request.options.mode
        prompt = load_template(mode, self.settings.prompt_version).render(instruction)
        t0 = time.perf_counter()
        generation = await self.backend.generate(
            GenerationInput(
                image=image,
                view=view,
                prompt=prompt,
                mode=mode,
                max_new_tokens=request.options.max_new_tokens,
                temperature=request.options.temperature,
                seed=request.options.seed,
            )
        )
        self.metrics.generate_latency.labels(self.backend.name).observe(_since(t0))
        if generation.completion_tokens is not None:
            self.metrics.generated_tokens.labels(self.backend.name).observe(generation.completion_tokens)
        timings["generate_ms"] = _ms(t0)

        # 3. Read the answer and map the boxes to original pixels
        t0 = time.perf_counter()
        try:
            model_plan = read_model_output(generation.text, mode=mode, finish_reason=generation.finish_reason)
        except PlannerOutputInvalid as exc:
            self.metrics.output_invalid.labels(exc.parse_code).inc()
            raise
        box_space = self.settings.openai.box_space if self.backend.name == "openai" else BoxSpace.PIXELS
        plan, adjustments = map_to_original(
            model_plan,
            view=generation.view,
            original=original,
            box_space=box_space,
            max_overhang=self.settings.max_box_overhang,
        )
        for adjustment in adjustments:
            self.metrics.region_adjustments.labels(adjustment.action).inc()
        timings["parse_ms"] = _ms(t0)
        timings["total_ms"] = _ms(started)
        return PlanResponse(
            plan=plan,
            raw_text=generation.text,
            model=generation.model,
            adjustments=adjustments,
            timings_ms=timings,
            usage=_usage(generation.prompt_tokens, generation.completion_tokens),
        )

    def _decode(self, data: str | bytes) -> Image.Image:
        raw = data if isinstance(data, bytes) else decode_base64_image_data(data, limits=self._limits)
        if not raw:
            raise BadRequest("the image is empty; send a PNG, JPEG or WebP file", code="missing_image", param="image")
        return decode_image(raw, limits=self._limits)


def _usage(prompt_tokens: int | None, completion_tokens: int | None) -> Usage | None:
    if prompt_tokens is None and completion_tokens is None:
        return None
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
