"""Training-time augmentation of segments: room reverberation, spectral tilt, band limits and mild noise.

A codec's target is its input, so an augmented segment is both: the point is a wider spread of
inputs (microphones, bandwidths, rooms) than the sources hold. Every draw comes from the
sampler's per-step generator, so batches stay reproducible; with every probability 0 (the
default) nothing is drawn and the batches are exactly those of a run without augmentation.

* **reverb**: the segment convolved (causally, truncated to its length) with a synthetic room
  impulse response: the direct path, then after ``predelay_ms`` a tail of Gaussian noise decaying
  by 60 dB over an RT60 uniform in ``rt60_s``, scaled so that the direct-to-reverberant energy
  ratio is uniform in ``drr_db`` (the tail's exponential decay is the statistical model of
  diffuse reverberation, as in Lehmann & Johansson's image-source approximations; no recorded
  room responses ship in the offline packages). Applied first: the room comes before the
  microphone and the channel;
* **tilt**: the spectrum times ``10 ** (t * log2(f / 1 kHz) / 20)`` above 50 Hz, ``t`` uniform
  in ``+-tilt_db`` dB per octave (a brighter or duller microphone);
* **band**: a low-pass with a 400 Hz raised-cosine edge at a cutoff uniform in ``band_hz``
  (telephone-like and in-between bandwidths);
* **noise**: a segment of another track (``noise_kind``, by default ambience) added at an SNR
  uniform in ``snr_db``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import JsonConfig

EDGE_HZ = 400.0


@dataclass(frozen=True)
class AugmentConfig(JsonConfig):
    KIND = "augmentation"

    p_tilt: float = 0.0
    tilt_db: float = 3.0  # dB per octave, either sign
    p_band: float = 0.0
    band_hz: tuple[float, float] = (3400.0, 7000.0)
    p_noise: float = 0.0
    snr_db: tuple[float, float] = (15.0, 40.0)
    noise_kind: str = "ambience"
    p_reverb: float = 0.0
    rt60_s: tuple[float, float] = (0.2, 0.7)
    drr_db: tuple[float, float] = (0.0, 12.0)
    predelay_ms: float = 2.5

    def __post_init__(self) -> None:
        for name in ("p_tilt", "p_band", "p_noise", "p_reverb"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("band_hz", "snr_db", "rt60_s", "drr_db"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {getattr(self, name)}")
        if self.band_hz[0] <= EDGE_HZ:
            raise ValueError(f"band_hz must start above {EDGE_HZ:.0f} Hz, got {self.band_hz}")
        if not 0.0 < self.rt60_s[0] <= 2.0 or self.rt60_s[1] > 2.0:
            raise ValueError(f"rt60_s must lie in (0, 2] s, got {self.rt60_s}")
        if not 0.0 <= self.predelay_ms <= 50.0:
            raise ValueError(f"predelay_ms must be in [0, 50], got {self.predelay_ms}")

    @property
    def active(self) -> bool:
        return self.p_tilt > 0 or self.p_band > 0 or self.p_noise > 0 or self.p_reverb > 0


def room_response(rng: np.random.Generator, sample_rate: int, rt60: float, drr_db: float,
                  predelay_ms: float = 2.5) -> np.ndarray:
    """``[L]`` float64 impulse response: 1 at 0, then from ``predelay_ms`` a Gaussian tail
    decaying by 60 dB in ``rt60`` seconds (``L`` = rt60 + predelay), its energy ``10 ** (-drr_db/10)``."""
    start = int(round(predelay_ms * 1e-3 * sample_rate))
    n = max(1, int(round(rt60 * sample_rate)))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)  # -60 dB in energy at t = rt60
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail ** 2))
    h = np.zeros(start + n)
    h[0] = 1.0
    h[start:] += tail
    return h


def tilt_gain(freqs: np.ndarray, db_per_octave: float) -> np.ndarray:
    """``[F]`` linear gains of a tilt about 1 kHz (flat below 50 Hz)."""
    octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    return 10.0 ** (db_per_octave * octaves / 20.0)


def lowpass_gain(freqs: np.ndarray, cutoff: float) -> np.ndarray:
    """``[F]`` gains: 1 below ``cutoff - EDGE_HZ``, a raised-cosine fall to 0 at ``cutoff``."""
    x = np.clip((freqs - (cutoff - EDGE_HZ)) / EDGE_HZ, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def augment(audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int,
            noise: Callable[[np.random.Generator], np.ndarray] | None = None) -> np.ndarray:
    """``audio [T]`` float32 -> augmented ``[T]`` float32, peak at most 0.99. ``noise(rng)``
    gives a ``[T]`` noise segment (needed when ``p_noise`` > 0)."""
    if not cfg.active:
        return audio
    gain = None
    out = audio.astype(np.float64)
    if cfg.p_reverb > 0 and rng.random() < cfg.p_reverb:  # no draw at p 0: older configs' batches stay
        h = room_response(rng, sample_rate, rng.uniform(*cfg.rt60_s), rng.uniform(*cfg.drr_db), cfg.predelay_ms)
        size = 1 << int(np.ceil(np.log2(out.shape[-1] + h.shape[-1] - 1)))
        wet = np.fft.irfft(np.fft.rfft(out, size) * np.fft.rfft(h, size), n=size)[:out.shape[-1]]
        ps, pw = float(np.mean(out ** 2)), float(np.mean(wet ** 2))
        out = wet * np.sqrt(ps / pw) if ps > 0 and pw > 0 else wet  # the segment's level is kept
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / sample_rate)
    if rng.random() < cfg.p_tilt:
        gain = tilt_gain(freqs, rng.uniform(-cfg.tilt_db, cfg.tilt_db))
    if rng.random() < cfg.p_band:
        lp = lowpass_gain(freqs, rng.uniform(*cfg.band_hz))
        gain = lp if gain is None else gain * lp
    if gain is not None:
        out = np.fft.irfft(np.fft.rfft(out) * gain, n=audio.shape[-1])
    if rng.random() < cfg.p_noise:
        if noise is None:
            raise ValueError("p_noise > 0 needs noise segments")
        n = noise(rng).astype(np.float64)
        ps, pn = float(np.mean(out ** 2)), float(np.mean(n ** 2))
        if ps > 0 and pn > 0:
            out = out + n * np.sqrt(ps / pn / 10 ** (rng.uniform(*cfg.snr_db) / 10))
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)
