"""Validation of codes, shared by the model, every backend and the protocol.

Codes are per level ``[B, k * tokens_per_block[l]]`` (numpy arrays or torch
tensors): ``k`` whole blocks, each code in ``[0, level_sizes[l])``.
"""
from __future__ import annotations

from typing import Any, Sequence


def check_codes(codes: Sequence[Any], tokens_per_block: Sequence[int], level_sizes: Sequence[int],
                blocks: int | None = None, *, empty: bool = True) -> int:
    """Validate per-level codes ``[B, k * n_l]``; returns ``k``. A ValueError names the level and
    what is accepted. ``empty=False`` refuses zero blocks."""
    if len(codes) != len(tokens_per_block):
        raise ValueError(f"expected {len(tokens_per_block)} levels of codes, got {len(codes)}")
    counts = []
    for level, (c, n, size) in enumerate(zip(codes, tokens_per_block, level_sizes)):
        shape = tuple(c.shape)
        if len(shape) != 2 or (shape[1] == 0 and not empty) or shape[1] % n or not _integer(c):
            raise ValueError(f"level {level + 1} has {shape[-1] if shape else 0} tokens of "
                             f"{getattr(c, 'dtype', type(c).__name__)} {shape}; each level needs integers "
                             f"[B, a {'' if empty else 'positive '}multiple of {n}] (tokens per block: {list(tokens_per_block)})")
        lo, hi = (int(c.min()), int(c.max())) if shape[1] else (0, 0)
        if lo < 0 or hi >= size:
            raise ValueError(f"level {level + 1} codes must be in [0, {size}), got {lo}..{hi}")
        counts.append(shape[1] // n)
    if len(set(counts)) != 1 or (blocks is not None and counts[0] != blocks):
        want = f"; expected {blocks}" if blocks is not None else ""
        raise ValueError(f"levels disagree on the number of blocks: {counts}{want} "
                         f"(tokens per block: {list(tokens_per_block)})")
    return counts[0]


def _integer(c: Any) -> bool:
    dtype = getattr(c, "dtype", None)
    if dtype is None:
        return False
    if hasattr(dtype, "is_floating_point"):  # torch
        return not dtype.is_floating_point and not dtype.is_complex and str(dtype) != "torch.bool"
    import numpy as np
    return np.issubdtype(dtype, np.integer)
