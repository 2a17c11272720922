"""Causal ConvNeXt blocks (Vocos / WavTokenizer style), for the frame-rate encoder and decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Conv1d, Streaming, prefixed_shapes
from .state import StateDict, prefixed, sub_state


class ConvNeXtBlock(Streaming):
    """``[B, D, T] -> [B, D, T]``: causal depthwise conv k7, LayerNorm, 1x1 up, GELU, 1x1 down,
    layer scale, plus the input."""

    def __init__(self, dim: int, hidden: int, kernel: int = 7, scale: float = 0.1):
        super().__init__()
        self.dwconv = Conv1d(dim, dim, kernel, groups=dim, causal=True)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), scale))

    def _mix(self, x: Tensor, h: Tensor) -> Tensor:
        """``x [B, D, T]`` plus the block's branch of ``h [B, T, D]`` (the depthwise conv's output)."""
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h)))) * self.gamma
        return x + h.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, self.dwconv(x).transpose(1, 2))

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The last ``kernel - 1`` inputs, time-major: ``tail [B, kernel - 1, D]``."""
        return {"tail": (self.dwconv.kernel_size[0] - 1, self.dwconv.in_channels)}

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        """The depthwise conv as a sum of ``kernel`` shifted products, time-major so that each
        product broadcasts one weight per channel along the last axis: at a few frames per block
        ONNX Runtime's grouped ``Conv`` (one small GEMM per channel and row) costs several times more."""
        conv, t = self.dwconv, x.shape[-1]
        xx = torch.cat([state["tail"], x.transpose(1, 2)], dim=1)  # [B, K - 1 + T, D]
        w = conv.weight[:, 0].t()  # [K, D]
        h = conv.bias + xx[:, :t] * w[0]
        for j in range(1, w.shape[0]):
            h = h + xx[:, j:j + t] * w[j]
        return self._mix(x, h), {"tail": xx[:, t:]}


class ConvNeXtStack(Streaming, nn.ModuleList):
    """``layers`` blocks in sequence, ``[B, D, T] -> [B, D, T]``; weights and states ``{i}.*``.
    Each block's layer scale starts at ``1 / layers``."""

    def __init__(self, dim: int, hidden: int, layers: int):
        nn.ModuleList.__init__(self, [ConvNeXtBlock(dim, hidden, scale=1.0 / layers) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        for blk in self:
            x = blk(x)
        return x

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for i, blk in enumerate(self):
            out.update(prefixed_shapes(str(i), blk.state_shapes()))
        return out

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        new: StateDict = {}
        for i, blk in enumerate(self):
            x, s = blk.step(x, sub_state(str(i), state))
            new.update(prefixed(str(i), s))
        return x, new
