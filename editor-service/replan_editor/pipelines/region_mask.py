"""What the attention processors receive per call: the mask plan of the current rule phase and the kernel.

`RegionMask` travels to every attention layer as the `region_mask` entry of the pipeline's
`joint_attention_kwargs` / `attention_kwargs` dict. `RulePhases` holds the (at most two) mask plans of one
edit — custom rules for steps `[0, switch_at)`, default rules after — built once per edit through the
engine's plan cache, and the step callback swaps the dict entry at the switch. Processors stay stateless:
they read the plan from their arguments and never count calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replan_common.protocol import AttentionKernel
from replan_editor.attention.layout import TokenLayout
from replan_editor.attention.mask_plan import MaskPlan, MaskPlanCache
from replan_editor.attention.rules import RuleSchedule

#: The attention-kwargs key the processors declare and read.
REGION_MASK_KWARG = "region_mask"


@dataclass(frozen=True, eq=False)
class RegionMask:
    """The mask plan one denoising step uses in every layer, and the kernel that runs it.

    The plans put the hints before the main prompt (`[hints | main | latents]`), which lets the `fast`
    kernel run the main prompt and the latents as one contiguous block. Kontext builds its text stream in
    that order (every text token has position 0, so the order is free). Qwen-Image gives text tokens
    sequential RoPE positions, so its stream stays `[main | hints]` and `reorder_text` is set: the processor
    joins the text in plan order after RoPE (each token keeps its position) with `join`, and `split` puts the
    text output back in stream order.
    """

    plan: MaskPlan
    kernel: AttentionKernel
    reorder_text: bool = False

    def join(self, text: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The joint sequence `[B, S, ...]` in plan order from the text (in stream order) and the latents."""
        if not self.reorder_text:
            return torch.cat([text, latents], dim=1)
        main = self.plan.layout.text.main_tokens
        return torch.cat([text[:, main:], text[:, :main], latents], dim=1)

    def split(self, joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(text in stream order, latents)` of a joint output `[B, S, ...]` in plan order."""
        text = self.plan.layout.text
        if not self.reorder_text:
            return joint[:, : text.total], joint[:, text.total :]
        hints = text.total - text.main_tokens
        return torch.cat([joint[:, hints : text.total], joint[:, :hints]], dim=1), joint[:, text.total :]

    def applies_to(self, seq_len: int) -> bool:
        """Whether a joint sequence of `seq_len` tokens is the one the plan describes.

        A sequence of another length is a pass the plan was not built for (the true-CFG unconditional pass,
        whose text is the negative prompt); processors run it unmasked.
        """
        return seq_len == self.plan.seq_len


class RulePhases:
    """The region masks of one edit: custom rules before `schedule.switch_at`, default rules from there on."""

    def __init__(
        self,
        layout: TokenLayout,
        schedule: RuleSchedule,
        kernel: AttentionKernel,
        cache: MaskPlanCache,
        *,
        reorder_text: bool = False,
    ) -> None:
        self.layout = layout
        self.schedule = schedule
        self.default = RegionMask(cache.get(layout, schedule.default), kernel, reorder_text)
        self.custom = (
            RegionMask(cache.get(layout, schedule.custom), kernel, reorder_text) if schedule.switch_at > 0 else None
        )

    def for_step(self, step: int) -> RegionMask:
        """The mask of denoising step `step` (0-based)."""
        if self.custom is not None and step < self.schedule.switch_at:
            return self.custom
        return self.default
