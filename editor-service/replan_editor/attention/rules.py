"""Attention rules: which token group may attend which, as a boolean group × group matrix.

`rules.allowed[q][k]` is True when queries of group q may attend keys of group k (rows and columns in
`groups.groups_for` order). This module owns the built-in rule sets of the original RePlan — the paper's
default rules and the demo's locality rule, with the `symmetric_masking` and
`bboxes_attend_to_each_other` variants — user matrices given by label, and the rule schedule (custom
rules before the switch step, default rules after). Token-level masks are built from rules in `mask_plan`.

Picking rules for a step::

    default = default_rules(num_regions, has_image_prompt=is_qwen)
    custom = locality_rules(num_regions, has_image_prompt=is_qwen)        # or:
    custom = rules_from_mapping({"N.BG|N.B1": False}, base=default)
    schedule = RuleSchedule.from_ratio(custom, default, ratio=0.5, num_steps=28)
    rules = schedule.rules_for_step(step)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from replan_common.errors import InvalidRules
from replan_editor.attention.groups import Group, GroupKind, groups_for, parse_label

Matrix = tuple[tuple[bool, ...], ...]


@dataclass(frozen=True)
class AttentionRules:
    """A query-group × key-group boolean matrix for a layout with `num_regions` regions.

    Compared and hashed by value (the `name` is only a description), so it keys the mask-plan cache.
    """

    num_regions: int
    has_image_prompt: bool
    allowed: Matrix
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        size = len(self.groups)
        if len(self.allowed) != size or any(len(row) != size for row in self.allowed):
            raise ValueError(f"rule matrix must be {size}x{size} for this layout")

    @property
    def groups(self) -> tuple[Group, ...]:
        return groups_for(self.num_regions, has_image_prompt=self.has_image_prompt)

    def allows(self, query: str, key: str) -> bool:
        """Whether every group named by label `query` may attend every group named by label `key`."""
        groups = self.groups
        index = {g: i for i, g in enumerate(groups)}
        return all(
            self.allowed[index[q]][index[k]] for q in parse_label(query, groups) for k in parse_label(key, groups)
        )

    def to_tensor(self) -> torch.Tensor:
        """`[G, G]` bool on CPU."""
        return torch.from_numpy(self.matrix.copy())

    @functools.cached_property
    def matrix(self) -> npt.NDArray[np.bool_]:
        """`[G, G]` bool NumPy array, built once per rules object (read-only: it is shared)."""
        size = len(self.allowed)
        matrix = np.array(self.allowed, dtype=np.bool_).reshape(size, size)
        matrix.flags.writeable = False
        return matrix

    def to_mapping(self, *, short: bool = True) -> dict[str, bool]:
        """Every cell as `{"Query|Key": allowed}` (the demo's wire form), short or long labels."""
        names = [g.short_label if short else g.label for g in self.groups]
        return {f"{q}|{k}": self.allowed[i][j] for i, q in enumerate(names) for j, k in enumerate(names)}


def _build(num_regions: int, has_image_prompt: bool, name: str, rule: _CellRule) -> AttentionRules:
    groups = groups_for(num_regions, has_image_prompt=has_image_prompt)
    allowed = tuple(tuple(rule(q, k) for k in groups) for q in groups)
    return AttentionRules(num_regions, has_image_prompt, allowed, name=name)


class _CellRule:
    """The original's default rules, cell by cell (facts §2), with its two variants."""

    def __init__(self, *, symmetric_masking: bool, bboxes_attend_to_each_other: bool, locality: bool) -> None:
        self.symmetric_masking = symmetric_masking
        self.bboxes_attend_to_each_other = bboxes_attend_to_each_other
        self.locality = locality

    def __call__(self, q: Group, k: Group) -> bool:
        if q == k:
            return True  # every group attends to itself
        if GroupKind.IMAGE_PROMPT in (q.kind, k.kind):
            return True  # the Qwen image prompt attends to everything and everything attends to it
        if q.kind is GroupKind.MAIN:
            return k.is_latent  # Main sees every image group, no hint
        if q.kind is GroupKind.HINT:
            if not k.is_latent:
                return False  # a hint sees neither Main nor other hints
            return k.is_box and k.region == q.region if self.symmetric_masking else True
        # q is an image group (box or background, noise or image copy)
        if k.kind is GroupKind.MAIN:
            return True
        if k.kind is GroupKind.HINT:
            return q.is_box and q.region == k.region  # box i sees hint i only; background sees no hint
        # both image groups
        if self.locality and q.kind is GroupKind.NOISE_BACKGROUND and k.kind is GroupKind.NOISE_BOX:
            return False  # the demo's locality rule: noise background ↛ noise boxes
        if q.is_box and not self.bboxes_attend_to_each_other:
            return k.is_background or k.region == q.region  # box i sees itself (both copies) and the background
        return True


def default_rules(
    num_regions: int,
    *,
    has_image_prompt: bool = False,
    symmetric_masking: bool = False,
    bboxes_attend_to_each_other: bool = True,
) -> AttentionRules:
    """The paper's default rules, in split form (noise and image copies of each box and the background).

    - every group attends to itself; every image group attends to every image group and to Main, and Main
      to every image group; box i attends to hint i only; the background to no hint;
    - hint i attends to itself and every image group (with `symmetric_masking`: only to box i, both copies);
      Main and hints never see each other, nor hints one another;
    - the Qwen image prompt attends to everything and everything to it (also under the variants);
    - `bboxes_attend_to_each_other=False`: box i sees, of the image groups, only box i and the background.
    """
    return _built_in(num_regions, has_image_prompt, symmetric_masking, bboxes_attend_to_each_other, locality=False)


def locality_rules(
    num_regions: int,
    *,
    has_image_prompt: bool = False,
    symmetric_masking: bool = False,
    bboxes_attend_to_each_other: bool = True,
) -> AttentionRules:
    """The demo's custom rule: the default rules with one change, `Noise Background ↛ Noise BBox i` for all i.

    Everything else stays as in `default_rules`, including `Image Background → Noise BBox i`.
    """
    return _built_in(num_regions, has_image_prompt, symmetric_masking, bboxes_attend_to_each_other, locality=True)


@functools.lru_cache(maxsize=256)
def _built_in(
    num_regions: int,
    has_image_prompt: bool,
    symmetric_masking: bool,
    bboxes_attend_to_each_other: bool,
    *,
    locality: bool,
) -> AttentionRules:
    """A built-in rule set, built once per shape and variant: cell by cell it costs ~2 ms at 16 regions, and
    `AttentionRules` is immutable, so every request with that many regions can share it."""
    rule = _CellRule(
        symmetric_masking=symmetric_masking, bboxes_attend_to_each_other=bboxes_attend_to_each_other, locality=locality
    )
    return _build(num_regions, has_image_prompt, "locality" if locality else "default", rule)


def _split_key(key: str) -> tuple[str, str]:
    for separator in ("|", ","):
        parts = key.split(separator)
        if len(parts) == 2 and all(p.strip() for p in parts):
            return parts[0], parts[1]
    raise InvalidRules(
        f'malformed attention-rule key {key!r}: expected "Query, Key" or "Query|Key"',
        code="malformed_rule_key",
        param=f"custom_rules[{key!r}]",
    )


def rules_from_mapping(mapping: Mapping[str, object], *, base: AttentionRules, name: str = "custom") -> AttentionRules:
    """`base` with the cells named in `mapping` (`{"Query, Key": bool}` or `{"Query|Key": bool}`) replaced.

    Labels may be long (`Noise BBox 1`) or short (`N.B1`), in any case; the logical labels `BBox i` and
    `Background` name both copies. Cells not named keep `base`'s value. Cells naming more groups (logical
    labels) are applied before cells naming fewer, so `{"BBox 1|Main": False, "N.B1|Main": True}` means
    what it says whatever the key order. Raises `InvalidRules` with code `malformed_rule_key`,
    `unknown_rule_label` (the message lists the valid labels) or `invalid_rule_value` (not a bool).
    """
    groups = base.groups
    index = {g: i for i, g in enumerate(groups)}
    cells: list[tuple[int, list[tuple[int, int]], bool]] = []
    for key, value in mapping.items():
        param = f"custom_rules[{key!r}]"
        if not isinstance(value, bool):
            raise InvalidRules(
                f"attention rule {key!r} must be true or false, got {value!r}", code="invalid_rule_value", param=param
            )
        query, key_label = _split_key(key)
        queries = parse_label(query, groups, param=param)
        keys = parse_label(key_label, groups, param=param)
        targets = [(index[q], index[k]) for q in queries for k in keys]
        cells.append((len(targets), targets, value))
    allowed = [list(row) for row in base.allowed]
    for _, targets, value in sorted(cells, key=lambda cell: -cell[0]):
        for qi, ki in targets:
            allowed[qi][ki] = value
    matrix = tuple(tuple(row) for row in allowed)
    return AttentionRules(base.num_regions, base.has_image_prompt, matrix, name=name)


def switch_step(ratio: float, num_steps: int) -> int:
    """First step that uses the default rules: `int(ratio * num_steps)` for ratio <= 1, else `int(ratio)`."""
    if not math.isfinite(ratio) or ratio < 0:
        raise InvalidRules(
            f"rule switch ratio must be a finite number >= 0, got {ratio}",
            code="invalid_switch_ratio",
            param="rule_switch_ratio",
        )
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return int(ratio * num_steps) if ratio <= 1 else int(ratio)


@dataclass(frozen=True)
class RuleSchedule:
    """Custom rules for steps `[0, switch_at)`, default rules from `switch_at` on."""

    custom: AttentionRules
    default: AttentionRules
    switch_at: int

    def __post_init__(self) -> None:
        if (self.custom.num_regions, self.custom.has_image_prompt) != (
            self.default.num_regions,
            self.default.has_image_prompt,
        ):
            raise ValueError("custom and default rules must describe the same groups")

    @classmethod
    def from_ratio(
        cls, custom: AttentionRules, default: AttentionRules, *, ratio: float, num_steps: int
    ) -> RuleSchedule:
        return cls(custom, default, switch_step(ratio, num_steps))

    def rules_for_step(self, step: int) -> AttentionRules:
        """Rules of denoising step `step` (0-based)."""
        return self.custom if step < self.switch_at else self.default
