"""The `fast` kernel's schedule: a mask plan cut into fully-allowed blocks, and how to stitch them back.

Region masks are almost dense (94-98 % allowed at Kontext shapes), so skipping masked blocks gains little
and evaluating a mask at all is what costs. Instead the allowed set is partitioned into rectangles
*(query set × key set)* that are allowed everywhere; each runs as one unmasked attention call returning
its log-sum-exp, and the rows covered by several rectangles are merged exactly (`partial_attention`).

1. **Classes.** Work on the `[nQ, nK]` class matrix of the mask plan (tokens with equal rules), so the
   search is over tens of classes, not thousands of tokens, and is correct for any rule matrix and layout.
2. **Rectangles.** Greedily take the key-class set whose fully-allowed rectangle (all query classes that
   may see every key class in it) has the largest area, remove it from the residual, repeat until nothing
   is left. Candidates are each query class's residual key set and pairwise intersections of the largest.
   Each allowed (query class, key class) cell ends up in exactly one rectangle.
3. **Tokens.** A rectangle's keys are used as a contiguous view when they are one run in sequence order,
   split into a few views or gathered by index otherwise; its queries as a view over their hull (extra
   rows computed and thrown away) or gathered — whichever the cost model says is cheaper.
4. **Assembly.** The block whose rows span the whole sequence (the big one, extended if that is cheaper
   than copying) gives the output buffer; rows covered by one other block are copied, rows covered by
   several are merged by log-sum-exp, rows covered by none (no allowed key) are zeroed.

With the default rules and the text ordered `[hints | main]`, this is one unmasked call over the main
prompt and the latents (views, no copies), one for the hint rows against the latents, and one small
call per hint for hint i against its box and itself; see `fast`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import torch

from replan_editor.attention.mask_plan import MaskPlan


@dataclass(frozen=True)
class CostModel:
    """Relative costs in units of one (query, key) pair of attention over all heads."""

    call: float
    row_copy: float
    merge_row: float


#: H100-class GPU: a launch ≈ 300k pairs; one token row (all heads) copied ≈ 200 pairs; merged ≈ 600.
GPU_COSTS = CostModel(call=300_000.0, row_copy=200.0, merge_row=600.0)
#: CPU: compute is slow relative to memory and launches.
CPU_COSTS = CostModel(call=5_000.0, row_copy=20.0, merge_row=60.0)


@dataclass(frozen=True)
class TokenSet:
    """Tokens of one block side: a contiguous view `[start, stop)` or gathered `index` (sorted, 1-D)."""

    start: int = 0
    stop: int = 0
    index: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.index.numel()) if self.index is not None else self.stop - self.start

    def to(self, device: torch.device) -> TokenSet:
        return self if self.index is None else replace(self, index=self.index.to(device))


@dataclass(frozen=True)
class Block:
    """One unmasked attention call: `queries × keys`, of whose rows `valid_pos` (global `valid_rows`) count."""

    queries: TokenSet
    keys: TokenSet
    valid_rows: torch.Tensor
    valid_pos: torch.Tensor

    def to(self, device: torch.device) -> Block:
        return Block(
            self.queries.to(device), self.keys.to(device), self.valid_rows.to(device), self.valid_pos.to(device)
        )


@dataclass(frozen=True)
class RowCopy:
    """Rows `src_pos` of block `block`'s output go to sequence rows (or merge slots) `dst`."""

    block: int
    src_pos: torch.Tensor
    dst: torch.Tensor

    def to(self, device: torch.device) -> RowCopy:
        return RowCopy(self.block, self.src_pos.to(device), self.dst.to(device))


@dataclass(frozen=True)
class BlockSchedule:
    """Blocks plus assembly: base buffer, single-cover copies, merged rows, zero rows."""

    seq_len: int
    blocks: tuple[Block, ...]
    base: int | None
    copies: tuple[RowCopy, ...]
    merge_rows: torch.Tensor
    merge_parts: tuple[RowCopy, ...]
    zero_rows: torch.Tensor

    def to(self, device: torch.device) -> BlockSchedule:
        return BlockSchedule(
            self.seq_len,
            tuple(b.to(device) for b in self.blocks),
            self.base,
            tuple(c.to(device) for c in self.copies),
            self.merge_rows.to(device),
            tuple(p.to(device) for p in self.merge_parts),
            self.zero_rows.to(device),
        )

    @property
    def computed_pairs(self) -> int:
        return sum(b.queries.size * b.keys.size for b in self.blocks)


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


