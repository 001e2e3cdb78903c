"""Token groups of region attention: their identity, order and labels (long and short forms).

A group is a set of tokens that shares attention rules: the main prompt, the Qwen image prompt, each
hint, each box's noise and image-latent copies, and the two background copies. This module owns the
group list of a layout (its order is the row/column order of every rule matrix) and the labels the
original RePlan uses, in both forms (`Noise BBox 1` / `N.B1`), plus parsing them back. It knows nothing
of tokens (see `layout`) or of which group may attend which (see `rules`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from replan_common.errors import InvalidRules


class GroupKind(str, Enum):
    """What a group of tokens is."""

    MAIN = "main"
    IMAGE_PROMPT = "image_prompt"
    HINT = "hint"
    NOISE_BOX = "noise_box"
    IMAGE_BOX = "image_box"
    NOISE_BACKGROUND = "noise_background"
    IMAGE_BACKGROUND = "image_background"


_LONG_NAMES: dict[GroupKind, str] = {
    GroupKind.MAIN: "Main Prompt",
    GroupKind.IMAGE_PROMPT: "Image Prompt",
    GroupKind.HINT: "Hint {i}",
    GroupKind.NOISE_BOX: "Noise BBox {i}",
    GroupKind.IMAGE_BOX: "Image BBox {i}",
    GroupKind.NOISE_BACKGROUND: "Noise Background",
    GroupKind.IMAGE_BACKGROUND: "Image Background",
}

_SHORT_NAMES: dict[GroupKind, str] = {
    GroupKind.MAIN: "Main",
    GroupKind.IMAGE_PROMPT: "ImgP",
    GroupKind.HINT: "H{i}",
    GroupKind.NOISE_BOX: "N.B{i}",
    GroupKind.IMAGE_BOX: "I.B{i}",
    GroupKind.NOISE_BACKGROUND: "N.BG",
    GroupKind.IMAGE_BACKGROUND: "I.BG",
}

_LATENT_KINDS = frozenset(
    {GroupKind.NOISE_BOX, GroupKind.IMAGE_BOX, GroupKind.NOISE_BACKGROUND, GroupKind.IMAGE_BACKGROUND}
)


@dataclass(frozen=True)
class Group:
    """One token group; `region` is the 1-based region number for hints and boxes, else None."""

    kind: GroupKind
    region: int | None = None

    @property
    def label(self) -> str:
        """The original's long label, e.g. `Noise BBox 2`."""
        return _LONG_NAMES[self.kind].format(i=self.region)

    @property
    def short_label(self) -> str:
        """The demo's short label, e.g. `N.B2`."""
        return _SHORT_NAMES[self.kind].format(i=self.region)

    @property
    def is_latent(self) -> bool:
        """True for the image-token groups (boxes and backgrounds, noise and image copies)."""
        return self.kind in _LATENT_KINDS

    @property
    def is_box(self) -> bool:
        return self.kind in (GroupKind.NOISE_BOX, GroupKind.IMAGE_BOX)

    @property
    def is_background(self) -> bool:
        return self.kind in (GroupKind.NOISE_BACKGROUND, GroupKind.IMAGE_BACKGROUND)


def groups_for(num_regions: int, *, has_image_prompt: bool = False) -> tuple[Group, ...]:
    """The groups of a layout, in rule-matrix order: Main, [ImgP], then Hi, N.Bi, I.Bi per region, N.BG, I.BG.

    The order is the demo's matrix order; it has no effect on attention.
    """
    if num_regions < 0:
        raise ValueError(f"num_regions must be >= 0, got {num_regions}")
    groups: list[Group] = [Group(GroupKind.MAIN)]
    if has_image_prompt:
        groups.append(Group(GroupKind.IMAGE_PROMPT))
    for i in range(1, num_regions + 1):
        groups += [Group(GroupKind.HINT, i), Group(GroupKind.NOISE_BOX, i), Group(GroupKind.IMAGE_BOX, i)]
    groups += [Group(GroupKind.NOISE_BACKGROUND), Group(GroupKind.IMAGE_BACKGROUND)]
    return tuple(groups)


# Label grammar. Keys are normalised first: lower case, runs of spaces and underscores become one space,
# spaces around dots removed. Indexed kinds capture the region number.
_FIXED_LABELS: dict[str, tuple[GroupKind, ...]] = {
    "main prompt": (GroupKind.MAIN,),
    "main": (GroupKind.MAIN,),
    "image prompt": (GroupKind.IMAGE_PROMPT,),
    "imgp": (GroupKind.IMAGE_PROMPT,),
    "noise background": (GroupKind.NOISE_BACKGROUND,),
    "n.bg": (GroupKind.NOISE_BACKGROUND,),
    "image background": (GroupKind.IMAGE_BACKGROUND,),
    "i.bg": (GroupKind.IMAGE_BACKGROUND,),
    # The original's logical (unsplit) group: both copies.
    "background": (GroupKind.NOISE_BACKGROUND, GroupKind.IMAGE_BACKGROUND),
}

_INDEXED_LABELS: tuple[tuple[re.Pattern[str], tuple[GroupKind, ...]], ...] = (
    (re.compile(r"(?:hint ?|h)(\d+)"), (GroupKind.HINT,)),
    (re.compile(r"(?:noise bbox ?|n\.b)(\d+)"), (GroupKind.NOISE_BOX,)),
    (re.compile(r"(?:image bbox ?|i\.b)(\d+)"), (GroupKind.IMAGE_BOX,)),
    # The original's logical (unsplit) box group: both copies.
    (re.compile(r"bbox ?(\d+)"), (GroupKind.NOISE_BOX, GroupKind.IMAGE_BOX)),
)


def _normalise(label: str) -> str:
    text = re.sub(r"[\s_]+", " ", label.strip().lower())
    return re.sub(r" ?\. ?", ".", text)


def valid_labels(groups: tuple[Group, ...]) -> str:
    """`Long (Short)` for every group, for error messages."""
    return ", ".join(f"{g.label} ({g.short_label})" for g in groups)


def parse_label(label: str, groups: tuple[Group, ...], *, param: str | None = None) -> tuple[Group, ...]:
    """The groups a label names: one group, or both copies for the logical `BBox i` / `Background`.

    Accepts long and short forms in any case. Raises `InvalidRules` (code `unknown_rule_label`) naming the
    label and listing the valid ones when it names no group of this layout.
    """
    text = _normalise(label)
    kinds: tuple[GroupKind, ...] | None = _FIXED_LABELS.get(text)
    region: int | None = None
    if kinds is None:
        for pattern, indexed_kinds in _INDEXED_LABELS:
            match = pattern.fullmatch(text)
            if match:
                kinds, region = indexed_kinds, int(match.group(1))
                break
    found = tuple(Group(kind, region) for kind in kinds) if kinds else ()
    if not found or any(g not in groups for g in found):
        raise InvalidRules(
            f"unknown attention-rule label {label!r}; valid labels for this layout: {valid_labels(groups)}",
            code="unknown_rule_label",
            param=param,
        )
    return found
