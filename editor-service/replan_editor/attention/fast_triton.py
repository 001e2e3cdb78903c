"""The `fast` kernel's residual on CUDA: two Triton kernels that attend row groups to their keys and merge.

A fast plan leaves, beside its unmasked rects, row groups that must attend to a few more keys (a box's hint,
a hint's own tokens) and be merged with their rect's partial result. Done with torch ops that is a gather, a
small attention call and five elementwise passes per group; here it is one pass:

- `_residual_kernel`: one program per (tile of up to `block_m` rows of one group, chunk of its keys, head). It
  loads the rows' queries by index, runs an online softmax over the keys (loaded by index too: any key set
  works), and either merges the result with the owner rect's `(out, lse)` and stores the final rows
  (*direct*: the group's keys fit in one chunk), or stores a partial `(out, lse)` to scratch (*split*: a
  long key list, e.g. a hint's 8192 latents, cut into chunks so its few rows spread over the whole GPU).
- `_combine_kernel`: merges each split tile's partials with its owner's `(out, lse)` and stores the rows.

Split programs and the rects after the first read only q, k, v, so they run on a side stream while the first
rect runs; direct programs and the combine run after the rects they merge with. Launch parameters are a
`TritonConfig` (`bench/fast_parts.py` compares them). Softmax is in
base 2 with the scale folded in (`exp2`), merges are exact log-sum-exp merges, accumulation is float32.
Under `TRITON_INTERPRET=1` the same kernels run on the CPU (the tests compare them with the dense oracle).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
import triton
import triton.language as tl

from replan_editor.attention.fast import Partial, output_buffer, rect_partials, zero_rows_
from replan_editor.attention.fast_plan import FastPlan
from replan_editor.attention.options import TritonConfig

_LOG2E = 1.4426950408889634


# Integers that change from request to request are not specialised on (Triton would compile a variant for
# a 1 or a multiple of 16), so new boxes never recompile a kernel.
@triton.jit(do_not_specialize=["num_items", "base_row0"])
def _residual_kernel(
    Q,
    K,
    V,
    Out,
    Base,
    BaseLse,
    Part,
    PartLse,
    Items,
    RowIndex,
    KeyIndex,
    num_items,
    base_row0,
    num_heads,
    num_bh,
    head_dim,
    s_qb,
    s_qh,
    s_qs,
    s_kb,
    s_kh,
    s_ks,
    s_vb,
    s_vh,
    s_vs,
    s_ob,
    s_oh,
    s_os,
    s_bb,
    s_bh,
    s_bs,
    s_lb,
    s_lh,
    s_ls,
    qk_scale,
    HAS_BASE: tl.constexpr,
    DIRECT: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    item = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // num_heads
    h = bh % num_heads
    row0 = tl.load(Items + item)
    n_rows = tl.load(Items + num_items + item)
    key0 = tl.load(Items + 2 * num_items + item)
    n_keys = tl.load(Items + 3 * num_items + item)

    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < n_rows
    d_ok = offs_d < head_dim
    rows = tl.load(RowIndex + row0 + offs_m, mask=row_ok, other=0).to(tl.int64)
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + b * s_qb + h * s_qh + rows[:, None] * s_qs + offs_d[None, :], mask=q_mask, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, n_keys, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        key_ok = offs_n < n_keys
        keys = tl.load(KeyIndex + key0 + offs_n, mask=key_ok, other=0).to(tl.int64)
        kv_mask = key_ok[:, None] & d_ok[None, :]
        k = tl.load(K + b * s_kb + h * s_kh + keys[:, None] * s_ks + offs_d[None, :], mask=kv_mask, other=0.0)
        if IEEE:  # noqa: SIM108 (a constexpr branch; the form the Triton versions in use compile)
            scores = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            scores = tl.dot(q, tl.trans(k))
        scores = tl.where(key_ok[None, :], scores * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(scores - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * s_vb + h * s_vh + keys[:, None] * s_vs + offs_d[None, :], mask=kv_mask, other=0.0)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    found = l_i > 0.0
    safe_l = tl.where(found, l_i, 1.0)
    part_lse = tl.where(found, m_i + tl.log2(safe_l), float("-inf"))  # base 2
    part_out = acc / safe_l[:, None]
    if DIRECT:
        if HAS_BASE:
            at = rows - base_row0
            base = tl.load(
                Base + b * s_bb + h * s_bh + at[:, None] * s_bs + offs_d[None, :], mask=q_mask, other=0.0
            ).to(tl.float32)
            base_lse = tl.load(BaseLse + b * s_lb + h * s_lh + at * s_ls, mask=row_ok, other=float("-inf"))
            base_lse = base_lse * 1.4426950408889634
        else:
            base = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
            base_lse = tl.full([BLOCK_M], float("-inf"), tl.float32)
        top = tl.maximum(base_lse, part_lse)
        top = tl.where(top == float("-inf"), 0.0, top)
        w_base = tl.exp2(base_lse - top)
        w_part = tl.exp2(part_lse - top)
        total = w_base + w_part
        inv = tl.where(total > 0.0, 1.0 / tl.where(total > 0.0, total, 1.0), 0.0)
        merged = (base * w_base[:, None] + part_out * w_part[:, None]) * inv[:, None]
        out_ptr = Out + b * s_ob + h * s_oh + rows[:, None] * s_os + offs_d[None, :]
        tl.store(out_ptr, merged.to(Out.dtype.element_ty), mask=q_mask)
    else:
        slot = tl.load(Items + 4 * num_items + item)
        at = (slot * num_bh + bh) * BLOCK_M + offs_m
        tl.store(Part + at[:, None] * BLOCK_D + offs_d[None, :], part_out.to(Part.dtype.element_ty))
        tl.store(PartLse + at, part_lse)


@triton.jit(do_not_specialize=["num_tiles", "base_row0"])
def _combine_kernel(
    Out,
    Base,
    BaseLse,
    Part,
    PartLse,
    Tiles,
    RowIndex,
    num_tiles,
    base_row0,
    num_heads,
    num_bh,
    head_dim,
    s_ob,
    s_oh,
    s_os,
    s_bb,
    s_bh,
    s_bs,
    s_lb,
    s_lh,
    s_ls,
    HAS_BASE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tile = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // num_heads
    h = bh % num_heads
    row0 = tl.load(Tiles + tile)
    n_rows = tl.load(Tiles + num_tiles + tile)
    slot0 = tl.load(Tiles + 2 * num_tiles + tile)
    n_slots = tl.load(Tiles + 3 * num_tiles + tile)

    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < n_rows
    mask = row_ok[:, None] & (offs_d < head_dim)[None, :]
    rows = tl.load(RowIndex + row0 + offs_m, mask=row_ok, other=0).to(tl.int64)
    if HAS_BASE:
        at = rows - base_row0
        out = tl.load(Base + b * s_bb + h * s_bh + at[:, None] * s_bs + offs_d[None, :], mask=mask, other=0.0)
        out = out.to(tl.float32)
        lse = tl.load(BaseLse + b * s_lb + h * s_lh + at * s_ls, mask=row_ok, other=float("-inf"))
        lse = lse * 1.4426950408889634
    else:
        out = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        lse = tl.full([BLOCK_M], float("-inf"), tl.float32)
    for slot in range(slot0, slot0 + n_slots):
        at_part = (slot * num_bh + bh) * BLOCK_M + offs_m
        part = tl.load(Part + at_part[:, None] * BLOCK_D + offs_d[None, :]).to(tl.float32)
        part_lse = tl.load(PartLse + at_part)
        top = tl.maximum(lse, part_lse)
        top = tl.where(top == float("-inf"), 0.0, top)
        w_out = tl.exp2(lse - top)
        w_part = tl.exp2(part_lse - top)
        total = w_out + w_part
        found = total > 0.0
        safe = tl.where(found, total, 1.0)
        out = (out * w_out[:, None] + part * w_part[:, None]) / safe[:, None]
        lse = tl.where(found, top + tl.log2(safe), float("-inf"))
    tl.store(
        Out + b * s_ob + h * s_oh + rows[:, None] * s_os + offs_d[None, :], out.to(Out.dtype.element_ty), mask=mask
    )


@dataclass(frozen=True)
class _Launch:
    """One launch's work list: `[5, W]` int32 (row start, row count, key start, key count, slot) or
    `[4, T]` (row start, row count, slot start, slot count) for the combine; and which rect it merges with."""

    owner: int
    table: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.table.shape[1])


class _Base(NamedTuple):
    """What a launch merges with: its owner rect's `(out, lse)`, that rect's first row and their strides."""

    out: torch.Tensor
    lse: torch.Tensor
    row0: int
    strides: tuple[int, ...]


@dataclass(frozen=True)
class TritonWork:
    """A fast plan's residual as kernel work lists on one device."""

    row_index: torch.Tensor
    key_index: torch.Tensor
    split: _Launch | None
    direct: tuple[_Launch, ...]
    combine: tuple[_Launch, ...]
    slots: int


