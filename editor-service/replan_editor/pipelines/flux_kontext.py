"""The FLUX.1 Kontext adapter: a region edit through a stock `FluxKontextPipeline`.

The joint sequence diffusers 0.42 builds is `[text | noise latents | image latents]` (the transformer joins
text before `hidden_states`, and the pipeline passes `cat([latents, image_latents])`), the layout the engine
assumes. The input image is resized to the working size here and passed with `_auto_resize=False`, so the
pipeline neither snaps it to a 1024² bucket nor changes the target size. A plan with regions passes the
joint text through `prompt_embeds` / `pooled_prompt_embeds` and the region mask through
`joint_attention_kwargs`; an empty plan is the plain pipeline call.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from replan_common.errors import Unprocessable
from replan_common.protocol import Backbone
from replan_editor.pipelines.adapter import BackboneAdapter, PreparedEdit, timed
from replan_editor.pipelines.flux_processor import FluxRegionAttnProcessor
from replan_editor.pipelines.flux_text import T5_MAX_TOKENS, encode_flux_text
from replan_editor.pipelines.steps import StepCallback, StopCheck


class FluxKontextAdapter(BackboneAdapter):
    backbone = Backbone.FLUX_KONTEXT
    has_image_prompt = False

    def make_processor(self) -> FluxRegionAttnProcessor:
        return FluxRegionAttnProcessor()

    def run(
        self,
        edit: PreparedEdit,
        *,
        on_step: StepCallback | None,
        should_stop: StopCheck | None,
        timings: dict[str, float],
    ) -> Image.Image:
        pipe, settings, working = self.pipe, edit.settings, edit.working
        image = pipe.image_processor.resize(edit.image, working.height, working.width)
        call: dict[str, Any] = {
            "image": image,
            "height": working.height,
            "width": working.width,
            "max_area": working.area,
            "_auto_resize": False,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "generator": self.generator(settings.seed),
            "output_type": "pil",
        }
        true_cfg = (settings.true_cfg_scale or 1.0) > 1.0
        if true_cfg:
            call["true_cfg_scale"] = settings.true_cfg_scale
            call["negative_prompt"] = settings.negative_prompt or ""

        phases = None
        if edit.plan.is_empty:
            call["prompt"] = edit.plan.global_prompt
        else:
            with timed(timings, "encode_ms"):
                text = encode_flux_text(
                    pipe,
                    edit.plan.global_prompt,
                    [r.hint for r in edit.plan.regions],
                    mode=settings.hint_tokens,
                    delete_main_prompt=settings.delete_main_prompt,
                    device=self.device,
                )
            if true_cfg and text.prompt_embeds.shape[1] == T5_MAX_TOKENS:
                raise Unprocessable(
                    "true CFG needs the conditional text to differ in length from the 512-token negative prompt; "
                    "with delete_main_prompt and one padded hint they coincide: use hint_tokens=trimmed",
                    code="unsupported_settings",
                    param="settings.true_cfg_scale",
                )
            with timed(timings, "mask_plan_ms"):
                _, phases = self.region_setup(edit, main_tokens=text.main_tokens, hint_tokens=text.hint_tokens)
            call["prompt_embeds"] = text.prompt_embeds
            call["pooled_prompt_embeds"] = text.pooled_prompt_embeds

        hook, attention_kwargs = self.step_hook(edit, phases, on_step, should_stop)
        if attention_kwargs is not None:
            call["joint_attention_kwargs"] = attention_kwargs
        hook.check_stop(0)
        with timed(timings, "denoise_ms"):
            return pipe(callback_on_step_end=hook, **call).images[0]
