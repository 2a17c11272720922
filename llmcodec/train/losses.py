"""The losses of the LLM-Codec recipe.

* ``MultiScaleSTFTLoss``: spectral convergence + log-magnitude L1 at FFT sizes
  512, 1024, 2048 (hop a quarter of the FFT).
* ``SubBandSTFTLoss``: the same on the 6 PQMF sub-bands (``PQMF`` analysis).
* ``lsgan_d_loss`` / ``lsgan_g_loss`` / ``feature_matching``: least-squares GAN.
* ``TeacherHeads``: the training-only projections (never shipped) of the
  semantic loss (level-1 time-mean -> 384-d MiniLM sentence space) and the
  consistency loss (level-2 frames -> 384-d Whisper tiny.en encoder frames);
  both losses are ``1 - cosine``.
All losses run in float32 (STFTs are not half-precision safe).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _magnitude(x: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """|STFT| with the power floored at 1e-7 (ParallelWaveGAN's loss, as the reference's):
    a floor of 3e-4 in magnitude, so digital silence and the empty band above 4 kHz of
    8 kHz recordings do not dominate the log-magnitude term."""
    spec = torch.view_as_real(torch.stft(x, n_fft, hop, n_fft, window, center=True, return_complex=True))
    return spec.pow(2).sum(-1).clamp_min(1e-7).sqrt()


class MultiScaleSTFTLoss(nn.Module):
    """``(pred [B, 1, T] or [N, T], target) -> scalar``: mean over resolutions of SC + log-mag L1."""

    def __init__(self, ffts: tuple[int, ...] = (512, 1024, 2048)):
        super().__init__()
        self.ffts = tuple(ffts)
        for n in self.ffts:
            self.register_buffer(f"window{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = pred.float().reshape(-1, pred.shape[-1]), target.float().reshape(-1, target.shape[-1])
        total = pred.new_zeros(())
        for n in self.ffts:
            w = getattr(self, f"window{n}")
            p, t = _magnitude(pred, n, n // 4, w), _magnitude(target, n, n // 4, w)
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-7)
            total = total + sc + F.l1_loss(p.log(), t.log())
        return total / len(self.ffts)


def pqmf_filters(subbands: int, taps: int | None = None, cutoff: float | None = None,
                 beta: float = 9.0) -> np.ndarray:
    """Analysis filters ``[subbands, taps + 1]`` of a pseudo-QMF bank (Kaiser prototype).

    The defaults scale the common 4-band design (62 taps, cutoff 0.142) to ``subbands``.
    """
    taps = taps or int(round(62 * subbands / 4 / 2)) * 2
    cutoff = cutoff or 0.142 * 4 / subbands
    n = np.arange(taps + 1) - 0.5 * taps
    with np.errstate(invalid="ignore", divide="ignore"):
        proto = np.sin(np.pi * cutoff * n) / (np.pi * n)
    proto[taps // 2] = cutoff
    proto = proto * np.kaiser(taps + 1, beta)
    k = np.arange(subbands)[:, None]
    return 2 * proto[None] * np.cos((2 * k + 1) * np.pi / (2 * subbands) * n[None] + (-1.0) ** k * np.pi / 4)


class PQMF(nn.Module):
    """Analysis only: ``[B, 1, T] -> [B, subbands, T / subbands]``."""

    def __init__(self, subbands: int = 6):
        super().__init__()
        self.subbands = subbands
        h = torch.from_numpy(pqmf_filters(subbands)).float()
        self.register_buffer("filters", h[:, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        taps = self.filters.shape[-1] - 1
        y = F.conv1d(F.pad(x.float(), (taps // 2, taps // 2)), self.filters)
        return y[..., :: self.subbands]


class SubBandSTFTLoss(nn.Module):
    def __init__(self, subbands: int = 6, ffts: tuple[int, ...] = (128, 256, 512)):
        super().__init__()
        self.pqmf = PQMF(subbands)
        self.stft = MultiScaleSTFTLoss(ffts)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.stft(self.pqmf(pred), self.pqmf(target))


def lsgan_d_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Least-squares discriminator loss, mean over sub-discriminators."""
    return sum(((r.float() - 1) ** 2).mean() + (f.float() ** 2).mean() for r, f in zip(real, fake)) / len(real)


def lsgan_g_loss(fake: list[Tensor]) -> Tensor:
    return sum(((f.float() - 1) ** 2).mean() for f in fake) / len(fake)


def feature_matching(real_feats: list[list[Tensor]], fake_feats: list[list[Tensor]]) -> Tensor:
    """Mean L1 between discriminator features of real (detached) and generated audio."""
    total, n = None, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            d = F.l1_loss(f.float(), r.detach().float())
            total = d if total is None else total + d
            n += 1
    return total / max(n, 1)


def cosine_distance(pred: Tensor, target: Tensor, dim: int = -1) -> Tensor:
    """``1 - cos`` along ``dim`` (elementwise over the other dimensions)."""
    return 1 - F.cosine_similarity(pred.float(), target.float(), dim=dim, eps=1e-6)


class TeacherHeads(nn.Module):
    """Training-only projections from the codec latent into the teachers' spaces."""

    def __init__(self, latent_dim: int, text_dim: int = 384, whisper_dim: int = 384):
        super().__init__()
        self.semantic = nn.Linear(latent_dim, text_dim)
        self.consistency = nn.Conv1d(latent_dim, whisper_dim, 1)

    def semantic_loss(self, level1: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """level1 [B, C, F1], target [B, 384], mask [B] -> masked mean of 1 - cos."""
        if float(mask.sum()) == 0:
            return level1.new_zeros(())
        d = cosine_distance(self.semantic(level1.mean(-1)), target)
        return (d * mask).sum() / mask.sum()

    def consistency_loss(self, level: Tensor, whisper: Tensor, samples_per_frame: int,
                         whisper_hop: int = 320) -> Tensor:
        """level [B, C, F_l] at ``samples_per_frame`` per frame, whisper [B, T / 320, 384]:
        Whisper frames nearest to each level frame's centre, mean of 1 - cos."""
        f = level.shape[-1]
        centres = ((torch.arange(f, device=level.device) + 0.5) * samples_per_frame / whisper_hop).long()
        centres = centres.clamp_max(whisper.shape[1] - 1)
        target = whisper[:, centres].transpose(1, 2)  # [B, 384, F_l]
        return cosine_distance(self.consistency(level), target, dim=1).mean()
