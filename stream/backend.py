"""One small interface over every runtime: torch, ONNX Runtime, TensorRT.

A backend runs batched blocks with numpy at its boundary, so callers never
need torch. States are ordered ``dict[str, np.ndarray]`` with the batch first;
batched state rows live in ``stream/slots.py`` (``StatePool``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from llmcodec.codes import check_codes as _check_codes
from llmcodec.token_forms import TokenForms

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


class Backend(Protocol):
    """What the server, the clients' offline paths and the benchmarks need of a runtime."""

    name: str
    facts: ModelFacts

    @property
    def vocab(self) -> TokenForms | None:
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


def check_codes(facts: ModelFacts, codes: list[np.ndarray], blocks: int | None = 1) -> int:
    """Validate per-level codes [B, blocks * n_l]; returns the number of blocks (``llmcodec.codes``)."""
    return _check_codes([np.asarray(c) for c in codes], facts.tokens_per_block, facts.level_sizes, blocks)
