"""Explicit streaming state: an ordered, immutable collection of named tensors.

Every streaming layer describes its own buffers with ``state_shapes()`` and
returns new tensors from ``step``; nothing is written in place. The names are
the ONNX input names; each output is named ``name + "_out"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import Tensor

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class StreamState:
    """Named state tensors, each ``[B, ...]`` with the batch first."""

    tensors: Mapping[str, Tensor]

    def names(self) -> list[str]:
        return list(self.tensors)

    def flatten(self) -> list[Tensor]:
        return list(self.tensors.values())

    @classmethod
    def unflatten(cls, names: list[str], tensors: list[Tensor]) -> "StreamState":
        if len(names) != len(tensors):
            raise ValueError(f"{len(names)} names for {len(tensors)} state tensors")
        return cls(dict(zip(names, tensors)))

    @property
    def batch_size(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def reset_rows(self, rows: Tensor) -> "StreamState":
        """Zero (the initial state) the rows where ``rows`` [B] (bool) is True."""
        keep = (~rows.bool()).to(next(iter(self.tensors.values())).dtype)
        out = {}
        for k, v in self.tensors.items():
            out[k] = v * keep.view(-1, *([1] * (v.dim() - 1))).to(v.dtype)
        return StreamState(out)

    def select(self, rows: list[int] | Tensor) -> "StreamState":
        """The state of a subset of rows, in the given order."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return StreamState({k: v.index_select(0, idx) for k, v in self.tensors.items()})


def prefixed(prefix: str, state: Mapping[str, Tensor]) -> StateDict:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def sub_state(prefix: str, state: Mapping[str, Tensor]) -> StateDict:
    """The entries of ``state`` under ``prefix.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
