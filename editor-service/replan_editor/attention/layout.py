"""Where each token group sits in the joint attention sequence of one request.

The joint sequence is `[text | noise latents (N) | image latents (N)]` with N = cols·rows of the token
grid, for FLUX.1 Kontext and Qwen-Image-Edit alike. The text is the main prompt (for Qwen with its
vision span, the `Image Prompt` group, inside it) and hints 1..K, each a contiguous segment, by default
in the order `[main | hint 1 | … | hint K]`; `hints_first=True` gives `[hint 1 | … | hint K | main]`.
Region i covers the same grid tokens in the noise and image copies; the background is every grid token
in no box; boxes may overlap, so one token can belong to several groups and membership is a boolean
`[G, S]` matrix. This module owns that layout and the plan → layout mapping; rules live in `rules`, masks
in `mask_plan`.

Building a layout for a request::

    layout = layout_from_plan(
        plan, original=Size(w, h), working=Size(1024, 1024),
        main_tokens=512, hint_tokens=[512, 512],      # one count per region, in plan order
        image_prompt=None,                            # Qwen: (start, stop) of the vision span in main
        expand_value=0.15, expand_mode=ExpandMode.RATIO,
    )

`hints_first=True` does not change the math (text RoPE is applied by the caller before attention) but
lets the `fast` kernel take the main prompt and the latents as one contiguous key block instead of a
gather; measured on an H200 it saves 1-3 %, so either order is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from replan_common.geometry import ExpandMode, Size, TokenSpan, box_to_token_span, expand_box, token_grid
from replan_common.plan import RegionPlan
from replan_editor.attention.groups import Group, groups_for


@dataclass(frozen=True)
class TextLayout:
    """Token counts of the text segments.

    Attributes:
        main_tokens: length of the main (global) prompt segment; 0 when the main prompt is deleted.
        hint_tokens: length of each hint segment, one per region, in region order (padded or trimmed).
        image_prompt: Qwen only, `(start, stop)` of the vision-token span inside the main prompt, which
            forms the `Image Prompt` group; the rest of the main segment is `Main Prompt`.
        hints_first: place the hints before the main prompt instead of after it.
    """

    main_tokens: int
    hint_tokens: tuple[int, ...] = ()
    image_prompt: tuple[int, int] | None = None
    hints_first: bool = False

    def __post_init__(self) -> None:
        if self.main_tokens < 0:
            raise ValueError(f"main_tokens must be >= 0, got {self.main_tokens}")
        if any(n < 1 for n in self.hint_tokens):
            raise ValueError(f"every hint needs at least one token, got {list(self.hint_tokens)}")
        if self.image_prompt is not None:
            start, stop = self.image_prompt
            if not 0 <= start < stop <= self.main_tokens:
                raise ValueError(
                    f"image_prompt span {self.image_prompt} must lie inside the main prompt [0, {self.main_tokens})"
                )

    @property
    def total(self) -> int:
        return self.main_tokens + sum(self.hint_tokens)

    @property
    def main_offset(self) -> int:
        return sum(self.hint_tokens) if self.hints_first else 0

    def hint_range(self, region: int) -> range:
        """Sequence positions of hint `region` (1-based)."""
        start = 0 if self.hints_first else self.main_tokens
        start += sum(self.hint_tokens[: region - 1])
        return range(start, start + self.hint_tokens[region - 1])


@dataclass(frozen=True)
class TokenLayout:
    """The token groups of one request: text segments, the latent grid and the token span of each region.

    Hashable and compared by value, so it keys the mask-plan cache.
    """

    text: TextLayout
    grid: Size
    spans: tuple[TokenSpan, ...] = ()

    def __post_init__(self) -> None:
        if self.grid.width < 1 or self.grid.height < 1:
            raise ValueError(f"token grid must be at least 1x1, got {self.grid.width}x{self.grid.height}")
        if len(self.spans) != len(self.text.hint_tokens):
            raise ValueError(
                f"{len(self.spans)} region spans but {len(self.text.hint_tokens)} hint segments; "
                "give one hint token count per region"
            )
        for i, span in enumerate(self.spans):
            if not (0 <= span.row0 <= span.row1 <= self.grid.height and 0 <= span.col0 <= span.col1 <= self.grid.width):
                raise ValueError(f"span of region {i + 1} {span} lies outside the {self.grid} token grid")

    @property
    def num_regions(self) -> int:
        return len(self.spans)

    @property
    def has_image_prompt(self) -> bool:
        return self.text.image_prompt is not None

    @property
    def grid_tokens(self) -> int:
        """N: tokens in one latent copy."""
        return self.grid.width * self.grid.height

    @property
    def noise_offset(self) -> int:
        return self.text.total

    @property
    def image_offset(self) -> int:
        return self.text.total + self.grid_tokens

    @property
    def seq_len(self) -> int:
        """S = text + 2N."""
        return self.text.total + 2 * self.grid_tokens

    @property
    def groups(self) -> tuple[Group, ...]:
        return groups_for(self.num_regions, has_image_prompt=self.has_image_prompt)

    def atoms(self) -> TokenAtoms:
        """Tokens grouped by exact group membership: a handful of atoms instead of S tokens.

        Text tokens are in one group each; a latent token's groups are fixed by its copy (noise or image)
        and the set of boxes covering its grid cell, so the atoms are the text groups plus two per distinct
        box-cover pattern. Everything downstream works on atoms and maps back with one index.
        """
        of_token, membership = self.atom_arrays()
        return TokenAtoms(of_token=torch.from_numpy(of_token), membership=torch.from_numpy(membership))

    def atom_arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """`atoms()` as NumPy arrays `(of_token [S], membership [G, A])`, built without a loop over atoms.

        Atoms are numbered main, image prompt, hints 1..K (those with tokens), then per box-cover pattern (in
        `row_classes` order) its noise atom and its image atom. Group rows follow `groups_for`: Main, [ImgP],
        then Hi, N.Bi, I.Bi per region, N.BG, I.BG.
        """
        text, k = self.text, self.num_regions
        first_region = 2 if text.image_prompt is not None else 1  # group row of Hint 1
        num_groups = first_region + 3 * k + 2
        of_token = np.empty(self.seq_len, dtype=np.int64)
        text_groups: list[int] = []  # per text atom, its one group
        image_prompt = 0 if text.image_prompt is None else text.image_prompt[1] - text.image_prompt[0]
        if text.main_tokens > image_prompt:  # only atoms that have tokens
            of_token[text.main_offset : text.main_offset + text.main_tokens] = len(text_groups)
            text_groups.append(0)
        if text.image_prompt is not None:
            start, stop = (text.main_offset + p for p in text.image_prompt)
            of_token[start:stop] = len(text_groups)
            text_groups.append(1)
        for region in range(1, k + 1):
            hint = text.hint_range(region)
            of_token[hint.start : hint.stop] = len(text_groups)
            text_groups.append(first_region + 3 * (region - 1))

        cover = np.zeros((k, self.grid.height, self.grid.width), dtype=np.bool_)
        for i, span in enumerate(self.spans):
            cover[i, span.row0 : span.row1, span.col0 : span.col1] = True
        cells = cover.reshape(k, self.grid_tokens).T  # [N, K]: the boxes covering each grid cell
        pattern, representative = row_classes_array(cells)
        patterns = cells[representative]  # [P, K]
        num_text = len(text_groups)
        membership = np.zeros((num_groups, num_text + 2 * len(representative)), dtype=np.bool_)
        membership[text_groups, np.arange(num_text)] = True
        boxes = first_region + 3 * np.arange(k)  # group row of Hint i; N.Bi and I.Bi follow
        noise_atoms = num_text + 2 * np.arange(len(representative))
        membership[np.ix_(boxes + 1, noise_atoms)] = patterns.T
        membership[np.ix_(boxes + 2, noise_atoms + 1)] = patterns.T
        background = ~patterns.any(axis=1)
        membership[num_groups - 2, noise_atoms[background]] = True
        membership[num_groups - 1, noise_atoms[background] + 1] = True
        n = self.grid_tokens
        of_token[self.noise_offset : self.noise_offset + n] = noise_atoms[pattern]
        of_token[self.image_offset : self.image_offset + n] = noise_atoms[pattern] + 1
        return of_token, membership

    def membership(self) -> torch.Tensor:
        """`[G, S]` bool on CPU: `member[g, s]` is True when token s belongs to group g (rows in `groups` order)."""
        atoms = self.atoms()
        return atoms.membership[:, atoms.of_token]


@dataclass(frozen=True)
class TokenAtoms:
    """Tokens with identical group membership, merged.

    Attributes:
        of_token: `[S]` int64, the atom of each token.
        membership: `[G, A]` bool, the groups of each atom.
    """

    of_token: torch.Tensor
    membership: torch.Tensor


def row_classes(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For `rows: [N, W]` bool: a dense class id per row (equal rows ⇔ equal ids) and a representative row per class.

    Ids follow the rows' order read 52 columns at a time as integers (column j of a chunk is bit j), chunk by
    chunk, so any width works; the representative is the first row of its class. See `row_classes_array`.
    """
    ids, representative = row_classes_array(rows.numpy())
    return torch.from_numpy(ids), torch.from_numpy(representative)


