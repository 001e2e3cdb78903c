"""The `fast` kernel's plan: a mask plan cut into a few unmasked fused calls on views plus a small residual.

Region masks are almost dense (94-98 % allowed at Kontext shapes), so skipping masked tiles gains little and
evaluating a mask at all is what costs. The plan therefore runs the bulk of the pairs as *unmasked* fused
attention calls (cuDNN on a GPU) on contiguous views of q, k, v, with no gather, and leaves the rest to one
residual kernel that works on exactly the pairs that are left:

1. **Rects.** A rect is a contiguous query range × a contiguous key range in which every *owned* row may
   see every key. The first rect is the largest fully-allowed rectangle of the class matrix (tokens with
   equal rules form a class, so the search is over tens of classes), narrowed to its longest run of keys
   and to the row range with the most rows that may see all of them (a maximum-sum range: rows that may
   not are computed and thrown away). With the editors' `[hints | main | latents]` order and the default
   rules it is `[main | latents] × [main | latents]`, exactly the plain edit's attention. Further rects
   take rows no rect owns yet, while they are large enough to fill the device (hint rows × latents with
   many hints). Each row is owned by at most one rect.
2. **Output buffer.** When the first rect spans every row (extending it costs less than copying its rows
   into a fresh buffer), its output is the result; rows it does not own are overwritten.
3. **Row groups.** The rows with equal query class and owner share their *residual keys*: the keys they
   may see that their owner's key range does not hold (a box's hint, a hint's latents, ...). Each group is
   attended to its residual keys and merged with its owner's partial result exactly by log-sum-exp; rows
   with no owner get the residual alone; rows with nothing allowed are zeroed.

The plan is host data (NumPy), built once per mask plan and device kind; the executors (`fast`) run it with
cuDNN for the rects and a Triton (GPU) or torch (CPU) residual. Every function here is exact for any rule
matrix and layout: the tests compare the result with the dense oracle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.rectangles import greedy_rectangles

Bool = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
T = TypeVar("T")


@dataclass(frozen=True)
class FastCosts:
    """What a rect must be worth, in units of one (query, key) pair of a large unmasked fused call.

    Attributes:
        min_rect_rows: fewest owned rows of a rect; below, the residual kernel (which splits long key lists
            across the GPU) takes them.
        min_rect_pairs: fewest owned pairs of a rect.
        row_copy: copying one token row (all heads) into a fresh output buffer.
        merge_row: merging a residual into one row of a rect's output; the first rect is chosen by its area
            less this for every row it leaves keys to (a rect that covers every row but leaves most of them a
            few keys loses to one that finishes most rows).
        max_rects: most rects per plan.
    """

    min_rect_rows: int
    min_rect_pairs: int
    row_copy: float
    merge_row: float
    max_rects: int = 4


#: Hopper GPU at Kontext shapes (24 heads × 128, bf16): a pair ≈ 0.02 ns in cuDNN, a row copy ≈ 3 ns. Rects
#: after the first run on a side stream, so even a few dozen hint rows × the latents are worth their own call
#: (measured on an H200: 2 hints of 64 tokens, 1.04× unmasked SDPA this way, 1.08× split in Triton).
GPU_COSTS = FastCosts(min_rect_rows=16, min_rect_pairs=1 << 18, row_copy=150.0, merge_row=300.0)
#: CPU: any rect beats gathering its rows.
CPU_COSTS = FastCosts(min_rect_rows=1, min_rect_pairs=1, row_copy=20.0, merge_row=40.0)


@dataclass(frozen=True)
class Rect:
    """One unmasked fused call on views: queries `[q0, q1)` × keys `[k0, k1)`."""

    q0: int
    q1: int
    k0: int
    k1: int

    @property
    def pairs(self) -> int:
        return (self.q1 - self.q0) * (self.k1 - self.k0)


@dataclass(frozen=True, eq=False)
class RowGroup:
    """Rows that start from the same rect's partial result (`owner`, or -1 for none) and add the same keys.

    Attributes:
        rows: sorted token ids of the rows.
        owner: index of the rect that owns the rows, or -1.
        keys: sorted token ids of the residual keys (possibly none: the rows are copied from their owner).
    """

    rows: Ints
    owner: int
    keys: Ints


@dataclass(frozen=True, eq=False)
class FastPlan:
    """The rects, whether the first one's output is the result buffer, the row groups and the zero rows.

    Executors keep what they derive from the plan (index tensors on a device, kernel work lists) in it
    through `cached`, so it is built once per plan.
    """

    seq_len: int
    rects: tuple[Rect, ...]
    out_from_first: bool
    groups: tuple[RowGroup, ...]
    zero_rows: Ints
    _artifacts: dict[Hashable, object] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cached(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The artifact stored under `key`, built by `factory` on first use."""
        with self._lock:
            if key not in self._artifacts:
                self._artifacts[key] = factory()
            return self._artifacts[key]  # type: ignore[return-value]

    @property
    def rect_pairs(self) -> int:
        return sum(r.pairs for r in self.rects)

    @property
    def residual_pairs(self) -> int:
        return sum(int(g.rows.size) * int(g.keys.size) for g in self.groups)


