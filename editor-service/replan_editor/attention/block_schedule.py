"""The `fast` kernel's schedule: a mask plan cut into a few attention calls, and how to stitch them back.

Region masks are almost dense (94-98 % allowed at Kontext shapes), so skipping masked blocks gains little
and evaluating a mask at all is what costs. So the bulk of the work runs as one *unmasked* call, and only
the small remainder carries a mask:

1. **Classes.** Work on the `[nQ, nK]` class matrix of the mask plan (tokens with equal rules), so the
   search is over tens of classes, not thousands of tokens, and is correct for any rule matrix and layout.
2. **Bulk.** Take the fully-allowed rectangle (a set of key classes × every query class that may see all of
   them) of largest area. Its keys become a contiguous view when they are one run in sequence order; else
   a view over their hull with a broadcast key mask (when the backend takes one cheaply), a few views, or
   a gather, whichever the cost model says is cheapest. Its queries become a view over their hull (extra
   rows computed and thrown away), extended to the whole sequence when that beats copying rows.
3. **Residual.** What the bulk leaves (hint rows; box rows' hint keys; under other rules, more) is grouped
   into two calls: rows inside the bulk, whose partial results get merged, and rows outside it. Each call
   takes exactly the residual keys of its rows with a small explicit mask `[rows, keys]`. A residual whose
   mask would be too large is cut into fully-allowed rectangles instead (greedy by area, exact).
4. **Assembly.** The bulk's output is the buffer; every other block, in order, copies in the rows not
   written yet and merges the rows already written (log-sum-exp with a running total, exact); rows no
   block covers (no allowed key) are zeroed.

With the default rules this is three calls whatever the number of regions (the bulk: main prompt and
latents against main prompt and latents, no mask; the hint rows against their hint and the latents; the
box rows against their hints) as long as the residual masks stay under `max_mask`; larger residuals
(padded hints, many regions) become unmasked per-hint rectangles. Measured on an H200 (bf16, 24 heads of
128, Kontext 1024²), the default rules cost 1.04-1.06× unmasked SDPA at K = 1, 1.16-1.19× at K = 2 and
about 1.45× at K = 16 with trimmed hints; see `bench/attention.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import torch

from replan_editor.attention.mask_plan import MaskPlan


@dataclass(frozen=True)
class CostModel:
    """Relative costs in units of one (query, key) pair of unmasked attention over all heads.

    Attributes:
        call: fixed cost of one kernel launch.
        row_copy: copying one token row (all heads) of one tensor.
        merge_row: merging one partial result into one output row.
        masked_pair: one pair of a call with an explicit mask (mask reads make these dearer).
        key_mask: the backend takes a broadcast key mask on a big call at (nearly) unmasked speed.
        max_mask: largest explicit mask (rows × keys) before a residual is cut into unmasked rectangles.
    """

    call: float
    row_copy: float
    merge_row: float
    masked_pair: float = 2.0
    key_mask: bool = False
    max_mask: int = 1 << 26


#: Hopper GPU, measured on an H200 at Kontext shapes (24 heads, dim 128, bf16): one pair ≈ 0.02 ns; a cuDNN
#: call costs ≈ 50 µs of host time (≈ 2.5M pairs) and host time is what limits small calls; a masked pair
#: ≈ 1.7 unmasked ones; merging one row ≈ 2000 pairs. (Capping masks at 8M elements, so that K = 16 hints
#: fell back to ~35 unmasked calls, was slower: 2.25× SDPA against 1.44×.)
GPU_COSTS = CostModel(call=2_500_000.0, row_copy=200.0, merge_row=2_000.0, masked_pair=1.7, max_mask=1 << 26)
#: CPU: compute is slow relative to memory and launches.
CPU_COSTS = CostModel(call=5_000.0, row_copy=20.0, merge_row=60.0, masked_pair=1.2, key_mask=True)


@dataclass(frozen=True)
class TokenSet:
    """Tokens of one block side: a contiguous view `[start, stop)` or gathered `index` (sorted, 1-D)."""

    start: int = 0
    stop: int = 0
    index: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.index.numel()) if self.index is not None else self.stop - self.start

    def tokens(self) -> torch.Tensor:
        return self.index if self.index is not None else torch.arange(self.start, self.stop)

    def to(self, device: torch.device) -> TokenSet:
        return self if self.index is None else replace(self, index=self.index.to(device))


@dataclass(frozen=True)
class Block:
    """One attention call `queries × keys`, of whose rows `valid_pos` (global `valid_rows`) count.

    `mask` is None (every pair allowed), `[1, keys]` (a key mask shared by all rows) or `[queries, keys]`,
    True where allowed.
    """

    queries: TokenSet
    keys: TokenSet
    valid_rows: torch.Tensor
    valid_pos: torch.Tensor
    mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Block:
        return Block(
            self.queries.to(device),
            self.keys.to(device),
            self.valid_rows.to(device),
            self.valid_pos.to(device),
            None if self.mask is None else self.mask.to(device),
        )


@dataclass(frozen=True)
class Placement:
    """How block `block`'s output enters the result: rows seen first are copied, rows already written merged."""

    block: int
    copy_src: torch.Tensor
    copy_dst: torch.Tensor
    merge_src: torch.Tensor
    merge_dst: torch.Tensor

    def to(self, device: torch.device) -> Placement:
        return Placement(
            self.block,
            self.copy_src.to(device),
            self.copy_dst.to(device),
            self.merge_src.to(device),
            self.merge_dst.to(device),
        )


