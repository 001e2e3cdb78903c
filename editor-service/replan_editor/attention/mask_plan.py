"""The mask plan: the token-level attention mask of one (layout, rules) pair, in compact form, cached.

`allowed(q, k)` is the OR over groups gq ∋ q and gk ∋ k of `rules[gq, gk]`, i.e.
`memberᵀ · rules · member > 0`. Rather than the dense `[S, S]` matrix the plan keeps *token classes*:
queries with the same visible key groups form one query class, keys seen by the same query groups form
one key class, and `allowed(q, k) = class_allowed[query_class[q], key_class[k]]` exactly. A layout has a
handful of classes (tens with many overlapping boxes), so kernels read two `[S]` id vectors and a small
`[nQ, nK]` matrix; the dense mask is materialised only for the `dense` kernel.

A plan is built once per request and rule phase and shared by every layer and step: `get_mask_plan`
returns the same object for equal (layout, rules). Kernels keep their own derived artifacts (a flex
BlockMask, a fast-kernel schedule, device copies) in the plan through `MaskPlan.cached`, so they are built
once too. Rows with no allowed key attend to nothing and every kernel returns zeros there.

Getting the plan for a step::

    plan = get_mask_plan(layout, schedule.rules_for_step(step))
    out = region_attention(q, k, v, plan, kernel=AttentionKernel.AUTO)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
import torch

from replan_editor.attention.layout import TokenLayout, row_classes_array
from replan_editor.attention.rules import AttentionRules

T = TypeVar("T")


class MaskPlan:
    """The compact mask of one (layout, rules) pair; immutable once built, artifacts cached per device.

    Attributes:
        layout, rules: what it was built from.
        seq_len: S.
        query_class, key_class: `[S]` int64 on CPU, class id per token.
        class_allowed: `[nQ, nK]` bool on CPU.
        query_class_sizes, key_class_sizes: tokens per class (`[nQ]`, `[nK]` int64).
        allowed_pairs: number of allowed (query, key) pairs.
        is_full: every pair allowed (then every kernel is one plain unmasked SDPA call).
        has_empty_rows: some query has no allowed key (its output is zeros).
    """

    def __init__(self, layout: TokenLayout, rules: AttentionRules) -> None:
        if (rules.num_regions, rules.has_image_prompt) != (layout.num_regions, layout.has_image_prompt):
            raise ValueError(
                f"rules for {rules.num_regions} regions (image prompt: {rules.has_image_prompt}) do not fit a "
                f"layout with {layout.num_regions} regions (image prompt: {layout.has_image_prompt})"
            )
        self.layout = layout
        self.rules = rules
        self.seq_len = layout.seq_len
        # Built in NumPy on a handful of atoms and classes, then mapped to the S tokens with one gather: NumPy
        # has no per-op dispatch or thread-pool cost (torch's CPU ops spin their pool on tiny tensors,
        # which under load took tens of ms).
        of_token, membership = layout.atom_arrays()
        member = membership.astype(np.float32)  # [G, A]
        group_rules = rules.matrix.astype(np.float32)  # [G, G]
        may_see = (member.T @ group_rules) > 0  # [A, G]: key groups each atom may see as a query
        seen_by = (member.T @ group_rules.T) > 0  # [A, G]: query groups that see each atom as a key
        query_of_atom, query_reps = row_classes_array(may_see)
        key_of_atom, key_reps = row_classes_array(seen_by)
        allowed = (may_see[query_reps].astype(np.float32) @ member[:, key_reps]) > 0  # [nQ, nK]
        # Classes that differ only on groups without tokens have equal rows/columns: merge them.
        query_map, query_reps = row_classes_array(allowed)
        key_map, key_reps = row_classes_array(np.ascontiguousarray(allowed.T))
        class_allowed = np.ascontiguousarray(allowed[query_reps][:, key_reps])
        query_class = query_map[query_of_atom][of_token]
        key_class = key_map[key_of_atom][of_token]
        query_sizes = np.bincount(query_class, minlength=class_allowed.shape[0])
        key_sizes = np.bincount(key_class, minlength=class_allowed.shape[1])
        self.class_allowed = torch.from_numpy(class_allowed)
        self.query_class = torch.from_numpy(query_class)
        self.key_class = torch.from_numpy(key_class)
        self.query_class_sizes = torch.from_numpy(query_sizes)
        self.key_class_sizes = torch.from_numpy(key_sizes)
        self.allowed_pairs = int(query_sizes @ class_allowed.astype(np.int64) @ key_sizes)
        self.is_full = bool(class_allowed.all())
        self.has_empty_rows = bool((~class_allowed.any(axis=1)).any())
        self._artifacts: dict[Hashable, object] = {}
        self._lock = threading.Lock()

    @property
    def allowed_fraction(self) -> float:
        return self.allowed_pairs / float(self.seq_len * self.seq_len)

    @property
    def num_query_classes(self) -> int:
        return int(self.class_allowed.shape[0])

    @property
    def num_key_classes(self) -> int:
        return int(self.class_allowed.shape[1])

    def cached(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The artifact stored under `key`, built by `factory` on first use (kernels' per-plan caches)."""
        with self._lock:
            if key not in self._artifacts:
                self._artifacts[key] = factory()
            return self._artifacts[key]  # type: ignore[return-value]

    def empty_rows(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """`[S]` bool on `device`: queries with no allowed key (their output is zeros)."""
        device = torch.device(device)

        def build() -> torch.Tensor:
            return (~self.class_allowed.any(dim=1))[self.query_class].to(device)

        return self.cached(("empty_rows", str(device)), build)

    def dense_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """`[S, S]` bool on `device` (True = may attend). O(S²) memory: for the `dense` oracle only."""
        device = torch.device(device)

        def build() -> torch.Tensor:
            allowed = self.class_allowed.to(device)
            return allowed[self.query_class.to(device)][:, self.key_class.to(device)]

        return self.cached(("dense_mask", str(device)), build)

    def __repr__(self) -> str:
        return (
            f"MaskPlan(S={self.seq_len}, regions={self.layout.num_regions}, rules={self.rules.name!r}, "
            f"classes={self.num_query_classes}x{self.num_key_classes}, allowed={self.allowed_fraction:.3f})"
        )


class MaskPlanCache:
    """A bounded LRU of mask plans keyed by (layout, rules); thread-safe."""

    def __init__(self, max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._plans: OrderedDict[tuple[TokenLayout, AttentionRules], MaskPlan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, layout: TokenLayout, rules: AttentionRules) -> MaskPlan:
        key = (layout, rules)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = MaskPlan(layout, rules)
        with self._lock:
            plan = self._plans.setdefault(key, plan)
            self._plans.move_to_end(key)
            while len(self._plans) > self.max_entries:
                self._plans.popitem(last=False)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)


_DEFAULT_CACHE = MaskPlanCache()


def get_mask_plan(layout: TokenLayout, rules: AttentionRules, *, cache: MaskPlanCache | None = None) -> MaskPlan:
    """The mask plan of (layout, rules), built on first use; equal inputs give the same object.

    Uses a process-wide LRU unless `cache` is given (e.g. one per worker, to bound memory explicitly).
    """
    return (cache or _DEFAULT_CACHE).get(layout, rules)
