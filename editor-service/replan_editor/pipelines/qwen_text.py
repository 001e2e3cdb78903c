"""Text conditioning of a Qwen-Image-Edit region edit: main prompt (with its image span) and hints.

Every prompt — the global one and each hint — goes through the pipeline's own edit template with the
(resized) input image in context, exactly as `QwenImageEditPipeline` encodes its prompt: Qwen2.5-VL's last
hidden states, minus the first `prompt_template_encode_start_idx` template tokens. In the main prompt the
vision-token span (vision start … vision end) is the `Image Prompt` group; from each hint that span is cut
out, leaving image-contextualised hint tokens (unpadded). All K+1 prompts run as one padded batch through
the text encoder (the original runs it K+1 times). With `delete_main_prompt` the global prompt's text tokens
are dropped and only its image span is kept: Qwen-Image-Edit needs the image in the text stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class QwenText:
    """The joint text of one edit: embeddings `[1, main + Σ hints, D]` and the segment sizes."""

    prompt_embeds: torch.Tensor
    main_tokens: int
    image_prompt: tuple[int, int]
    hint_tokens: tuple[int, ...]


def _vision_span(ids: torch.Tensor, start_id: int, end_id: int) -> tuple[int, int]:
    starts = (ids == start_id).nonzero().flatten()
    ends = (ids == end_id).nonzero().flatten()
    if len(starts) != 1 or len(ends) != 1 or int(ends[0]) < int(starts[0]):
        raise ValueError("the edit template must hold exactly one image (one vision start and end token)")
    return int(starts[0]), int(ends[0]) + 1


def template_tokens(pipe: Any, prompt: str, prompt_image: Image.Image) -> int:
    """Length of `prompt`'s encoding as the pipeline would compute it (tokenizer only, no encoder run)."""
    inputs = pipe.processor(text=[pipe.prompt_template_encode.format(prompt)], images=[prompt_image])
    return len(inputs["input_ids"][0]) - pipe.prompt_template_encode_start_idx


def encode_qwen_text(
    pipe: Any,
    prompt_image: Image.Image,
    global_prompt: str,
    hints: Sequence[str],
    *,
    delete_main_prompt: bool = False,
    device: torch.device | str,
) -> QwenText:
    """Encode the global prompt and the hints with the image in context (see the module docstring)."""
    prompts = [global_prompt, *hints]
    texts = [pipe.prompt_template_encode.format(p) for p in prompts]
    inputs = pipe.processor(text=texts, images=[prompt_image] * len(texts), padding=True, return_tensors="pt").to(
        device
    )
    with torch.no_grad():
        outputs = pipe.text_encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            output_hidden_states=True,
        )
    hidden = outputs.hidden_states[-1]
    drop = pipe.prompt_template_encode_start_idx
    start_id = pipe.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    end_id = pipe.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    mask = inputs["attention_mask"].bool()

    segments: list[torch.Tensor] = []
    image_prompt = (0, 0)
    main_tokens = 0
    hint_tokens: list[int] = []
    for row in range(len(prompts)):
        ids = inputs["input_ids"][row][mask[row]][drop:]
        states = hidden[row][mask[row]][drop:]
        start, stop = _vision_span(ids.cpu(), start_id, end_id)
        if row == 0:
            if delete_main_prompt:
                states, start, stop = states[start:stop], 0, stop - start
            segments.append(states)
            image_prompt, main_tokens = (start, stop), states.shape[0]
        else:
            kept = torch.cat([states[:start], states[stop:]])
            segments.append(kept)
            hint_tokens.append(kept.shape[0])
    dtype = pipe.text_encoder.dtype
    return QwenText(
        prompt_embeds=torch.cat(segments).unsqueeze(0).to(dtype=dtype, device=device),
        main_tokens=main_tokens,
        image_prompt=image_prompt,
        hint_tokens=tuple(hint_tokens),
    )
