"""Real recorded speech available offline: Debian's asterisk-core-sounds packages.

Used by tests, the demo and benchmarks. Install with
``apt-get install asterisk-core-sounds-en-wav`` (``make system-deps`` does).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import load_audio

SOUNDS = Path("/usr/share/asterisk/sounds")
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June"}


def prompt_files(lang: str = "en") -> list[Path]:
    """All prompt WAVs of one language, sorted; raises if the package is missing."""
    root = SOUNDS / VOICES[lang]
    files = sorted(p for p in root.rglob("*.wav"))
    if not files:
        raise FileNotFoundError(
            f"no recorded speech under {root}: install Debian's asterisk-core-sounds-{lang}-wav")
    return files


def speech_clip(seconds: float, sample_rate: int = 16000, lang: str = "en",
                start: int = 0) -> np.ndarray:
    """Real speech of exactly ``seconds``: consecutive prompts (from index ``start``)
    joined with 0.1 s of silence, resampled to ``sample_rate``. float32 [T]."""
    need = int(round(seconds * sample_rate))
    parts, have = [], 0
    files = prompt_files(lang)
    i = start
    while have < need:
        wav, _ = load_audio(files[i % len(files)], sample_rate)
        parts += [wav, np.zeros(sample_rate // 10, np.float32)]
        have += wav.size + sample_rate // 10
        i += 1
    return np.concatenate(parts)[:need]
