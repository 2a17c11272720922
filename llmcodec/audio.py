"""Reading, checking, resampling and writing audio files (soundfile + soxr)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """Bad audio input; the message names the problem and what is accepted."""


def to_mono_float(data: np.ndarray, what: str = "audio") -> np.ndarray:
    """[T] or [T, C] samples -> float32 [T] (channels averaged), checked finite."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data.mean(axis=1)
    elif data.ndim != 1:
        raise AudioError(f"{what}: expected [samples] or [samples, channels], got shape {data.shape}")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(f"{what}: {bad} samples are NaN or Inf; only finite samples are accepted")
    return data


def resample(data: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """float32 [T] at ``sr_in`` -> float32 at ``sr_out`` (soxr, high quality)."""
    if sr_in == sr_out:
        return data
    return soxr.resample(data, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file, down-mix, resample to ``sample_rate``.

    Returns (float32 [T], the file's own sample rate).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        formats = ", ".join(sorted(sf.available_formats()))
        raise AudioError(f"{path}: unsupported or corrupt audio file ({e}); accepted formats: {formats}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    mono = to_mono_float(data, str(path))
    return resample(mono, sr, sample_rate), sr


def save_audio(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write float32 [T] as 16-bit PCM (WAV/FLAC/OGG by extension)."""
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sample_rate,
             subtype=None if not str(path).lower().endswith(".wav") else "PCM_16")