def class_rectangles(allowed: torch.Tensor, q_sizes: list[int], k_sizes: list[int]) -> list[tuple[int, int]]:
    """Partition the True cells of `allowed [nQ, nK]` into rectangles (query-class bits, key-class bits).

    Greedy by token area; exact: every True cell is in exactly one rectangle, no False cell in any.
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
        best: tuple[int, int, int] | None = None  # (area, key bits, query bits)
        for keys in sorted(candidates):
            rows = 0
            rows_weight = 0
            for a in active:
                if residual[a] & keys == keys:
                    rows |= 1 << a
                    rows_weight += q_sizes[a]
            area = rows_weight * key_weight(keys)
            if best is None or area > best[0]:
                best = (area, keys, rows)
        assert best is not None
        _, keys, rows = best
        for a in _members(rows):
            residual[a] &= ~keys
        rectangles.append((rows, keys))
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


def _key_parts(keys: torch.Tensor, num_rows: int, costs: CostModel) -> list[TokenSet]:
    """Keys as one view, a few views (merged later), or one gathered set: the cheapest."""
    runs = _runs(keys)
    if len(runs) == 1:
        return [TokenSet(*runs[0])]
    gather_cost = 2 * keys.numel() * costs.row_copy
    split_cost = (len(runs) - 1) * (costs.call + num_rows * costs.merge_row)
    if split_cost < gather_cost:
        return [TokenSet(start, stop) for start, stop in runs]
    return [TokenSet(index=keys)]


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


def build_block_schedule(plan: MaskPlan, costs: CostModel = GPU_COSTS) -> BlockSchedule:
    """The block decomposition and assembly of `plan` (on CPU; move with `.to(device)`)."""
    seq_len = plan.seq_len
    q_sizes = plan.query_class_sizes.tolist()
    k_sizes = plan.key_class_sizes.tolist()
    blocks: list[Block] = []
    for rows_bits, keys_bits in class_rectangles(plan.class_allowed, q_sizes, k_sizes):
        q_rows = torch.nonzero(_selector(rows_bits, len(q_sizes))[plan.query_class]).flatten()
        k_rows = torch.nonzero(_selector(keys_bits, len(k_sizes))[plan.key_class]).flatten()
        for keys in _key_parts(k_rows, q_rows.numel(), costs):
            queries = _query_set(q_rows, keys.size, costs)
            blocks.append(Block(queries, keys, q_rows, _positions(queries, q_rows)))

    # The largest block provides the output buffer if its rows span the sequence, or if extending them
    # to the whole sequence costs less than copying its rows into a fresh buffer.
    base: int | None = None
    if blocks:
        biggest = max(range(len(blocks)), key=lambda i: blocks[i].valid_rows.numel() * blocks[i].keys.size)
        block = blocks[biggest]
        extra = seq_len - block.queries.size
        if block.queries.index is None and extra * block.keys.size <= block.valid_rows.numel() * costs.row_copy:
            blocks[biggest] = Block(TokenSet(0, seq_len), block.keys, block.valid_rows, block.valid_rows)
            base = biggest

    cover = torch.zeros(seq_len, dtype=torch.int64)
    for block in blocks:
        cover[block.valid_rows] += 1
    merge_rows = torch.nonzero(cover >= 2).flatten()
    zero_rows = torch.nonzero(cover == 0).flatten()
    slot = torch.full((seq_len,), -1, dtype=torch.int64)
    slot[merge_rows] = torch.arange(merge_rows.numel())
    copies: list[RowCopy] = []
    merge_parts: list[RowCopy] = []
    for i, block in enumerate(blocks):
        single = cover[block.valid_rows] == 1
        if i != base and bool(single.any()):
            copies.append(RowCopy(i, block.valid_pos[single], block.valid_rows[single]))
        if bool((~single).any()):
            merge_parts.append(RowCopy(i, block.valid_pos[~single], slot[block.valid_rows[~single]]))
    return BlockSchedule(seq_len, tuple(blocks), base, tuple(copies), merge_rows, tuple(merge_parts), zero_rows)
