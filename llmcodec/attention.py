"""Local multi-head self-attention with rotary positions (SNAC's LocalMHA).

Causal mode: each frame attends to itself and the ``window`` frames before it.
The carried state is the un-rotated keys and values of the last ``window``
frames (zeros at the start, so whole-sequence and step-by-step runs compute
the same thing). Rotary angles are applied by relative offset inside each
window, so positions never grow with the stream's length.

Official mode (the non-causal reference): non-overlapping windows of
``window`` frames, attention both ways, rotary positions 0..window-1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Streaming
from .state import StateDict


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_tables(positions: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """cos and sin tables ``[len(positions), dim]`` (NeoX half-split layout)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    freqs = torch.cat((freqs, freqs), dim=-1)
    return freqs.cos().float(), freqs.sin().float()


class LocalAttention(Streaming):
    """Pre-LayerNorm local MHA with a residual, no FFN. ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, window: int, head_dim: int = 64, causal: bool = True):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"attention dim {dim} is not a multiple of head dim {head_dim}")
        self.dim, self.window, self.head_dim, self.causal = dim, window, head_dim, causal
        self.heads = dim // head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        if causal:  # keys in window slot j sit at offset j - window from the query
            cos, sin = rotary_tables(torch.arange(-window, 1), head_dim)
        else:
            cos, sin = rotary_tables(torch.arange(window), head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        if not self.causal:
            return {}
        shape = (self.heads, self.window, self.head_dim)
        return {"k": shape, "v": shape}

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, _, t = x.shape
        h = self.to_qkv(self.norm(x.transpose(1, 2)))  # [B, T, 3C]
        h = h.view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return h[0], h[1], h[2]  # each [B, H, T, d]

    def _out(self, o: Tensor, x: Tensor) -> Tensor:
        b, _, t, _ = o.shape
        o = o.permute(0, 2, 1, 3).reshape(b, t, self.dim)
        return x + self.to_out(o).transpose(1, 2)

    def _causal(self, x: Tensor, k_past: Tensor, v_past: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, C, T]; k_past, v_past [B, H, W, d]. Returns y and the new caches."""
        q, k, v = self._qkv(x)
        t, w = q.shape[2], self.window
        k_ext = torch.cat([k_past, k], dim=2)  # [B, H, W + T, d]
        v_ext = torch.cat([v_past, v], dim=2)
        # window slot j of query i holds frame i + j - W (j = 0..W)
        kw = torch.stack([k_ext[:, :, j: j + t] for j in range(w + 1)], dim=3)  # [B,H,T,W+1,d]
        vw = torch.stack([v_ext[:, :, j: j + t] for j in range(w + 1)], dim=3)
        kw = kw * self.cos + rotate_half(kw) * self.sin  # tables [W+1, d] broadcast
        scores = torch.einsum("bhtd,bhtjd->bhtj", q, kw) / math.sqrt(self.head_dim)
        o = torch.einsum("bhtj,bhtjd->bhtd", scores.softmax(dim=-1), vw)
        tail = k_ext.shape[2] - w
        return self._out(o, x), k_ext[:, :, tail:], v_ext[:, :, tail:]

    def _windows(self, x: Tensor) -> Tensor:
        q, k, v = self._qkv(x)
        b, h, t, d = q.shape
        if t % self.window:
            raise ValueError(f"{t} frames is not a multiple of the attention window {self.window}")
        n = t // self.window
        q, k, v = (z.reshape(b, h, n, self.window, d) for z in (q, k, v))
        q = q * self.cos + rotate_half(q) * self.sin
        k = k * self.cos + rotate_half(k) * self.sin
        o = F.scaled_dot_product_attention(q, k, v).reshape(b, h, t, d)
        return self._out(o, x)

    def forward(self, x: Tensor) -> Tensor:
        if not self.causal:
            return self._windows(x)
        zeros = torch.zeros(x.shape[0], self.heads, self.window, self.head_dim,
                            dtype=x.dtype, device=x.device)
        return self._causal(x, zeros, zeros)[0]

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        if not self.causal:
            raise RuntimeError("non-causal attention cannot stream")
        y, k, v = self._causal(x, state["k"], state["v"])
        return y, {"k": k, "v": v}