@dataclass(frozen=True)
class BlockSchedule:
    """Blocks, the base block whose output is the buffer (or None), placements of the others in order, and
    the rows no block covers (zeroed)."""

    seq_len: int
    blocks: tuple[Block, ...]
    base: int | None
    placements: tuple[Placement, ...]
    zero_rows: torch.Tensor

    def to(self, device: torch.device) -> BlockSchedule:
        """The same schedule on `device`, moved in one host-to-device copy per dtype (not one per tensor)."""
        tensors: list[torch.Tensor | None] = []
        for b in self.blocks:
            tensors += [b.queries.index, b.keys.index, b.valid_rows, b.valid_pos, b.mask]
        for p in self.placements:
            tensors += [p.copy_src, p.copy_dst, p.merge_src, p.merge_dst]
        tensors.append(self.zero_rows)
        moved = iter(_move_together(tensors, device))

        def take() -> torch.Tensor | None:
            return next(moved)

        blocks = []
        for b in self.blocks:
            queries, keys = replace(b.queries, index=take()), replace(b.keys, index=take())
            blocks.append(Block(queries, keys, take(), take(), take()))  # type: ignore[arg-type]
        placements = [Placement(p.block, take(), take(), take(), take()) for p in self.placements]  # type: ignore[arg-type]
        return BlockSchedule(self.seq_len, tuple(blocks), self.base, tuple(placements), take())  # type: ignore[arg-type]

    @property
    def computed_pairs(self) -> int:
        return sum(b.queries.size * b.keys.size for b in self.blocks)

    @property
    def merged_rows(self) -> int:
        return sum(int(p.merge_dst.numel()) for p in self.placements)


def _move_together(tensors: list[torch.Tensor | None], device: torch.device) -> list[torch.Tensor | None]:
    """Move tensors to `device` with one copy per dtype; None stays None."""
    moved: list[torch.Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, tensor in enumerate(tensors):
        if tensor is not None:
            by_dtype.setdefault(tensor.dtype, []).append(i)
    for positions in by_dtype.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in positions]).to(device)  # type: ignore[union-attr]
        offset = 0
        for i in positions:
            source = tensors[i]
            assert source is not None
            moved[i] = flat[offset : offset + source.numel()].view(source.shape)
            offset += source.numel()
    return moved


def _bits(mask_row: torch.Tensor) -> int:
    value = 0
    for i in torch.nonzero(mask_row).flatten().tolist():
        value |= 1 << i
    return value


