"""One small interface over every runtime: torch, ONNX Runtime, TensorRT.

A backend runs batched blocks with numpy at its boundary, so callers never
need torch. States are ordered ``dict[str, np.ndarray]`` with the batch first;
``stack_states``/``split_states`` move streams in and out of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from llmcodec.export.metadata import GraphInfo

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


class TokenText(Protocol):
    """The LLM token forms of codes (``llmcodec.vocab.Vocabulary``, or ``ExportVocab``
    without torch). Level 0 codes index whole words; levels 1 and 2 are token ids."""

    llm_name: str
    vocab_size: int

    def level_size(self, level: int) -> int: ...

    def codes_to_token_ids(self, level: int, codes: Any) -> list[int]: ...

    def token_ids_to_codes(self, level: int, ids: Any) -> list[int]: ...

    def codes_to_text(self, level: int, codes: Any) -> str: ...

    def text_to_codes(self, level: int, text: str) -> list[int]: ...


class Backend(Protocol):
    """What the server, the clients' offline paths and the benchmarks need of a runtime."""

    name: str
    facts: ModelFacts

    @property
    def vocab(self) -> TokenText | None:
        """The model's LLM vocabulary (None: a model without one; codes only)."""
        ...

    def state_shapes(self, part: str) -> dict[str, tuple[int, ...]]:
        """Per-row state shapes of ``part`` (``encoder`` or ``decoder``), without the batch axis."""
        ...

    def init_encoder_state(self, batch: int) -> State: ...

    def encode_step(self, pcm: np.ndarray, state: State) -> tuple[list[np.ndarray], State]:
        """pcm float32 [B, block_size] -> codes int64 [B, n_l] per level, new state."""
        ...

    def init_decoder_state(self, batch: int) -> State: ...

    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """codes int64 [B, n_l] per level -> pcm float32 [B, block_size], new state."""
        ...


def facts_from_info(info: "GraphInfo") -> ModelFacts:
    """The facts an exported step graph describes (``llmcodec.export.metadata.GraphInfo``)."""
    return ModelFacts(info.model_name, info.sample_rate, info.block_size, info.hop,
                      info.vq_strides, info.tokens_per_block, info.level_sizes, info.llm_name)


def check_pcm(facts: ModelFacts, pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as contiguous float32 ``[B, block_size]``, or a clear error."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 2 or pcm.shape[1] != facts.block_size:
        raise ValueError(f"encode_step takes pcm [B, {facts.block_size}], got shape {pcm.shape}")
    return np.ascontiguousarray(pcm, dtype=np.float32)


def check_state(part: str, shapes: dict[str, tuple[int, ...]], state: State, batch: int) -> State:
    """``state`` checked against the per-row ``shapes`` at ``batch`` rows, as contiguous float32."""
    if set(state) != set(shapes):
        missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
        raise ValueError(f"{part} state does not fit this model: missing {missing[:3]}, "
                         f"unexpected {extra[:3]} (use init_{part}_state)")
    out = {}
    for k, v in state.items():
        if v.shape != (batch, *shapes[k]):
            raise ValueError(f"{part} state {k!r} has shape {v.shape}, expected {(batch, *shapes[k])}")
        out[k] = np.ascontiguousarray(v, dtype=np.float32)
    return out


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