def _longest_run(selected: Bool) -> tuple[int, int]:
    """`[start, stop)` of the longest run of True in `selected` (the first of equals)."""
    edges = np.diff(np.concatenate([[0], selected.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def _best_range(valid: Bool) -> tuple[int, int]:
    """The range `[start, stop)` maximising valid minus invalid rows (a maximum-sum subarray of ±1)."""
    prefix = np.concatenate([[0], np.cumsum(np.where(valid, 1, -1))])
    gain = prefix[1:] - np.minimum.accumulate(prefix[:-1])
    stop = int(np.argmax(gain)) + 1
    return int(np.argmin(prefix[:stop])), stop


@dataclass(frozen=True)
class _Candidate:
    rect: Rect
    owned: Bool


def _best_rect(plan: MaskPlan, free: Bool, costs: FastCosts, *, first: bool) -> _Candidate | None:
    """The next rect among the rows in `free`, or None if the class matrix has no allowed cell left there."""
    allowed = plan.class_allowed.numpy()
    query_class, key_class = plan.query_class.numpy(), plan.key_class.numpy()
    free_rows = np.bincount(query_class[free], minlength=allowed.shape[0])
    merge_row = costs.merge_row if first else 0.0  # later rects' rows are merged with nothing else
    found = greedy_rectangles(allowed.copy(), free_rows, plan.key_class_sizes.numpy(), limit=1, merge_row=merge_row)
    if not found:
        return None
    key_classes: Bool = found[0][1]
    k0, k1 = _longest_run(key_classes[key_class])
    present = np.bincount(key_class[k0:k1], minlength=allowed.shape[1]) > 0
    sees_run: Bool = np.asarray(allowed[:, present].all(axis=1))
    valid = sees_run[query_class] & free  # rows that may see every key of the run
    q0, q1 = _best_range(valid)
    seq_len, keys = plan.seq_len, k1 - k0
    if first and (q0, q1) != (0, seq_len):
        # Extending the first rect to every row makes its output the result buffer; the alternative is
        # to copy its rows into a fresh one (and to compute its valid rows outside the range elsewhere).
        valid_all, valid_in = int(valid.sum()), int(valid[q0:q1].sum())
        extended = (seq_len - valid_all) * keys
        kept = (q1 - q0 - valid_in) * keys + valid_in * costs.row_copy + (valid_all - valid_in) * keys
        if extended <= kept:
            q0, q1 = 0, seq_len
    owned = np.zeros_like(valid)
    owned[q0:q1] = valid[q0:q1]
    return _Candidate(Rect(q0, q1, k0, k1), owned)


def _row_groups(plan: MaskPlan, rects: list[Rect], owner: Ints, out_from_first: bool) -> tuple[list[RowGroup], Ints]:
    """Rows by (query class, owner) with their residual keys; and the rows that may see no key at all."""
    allowed = plan.class_allowed.numpy()
    query_class, key_class = plan.query_class.numpy(), plan.key_class.numpy()
    group_of_row = query_class * (len(rects) + 1) + (owner + 1)
    order = np.argsort(group_of_row, kind="stable")  # stable: rows stay sorted within a group
    bounds = np.flatnonzero(np.diff(group_of_row[order])) + 1
    groups: list[RowGroup] = []
    zero: list[Ints] = []
    for rows in np.split(order, bounds):
        if rows.size == 0:
            continue
        row_owner = int(owner[rows[0]])
        may_see = allowed[query_class[rows[0]]][key_class]  # [S] bool, a fresh array
        if row_owner >= 0:
            rect = rects[row_owner]
            may_see[rect.k0 : rect.k1] = False
        keys = np.flatnonzero(may_see)
        if keys.size == 0 and row_owner < 0:
            zero.append(rows)
        elif keys.size or not (row_owner == 0 and out_from_first):
            groups.append(RowGroup(rows.astype(np.int64, copy=False), row_owner, keys.astype(np.int64, copy=False)))
    zero_rows = np.sort(np.concatenate(zero)) if zero else np.zeros(0, dtype=np.int64)
    return groups, zero_rows.astype(np.int64, copy=False)


def build_fast_plan(plan: MaskPlan, costs: FastCosts = GPU_COSTS) -> FastPlan:
    """The rects, row groups and zero rows of `plan` (host arrays; see the module docstring)."""
    seq_len = plan.seq_len
    owner = np.full(seq_len, -1, dtype=np.int64)
    rects: list[Rect] = []
    for index in range(costs.max_rects):
        found = _best_rect(plan, owner < 0, costs, first=not rects)
        if found is None:
            break
        owned_rows = int(found.owned.sum())
        keys = found.rect.k1 - found.rect.k0
        if owned_rows < costs.min_rect_rows or owned_rows * keys < costs.min_rect_pairs:
            break
        owner[found.owned] = index
        rects.append(found.rect)
    out_from_first = bool(rects) and (rects[0].q0, rects[0].q1) == (0, seq_len)
    groups, zero_rows = _row_groups(plan, rects, owner, out_from_first)
    return FastPlan(seq_len, tuple(rects), out_from_first, tuple(groups), zero_rows)
