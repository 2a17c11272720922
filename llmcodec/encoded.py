"""The result of offline encoding (one concept, shared by the causal model and the reference)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class EncodedAudio:
    """Offline encoding: codes per level ``[B, n_l]`` and the input length."""

    codes: list[Tensor]
    num_samples: int
