"""A frame-rate decoder that synthesises with an inverse STFT (Vocos / WavTokenizer style).

The SNAC decoder up-samples to the sample rate through four transposed convolutions and
runs its last residual units at 16 kHz: most of a training step's time. This one stays at
frame rate: a causal conv, a per-frame linear up-sampling to ``up`` sub-frames per latent
frame (hop ``hop / up`` samples, 160 at hop 480 and ``up`` 3), causal ConvNeXt blocks,
then a head that predicts a log-magnitude and a phase per STFT bin and turns them into
``n_fft`` windowed samples per sub-frame (an inverse real DFT as one matmul, so the graph
is plain ONNX), overlap-added causally.

Causal overlap-add: sub-frame ``t`` writes samples ``[t h, t h + n_fft)``. Sample ``s`` is
final once sub-frame ``floor(s / h)`` is written, so a block of ``4 * up`` sub-frames yields
its own 1920 samples with no added latency: the tails reaching past the block are carried
as state (``[B, n_fft - h]``) and added to the next block. The step is the same function as
``forward`` (tested), up to float summation order.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .convnext import ConvNeXtStack
from .layers import Conv1d, Streaming, prefixed_shapes
from .state import StateDict, prefixed, sub_state


def _inverse_dft_basis(n_fft: int) -> Tensor:
    """``[2 (n_fft / 2 + 1), n_fft]``: rows map (real, imaginary) bin values to a Hann-windowed
    inverse real DFT frame, scaled so that overlap-adding at hop ``n_fft / 4`` has unit gain."""
    bins = n_fft // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    ang = 2 * math.pi * k * n / n_fft
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in the full spectrum
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    gain = window.sum() / (n_fft // 4) if n_fft % 4 == 0 else 1.0  # Hann at 75% overlap sums to 2
    re = weight * torch.cos(ang) / n_fft
    im = -weight * torch.sin(ang) / n_fft
    return (torch.cat([re, im]) * window / gain).float()


class ISTFTHead(Streaming):
    """``[B, D, T]`` sub-frames -> ``[B, 1, T * hop]`` audio, causal overlap-add (state: the tail)."""

    def __init__(self, dim: int, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft {n_fft} must be a multiple of the hop {hop}")
        self.n_fft, self.hop = n_fft, hop
        self.proj = nn.Linear(dim, n_fft + 2)  # log-magnitude and phase of n_fft / 2 + 1 bins
        self.register_buffer("basis", _inverse_dft_basis(n_fft), persistent=False)

    def _frames(self, x: Tensor) -> Tensor:
        """``[B, D, T] -> [B, T, n_fft]`` windowed time frames."""
        logmag, phase = self.proj(x.transpose(1, 2)).chunk(2, dim=-1)
        mag = torch.exp(logmag.clamp(max=6.0))  # as Vocos: exp, clipped (e^6 ~ 400)
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        return spec @ self.basis

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """``[B, T, r * hop] -> [B, (T + r - 1) * hop]``: frame ``t`` lands at ``t * hop``."""
        b, t, _ = frames.shape
        r = self.n_fft // self.hop
        parts = frames.view(b, t, r, self.hop)
        out = F.pad(parts[:, :, 0], (0, 0, 0, r - 1))
        for j in range(1, r):
            out = out + F.pad(parts[:, :, j], (0, 0, j, r - 1 - j))
        return out.reshape(b, (t + r - 1) * self.hop)

    def forward(self, x: Tensor) -> Tensor:
        y = self._overlap_add(self._frames(x))
        return y[:, None, : x.shape[-1] * self.hop]

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"tail": (self.n_fft - self.hop,)}

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        y = self._overlap_add(self._frames(x))
        n, tail = x.shape[-1] * self.hop, state["tail"]
        y = torch.cat([y[:, : tail.shape[-1]] + tail, y[:, tail.shape[-1]:]], dim=-1)
        return y[:, None, :n], {"tail": y[:, n:]}


class ISTFTDecoder(Streaming):
    """``[B, latent, F] -> [B, 1, F * hop]`` (the ``istft`` decoder of ``CodecConfig``)."""

    def __init__(self, latent: int, dim: int, hidden: int, layers: int, up: int, hop: int, n_fft: int):
        super().__init__()
        if hop % up:
            raise ValueError(f"hop {hop} is not a multiple of the up-sampling {up}")
        self.up, self.dim = up, dim
        self.conv_in = Conv1d(latent, dim, 7, causal=True)
        self.upsample = nn.Linear(dim, up * dim)  # each frame -> ``up`` sub-frames
        self.blocks = ConvNeXtStack(dim, hidden, layers)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = ISTFTHead(dim, n_fft, hop // up)

    def _subframes(self, h: Tensor) -> Tensor:
        """``[B, D, F] -> [B, D, F * up]``."""
        b, d, f = h.shape
        return self.upsample(h.transpose(1, 2)).reshape(b, f * self.up, d).transpose(1, 2)

    def _norm(self, h: Tensor) -> Tensor:
        return self.norm(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self._norm(self.blocks(self._subframes(self.conv_in(z)))))

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**prefixed_shapes("conv_in", self.conv_in.state_shapes()),
                **prefixed_shapes("blocks", self.blocks.state_shapes()),
                **prefixed_shapes("head", self.head.state_shapes())}

    def step(self, z: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        h, s = self.conv_in.step(z, sub_state("conv_in", state))
        new = prefixed("conv_in", s)
        h, s = self.blocks.step(self._subframes(h), sub_state("blocks", state))
        new.update(prefixed("blocks", s))
        y, s = self.head.step(self._norm(h), sub_state("head", state))
        new.update(prefixed("head", s))
        return y, new
