"""One audio file -> one row of LLM tokens, read and encoded in segments with exact offline tokens.

A long file is never held whole: it is read ``segment_seconds`` at a time, resampled with a
streaming soxr resampler (the same output as ``soxr.resample`` of the whole signal), cut into
blocks and encoded with the encoder state carried from block to block, then the codes are
joined. The tokens equal ``llmcodec encode`` of the file on the same backend (tested).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from llmcodec.audio import to_mono_float


@dataclass(frozen=True)
class ModelId:
    """What made a dataset's tokens: tokens of different models or runtimes are never mixed."""

    name: str
    backend: str
    weights_sha256: str


def weights_sha256(model: str | Path | None) -> str:
    """SHA-256 of a model directory's weights (None: the bundled model), or of an export
    directory's fp32 encoder graph."""
    from llmcodec.checkpoint import WEIGHTS_FILE, default_model_dir
    from llmcodec.export.metadata import onnx_file
    d = Path(model) if model is not None else default_model_dir()
    for f in (d / WEIGHTS_FILE, d / onnx_file("encoder", "fp32")):
        if f.is_file():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
    raise ValueError(f"{d}: neither a model directory ({WEIGHTS_FILE}) nor an export directory")


def encode_file_segmented(backend, path: str, segment_seconds: float = 60.0) -> tuple[list[np.ndarray], int, int, int]:
    """An audio file -> (codes per level [blocks * n_l], source rate, source frames, samples at the model's rate)."""
    from llmcodec.stream.buffer import StreamingEncoder
    rate = backend.facts.sample_rate
    with sf.SoundFile(path) as f:
        sr, frames = f.samplerate, f.frames
        if frames == 0:
            raise ValueError(f"{path}: the file holds no samples")
        resampler = None if sr == rate else soxr.ResampleStream(sr, rate, 1, dtype="float32", quality="HQ")
        enc = StreamingEncoder(backend)
        blocks, n_out = [], 0
        step = max(1, int(segment_seconds * sr))
        while True:
            data = f.read(step, dtype="float32", always_2d=True)
            if not len(data):
                break
            x = to_mono_float(data, path)
            if resampler is not None:
                x = resampler.resample_chunk(x)
            n_out += x.size
            blocks += enc.push(x)
        if resampler is not None:
            x = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            n_out += x.size
            blocks += enc.push(x)
        blocks += enc.flush()
    levels = len(backend.facts.tokens_per_block)
    codes = [np.concatenate([b.codes[l] for b in blocks]).astype(np.int64) for l in range(levels)]
    return codes, sr, frames, n_out


def token_row(backend, path: str, model: ModelId, segment_seconds: float = 60.0) -> dict:
    """One file's row of the tokens table (see dataset.py); an unreadable file raises."""
    vocab = backend.vocab
    codes, sr, frames, n = encode_file_segmented(backend, path, segment_seconds)
    row = {"path": path, "duration_s": frames / sr, "source_sample_rate": sr, "num_samples": n,
           "blocks": int(codes[0].size // backend.facts.tokens_per_block[0]),
           "model": model.name, "backend": model.backend, "weights_sha256": model.weights_sha256}
    for l, c in enumerate(codes, start=1):
        row[f"codes{l}"] = [int(i) for i in c]
        row[f"level{l}_ids"] = [int(i) for i in vocab.codes_to_token_ids(l - 1, c)]
    row["text1"] = vocab.codes_to_text(0, codes[0])
    return row


def error_row(path: str, error: BaseException, model: ModelId) -> dict:
    message = str(error) or type(error).__name__
    return {"path": path, "error": f"{type(error).__name__}: {message}", "model": model.name,
            "backend": model.backend, "weights_sha256": model.weights_sha256}