def _members(bits: int) -> list[int]:
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def class_rectangles(
    allowed: torch.Tensor,
    q_sizes: list[int],
    k_sizes: list[int],
    *,
    limit: int | None = None,
    merge_row: float = 0.0,
) -> list[tuple[int, int]]:
    """Partition the True cells of `allowed [nQ, nK]` into rectangles (query-class bits, key-class bits).

    Greedy by token area, less `merge_row` per row the rectangle leaves with keys still to cover (those rows
    will need merging); exact: every True cell is in exactly one rectangle, no False cell in any. With
    `limit`, stop after that many rectangles (the best first).
    """
    residual = [_bits(row) if q_sizes[a] else 0 for a, row in enumerate(allowed)]
    empty_keys = sum(1 << b for b, size in enumerate(k_sizes) if not size)
    residual = [bits & ~empty_keys for bits in residual]

    weights: dict[int, int] = {}

    def key_weight(bits: int) -> int:
        if bits not in weights:
            weights[bits] = sum(k_sizes[i] for i in _members(bits))
        return weights[bits]

    rectangles: list[tuple[int, int]] = []
    while any(residual):
        active = [a for a, bits in enumerate(residual) if bits]
        candidates = {residual[a] for a in active}
        largest = sorted(active, key=lambda a: -q_sizes[a] * key_weight(residual[a]))[:12]
        for a, b in combinations(largest, 2):
            common = residual[a] & residual[b]
            if common:
                candidates.add(common)
        best: tuple[float, int, int] | None = None  # (score, key bits, query bits)
        for keys in sorted(candidates):
            rows = 0
            rows_weight = 0
            unfinished = 0
            for a in active:
                if residual[a] & keys == keys:
                    rows |= 1 << a
                    rows_weight += q_sizes[a]
                    if residual[a] != keys:
                        unfinished += q_sizes[a]
            score = rows_weight * key_weight(keys) - merge_row * unfinished
            if best is None or score > best[0]:
                best = (score, keys, rows)
        assert best is not None
        _, keys, rows = best
        for a in _members(rows):
            residual[a] &= ~keys
        rectangles.append((rows, keys))
        if limit is not None and len(rectangles) >= limit:
            break
    return rectangles


