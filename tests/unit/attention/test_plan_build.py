"""The plan build's vectorised parts (row classes, greedy class rectangles, membership) against plain reference
implementations of the same definitions: the straightforward loops the NumPy code replaced, compared for equal
outputs, tie-breaking included."""

from __future__ import annotations

import random
from itertools import combinations

import pytest
import torch

from replan_common.geometry import Size, TokenSpan
from replan_editor.attention import Group, GroupKind, MaskPlan, TextLayout, TokenLayout
from replan_editor.attention.layout import row_classes
from replan_editor.attention.rectangles import class_rectangles

from .cases import kernel_cases, random_layout


def reference_row_classes(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows read 52 columns at a time as exact float64 integers, ranked chunk after chunk."""
    size, width = rows.shape
    ids = torch.zeros(size, dtype=torch.int64)
    for start in range(0, width, 52):
        block = rows[:, start : start + 52].double()
        weights = torch.pow(2.0, torch.arange(block.shape[1], dtype=torch.float64))
        _, word = torch.unique(block @ weights, return_inverse=True)
        _, ids = torch.unique(ids * (int(word.max()) + 1) + word, return_inverse=True)
    count = int(ids.max()) + 1 if size else 0
    representative = torch.full((count,), size, dtype=torch.int64)
    representative.scatter_reduce_(0, ids, torch.arange(size), reduce="amin")
    return ids, representative


def reference_rectangles(
    allowed: torch.Tensor, q_sizes: list[int], k_sizes: list[int], *, limit: int | None, merge_row: float
) -> list[tuple[int, int]]:
    """The greedy rectangle search as a plain loop over candidate key sets (sorted) and classes, on int bitsets."""

    def members(bits: int) -> list[int]:
        return [i for i in range(bits.bit_length()) if bits >> i & 1]

    def key_weight(bits: int) -> int:
        return sum(k_sizes[i] for i in members(bits))

    empty_keys = sum(1 << b for b, size in enumerate(k_sizes) if not size)
    residual = [
        sum(1 << b for b in torch.nonzero(row).flatten().tolist()) & ~empty_keys if q_sizes[a] else 0
        for a, row in enumerate(allowed)
    ]
    rectangles: list[tuple[int, int]] = []
    while any(residual):
        active = [a for a, bits in enumerate(residual) if bits]
        candidates = {residual[a] for a in active}
        largest = sorted(active, key=lambda a: -q_sizes[a] * key_weight(residual[a]))[:12]
        candidates |= {residual[a] & residual[b] for a, b in combinations(largest, 2) if residual[a] & residual[b]}
        best: tuple[float, int, int] | None = None
        for keys in sorted(candidates):
            rows = [a for a in active if residual[a] & keys == keys]
            weight = sum(q_sizes[a] for a in rows)
            unfinished = sum(q_sizes[a] for a in rows if residual[a] != keys)
            score = weight * key_weight(keys) - merge_row * unfinished
            if best is None or score > best[0]:
                best = (score, keys, sum(1 << a for a in rows))
        assert best is not None
        _, keys, row_bits = best
        for a in members(row_bits):
            residual[a] &= ~keys
        rectangles.append((row_bits, keys))
        if limit is not None and len(rectangles) >= limit:
            break
    return rectangles


@pytest.mark.parametrize("width", [0, 1, 5, 52, 53, 110])
@pytest.mark.parametrize("size", [0, 1, 9, 300])
def test_row_classes_number_classes_as_the_chunked_integer_order(width: int, size: int) -> None:
    generator = torch.Generator().manual_seed(width * 1000 + size)
    base = torch.rand(max(1, size // 3), width, generator=generator) < 0.4  # repeated rows: real classes
    rows = base[torch.randint(0, base.shape[0], (size,), generator=generator)]
    ids, representative = row_classes(rows)
    if size == 0:  # (the reference cannot take an empty matrix)
        assert ids.numel() == 0 and representative.numel() == 0
        return
    expected_ids, expected_representative = reference_row_classes(rows)
    assert torch.equal(ids, expected_ids)
    assert torch.equal(representative, expected_representative)


@pytest.mark.parametrize("seed", range(40))
def test_class_rectangles_match_the_reference_greedy_search(seed: int) -> None:
    rng = random.Random(seed)
    num_q, num_k = rng.randint(1, 30), rng.randint(1, 20)
    density = rng.choice((0.2, 0.5, 0.9))
    allowed = torch.tensor([[rng.random() < density for _ in range(num_k)] for _ in range(num_q)])
    tied = seed % 3 == 0  # equal sizes: many tied scores, decided by the candidates' order
    q_sizes = [1 if tied else rng.choice((0, 1, 3, 64, 500)) for _ in range(num_q)]
    k_sizes = [1 if tied else rng.choice((0, 1, 7, 64, 4096)) for _ in range(num_k)]
    merge_row = rng.choice((0.0, 1.0, 60.0, 2000.0))
    limit = rng.choice((None, None, 1, 3))
    got = class_rectangles(allowed, q_sizes, k_sizes, limit=limit, merge_row=merge_row)
    assert got == reference_rectangles(allowed, q_sizes, k_sizes, limit=limit, merge_row=merge_row)


@pytest.mark.parametrize("case", kernel_cases(9, seed=7), ids=lambda c: c.description)
def test_rectangles_partition_the_allowed_class_cells_exactly(case: object) -> None:
    plan = MaskPlan(case.layout, case.rules)  # type: ignore[attr-defined]
    covered = torch.zeros_like(plan.class_allowed, dtype=torch.int64)
    rectangles = class_rectangles(plan.class_allowed, plan.query_class_sizes.tolist(), plan.key_class_sizes.tolist())
    for rows, keys in rectangles:
        for a in range(plan.num_query_classes):
            for b in range(plan.num_key_classes):
                if rows >> a & 1 and keys >> b & 1:
                    covered[a, b] += 1
    assert torch.equal(covered, plan.class_allowed.long())


def reference_membership(layout: TokenLayout) -> torch.Tensor:
    """`[G, S]` straight from the layout's definition, token by token."""
    groups = layout.groups
    member = torch.zeros(len(groups), layout.seq_len, dtype=torch.bool)
    index = {g: i for i, g in enumerate(groups)}
    text = layout.text
    main = range(text.main_offset, text.main_offset + text.main_tokens)
    member[index[Group(GroupKind.MAIN)], list(main)] = True
    if text.image_prompt is not None:
        start, stop = (text.main_offset + p for p in text.image_prompt)
        member[index[Group(GroupKind.MAIN)], start:stop] = False
        member[index[Group(GroupKind.IMAGE_PROMPT)], start:stop] = True
    for region in range(1, layout.num_regions + 1):
        member[index[Group(GroupKind.HINT, region)], list(text.hint_range(region))] = True
    in_box = torch.zeros(layout.grid_tokens, dtype=torch.bool)
    for region, span in enumerate(layout.spans, start=1):
        cells = span.token_indices(layout.grid.width)
        in_box[cells] = True
        member[index[Group(GroupKind.NOISE_BOX, region)], [layout.noise_offset + c for c in cells]] = True
        member[index[Group(GroupKind.IMAGE_BOX, region)], [layout.image_offset + c for c in cells]] = True
    background = torch.nonzero(~in_box).flatten()
    member[index[Group(GroupKind.NOISE_BACKGROUND)], layout.noise_offset + background] = True
    member[index[Group(GroupKind.IMAGE_BACKGROUND)], layout.image_offset + background] = True
    return member


@pytest.mark.parametrize("seed", range(30))
def test_membership_matches_the_layout_definition(seed: int) -> None:
    rng = random.Random(seed)
    layout = random_layout(rng, rng.choice((0, 1, 2, 5, 16, 18)), qwen=seed % 3 == 0)
    assert torch.equal(layout.membership(), reference_membership(layout))


def test_membership_of_a_kontext_layout_with_many_overlapping_boxes() -> None:
    spans = tuple(TokenSpan(i, i + 20, 2 * i, 2 * i + 25) for i in range(17))
    layout = TokenLayout(TextLayout(512, (64,) * 17, hints_first=True), Size(64, 64), spans)
    assert torch.equal(layout.membership(), reference_membership(layout))
