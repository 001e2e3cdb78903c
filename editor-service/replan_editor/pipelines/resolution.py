"""Working resolution of an edit: the size each backbone denoises at, for an input size and a pixel budget.

Kontext snaps to the preferred bucket closest in aspect ratio (as `FluxKontextPipeline` does), scaled to the
`max_area` budget; Qwen-Image-Edit takes about `max_area` pixels at the input's aspect, multiples of 32 then 16.
Both give multiples of 16 (one latent token per 16×16 pixels), which the token layout relies on. The bucket
table and the Qwen rule live in `replan_common.geometry`; this module only scales the Kontext bucket.
"""

from __future__ import annotations

import math

from replan_common.geometry import PIXELS_PER_TOKEN, Size, kontext_working_size, qwen_edit_working_size
from replan_common.protocol import Backbone

_BUCKET_AREA = 1024 * 1024


def kontext_size_for_area(size: Size, max_area: int) -> Size:
    """The Kontext bucket for `size`'s aspect ratio, scaled to about `max_area` pixels, multiples of 16."""
    bucket = kontext_working_size(size)
    if max_area == _BUCKET_AREA:
        return bucket
    scale = math.sqrt(max_area / bucket.area)
    step = PIXELS_PER_TOKEN
    return Size(
        max(step, round(bucket.width * scale / step) * step),
        max(step, round(bucket.height * scale / step) * step),
    )


def working_size(backbone: Backbone, size: Size, max_area: int) -> Size:
    """The resolution `backbone` edits an image of `size` at, for a `max_area` pixel budget."""
    if backbone is Backbone.FLUX_KONTEXT:
        return kontext_size_for_area(size, max_area)
    return qwen_edit_working_size(size, target_area=max_area)