def _runs(index: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs `[start, stop)` of consecutive values in a sorted 1-D index."""
    if index.numel() == 0:
        return []
    breaks = torch.nonzero(index[1:] != index[:-1] + 1).flatten()
    starts = [0, *(breaks + 1).tolist()]
    stops = [*(breaks + 1).tolist(), index.numel()]
    values = index.tolist()
    return [(values[s], values[e - 1] + 1) for s, e in zip(starts, stops, strict=True)]


def _key_parts(keys: torch.Tensor, num_rows: int, costs: CostModel) -> list[tuple[TokenSet, torch.Tensor | None]]:
    """Keys as one view, a hull view with a key mask, a few views (merged later) or one gather: the cheapest."""
    runs = _runs(keys)
    if len(runs) == 1:
        return [(TokenSet(*runs[0]), None)]
    start, stop = runs[0][0], runs[-1][1]
    options: list[tuple[float, list[tuple[TokenSet, torch.Tensor | None]]]] = [
        (2 * keys.numel() * costs.row_copy, [(TokenSet(index=keys), None)]),
        (
            (len(runs) - 1) * (costs.call + num_rows * costs.merge_row),
            [(TokenSet(a, b), None) for a, b in runs],
        ),
    ]
    if costs.key_mask:
        mask = torch.zeros(1, stop - start, dtype=torch.bool)
        mask[0, keys - start] = True
        options.append(((stop - start - keys.numel()) * num_rows, [(TokenSet(start, stop), mask)]))
    return min(options, key=lambda option: option[0])[1]


def _query_set(rows: torch.Tensor, num_keys: int, costs: CostModel) -> TokenSet:
    """Queries as a view over their hull (extra rows wasted) or gathered: the cheaper."""
    start, stop = int(rows[0]), int(rows[-1]) + 1
    waste = (stop - start - rows.numel()) * num_keys
    if waste <= rows.numel() * costs.row_copy:
        return TokenSet(start, stop)
    return TokenSet(index=rows)


def _positions(tokens: TokenSet, rows: torch.Tensor) -> torch.Tensor:
    """Positions of global `rows` within a block side."""
    if tokens.index is None:
        return rows - tokens.start
    return torch.searchsorted(tokens.index, rows)


def _selector(bits: int, size: int) -> torch.Tensor:
    selected = torch.zeros(size, dtype=torch.bool)
    selected[_members(bits)] = True
    return selected


def _unmasked_blocks(
    plan: MaskPlan, allowed: torch.Tensor, costs: CostModel, *, limit: int | None = None
) -> tuple[list[Block], torch.Tensor]:
    """Fully-allowed rectangles of the class matrix `allowed` as blocks; returns them and what they cover."""
    q_sizes = plan.query_class_sizes.tolist()
    k_sizes = plan.key_class_sizes.tolist()
    covered = torch.zeros_like(allowed)
    blocks: list[Block] = []
    for rows_bits, keys_bits in class_rectangles(allowed, q_sizes, k_sizes, limit=limit, merge_row=costs.merge_row):
        row_classes = _selector(rows_bits, len(q_sizes))
        key_classes = _selector(keys_bits, len(k_sizes))
        covered |= row_classes[:, None] & key_classes[None, :]
        q_rows = torch.nonzero(row_classes[plan.query_class]).flatten()
        k_rows = torch.nonzero(key_classes[plan.key_class]).flatten()
        for keys, key_mask in _key_parts(k_rows, q_rows.numel(), costs):
            queries = _query_set(q_rows, keys.size, costs)
            blocks.append(Block(queries, keys, q_rows, _positions(queries, q_rows), key_mask))
    return blocks, covered


def _residual_blocks(
    plan: MaskPlan, residual: torch.Tensor, row_classes: torch.Tensor, costs: CostModel
) -> list[Block]:
    """The residual cells of `row_classes` as one call with an explicit mask, or as rectangles if too big."""
    allowed = residual & row_classes[:, None]
    row_classes = allowed.any(dim=1)
    if not bool(row_classes.any()):
        return []
    q_rows = torch.nonzero(row_classes[plan.query_class]).flatten()
    k_rows = torch.nonzero(allowed.any(dim=0)[plan.key_class]).flatten()
    rectangles = _unmasked_blocks(plan, allowed, costs)[0]
    if q_rows.numel() * k_rows.numel() > costs.max_mask:
        return rectangles
    runs = _runs(k_rows)
    start, stop = runs[0][0], runs[-1][1]
    hull_waste = (stop - start - k_rows.numel()) * q_rows.numel() * costs.masked_pair
    keys = TokenSet(start, stop) if hull_waste <= 2 * k_rows.numel() * costs.row_copy else TokenSet(index=k_rows)
    queries = _query_set(q_rows, keys.size, costs)
    q_tokens, k_tokens = queries.tokens(), keys.tokens()
    mask = allowed[plan.query_class[q_tokens]][:, plan.key_class[k_tokens]]
    masked = Block(queries, keys, q_rows, _positions(queries, q_rows), None if bool(mask.all()) else mask)
    return [masked] if _cost([masked], costs) <= _cost(rectangles, costs) else rectangles


def _cost(blocks: list[Block], costs: CostModel) -> float:
    """Estimated cost of running `blocks` and merging the rows they share."""
    total = 0.0
    for block in blocks:
        pairs = block.queries.size * block.keys.size
        total += costs.call + pairs * (costs.masked_pair if block.mask is not None else 1.0)
        total += costs.row_copy * (block.queries.size if block.queries.index is not None else 0)
        total += 2 * costs.row_copy * (block.keys.size if block.keys.index is not None else 0)
    rows = torch.cat([b.valid_rows for b in blocks]) if blocks else torch.zeros(0, dtype=torch.int64)
    return total + costs.merge_row * float(rows.numel() - torch.unique(rows).numel())


def build_block_schedule(plan: MaskPlan, costs: CostModel = GPU_COSTS) -> BlockSchedule:
    """The block decomposition and assembly of `plan` (on CPU; move with `.to(device)`)."""
    seq_len = plan.seq_len
    blocks, covered = _unmasked_blocks(plan, plan.class_allowed, costs, limit=1)
    residual = plan.class_allowed & ~covered
    in_bulk = covered.any(dim=1)
    blocks += _residual_blocks(plan, residual, ~in_bulk, costs)  # rows outside the bulk: no merge
    blocks += _residual_blocks(plan, residual, in_bulk, costs)  # bulk rows' missing keys: merged

    # The largest block provides the output buffer if its rows span the sequence, or if extending them
    # to the whole sequence costs less than copying its rows into a fresh buffer.
    base: int | None = None
    if blocks:
        biggest = max(range(len(blocks)), key=lambda i: blocks[i].valid_rows.numel() * blocks[i].keys.size)
        block = blocks[biggest]
        extra = seq_len - block.queries.size
        if (
            block.queries.index is None
            and (block.mask is None or block.mask.shape[0] == 1)
            and extra * block.keys.size <= block.valid_rows.numel() * costs.row_copy
        ):
            blocks[biggest] = Block(TokenSet(0, seq_len), block.keys, block.valid_rows, block.valid_rows, block.mask)
            base = biggest
    written = torch.zeros(seq_len, dtype=torch.bool)
    if base is not None:
        written[blocks[base].valid_rows] = True
    placements: list[Placement] = []
    for i, block in enumerate(blocks):
        if i == base:
            continue
        merge = written[block.valid_rows]
        placements.append(
            Placement(
                i, block.valid_pos[~merge], block.valid_rows[~merge], block.valid_pos[merge], block.valid_rows[merge]
            )
        )
        written[block.valid_rows] = True
    zero_rows = torch.nonzero(~written).flatten()
    return BlockSchedule(seq_len, tuple(blocks), base, tuple(placements), zero_rows)
