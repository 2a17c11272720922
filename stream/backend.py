"""One small interface over every runtime: torch, ONNX Runtime, TensorRT.

A backend runs batched blocks with numpy at its boundary, so callers never
need torch. States are ordered ``dict[str, np.ndarray]`` with the batch first;
``stack_states``/``split_states`` move streams in and out of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelFacts:
    """What a client or runtime needs to know about a model."""

    name: str
    sample_rate: int
    block_size: int
    hop: int
    vq_strides: tuple[int, ...]
    tokens_per_block: tuple[int, ...]
    level_sizes: tuple[int, ...]
    llm_name: str

    @property
    def tokens_per_second(self) -> float:
        return sum(self.tokens_per_block) * self.sample_rate / self.block_size

    @property
    def block_seconds(self) -> float:
        return self.block_size / self.sample_rate


class Backend(Protocol):
    name: str
    facts: ModelFacts

    def init_encoder_state(self, batch: int) -> State: ...

    def encode_step(self, pcm: np.ndarray, state: State) -> tuple[list[np.ndarray], State]:
        """pcm float32 [B, block_size] -> codes int64 [B, n_l] per level, new state."""
        ...

    def init_decoder_state(self, batch: int) -> State: ...

    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """codes int64 [B, n_l] per level -> pcm float32 [B, block_size], new state."""
        ...


def stack_states(states: list[State]) -> State:
    """Per-stream states [1, ...] -> one batched state [B, ...]."""
    return {k: np.concatenate([s[k] for s in states], axis=0) for k in states[0]}


def split_states(state: State) -> list[State]:
    """A batched state [B, ...] -> B single-row states (copies)."""
    b = next(iter(state.values())).shape[0]
    return [{k: v[i:i + 1].copy() for k, v in state.items()} for i in range(b)]


def check_codes(facts: ModelFacts, codes: list[np.ndarray], blocks: int | None = 1) -> int:
    """Validate per-level codes [B, blocks * n_l]; returns the number of blocks."""
    if len(codes) != len(facts.tokens_per_block):
        raise ValueError(f"expected {len(facts.tokens_per_block)} levels of codes, got {len(codes)}")
    counts = []
    for level, (c, n, k) in enumerate(zip(codes, facts.tokens_per_block, facts.level_sizes)):
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[1] % n or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"level {level + 1} codes must be integers [B, multiple of {n}], got {c.dtype} {c.shape}")
        if c.size and (c.min() < 0 or c.max() >= k):
            raise ValueError(f"level {level + 1} codes must be in [0, {k}), got {c.min()}..{c.max()}")
        counts.append(c.shape[1] // n)
    if len(set(counts)) != 1 or (blocks is not None and counts[0] != blocks):
        raise ValueError(f"levels disagree on the number of blocks: {counts}")
    return counts[0]
