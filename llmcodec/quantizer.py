"""Multi-scale residual VQ whose codebooks are a frozen LLM's token embeddings.

Layers (encodec's shape): a frozen LLM codebook projected by a learned linear
map -> one VQ level (``LevelVQ``) -> the multi-scale residual stack
(``MultiScaleRVQ``) returning a ``QuantizerResult``.

Level ``l`` with stride ``s`` average-pools the residual by ``s``, finds the
nearest projected code by cosine similarity, repeats the (un-normalised)
code ``s`` times and subtracts it from the residual. The output is the sum of
the levels. Codes are stateless across blocks: a block is a whole number of
every level's stride.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CodecConfig


@dataclass(frozen=True)
class QuantizerResult:
    """Codes per level ``[B, F / stride_l]``, quantized latent ``[B, C, F]`` and losses.

    ``levels[l]`` is level ``l``'s quantized latent ``[B, C, F / stride_l]`` at its own
    rate (before up-sampling; straight-through, so it carries the encoder's gradient):
    the inputs of the training-only semantic and consistency losses.
    """

    codes: list[Tensor]
    quantized: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    levels: list[Tensor] = field(default_factory=list)


class LevelVQ(nn.Module):
    """One level: cosine nearest neighbour in a projected, frozen codebook.

    ``codebook`` [K, D_llm] is a frozen buffer (the LLM table, not saved with
    the codec's weights). ``cb_proj`` maps it into the search space; with
    ``code_dim`` set, ``in_proj``/``out_proj`` factorise the search (DAC-style)
    so the search is cheap; without it, search happens in the latent itself.
    """

    def __init__(self, latent_dim: int, llm_dim: int, size: int, stride: int,
                 code_dim: int | None = None):
        super().__init__()
        self.stride, self.size = stride, size
        dim = code_dim or latent_dim
        self.register_buffer("codebook", torch.zeros(size, llm_dim), persistent=False)
        self.cb_proj = nn.Linear(llm_dim, dim)
        self.in_proj = nn.Conv1d(latent_dim, dim, 1) if code_dim else None
        self.out_proj = nn.Conv1d(dim, latent_dim, 1) if code_dim else None
        # Inference tables, derived from the weights by ``freeze_tables``.
        self.register_buffer("table", torch.zeros(0), persistent=False)
        self.register_buffer("table_unit", torch.zeros(0), persistent=False)

    def projected(self) -> Tensor:
        """The projected codebook ``[K, dim]``."""
        return self.cb_proj(self.codebook)

    def freeze_tables(self) -> None:
        """Precompute the projected tables for inference (re-run after changing weights)."""
        with torch.no_grad():
            table = self.projected()
            self.table = table.contiguous()
            self.table_unit = F.normalize(table, dim=-1).contiguous()

    def tables(self) -> tuple[Tensor, Tensor]:
        """(table, unit-length table) [K, latent]: derived from the weights in training, frozen in inference."""
        if self.training or self.table.numel() == 0:
            t = self.projected()
            return t, F.normalize(t, dim=-1)
        return self.table, self.table_unit

    def lookup(self, codes: Tensor) -> Tensor:
        """One gather: codes [B, F'] -> latent vectors [B, latent, F'] (before up-sampling)."""
        table, _ = self.tables()
        q = F.embedding(codes, table).transpose(1, 2)
        return self.out_proj(q) if self.out_proj is not None else q

    def search_input(self, residual: Tensor) -> Tensor:
        """residual [B, C, F] -> the vectors compared with the codes [B, dim, F/s]."""
        pooled = F.avg_pool1d(residual, self.stride) if self.stride > 1 else residual
        return self.in_proj(pooled) if self.in_proj is not None else pooled

    def forward(self, residual: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """residual [B, C, F] -> (codes [B, F/s], up-sampled zq [B, C, F], commit, codebook)."""
        z = self.search_input(residual)
        table, unit = self.tables()
        zn = F.normalize(z.transpose(1, 2), dim=-1)
        codes = torch.matmul(zn, unit.t()).argmax(dim=-1)
        q = F.embedding(codes, table).transpose(1, 2)  # [B, dim, F/s]
        commit = F.mse_loss(z, q.detach()) if self.training else z.new_zeros(())
        book = F.mse_loss(q, z.detach()) if self.training else z.new_zeros(())
        q = z + (q - z).detach()  # straight-through
        if self.out_proj is not None:
            q = self.out_proj(q)
        if self.stride > 1:
            q = q.repeat_interleave(self.stride, dim=-1)
        return codes, q, commit, book


class MultiScaleRVQ(nn.Module):
    """Residual VQ over levels of decreasing stride. ``[B, C, F]`` with F a block multiple."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.strides = cfg.vq_strides
        self.quantizers = nn.ModuleList(
            LevelVQ(cfg.latent_dim, cfg.llm_dim, n, s, cfg.code_dim)
            for n, s in zip(cfg.level_sizes, cfg.vq_strides))

    def set_codebooks(self, tables: list[Tensor]) -> None:
        """Install the frozen LLM tables ``[K_l, D_llm]`` (one per level)."""
        for q, t in zip(self.quantizers, tables):
            if tuple(t.shape) != tuple(q.codebook.shape):
                raise ValueError(f"codebook shape {tuple(t.shape)} != expected {tuple(q.codebook.shape)}")
            q.codebook = t.detach().to(q.cb_proj.weight.dtype).contiguous()
            q.table = torch.zeros(0)
            q.table_unit = torch.zeros(0)

    def freeze_tables(self) -> None:
        for q in self.quantizers:
            q.freeze_tables()

    def forward(self, z: Tensor) -> QuantizerResult:
        frames = z.shape[-1]
        lcm = max(self.strides)
        if frames % lcm:
            raise ValueError(f"{frames} frames is not a multiple of the largest stride {lcm}")
        residual, total = z, torch.zeros_like(z)
        codes, levels, commit, book = [], [], z.new_zeros(()), z.new_zeros(())
        for q in self.quantizers:
            c, zq, lc, lb = q(residual)
            residual = residual - zq
            total = total + zq
            codes.append(c)
            levels.append(zq[..., ::q.stride] if q.stride > 1 else zq)  # undo repeat_interleave
            commit, book = commit + lc, book + lb
        return QuantizerResult(codes, total, commit, book, levels)

    def decode(self, codes: list[Tensor]) -> Tensor:
        """codes per level [B, F/s_l] -> quantized latent [B, C, F]: one gather per level. The
        codes of the first n levels alone (n >= 1) give the coarser latent of those levels."""
        if not 1 <= len(codes) <= len(self.quantizers):
            raise ValueError(f"expected 1 to {len(self.quantizers)} levels of codes, got {len(codes)}")
        out = None
        for q, c in zip(self.quantizers, codes):
            v = q.lookup(c)
            if q.stride > 1:
                v = v.repeat_interleave(q.stride, dim=-1)
            out = v if out is None else out + v
        return out
