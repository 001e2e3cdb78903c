"""Text conditioning of a FLUX.1 Kontext region edit: `[hint 1 | … | hint K | main prompt]` T5 embeddings.

The hints come first, the order of the region-attention plans (`RegionMask`): every Kontext text token has
position id 0, so the order changes nothing but lets the main prompt and the latents form one contiguous
block of the joint sequence, which the `fast` kernel attends without a mask.

The main prompt is encoded exactly as `FluxKontextPipeline.encode_prompt` does (T5 padded to 512 tokens), so
the main segment is the stock one. Each hint is encoded the same way on its own, then kept whole (`padded`:
512 tokens per hint, as the original) or cut to its real token count rounded up to a bucket (`trimmed`).
Trimming slices the 512-token encoding rather than re-encoding a shorter input: diffusers runs T5 without an
attention mask, so the pads take part in the encoding, and slicing keeps every kept token's embedding
identical to the padded one. The pooled CLIP vector comes from the global prompt only; every text position
id is 0 (the pipeline builds them from the embedding length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from replan_common.protocol import HintTokens

#: T5 length of the main prompt and of a padded hint (FluxKontextPipeline's `max_sequence_length`).
T5_MAX_TOKENS = 512
#: Trimmed hints are rounded up to a multiple of this, so few distinct sequence lengths occur. Short: a hint
#: is a few words (~5-15 T5 tokens), and with the `fast` kernel a token more costs as much as in plain
#: attention while an odd length costs nothing (its unmasked call covers `[main | latents]` whatever the hints).
HINT_TOKEN_BUCKET = 16


@dataclass(frozen=True)
class FluxText:
    """The joint text of one edit: embeddings `[1, Σ hints + main, D]` (hints first), the pooled vector and
    segment sizes."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    main_tokens: int
    hint_tokens: tuple[int, ...]


def trimmed_length(real_tokens: int, *, bucket: int = HINT_TOKEN_BUCKET, limit: int = T5_MAX_TOKENS) -> int:
    """A hint's trimmed segment length: its real token count rounded up to `bucket`, at most `limit`."""
    return min(limit, max(bucket, math.ceil(real_tokens / bucket) * bucket))


def hint_segment_length(pipe: Any, hint: str, mode: HintTokens, *, bucket: int = HINT_TOKEN_BUCKET) -> int:
    """Tokens the hint occupies in the joint sequence (`padded`: 512; `trimmed`: real count, bucketed)."""
    if mode is HintTokens.PADDED:
        return T5_MAX_TOKENS
    real = len(pipe.tokenizer_2(hint, truncation=True, max_length=T5_MAX_TOKENS).input_ids)  # includes </s>
    return trimmed_length(real, bucket=bucket)


def encode_flux_text(
    pipe: Any,
    global_prompt: str,
    hints: Sequence[str],
    *,
    mode: HintTokens,
    delete_main_prompt: bool = False,
    device: torch.device | str,
    bucket: int = HINT_TOKEN_BUCKET,
) -> FluxText:
    """Encode the global prompt and the hints with the pipeline's own encoders (see the module docstring)."""
    main, pooled, _ = pipe.encode_prompt(
        prompt=global_prompt, prompt_2=None, device=device, max_sequence_length=T5_MAX_TOKENS
    )
    segments = []
    lengths = [hint_segment_length(pipe, hint, mode, bucket=bucket) for hint in hints]
    if hints:
        # One batched T5 call for all hints (the pooled CLIP output of this call is not used).
        embeds, _, _ = pipe.encode_prompt(
            prompt=list(hints), prompt_2=None, device=device, max_sequence_length=T5_MAX_TOKENS
        )
        segments += [embeds[i : i + 1, :length] for i, length in enumerate(lengths)]
    if not delete_main_prompt:
        segments.append(main)
    return FluxText(
        prompt_embeds=torch.cat(segments, dim=1),
        pooled_prompt_embeds=pooled,
        main_tokens=0 if delete_main_prompt else main.shape[1],
        hint_tokens=tuple(lengths),
    )
