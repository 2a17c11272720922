"""The multi-frequency discriminator of the reference recipe (HiFi-Codec / AcademiCodec style).

One sub-discriminator per STFT hop (32 to 1024 samples, FFT 4x the hop). Each
projects the real and imaginary STFT parts onto a mel filterbank (2 channels,
mel-scaled frequency, phase kept) and runs a stack of weight-normalised 2-D
convolutions (channels ``c/32 .. c``, strides 2 on alternate layers, LeakyReLU
0.2). Returns per sub-discriminator logits and the feature maps for feature matching.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """HTK mel triangles ``[n_mels, n_fft // 2 + 1]`` (each row peaks at 1)."""
    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (bins[None] - lo) / (mid - lo).clamp_min(1e-6)
    down = (hi - bins[None]) / (hi - mid).clamp_min(1e-6)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    # A filter narrower than one bin would be empty: give it its nearest bin.
    empty = fb.sum(1) == 0
    if empty.any():
        nearest = ((mid[:, 0] / (sample_rate / 2)) * (n_fft // 2)).round().long()
        fb[empty, nearest[empty]] = 1.0
    return fb


class FrequencyDiscriminator(nn.Module):
    def __init__(self, hop: int, channels: int, sample_rate: int = 16000):
        super().__init__()
        self.hop, self.n_fft = hop, 4 * hop
        n_mels = max(16, self.n_fft // 8)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(sample_rate, self.n_fft, n_mels), persistent=False)
        widths = [max(channels // d, 2) for d in (32, 16, 8, 4, 2, 1)]
        layers, cin = [], 2
        for i, c in enumerate(widths):
            stride = 2 if i % 2 else 1
            layers.append(weight_norm(nn.Conv2d(cin, c, 3, stride, 1)))
            cin = c
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(cin, 1, 3, 1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x [B, 1, T] -> (logits [B, 1, M', N'], features)."""
        spec = torch.stft(x.float().squeeze(1), self.n_fft, self.hop, self.n_fft, self.window,
                          center=True, normalized=True, return_complex=True)  # [B, F, N]
        h = torch.stack([self.mel @ spec.real, self.mel @ spec.imag], dim=1)  # [B, 2, M, N]
        feats = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiFrequencyDiscriminator(nn.Module):
    def __init__(self, hops: tuple[int, ...] = (32, 64, 128, 256, 512, 1024),
                 channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512), sample_rate: int = 16000):
        super().__init__()
        if len(hops) != len(channels):
            raise ValueError("hops and channels need the same length")
        self.discriminators = nn.ModuleList(
            FrequencyDiscriminator(h, c, sample_rate) for h, c in zip(hops, channels))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, feats = [], []
        for d in self.discriminators:
            y, f = d(x)
            logits.append(y)
            feats.append(f)
        return logits, feats
