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
   takes exactly the residual keys of its rows with a small explicit mask `[rows, keys]` (kept factored:
   one row per query class and a class index per row). A residual whose
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

import functools
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
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
    True where allowed. A `[queries, keys]` mask is kept factored, as its distinct rows `mask_table [R, keys]`
    and the row of each query `mask_rows [queries]` (a handful of query classes make R tiny), so that it is
    neither built on the host nor copied to the device at full size (megabytes at Kontext shapes); without
    `mask_rows`, `mask_table` is the mask itself.
    """

    queries: TokenSet
    keys: TokenSet
    valid_rows: torch.Tensor
    valid_pos: torch.Tensor
    mask_table: torch.Tensor | None = None
    mask_rows: torch.Tensor | None = None

    @property
    def mask_shape(self) -> tuple[int, int] | None:
        """The shape of `mask` without building it."""
        if self.mask_table is None:
            return None
        rows = self.mask_table.shape[0] if self.mask_rows is None else self.mask_rows.shape[0]
        return int(rows), int(self.mask_table.shape[1])

    @property
    def mask(self) -> torch.Tensor | None:
        """The mask, built from its factors (on their device) when factored."""
        if self.mask_table is None or self.mask_rows is None:
            return self.mask_table
        if self.mask_table.device.type == "cpu":  # NumPy copies bool rows far faster than torch's CPU gather
            return torch.from_numpy(self.mask_table.numpy()[self.mask_rows.numpy()])
        return self.mask_table.index_select(0, self.mask_rows)

    def to(self, device: torch.device) -> Block:
        return Block(
            self.queries.to(device),
            self.keys.to(device),
            self.valid_rows.to(device),
            self.valid_pos.to(device),
            None if self.mask_table is None else self.mask_table.to(device),
            None if self.mask_rows is None else self.mask_rows.to(device),
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
            tensors += [b.queries.index, b.keys.index, b.valid_rows, b.valid_pos, b.mask_table, b.mask_rows]
        for p in self.placements:
            tensors += [p.copy_src, p.copy_dst, p.merge_src, p.merge_dst]
        tensors.append(self.zero_rows)
        moved = iter(_move_together(tensors, device))

        def take() -> torch.Tensor | None:
            return next(moved)

        blocks = []
        for b in self.blocks:
            queries, keys = replace(b.queries, index=take()), replace(b.keys, index=take())
            blocks.append(Block(queries, keys, take(), take(), take(), take()))  # type: ignore[arg-type]
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
        sources = [tensors[i] for i in positions]
        flat = torch.cat([t.reshape(-1) for t in sources]).to(device)  # type: ignore[union-attr]
        pieces = torch.split(flat, [t.numel() for t in sources])  # type: ignore[union-attr]
        for i, source, piece in zip(positions, sources, pieces, strict=True):
            moved[i] = piece if source.dim() == 1 else piece.view(source.shape)  # type: ignore[union-attr]
    return moved


Bool = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


def _to_int(selected: Bool) -> int:
    """A bool vector as the integer whose bit i is element i."""
    return int.from_bytes(np.packbits(selected, bitorder="little").tobytes(), "little")


@functools.cache
def _pairs(count: int) -> tuple[Ints, Ints]:
    """Every pair `i < j` of `count` items (as `itertools.combinations`), cached: `np.triu_indices` is slow."""
    first, second = np.triu_indices(count, k=1)
    return first.astype(np.int64), second.astype(np.int64)


def _rectangles(
    allowed: Bool, q_sizes: Ints, k_sizes: Ints, *, limit: int | None = None, merge_row: float = 0.0
) -> list[tuple[Bool, Bool]]:
    """`class_rectangles` on bool arrays: `[(query classes [nQ], key classes [nK])]`, vectorised over classes.

    Each round scores every candidate key set at once (a few small matrix products instead of a Python loop
    over candidates × classes) and picks the best; ties go to the key set that is the smallest integer
    (bit i = key class i), the order in which the reference loop met candidates, so the result is the same.
    """
    residual = allowed & (q_sizes > 0)[:, None] & (k_sizes > 0)[None, :]
    # Sizes as float64: the products below are sums of integers far below 2**53, so exact, and on BLAS.
    q_float, k_float = q_sizes.astype(np.float64), k_sizes.astype(np.float64)
    rectangles: list[tuple[Bool, Bool]] = []
    while True:
        active = np.flatnonzero(residual.any(axis=1))
        if active.size == 0:
            break
        rows = residual[active]  # [A, nK]
        rows_float = rows.astype(np.float64)
        weight = q_sizes[active] * (rows_float @ k_float).astype(np.int64)
        largest = rows[np.argsort(-weight, kind="stable")[:12]]
        first, second = _pairs(largest.shape[0])
        common = largest[first] & largest[second]
        candidates = np.concatenate([rows, common[common.any(axis=1)]])  # [C, nK]
        candidates_float = candidates.astype(np.float64)
        # contains[a, c]: active class a still needs every key of candidate c; finished: and nothing else.
        contains = (1.0 - rows_float) @ candidates_float.T == 0
        counts = candidates_float.sum(axis=1)
        finished = contains & (rows_float.sum(axis=1)[:, None] == counts[None, :])
        q_active = q_float[active]
        rows_weight = q_active @ contains
        unfinished = q_active @ (contains & ~finished)
        score = rows_weight * (candidates_float @ k_float) - merge_row * unfinished
        tied = np.flatnonzero(score == score.max())
        best = int(tied[0])
        if tied.size > 1:  # the smallest key set as an integer: sort on its bytes, most significant first
            packed = np.packbits(candidates[tied], axis=1, bitorder="little")
            best = int(tied[np.lexsort(packed.T)[0]])
        keys = candidates[best]
        row_set = np.zeros(residual.shape[0], dtype=np.bool_)
        row_set[active[contains[:, best]]] = True
        residual[row_set] &= ~keys
        rectangles.append((row_set, keys.copy()))
        if limit is not None and len(rectangles) >= limit:
            break
    return rectangles


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
    found = _rectangles(
        allowed.numpy().copy(),
        np.asarray(q_sizes, dtype=np.int64),
        np.asarray(k_sizes, dtype=np.int64),
        limit=limit,
        merge_row=merge_row,
    )
    return [(_to_int(rows), _to_int(keys)) for rows, keys in found]


def _runs(index: Ints) -> list[tuple[int, int]]:
    """Maximal runs `[start, stop)` of consecutive values in a sorted 1-D index."""
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1)
    starts = index[np.concatenate([[0], breaks + 1])]
    stops = index[np.concatenate([breaks, [index.size - 1]])] + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _tensor(array: npt.NDArray[np.generic]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _key_parts(keys: Ints, num_rows: int, costs: CostModel) -> list[tuple[TokenSet, torch.Tensor | None]]:
    """Keys as one view, a hull view with a key mask, a few views (merged later) or one gather: the cheapest."""
    start, stop = int(keys[0]), int(keys[-1]) + 1
    if stop - start == keys.size:  # sorted and distinct: one run
        return [(TokenSet(start, stop), None)]
    num_runs = int(np.count_nonzero(np.diff(keys) != 1)) + 1
    # Costs in the order the options are preferred on ties: gather, views, hull with a key mask.
    options = [2 * keys.size * costs.row_copy, (num_runs - 1) * (costs.call + num_rows * costs.merge_row)]
    if costs.key_mask:
        options.append((stop - start - keys.size) * num_rows)
    choice = options.index(min(options))
    if choice == 0:
        return [(TokenSet(index=_tensor(keys)), None)]
    if choice == 1:
        return [(TokenSet(a, b), None) for a, b in _runs(keys)]
    mask = np.zeros((1, stop - start), dtype=np.bool_)
    mask[0, keys - start] = True
    return [(TokenSet(start, stop), _tensor(mask))]


def _query_set(rows: Ints, num_keys: int, costs: CostModel) -> TokenSet:
    """Queries as a view over their hull (extra rows wasted) or gathered: the cheaper."""
    start, stop = int(rows[0]), int(rows[-1]) + 1
    waste = (stop - start - rows.size) * num_keys
    if waste <= rows.size * costs.row_copy:
        return TokenSet(start, stop)
    return TokenSet(index=_tensor(rows))


def _positions(queries: TokenSet, rows: Ints) -> Ints:
    """Positions of global `rows` within `queries = _query_set(rows, ...)`: a view over their hull, or `rows`."""
    if queries.index is None:
        return rows - queries.start
    assert queries.size == rows.size
    return np.arange(rows.size)


def _token_range(tokens: TokenSet, classes: Ints) -> Ints:
    """The class of every token of a block side."""
    return classes[tokens.start : tokens.stop] if tokens.index is None else classes[tokens.index.numpy()]


@dataclass(frozen=True)
class _Classes:
    """The plan's class data as NumPy arrays: per-class work in NumPy costs microseconds, not torch's dispatch."""

    query_class: Ints
    key_class: Ints
    q_sizes: Ints
    k_sizes: Ints

    @classmethod
    def of(cls, plan: MaskPlan) -> _Classes:
        return cls(
            plan.query_class.numpy(),
            plan.key_class.numpy(),
            plan.query_class_sizes.numpy(),
            plan.key_class_sizes.numpy(),
        )


def _unmasked_blocks(
    classes: _Classes, allowed: Bool, costs: CostModel, *, limit: int | None = None
) -> tuple[list[Block], Bool]:
    """Fully-allowed rectangles of the class matrix `allowed` as blocks; returns them and what they cover."""
    covered = np.zeros_like(allowed)
    blocks: list[Block] = []
    found = _rectangles(allowed.copy(), classes.q_sizes, classes.k_sizes, limit=limit, merge_row=costs.merge_row)
    for row_classes, key_classes in found:
        covered |= row_classes[:, None] & key_classes[None, :]
        q_rows = np.flatnonzero(row_classes[classes.query_class])
        k_rows = np.flatnonzero(key_classes[classes.key_class])
        valid_rows = _tensor(q_rows)
        for keys, key_mask in _key_parts(k_rows, q_rows.size, costs):
            queries = _query_set(q_rows, keys.size, costs)
            blocks.append(Block(queries, keys, valid_rows, _tensor(_positions(queries, q_rows)), key_mask))
    return blocks, covered


def _residual_blocks(classes: _Classes, residual: Bool, row_classes: Bool, costs: CostModel) -> list[Block]:
    """The residual cells of `row_classes` as one call with an explicit mask, or as rectangles if too big.

    The masked call is costed from its shape and whether its mask has a False cell (read off the class
    matrix), and its `[rows, keys]` mask is materialised only if it wins. The rectangles are not searched
    when a lower bound on their cost (`_rectangles_cost_bound`) already shows the masked call is no dearer.
    """
    allowed = residual & row_classes[:, None]
    rows_left: Bool = np.asarray(allowed.any(axis=1))
    if not rows_left.any():
        return []
    q_rows = np.flatnonzero(rows_left[classes.query_class])
    keys_left: Bool = np.asarray(allowed.any(axis=0))
    k_rows = np.flatnonzero(keys_left[classes.key_class])
    if q_rows.size * k_rows.size > costs.max_mask:
        return _unmasked_blocks(classes, allowed, costs)[0]
    start, stop = int(k_rows[0]), int(k_rows[-1]) + 1
    hull_waste = (stop - start - k_rows.size) * q_rows.size * costs.masked_pair
    keys = TokenSet(start, stop) if hull_waste <= 2 * k_rows.size * costs.row_copy else TokenSet(index=_tensor(k_rows))
    queries = _query_set(q_rows, keys.size, costs)
    q_classes, k_classes = _token_range(queries, classes.query_class), _token_range(keys, classes.key_class)
    present_q = np.bincount(q_classes, minlength=allowed.shape[0]) > 0
    present_k = np.bincount(k_classes, minlength=allowed.shape[1]) > 0
    full = bool(allowed[present_q][:, present_k].all())
    masked = Block(queries, keys, _tensor(q_rows), _tensor(_positions(queries, q_rows)))
    masked_cost = _cost([masked], costs, masked=not full)
    if masked_cost > _rectangles_cost_bound(classes, allowed, costs, masked_cost):
        rectangles = _unmasked_blocks(classes, allowed, costs)[0]
        if masked_cost > _cost(rectangles, costs):
            return rectangles
    if full:
        return [masked]
    # The mask `allowed[q_classes][:, k_classes]`, factored: one row per query class present, and the row of
    # each query.
    table = allowed[present_q][:, k_classes]
    rows = (np.cumsum(present_q) - 1)[q_classes]
    return [replace(masked, mask_table=_tensor(table), mask_rows=_tensor(rows))]


def _rectangles_cost_bound(classes: _Classes, allowed: Bool, costs: CostModel, target: float) -> float:
    """A lower bound on `_cost` of the rectangle blocks of `allowed` (-inf if the cost model gives none).

    Every rectangle is at least one call and the rectangles cover every allowed pair at least once, so with
    non-negative costs and `masked_pair >= 1` the cost is at least `calls · call + allowed pairs`. The number
    of rectangles is at least the size of a *fooling set*: allowed cells (a, b), (c, d) of which no two can
    share a rectangle because `allowed[a, d]` or `allowed[c, b]` is False. A greedy one, grown only until
    the bound exceeds `target`, is enough. The bound is shaded by 1e-9 so float rounding in `_cost` (relative
    error far below that) cannot put the true cost under it.
    """
    if min(costs.call, costs.row_copy, costs.merge_row) < 0 or costs.masked_pair < 1:
        return -np.inf
    cells = allowed & (classes.q_sizes > 0)[:, None] & (classes.k_sizes > 0)[None, :]
    pairs = float(classes.q_sizes @ cells.astype(np.int64) @ classes.k_sizes)
    need = np.inf if costs.call <= 0 else (target - pairs) / costs.call
    fool_rows: list[int] = []
    fool_cols: list[int] = []
    for b in np.flatnonzero(cells.any(axis=0)).tolist():
        if len(fool_rows) > need:
            break
        rows = np.flatnonzero(cells[:, b])
        if fool_rows:  # (a, b) conflicts with a chosen (c, d) when allowed[a, d] and allowed[c, b]
            seen_by_chosen = cells[fool_rows, b]
            chosen_cols = np.asarray(fool_cols, dtype=np.int64)
            rows = rows[~(cells[np.ix_(rows, chosen_cols)] & seen_by_chosen[None, :]).any(axis=1)]
        if rows.size:  # a column holds at most one fooling cell
            fool_rows.append(int(rows[0]))
            fool_cols.append(b)
    return (len(fool_rows) * costs.call + pairs) * (1.0 - 1e-9)


def _cost(blocks: list[Block], costs: CostModel, *, masked: bool | None = None) -> float:
    """Estimated cost of running `blocks` and merging the rows they share (`masked` overrides their masks)."""
    total = 0.0
    for block in blocks:
        pairs = block.queries.size * block.keys.size
        has_mask = block.mask_table is not None if masked is None else masked
        total += costs.call + pairs * (costs.masked_pair if has_mask else 1.0)
        total += costs.row_copy * (block.queries.size if block.queries.index is not None else 0)
        total += 2 * costs.row_copy * (block.keys.size if block.keys.index is not None else 0)
    if not blocks:
        return total + costs.merge_row * 0.0
    rows = np.concatenate([b.valid_rows.numpy() for b in blocks])
    seen = np.zeros(int(rows.max()) + 1 if rows.size else 0, dtype=np.bool_)
    seen[rows] = True  # distinct rows without a sort
    return total + costs.merge_row * float(rows.size - int(np.count_nonzero(seen)))


def build_block_schedule(plan: MaskPlan, costs: CostModel = GPU_COSTS) -> BlockSchedule:
    """The block decomposition and assembly of `plan` (on CPU; move with `.to(device)`)."""
    seq_len = plan.seq_len
    classes = _Classes.of(plan)
    class_allowed = plan.class_allowed.numpy()
    blocks, covered = _unmasked_blocks(classes, class_allowed, costs, limit=1)
    residual = class_allowed & ~covered
    in_bulk: Bool = np.asarray(covered.any(axis=1))
    blocks += _residual_blocks(classes, residual, ~in_bulk, costs)  # rows outside the bulk: no merge
    blocks += _residual_blocks(classes, residual, in_bulk, costs)  # bulk rows' missing keys: merged

    # The largest block provides the output buffer if its rows span the sequence, or if extending them
    # to the whole sequence costs less than copying its rows into a fresh buffer.
    base: int | None = None
    if blocks:
        biggest = max(range(len(blocks)), key=lambda i: blocks[i].valid_rows.numel() * blocks[i].keys.size)
        block = blocks[biggest]
        extra = seq_len - block.queries.size
        if (
            block.queries.index is None
            and (block.mask_shape is None or block.mask_shape[0] == 1)
            and extra * block.keys.size <= block.valid_rows.numel() * costs.row_copy
        ):
            blocks[biggest] = replace(block, queries=TokenSet(0, seq_len), valid_pos=block.valid_rows)
            base = biggest
    written = np.zeros(seq_len, dtype=np.bool_)
    if base is not None:
        written[blocks[base].valid_rows.numpy()] = True
    placements: list[Placement] = []
    for i, block in enumerate(blocks):
        if i == base:
            continue
        rows, pos = block.valid_rows.numpy(), block.valid_pos.numpy()
        merge = written[rows]
        copy = ~merge
        placements.append(
            Placement(i, _tensor(pos[copy]), _tensor(rows[copy]), _tensor(pos[merge]), _tensor(rows[merge]))
        )
        written[rows] = True
    zero_rows = _tensor(np.flatnonzero(~written))
    return BlockSchedule(seq_len, tuple(blocks), base, tuple(placements), zero_rows)
