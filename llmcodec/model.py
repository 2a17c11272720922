"""The codec: encoder, multi-scale LLM-vocabulary quantizer, decoder.

Streaming API (pure functions of explicit state):

    enc = model.init_encoder_state(batch)
    codes, enc = model.encode_step(pcm, enc)      # pcm [B, block_size] -> codes[l] [B, n_l]
    dec = model.init_decoder_state(batch)
    pcm, dec = model.decode_step(codes, dec)      # -> pcm [B, block_size]

Offline ``encode``/``decode`` run exactly these steps over whole blocks, so
streaming output equals offline output by construction; whole-sequence
``forward`` (training) computes the same function in parallel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .codec_blocks import Decoder, Encoder
from .codes import check_codes
from . import reference
from .config import CodecConfig
from .encoded import EncodedAudio
from .istft_decoder import ISTFTDecoder
from .layers import apply_weight_norm, fold_weight_norm
from .stft_encoder import STFTEncoder
from .quantizer import MultiScaleRVQ, QuantizerResult
from .state import StreamState


@dataclass(frozen=True)
class CodecOutput:
    """Whole-sequence (training) pass."""

    audio: Tensor  # [B, 1, T]
    latent: Tensor  # [B, C, F] encoder output
    quant: QuantizerResult


class LLMCodec(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg) if cfg.encoder == "snac" else STFTEncoder(
            cfg.latent_dim, cfg.stft_dim, cfg.stft_hidden, cfg.stft_layers, cfg.stft_sub, cfg.hop,
            cfg.stft_nfft)
        self.quantizer = MultiScaleRVQ(cfg)
        self.decoder = Decoder(cfg) if cfg.decoder == "snac" else ISTFTDecoder(
            cfg.latent_dim, cfg.istft_dim, cfg.istft_hidden, cfg.istft_layers, cfg.istft_up, cfg.hop,
            cfg.istft_nfft)

    # ---- contract --------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    @property
    def tokens_per_block(self) -> tuple[int, ...]:
        return self.cfg.tokens_per_block

    # ---- set-up ----------------------------------------------------------
    def set_codebooks(self, tables: list[Tensor]) -> None:
        self.quantizer.set_codebooks(tables)

    def apply_weight_norm(self) -> "LLMCodec":
        apply_weight_norm(self.encoder)
        apply_weight_norm(self.decoder)
        return self

    def prepare_inference(self) -> "LLMCodec":
        """Eval mode, weight norm folded, quantizer tables precomputed, no grads."""
        self.eval()
        fold_weight_norm(self)
        self.quantizer.freeze_tables()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    # ---- whole sequences (training) ---------------------------------------
    def forward(self, wav: Tensor) -> CodecOutput:
        """wav [B, 1, T] with T a multiple of the block size."""
        self._check_len(wav.shape[-1])
        z = self.encoder(wav)
        q = self.quantizer(z)
        return CodecOutput(self.decoder(q.quantized), z, q)

    # ---- streaming steps -------------------------------------------------
    def init_encoder_state(self, batch: int, device: torch.device | None = None) -> StreamState:
        return StreamState(self.encoder.init_state(batch, device))

    def init_decoder_state(self, batch: int, device: torch.device | None = None) -> StreamState:
        return StreamState(self.decoder.init_state(batch, device))

    def encode_step(self, pcm: Tensor, state: StreamState) -> tuple[list[Tensor], StreamState]:
        """pcm [B, block_size] -> codes per level [B, tokens_per_block[l]], new state."""
        if pcm.dim() != 2 or pcm.shape[-1] != self.block_size:
            raise ValueError(f"encode_step takes [B, {self.block_size}] samples, got {tuple(pcm.shape)}")
        z, s = self.encoder.step(pcm.unsqueeze(1), dict(state.tensors))
        return self.quantizer(z).codes, StreamState(s)

    def decode_step(self, codes: list[Tensor], state: StreamState) -> tuple[Tensor, StreamState]:
        """codes per level [B, tokens_per_block[l]] -> pcm [B, block_size], new state."""
        self.check_codes(codes, blocks=1)
        y, s = self.decoder.step(self.quantizer.decode(codes), dict(state.tensors))
        return y.squeeze(1), StreamState(s)

    # ---- offline: the same steps over whole blocks ------------------------
    @torch.no_grad()
    def encode(self, wav: Tensor) -> EncodedAudio:
        """wav [B, T] (any T >= 1; zero-padded to whole blocks) -> EncodedAudio."""
        if wav.dim() != 2:
            raise ValueError(f"encode takes [B, T] audio, got shape {tuple(wav.shape)}")
        if not self.cfg.causal:  # the non-causal reference runs on whole sequences
            return reference.official_encode(self, wav)
        n, b = wav.shape[-1], self.block_size
        blocks = max(1, -(-n // b))
        wav = torch.nn.functional.pad(wav, (0, blocks * b - n))
        state = self.init_encoder_state(wav.shape[0], wav.device)
        out: list[list[Tensor]] = [[] for _ in self.cfg.vq_strides]
        for i in range(blocks):
            codes, state = self.encode_step(wav[:, i * b:(i + 1) * b], state)
            for lst, c in zip(out, codes):
                lst.append(c)
        return EncodedAudio([torch.cat(c, dim=1) for c in out], n)

    @torch.no_grad()
    def decode(self, codes: list[Tensor], num_samples: int | None = None) -> Tensor:
        """codes per level [B, blocks * tokens_per_block[l]] -> wav [B, T]."""
        if not self.cfg.causal:
            return reference.official_decode(self, codes, num_samples)
        blocks = self.check_codes(codes)
        state = self.init_decoder_state(codes[0].shape[0], codes[0].device)
        out = []
        for i in range(blocks):
            block = [c[:, i * n:(i + 1) * n] for c, n in zip(codes, self.tokens_per_block)]
            y, state = self.decode_step(block, state)
            out.append(y)
        wav = torch.cat(out, dim=1)
        return wav if num_samples is None else wav[:, :num_samples]

    # ---- checks ------------------------------------------------------------
    def _check_len(self, n: int) -> None:
        if n % self.block_size:
            raise ValueError(f"{n} samples is not a multiple of the block size {self.block_size}")

    def check_codes(self, codes: list[Tensor], blocks: int | None = None) -> int:
        """Validate codes per level [B, k * tokens_per_block[l]]; returns k (``llmcodec.codes``)."""
        return check_codes(codes, self.tokens_per_block, self.cfg.level_sizes, blocks)
