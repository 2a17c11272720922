"""Encoder and decoder stacks (SNAC layout: ``encoder.block.*``, ``decoder.model.*``)."""
from __future__ import annotations

from torch import Tensor

from .attention import LocalAttention
from .config import CodecConfig
from .layers import (ConvTranspose1d, Conv1d, ResidualUnit, Sequential, Snake, Streaming,
                     Tanh, prefixed_shapes)
from .state import StateDict, prefixed, sub_state


class NoiseBlock(Streaming):
    """The reference's NoiseBlock (x + noise * conv1x1(x)). Inference is deterministic
    here: the noise is zero, so the block is the identity; the weights load for parity."""

    def __init__(self, dim: int, causal: bool = True):
        super().__init__()
        self.linear = Conv1d(dim, dim, 1, bias=False, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        return x


def _residual_units(dim: int, groups: int, causal: bool) -> list[Streaming]:
    return [ResidualUnit(dim, d, groups=groups, causal=causal) for d in (1, 3, 9)]


class _Stack(Streaming):
    """A ``Sequential`` held under a fixed attribute name, streaming through it."""

    attr = "block"

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.attr)(x)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return prefixed_shapes(self.attr, getattr(self, self.attr).state_shapes())

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        y, s = getattr(self, self.attr).step(x, sub_state(self.attr, state))
        return y, prefixed(self.attr, s)


class EncoderBlock(_Stack):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, causal: bool):
        super().__init__()
        self.block = Sequential(
            *_residual_units(cin, groups, causal),
            Snake(cin),
            Conv1d(cin, cout, 2 * stride, stride=stride, causal=causal,
                   padding=None if causal else -(-stride // 2)),
        )


class DecoderBlock(_Stack):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, noise: bool, causal: bool):
        super().__init__()
        layers: list[Streaming] = [Snake(cin), ConvTranspose1d(cin, cout, 2 * stride, stride, causal=causal)]
        if noise:
            layers.append(NoiseBlock(cout, causal=causal))
        layers += _residual_units(cout, groups, causal)
        self.block = Sequential(*layers)


class Encoder(_Stack):
    """``[B, 1, T] -> [B, latent, T / hop]``."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        c, causal = cfg.enc_channels, cfg.causal
        layers: list[Streaming] = [Conv1d(1, c, 7, causal=causal)]
        for s in cfg.enc_strides:
            groups = c if cfg.depthwise else 1
            layers.append(EncoderBlock(c, 2 * c, s, groups, causal))
            c *= 2
        layers.append(LocalAttention(c, cfg.attn_window, cfg.attn_head_dim, causal=causal))
        layers.append(Conv1d(c, c, 7, groups=c if cfg.depthwise else 1, causal=causal))
        self.block = Sequential(*layers)


class Decoder(_Stack):
    """``[B, latent, F] -> [B, 1, F * hop]``."""

    attr = "model"

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        lat, ch, causal = cfg.latent_dim, cfg.dec_channels, cfg.causal
        if cfg.depthwise:
            layers: list[Streaming] = [Conv1d(lat, lat, 7, groups=lat, causal=causal),
                                       Conv1d(lat, ch, 1, causal=causal)]
        else:
            layers = [Conv1d(lat, ch, 7, causal=causal)]
        layers.append(LocalAttention(ch, cfg.attn_window, cfg.attn_head_dim, causal=causal))
        out = ch
        for i, s in enumerate(cfg.dec_strides):
            cin, out = ch // 2 ** i, ch // 2 ** (i + 1)
            layers.append(DecoderBlock(cin, out, s, out if cfg.depthwise else 1, cfg.noise, causal))
        layers += [Snake(out), Conv1d(out, 1, 7, causal=causal), Tanh()]
        self.model = Sequential(*layers)
