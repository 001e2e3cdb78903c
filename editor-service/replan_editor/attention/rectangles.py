"""Greedy partition of a class matrix into fully-allowed rectangles (query classes × key classes).

The `fast` kernel's plan works on the `[nQ, nK]` class matrix of a mask plan (tokens with equal rules form a
class), so its searches run over tens of classes, not thousands of tokens. `class_rectangles` cuts the True
cells into rectangles, largest token area first; the plan takes the first as its bulk call. Vectorised in
NumPy (every candidate key set scored at once); `tests/unit/attention/test_plan_build.py` checks it against
the plain loop it replaced, tie-breaking included.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import torch

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


def greedy_rectangles(
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
    found: list[tuple[Bool, Bool]] = []
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
        found.append((row_set, keys.copy()))
        if limit is not None and len(found) >= limit:
            break
    return found


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
    found = greedy_rectangles(
        allowed.numpy().copy(),
        np.asarray(q_sizes, dtype=np.int64),
        np.asarray(k_sizes, dtype=np.int64),
        limit=limit,
        merge_row=merge_row,
    )
    return [(_to_int(rows), _to_int(keys)) for rows, keys in found]
