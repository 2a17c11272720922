"""``TrainConfig``: every knob of a training run, frozen, saved as JSON in the run directory.

The defaults are the ``small`` recipe (``configs/train_small.json`` spells them
out); the loss weights and optimiser follow the reference recipe of UniAudio 1.5's
LLM-Codec (docs/TRAINING.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import CodecConfig, JsonConfig, preset
from ..data.augment import AugmentConfig

MODEL_PARTS = ("encoder", "quantizer", "decoder")
DEFAULT_MIX = {"real_en": 3.0, "piper_en": 3.0, "real_es": 1.0, "real_fr": 1.0, "music": 1.0, "events": 0.4}


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    KIND = "training config"

    name: str = "small"
    model: str = "small"  # a preset name of llmcodec.config
    model_overrides: dict = field(default_factory=dict)  # CodecConfig fields replacing the preset's
    init_from: str | None = None  # a model directory ("default": the bundled model) to start from
    # With ``init_parts`` (e.g. ["encoder", "quantizer"]) only those parts are taken from ``init_from``
    # (the rest may differ, as a new decoder does) and the run counts its steps from 0.
    init_parts: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()  # parts that do not learn ("encoder", "quantizer", "decoder")
    # Distillation: the encoder learns to reproduce the latents of ``teacher``'s encoder (a model
    # directory), weighted ``w_distill``. With every other loss weight 0 a step runs the two
    # encoders only (``distill_only``): a new encoder learns the old one's tokens cheaply.
    teacher: str | None = None
    w_distill: float = 0.0
    # ... and the teacher's codes themselves: a cross-entropy over each level's codebook of the
    # cosines divided by ``distill_tau`` (``distill.py``), weighted ``w_distill_codes``.
    w_distill_codes: float = 0.0
    distill_tau: float = 0.05
    data: str = "data_cache"
    run_dir: str = "runs/small"
    seed: int = 0
    steps: int = 200000
    # Segments: short, whole blocks (1920 samples at hop 480).
    segment_seconds: float = 1.92
    batch_size: int = 4
    mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    gain_db: tuple[float, float] = (-6.0, 3.0)
    augment: dict = field(default_factory=dict)  # AugmentConfig fields (data/augment.py); {}: none
    # Optimiser: AdamW with exponential decay (reference: lr 2e-4, betas (0.8, 0.99), gamma 0.999).
    lr: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    lr_gamma: float = 0.999
    lr_decay_every: int = 200  # steps per decay ("epoch")
    # A linear learning-rate ramp over the first N steps of a run (counted from the step it starts
    # at, e.g. a committed model export's): its optimiser's moments start from zero. 0: none.
    lr_warmup_steps: int = 0
    # Final anneal: over the last ``anneal_steps`` steps before ``steps`` the learning rate falls
    # linearly towards zero (0: none). For shipping a branch of a long run (docs/TRAINING.md).
    anneal_steps: int = 0
    grad_clip: float | None = 100.0
    # Reconstruction-only warm-up: no discriminator before this step.
    warmup_steps: int = 3000
    # Loss weights.
    w_stft: float = 1.0
    w_subband: float = 1.0
    w_adv: float = 1.0
    w_fm: float = 20.0
    w_commit: float = 1.0
    w_codebook: float = 1.0
    w_semantic: float = 1.0
    w_consistency: float = 1.0
    w_asr: float = 0.0  # Whisper-encoder intelligibility loss (asr_loss.py); not in the reference
    stft_ffts: tuple[int, ...] = (512, 1024, 2048)
    subbands: int = 6
    subband_ffts: tuple[int, ...] = (128, 256, 512)
    # Multi-frequency discriminator: one sub-discriminator per hop.
    disc_hops: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    disc_channels: tuple[int, ...] = (32, 64, 128, 256, 256, 256)  # half the reference widths (CPU)
    # Running.
    device: str = "cpu"
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    threads: int = 1  # torch intra-op threads on CPU
    compile: bool = True  # torch.compile the encoder and decoder (1.4x per CPU step; minutes to compile)
    checkpoint_minutes: float = 5.0
    log_every: int = 1  # CSV rows (every loss)

    def __post_init__(self) -> None:
        cfg = self.codec_config()
        if self.segment_samples % cfg.block_size:
            raise ValueError(f"segment_seconds {self.segment_seconds} is not a whole number of "
                             f"{cfg.block_size}-sample blocks")
        if len(self.disc_hops) != len(self.disc_channels):
            raise ValueError("disc_hops and disc_channels need the same length")
        for name in ("steps", "batch_size", "lr_decay_every", "threads", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if not 0 <= self.anneal_steps <= self.steps:
            raise ValueError(f"anneal_steps must be between 0 and steps ({self.steps}), got {self.anneal_steps}")
        for name in ("init_parts", "freeze"):
            bad = sorted(set(getattr(self, name)) - set(MODEL_PARTS))
            if bad:
                raise ValueError(f"{name} {bad} unknown; accepted: {list(MODEL_PARTS)}")
        if self.init_parts and not self.init_from:
            raise ValueError("init_parts needs init_from (the model directory to take them from)")
        self.augment_config()  # validates
        if (self.teacher is None) != (self.w_distill == 0 and self.w_distill_codes == 0):
            raise ValueError("teacher and w_distill (or w_distill_codes) go together: a teacher model "
                             "directory and a weight > 0")
        if self.w_distill < 0 or self.w_distill_codes < 0 or not self.distill_tau > 0:
            raise ValueError(f"w_distill and w_distill_codes must be >= 0 and distill_tau > 0, got "
                             f"{self.w_distill}, {self.w_distill_codes}, {self.distill_tau}")
        if self.distill_only and "encoder" in self.freeze:
            raise ValueError("a distillation-only run trains the encoder: do not freeze it")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def distill_only(self) -> bool:
        """Only the distillation loss: no decoder, quantizer or discriminator in a step."""
        others = ("w_stft", "w_subband", "w_adv", "w_fm", "w_commit", "w_codebook", "w_semantic",
                  "w_consistency", "w_asr")
        return self.teacher is not None and all(getattr(self, w) == 0 for w in others)

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.codec_config().sample_rate))

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig.from_dict(self.augment)

    def codec_config(self) -> CodecConfig:
        base = preset(self.model)
        data = {**base.to_dict(), **self.model_overrides}
        return CodecConfig.from_dict(data)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
