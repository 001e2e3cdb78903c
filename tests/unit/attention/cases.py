"""Random but seeded layouts, rule sets and tensors for the attention tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from replan_common.geometry import Size, TokenSpan
from replan_editor.attention import (
    AttentionRules,
    TextLayout,
    TokenLayout,
    default_rules,
    locality_rules,
)

RULE_KINDS = ("default", "locality", "symmetric", "separate_boxes", "locality_symmetric", "user")


@dataclass(frozen=True)
class Case:
    """One kernel-equivalence case: a layout, its rules, and what they were drawn from."""

    layout: TokenLayout
    rules: AttentionRules
    description: str


def random_span(rng: random.Random, grid: Size) -> TokenSpan:
    """A box of at least one token; a third of them touch a grid edge."""
    row0 = rng.randrange(grid.height)
    col0 = rng.randrange(grid.width)
    row1 = rng.randint(row0 + 1, grid.height)
    col1 = rng.randint(col0 + 1, grid.width)
    if rng.random() < 0.33:
        edge = rng.randrange(4)
        row0, row1, col0, col1 = (
            (0, row1, col0, col1),
            (row0, grid.height, col0, col1),
            (row0, row1, 0, col1),
            (row0, row1, col0, grid.width),
        )[edge]
    return TokenSpan(row0, row1, col0, col1)


def random_layout(rng: random.Random, num_regions: int, *, qwen: bool = False) -> TokenLayout:
    grid = Size(rng.randint(1, 7), rng.randint(1, 6))
    main = rng.randint(0 if not qwen else 3, 6)
    image_prompt = (1, rng.randint(2, main)) if qwen else None
    hints = tuple(rng.randint(1, 4) for _ in range(num_regions))
    text = TextLayout(main, hints, image_prompt, hints_first=rng.random() < 0.5)
    return TokenLayout(text, grid, tuple(random_span(rng, grid) for _ in range(num_regions)))


def rules_of_kind(kind: str, layout: TokenLayout, rng: random.Random) -> AttentionRules:
    k, qwen = layout.num_regions, layout.has_image_prompt
    if kind == "default":
        return default_rules(k, has_image_prompt=qwen)
    if kind == "locality":
        return locality_rules(k, has_image_prompt=qwen)
    if kind == "symmetric":
        return default_rules(k, has_image_prompt=qwen, symmetric_masking=True)
    if kind == "separate_boxes":
        return default_rules(k, has_image_prompt=qwen, bboxes_attend_to_each_other=False)
    if kind == "locality_symmetric":
        return locality_rules(k, has_image_prompt=qwen, symmetric_masking=True, bboxes_attend_to_each_other=False)
    size = len(layout.groups)
    density = rng.choice((0.3, 0.6, 0.9))
    matrix = tuple(tuple(rng.random() < density for _ in range(size)) for _ in range(size))
    return AttentionRules(k, qwen, matrix)


def kernel_cases(count: int, seed: int) -> list[Case]:
    """`count` cases cycling through every rule kind, 1-16 regions, Flux and Qwen layouts."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        kind = RULE_KINDS[i % len(RULE_KINDS)]
        regions = rng.choice((1, 2, 3, 5, 8, 16)) if i % 5 else 16
        layout = random_layout(rng, regions, qwen=rng.random() < 0.3)
        cases.append(Case(layout, rules_of_kind(kind, layout, rng), f"{kind}-{regions}regions-case{i}"))
    return cases


def qkv(seq_len: int, *, seed: int, batch: int = 2, heads: int = 2, dim: int = 8) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, seq_len, dim, generator=generator) for _ in range(3))


def brute_force_mask(layout: TokenLayout, rules: AttentionRules) -> torch.Tensor:
    """The definition: allowed[q, k] = (memberᵀ · rules · member)[q, k] > 0, in plain dense algebra."""
    member = layout.membership().double()
    return (member.T @ rules.to_tensor().double() @ member) > 0