def row_classes_array(rows: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """`row_classes` on a NumPy bool array (the plan build's hot path: NumPy has no per-op thread dispatch)."""
    size, width = rows.shape
    if size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ids = np.zeros(size, dtype=np.int64)
    first = np.zeros(1, dtype=np.int64)
    for start in range(0, width, 52):
        block = rows[:, start : start + 52]
        padded = np.zeros((size, 64), dtype=np.bool_)
        padded[:, : block.shape[1]] = block
        word = np.packbits(padded, axis=1, bitorder="little").view("<u8")[:, 0]
        if width <= 52:  # one chunk: the ranks of the words are the ids
            _, first, ids = np.unique(word, return_index=True, return_inverse=True)
        else:
            _, rank = np.unique(word, return_inverse=True)
            combined = ids * (int(rank.max()) + 1) + rank.reshape(-1)
            _, first, ids = np.unique(combined, return_index=True, return_inverse=True)
        ids = ids.reshape(-1)
    return ids.astype(np.int64, copy=False), first.astype(np.int64, copy=False)


def layout_from_plan(
    plan: RegionPlan,
    original: Size,
    working: Size,
    *,
    main_tokens: int,
    hint_tokens: Sequence[int],
    image_prompt: tuple[int, int] | None = None,
    expand_value: float = 0.0,
    expand_mode: ExpandMode = ExpandMode.RATIO,
    hints_first: bool = False,
) -> TokenLayout:
    """The layout of a plan edited at `working` resolution.

    Each box is grown by `expand_value` (per side, a fraction of its size or pixels) and clipped in
    original pixels, then scaled to working pixels and mapped to tokens at 16 px per token (floor start,
    ceil end, clipped to the grid), as the original does.

    Args:
        plan: boxes in original-image pixels; region i pairs with `hint_tokens[i]`.
        original: size of the user's image (the space of the plan's boxes).
        working: the editor's resolution (a Kontext bucket, or about 1024² for Qwen).
        main_tokens: length of the main-prompt segment (for Qwen including its vision span).
        hint_tokens: length of each hint segment, one per region.
        image_prompt: Qwen only, `(start, stop)` of the vision span inside the main prompt.
    """
    if len(hint_tokens) != len(plan.regions):
        raise ValueError(f"{len(plan.regions)} regions but {len(hint_tokens)} hint token counts")
    spans = tuple(
        box_to_token_span(expand_box(region.bbox, expand_value, expand_mode, original), original, working)
        for region in plan.regions
    )
    text = TextLayout(
        main_tokens=main_tokens,
        hint_tokens=tuple(hint_tokens),
        image_prompt=image_prompt,
        hints_first=hints_first,
    )
    return TokenLayout(text=text, grid=token_grid(working), spans=spans)
