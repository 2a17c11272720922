"""A frame-rate encoder that analyses with an STFT (the mirror of ``istft_decoder.py``).

The SNAC encoder runs residual units with Snake activations at the sample rate: at batch 16
its ``Sin`` and convolutions are half of an encode step and cost the same per stream at any
batch size (issue 21). This one computes a causal STFT (``n_fft`` 640, hop 160: three
sub-frames per latent frame at hop 480), compresses it (log-magnitude and the power-law
compressed complex spectrum), stacks each frame's sub-frames, and runs causal ConvNeXt blocks
at the latent frame rate. Almost all of its work is matrix products, which batch well.

Causality matches the SNAC encoder's: latent frame ``f`` sees samples up to ``hop (f + 1)``
and nothing later. Sub-frame ``t`` is the window of samples ``[h t - (n_fft - h), h t + h)``;
the ``n_fft - h`` samples before a block are its state (``[B, n_fft - h]``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .convnext import ConvNeXtStack
from .layers import Streaming, prefixed_shapes
from .state import StateDict, prefixed, sub_state


def _dft_basis(n_fft: int) -> Tensor:
    """``[n_fft, 2 (n_fft / 2 + 1)]``: a Hann-windowed real DFT (real parts, then imaginary)."""
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)[:, None]
    k = torch.arange(bins, dtype=torch.float64)[None, :]
    ang = 2 * math.pi * n * k / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)[:, None]
    scale = 2.0 / window.sum()  # a full-scale sine reads about 1 in its bin
    return (torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1) * window * scale).float()


class STFTFeatures(Streaming):
    """``[B, 1, T] -> [B, T / hop, 3 (n_fft / 2 + 1)]`` compressed spectra of causal windows."""

    def __init__(self, n_fft: int, hop: int, power: float = 0.3, floor: float = 1e-5):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft {n_fft} must be a multiple of the hop {hop}")
        self.n_fft, self.hop, self.power, self.floor = n_fft, hop, power, floor
        self.register_buffer("basis", _dft_basis(n_fft), persistent=False)

    @property
    def features(self) -> int:
        return 3 * (self.n_fft // 2 + 1)

    def _features(self, padded: Tensor, frames: int) -> Tensor:
        """``padded [B, (frames + r - 1) hop]`` (the past window tail first) -> features."""
        b, r = padded.shape[0], self.n_fft // self.hop
        parts = padded.reshape(b, frames + r - 1, self.hop)
        windows = torch.cat([parts[:, j:j + frames] for j in range(r)], dim=-1)  # [B, F, n_fft]
        spec = windows @ self.basis
        re, im = spec.chunk(2, dim=-1)
        power = (re * re + im * im).clamp_min(self.floor * self.floor)  # (a + 1e-10: the exporter drops it)
        logmag = 0.5 * torch.log(power)
        shrink = torch.exp((0.5 * (self.power - 1.0)) * torch.log(power))  # |X| ** (power - 1)
        return torch.cat([logmag, re * shrink, im * shrink], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        pad = x.new_zeros(x.shape[0], self.n_fft - self.hop)
        return self._features(torch.cat([pad, x[:, 0]], dim=-1), x.shape[-1] // self.hop)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"tail": (self.n_fft - self.hop,)}

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        padded = torch.cat([state["tail"], x[:, 0]], dim=-1)
        keep = self.n_fft - self.hop
        return self._features(padded, x.shape[-1] // self.hop), {"tail": padded[:, padded.shape[-1] - keep:]}


class STFTEncoder(Streaming):
    """``[B, 1, T] -> [B, latent, T / hop]`` (the ``stft`` encoder of ``CodecConfig``)."""

    def __init__(self, latent: int, dim: int, hidden: int, layers: int, sub: int, hop: int, n_fft: int):
        super().__init__()
        if hop % sub:
            raise ValueError(f"hop {hop} is not a multiple of the sub-frames per frame {sub}")
        self.sub, self.hop = sub, hop
        self.stft = STFTFeatures(n_fft, hop // sub)
        self.norm_in = nn.LayerNorm(sub * self.stft.features, eps=1e-6)
        self.proj_in = nn.Linear(sub * self.stft.features, dim)
        self.blocks = ConvNeXtStack(dim, hidden, layers)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj_out = nn.Linear(dim, latent)

    def _frames(self, feats: Tensor) -> Tensor:
        """``[B, F * sub, K] -> [B, dim, F]``: each frame's sub-frames stacked, projected."""
        b, t, k = feats.shape
        h = self.proj_in(self.norm_in(feats.reshape(b, t // self.sub, self.sub * k)))
        return h.transpose(1, 2)

    def _out(self, h: Tensor) -> Tensor:
        return self.proj_out(self.norm(h.transpose(1, 2))).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self._out(self.blocks(self._frames(self.stft(x))))

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**prefixed_shapes("stft", self.stft.state_shapes()),
                **prefixed_shapes("blocks", self.blocks.state_shapes())}

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        feats, s = self.stft.step(x, sub_state("stft", state))
        new = prefixed("stft", s)
        h, s = self.blocks.step(self._frames(feats), sub_state("blocks", state))
        new.update(prefixed("blocks", s))
        return self._out(h), new
