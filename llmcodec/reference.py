"""The reference inference of the published (non-causal) LLM-Codec: whole sequences, exactly
as the UniAudio 1.5 code's ``encode``/``decode`` (right-padding to 3840 samples, its distance
formula for the code search, noise off). ``LLMCodec.encode``/``decode`` call these for a
non-causal configuration; causal models stream block by block instead.

Imports no model module (the model is passed in), so ``model.py`` can use it without a cycle.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import CodecConfig
from .encoded import EncodedAudio

if TYPE_CHECKING:
    from .model import LLMCodec


def pad_multiple(cfg: CodecConfig) -> int:
    """Samples the input is right-padded to: hop * lcm(largest VQ stride, window) = 3840."""
    return cfg.hop * math.lcm(max(cfg.vq_strides), cfg.attn_window)


def _check_official(model: "LLMCodec") -> None:
    if model.cfg.causal:
        raise ValueError("official_encode/decode run non-causal models; use model.encode/decode")


def quantize_reference(model: "LLMCodec", z: Tensor) -> list[Tensor]:
    """The reference's residual VQ, with its distance formula
    ``argmax(-(|e|^2 - 2 e.c + |c|^2))`` over L2-normalised vectors, so that
    near-ties resolve exactly as in the published code."""
    residual, codes = z, []
    for q in model.quantizer.quantizers:
        pooled = F.avg_pool1d(residual, q.stride) if q.stride > 1 else residual
        table, unit = q.tables()
        e = F.normalize(pooled.transpose(1, 2).reshape(-1, pooled.shape[1]))
        dist = e.pow(2).sum(1, keepdim=True) - 2 * e @ unit.t() + unit.pow(2).sum(1, keepdim=True).t()
        idx = (-dist).max(1)[1].reshape(pooled.shape[0], -1)
        zq = F.embedding(idx, table).transpose(1, 2)
        zq = pooled + (zq - pooled)  # the straight-through sum's value, as in the reference
        if q.stride > 1:
            zq = zq.repeat_interleave(q.stride, dim=-1)
        residual = residual - zq
        codes.append(idx)
    return codes


@torch.no_grad()
def official_encode(model: "LLMCodec", wav: Tensor) -> EncodedAudio:
    """wav [B, T] (any T >= 1) -> codes per level, like the reference's ``encode``:
    right-padded with zeros to a multiple of ``pad_multiple`` (3840 samples)."""
    _check_official(model)
    if wav.dim() != 2 or wav.shape[-1] < 1:
        raise ValueError(f"official_encode takes [B, T] audio, got shape {tuple(wav.shape)}")
    n, m = wav.shape[-1], pad_multiple(model.cfg)
    wav = F.pad(wav, (0, -(-n // m) * m - n))
    z = model.encoder(wav.unsqueeze(1))
    return EncodedAudio(quantize_reference(model, z), n)


@torch.no_grad()
def official_decode(model: "LLMCodec", codes: list[Tensor] | EncodedAudio,
                    num_samples: int | None = None) -> Tensor:
    """codes per level -> wav [B, T]; the reference's ``decode`` (noise off).
    Trimmed to ``num_samples`` (default: the ``EncodedAudio``'s length, else untrimmed)."""
    _check_official(model)
    if isinstance(codes, EncodedAudio):
        num_samples = codes.num_samples if num_samples is None else num_samples
        codes = codes.codes
    model.check_codes(codes)
    frames = codes[-1].shape[1] * model.cfg.vq_strides[-1]
    if frames % model.cfg.attn_window:
        raise ValueError(f"{frames} frames is not a multiple of the attention window "
                         f"{model.cfg.attn_window} (encode pads to {pad_multiple(model.cfg)} samples)")
    wav = model.decoder(model.quantizer.decode(codes)).squeeze(1)
    return wav if num_samples is None else wav[:, :num_samples]


__all__ = ["official_decode", "official_encode", "pad_multiple", "quantize_reference"]
