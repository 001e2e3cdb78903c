"""What the attention processors receive per call: the mask plan of the current rule phase and the kernel.

`RegionMask` travels to every attention layer as the `region_mask` entry of the pipeline's
`joint_attention_kwargs` / `attention_kwargs` dict. `RulePhases` holds the (at most two) mask plans of one
edit — custom rules for steps `[0, switch_at)`, default rules after — built once per edit through the
engine's plan cache, and the step callback swaps the dict entry at the switch. Processors stay stateless:
they read the plan from their arguments and never count calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    The plans order the joint sequence `[hints | main | latents]`, and a Qwen main prompt's vision span (the
    `Image Prompt` group, which every token may see) last in the main prompt: then the main prompt and the
    latents form one contiguous block, and so do the image prompt and the latents that the hints see, which
    the `fast` kernel attends without masks or gathers. Kontext builds its text stream in that order (every
    text token has position 0, so the order is free). Qwen-Image gives text tokens sequential RoPE
    positions, so its stream keeps the encoder's order and `text_order` is set: the processor joins the text
    in plan order after RoPE (each token keeps its position) with `join`, and `split` puts the text output
    back in stream order.

    Attributes:
        text_order: for each text position of the plan, the stream position of its token (a permutation on
            the processors' device); None when the stream is in plan order.
    """

    plan: MaskPlan
    kernel: AttentionKernel
    text_order: torch.Tensor | None = None
    _stream_order: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.text_order is not None:
            if self.text_order.numel() != self.plan.layout.text.total:
                raise ValueError(f"text_order has {self.text_order.numel()} entries for {self.plan.layout.text.total}")
            object.__setattr__(self, "_stream_order", torch.argsort(self.text_order))

    def applies_to(self, seq_len: int) -> bool:
        """Whether a joint sequence of `seq_len` tokens is the one the plan describes.

        A sequence of another length is a pass the plan was not built for (the true-CFG unconditional pass,
        whose text is the negative prompt); processors run it unmasked.
        """
        return seq_len == self.plan.seq_len

    def join(self, text: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The joint sequence `[B, S, ...]` in plan order from the text (in stream order) and the latents."""
        if self.text_order is not None:
            text = text.index_select(1, self.text_order)
        return torch.cat([text, latents], dim=1)

    def split(self, joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(text in stream order, latents)` of a joint output `[B, S, ...]` in plan order."""
        total = self.plan.layout.text.total
        text = joint[:, :total]
        if self._stream_order is not None:
            text = text.index_select(1, self._stream_order)
        return text, joint[:, total:]


def plan_text_order(
    main_tokens: int, hint_tokens: tuple[int, ...], image_prompt: tuple[int, int]
) -> tuple[list[int], tuple[int, int]]:
    """For a stream `[main | hints]` whose main prompt holds the vision span `image_prompt`: the stream
    position of each plan position (`[hints | main text | vision span]`) and the span's place in the plan's
    main prompt."""
    start, stop = image_prompt
    hints = list(range(main_tokens, main_tokens + sum(hint_tokens)))
    order = hints + list(range(start)) + list(range(stop, main_tokens)) + list(range(start, stop))
    return order, (main_tokens - (stop - start), main_tokens)


class RulePhases:
    """The region masks of one edit: custom rules before `schedule.switch_at`, default rules from there on."""

    def __init__(
        self,
        layout: TokenLayout,
        schedule: RuleSchedule,
        kernel: AttentionKernel,
        cache: MaskPlanCache,
        *,
        text_order: torch.Tensor | None = None,
    ) -> None:
        self.layout = layout
        self.schedule = schedule
        self.default = RegionMask(cache.get(layout, schedule.default), kernel, text_order)
        self.custom = (
            RegionMask(cache.get(layout, schedule.custom), kernel, text_order) if schedule.switch_at > 0 else None
        )

    def for_step(self, step: int) -> RegionMask:
        """The mask of denoising step `step` (0-based)."""
        if self.custom is not None and step < self.schedule.switch_at:
            return self.custom
        return self.default