def build_work(fast: FastPlan, device: torch.device, config: TritonConfig) -> TritonWork:
    """Tile every row group into programs of `block_m` rows; split key lists longer than `chunk_keys`."""
    block_m, chunk_keys = config.block_m, config.chunk_keys
    split: list[tuple[int, int, int, int, int]] = []
    direct: dict[int, list[tuple[int, int, int, int, int]]] = {}
    combine: dict[int, list[tuple[int, int, int, int]]] = {}
    slots = row_start = key_start = 0
    for group in fast.groups:
        num_rows, num_keys = int(group.rows.size), int(group.keys.size)
        chunks = max(1, math.ceil(num_keys / chunk_keys))
        per_chunk = max(1, math.ceil(math.ceil(num_keys / chunks) / config.block_n)) * config.block_n
        chunks = max(1, math.ceil(num_keys / per_chunk))  # rounding up to whole steps may leave fewer
        for tile in range(row_start, row_start + num_rows, block_m):
            tile_rows = min(block_m, row_start + num_rows - tile)
            if chunks == 1 and not (config.overlap and num_keys):
                direct.setdefault(group.owner, []).append((tile, tile_rows, key_start, num_keys, -1))
                continue
            for chunk in range(chunks):
                first = chunk * per_chunk
                count = min(num_keys, first + per_chunk) - first
                split.append((tile, tile_rows, key_start + first, count, slots + chunk))
            combine.setdefault(group.owner, []).append((tile, tile_rows, slots, chunks))
            slots += chunks
        row_start += num_rows
        key_start += num_keys

    def table(rows: list[tuple[int, int, int, int, int]] | list[tuple[int, int, int, int]]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(rows, dtype=np.int32).T)).to(device)

    def index(arrays: list[npt.NDArray[np.int64]]) -> torch.Tensor:
        """One int32 index of the arrays' entries, on the device (NumPy casts: torch's CPU ops cost far more)."""
        flat = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, dtype=np.int32)
        return torch.from_numpy(flat if flat.size else np.zeros(1, dtype=np.int32)).to(device)

    return TritonWork(
        row_index=index([g.rows for g in fast.groups]),
        key_index=index([g.keys for g in fast.groups]),
        split=_Launch(-1, table(split)) if split else None,
        direct=tuple(_Launch(owner, table(items)) for owner, items in sorted(direct.items())),
        combine=tuple(_Launch(owner, table(tiles)) for owner, tiles in sorted(combine.items())),
        slots=slots,
    )


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per device, created on first use (never at import)."""
    return torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    """The first three strides: batch, head and row of `[B, H, S, D]` tensors and `[B, H, S]` LSEs."""
    return x.stride(0), x.stride(1), x.stride(2)


def compiled_kernels() -> int | None:
    """How many compiled variants of the residual kernels this process holds (None where Triton does not say:
    its interpreter, or a version that keeps its cache elsewhere); for recompile checks."""
    total = 0
    for kernel in (_residual_kernel, _combine_kernel):
        caches = getattr(kernel, "device_caches", None)
        if not isinstance(caches, dict):
            return None
        total += sum(len(entry[0]) for entry in caches.values())
    return total


def run_triton(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fast: FastPlan, config: TritonConfig = TritonConfig()
) -> torch.Tensor:
    """Run `fast` on `q, k, v: [B, H, S, D]`: rects with the fused kernel, the residual with Triton."""
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    work = fast.cached(("triton_work", str(q.device), config), lambda: build_work(fast, q.device, config))
    batch, heads, _, dim = q.shape
    block_d = max(16, triton.next_power_of_2(dim))
    num_bh = batch * heads
    block_m = config.block_m
    part = q.new_empty(max(work.slots, 1), num_bh, block_m, block_d)
    part_lse = torch.empty(max(work.slots, 1), num_bh, block_m, device=q.device, dtype=torch.float32)
    shape_args = (heads, num_bh, dim)
    launch_meta = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    meta = {"BLOCK_M": block_m, "BLOCK_N": config.block_n, "BLOCK_D": block_d, "IEEE": q.dtype == torch.float32}

    def base_of(launch: _Launch, partials: list[Partial], out: torch.Tensor) -> _Base:
        """The owner rect's `(out, lse)`, first row and strides (placeholders when the launch has none)."""
        if launch.owner < 0:
            return _Base(out, part_lse, 0, (0,) * 6)
        base_out, base_lse = partials[launch.owner]
        strides = (*_strides(base_out), *_strides(base_lse))
        return _Base(base_out, base_lse, fast.rects[launch.owner].q0, strides)

    def residual(launch: _Launch, out: torch.Tensor, partials: list[Partial], *, direct: bool) -> None:
        base = base_of(launch, partials, out)
        _residual_kernel[(launch.count, num_bh)](
            q, k, v, out, base.out, base.lse, part, part_lse,
            launch.table, work.row_index, work.key_index, launch.count, base.row0, *shape_args,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out), *base.strides, _LOG2E / math.sqrt(dim),
            HAS_BASE=launch.owner >= 0, DIRECT=direct, **meta, **launch_meta,
        )  # fmt: skip

    # The side stream takes what reads only q, k, v (split programs, rects after the first), so it fills the
    # multiprocessors the first rect leaves idle; the main stream runs the first rect and its direct merges.
    side_work = work.split is not None or len(fast.rects) > 1
    side = _side_stream(q.device) if q.is_cuda and config.side_stream and side_work else None
    main = torch.cuda.current_stream(q.device) if side is not None else None
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        if side is not None:
            side.wait_stream(main)  # type: ignore[arg-type]
        if work.split is not None:
            residual(work.split, part, [], direct=False)
        later = rect_partials(q, k, v, fast.rects[1:])
    partials = rect_partials(q, k, v, fast.rects[:1]) + later
    out = output_buffer(q, fast, partials)
    for launch in work.direct:
        if launch.owner == 0:
            residual(launch, out, partials, direct=True)
    if side is not None:
        main.wait_stream(side)  # type: ignore[union-attr]
        for tensor in (t for p in later for t in p):
            tensor.record_stream(main)  # type: ignore[arg-type]
    for launch in work.direct:
        if launch.owner != 0:
            residual(launch, out, partials, direct=True)
    for launch in work.combine:
        base = base_of(launch, partials, out)
        _combine_kernel[(launch.count, num_bh)](
            out, base.out, base.lse, part, part_lse, launch.table, work.row_index, launch.count, base.row0,
            *shape_args, *_strides(out), *base.strides,
            HAS_BASE=launch.owner >= 0, BLOCK_M=block_m, BLOCK_D=block_d, num_warps=config.num_warps,
        )  # fmt: skip
    zero_rows_(out, fast)
    return out
