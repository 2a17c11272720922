"""Typed, frozen model configurations, saved as JSON next to the weights.

Two families: ``official`` (the non-causal UniAudio 1.5 reference, to load its
published checkpoint) and the causal streaming sizes ``tiny``, ``small`` and
``base``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

CONFIG_VERSION = 1


class JsonConfig:
    """JSON I/O for a frozen dataclass config: unknown keys are refused by name, lists become tuples."""

    KIND = "config"  # named in errors

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} keys {unknown}; accepted: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def load(cls, path: str | Path):
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class CodecConfig(JsonConfig):
    """Every hyperparameter of one codec. Derived facts are properties."""

    name: str
    causal: bool = True
    sample_rate: int = 16000
    # Encoder: conv(1, enc_channels, 7), then one block per stride doubling channels.
    enc_channels: int = 32
    enc_strides: tuple[int, ...] = (3, 4, 5, 8)
    # "snac" (the reference's, above) or "stft": a causal STFT, its sub-frames stacked per
    # latent frame, ConvNeXt blocks at the frame rate (``stft_encoder.py``; the latent size
    # stays enc_channels * 2 ** len(enc_strides)).
    encoder: str = "snac"
    stft_dim: int = 256
    stft_hidden: int = 768
    stft_layers: int = 6
    stft_sub: int = 3  # sub-frames per latent frame (STFT hop = hop / stft_sub)
    stft_nfft: int = 640
    # Decoder: depthwise conv + 1x1 to dec_channels, attention, blocks halving channels.
    dec_channels: int = 1536
    dec_strides: tuple[int, ...] = (8, 5, 4, 3)
    depthwise: bool = True
    noise: bool = False  # reference NoiseBlock (deterministic: disabled at inference)
    # "snac" (the reference's, up-sampling to the sample rate) or "istft": a frame-rate
    # ConvNeXt stack and an inverse-STFT head (``istft_decoder.py``; dec_* fields unused).
    decoder: str = "snac"
    istft_dim: int = 256
    istft_hidden: int = 768
    istft_layers: int = 8
    istft_up: int = 3  # sub-frames per latent frame (STFT hop = hop / istft_up)
    istft_nfft: int = 640
    attn_window: int = 8  # past frames each frame sees (causal) / window size (official)
    attn_head_dim: int = 64
    # Quantizer
    vq_strides: tuple[int, ...] = (4, 2, 1)
    code_dim: int | None = None  # None: cosine search in the latent (reference); else factorised
    llm_dim: int = 576
    level_sizes: tuple[int, ...] = (4096, 49152, 49152)
    llm_name: str = "SmolLM2-135M-Instruct"
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if len(self.vq_strides) != len(self.level_sizes):
            raise ValueError(
                f"vq_strides {self.vq_strides} and level_sizes {self.level_sizes} need the same length"
            )
        if any(s < 1 for s in self.enc_strides + self.dec_strides + self.vq_strides):
            raise ValueError("strides must be positive integers")
        if math.prod(self.enc_strides) != math.prod(self.dec_strides):
            raise ValueError(
                f"encoder hop {math.prod(self.enc_strides)} != decoder hop {math.prod(self.dec_strides)}"
            )
        if self.encoder not in ("snac", "stft"):
            raise ValueError(f"encoder must be 'snac' or 'stft', got {self.encoder!r}")
        if self.decoder not in ("snac", "istft"):
            raise ValueError(f"decoder must be 'snac' or 'istft', got {self.decoder!r}")
        if self.encoder == "stft":
            self._check_frame_rate_part("stft encoder", "stft_sub", "stft_nfft")
        if self.decoder == "istft":
            self._check_frame_rate_part("istft decoder", "istft_up", "istft_nfft")
        if self.latent_dim % self.attn_head_dim or self.dec_channels % self.attn_head_dim:
            raise ValueError("attention dims must be multiples of attn_head_dim")

    def _check_frame_rate_part(self, what: str, sub: str, nfft: str) -> None:
        """An STFT part: causal, ``sub`` sub-frames per frame, a whole number of hops per window."""
        if not self.causal:
            raise ValueError(f"the {what} is causal only")
        if self.hop % getattr(self, sub) or getattr(self, nfft) % (self.hop // getattr(self, sub)):
            raise ValueError(f"{sub} {getattr(self, sub)} must divide the hop {self.hop} and the STFT hop "
                             f"must divide {nfft} {getattr(self, nfft)}")

    # ---- derived facts -------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.enc_channels * 2 ** len(self.enc_strides)

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        return math.prod(self.enc_strides)

    @property
    def frames_per_block(self) -> int:
        """Latent frames per streaming block: the lcm of the level strides."""
        return math.lcm(*self.vq_strides)

    @property
    def block_size(self) -> int:
        """Samples per streaming block (1920 for hop 480 and strides 4, 2, 1)."""
        return self.hop * self.frames_per_block

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def tokens_per_block(self) -> tuple[int, ...]:
        return tuple(self.frames_per_block // s for s in self.vq_strides)

    @property
    def tokens_per_second(self) -> float:
        return sum(self.tokens_per_block) * self.sample_rate / self.block_size

    @property
    def num_levels(self) -> int:
        return len(self.vq_strides)


PRESETS: dict[str, CodecConfig] = {
    # A few hundred thousand parameters: for tests.
    "tiny": CodecConfig(
        name="tiny", enc_channels=4, dec_channels=64, attn_head_dim=16, code_dim=16,
        attn_window=8,
    ),
    # The size we train and ship: fast enough for many real-time streams per core.
    "small": CodecConfig(name="small", enc_channels=16, dec_channels=384, code_dim=32),
    # The same encoder and quantizer with the frame-rate inverse-STFT decoder.
    "small_istft": CodecConfig(name="small_istft", enc_channels=16, dec_channels=384, code_dim=32,
                               decoder="istft"),
    # Both at the frame rate: the STFT encoder and the inverse-STFT decoder.
    "small_stft": CodecConfig(name="small_stft", enc_channels=16, dec_channels=384, code_dim=32,
                              encoder="stft", decoder="istft"),
    # The reference's size, made causal.
    "base": CodecConfig(name="base", enc_channels=32, dec_channels=1536),
    # The non-causal reference itself (UniAudio 1.5 LLM-Codec, LLaMA-2 7B vocabulary).
    "official": CodecConfig(
        name="official", causal=False, enc_channels=32, dec_channels=1536, noise=True,
        llm_dim=4096, level_sizes=(3248, 32000, 32000), llm_name="LLaMA-2-7B",
    ),
}


def preset(name: str) -> CodecConfig:
    """The named preset; raises ValueError naming the accepted names."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; accepted: {sorted(PRESETS)}")
    return PRESETS[name]
