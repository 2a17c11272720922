"""Streaming equals offline on 30 s of real speech with the bundled default model."""
from __future__ import annotations

import numpy as np
import pytest

from llmcodec.stream.buffer import StreamingDecoder, StreamingEncoder, decode_all, encode_all


@pytest.fixture(scope="module")
def offline(default_backend, speech_30s):
    codes = encode_all(default_backend, speech_30s)
    return codes, decode_all(default_backend, codes)


def stream_encode(backend, wav, sizes):
    enc, blocks, i, k = StreamingEncoder(backend), [], 0, 0
    while i < wav.size:
        n = sizes[k % len(sizes)]
        blocks += enc.push(wav[i:i + n])
        i, k = i + n, k + 1
    blocks += enc.flush()
    assert [b.seq for b in blocks] == list(range(len(blocks)))
    return [np.concatenate([b.codes[l] for b in blocks]) for l in range(3)]


def test_token_counts_and_rate(default_backend, offline, speech_30s):
    codes, _ = offline
    blocks = -(-speech_30s.size // 1920)
    assert [c.size for c in codes] == [blocks, 2 * blocks, 4 * blocks]
    assert default_backend.facts.tokens_per_second == pytest.approx(58.333, abs=1e-3)
    for c, k in zip(codes, default_backend.facts.level_sizes):
        assert c.min() >= 0 and c.max() < k


@pytest.mark.parametrize("sizes", [[1], [160], [1000], [1920], [4801], "random"])
def test_any_chunking_gives_offline_tokens(default_backend, offline, speech_30s, sizes):
    if sizes == "random":
        sizes = [int(n) for n in np.random.default_rng(0).integers(1, 6000, size=200)]
    ref = offline[0]
    got = stream_encode(default_backend, speech_30s, sizes)
    for level, (a, b) in enumerate(zip(got, ref)):
        assert np.array_equal(a, b), f"level {level + 1} differs"


@pytest.mark.parametrize("group", [1, 3, 7, 64])
def test_streaming_decode_equals_offline(default_backend, offline, group):
    codes, audio = offline
    dec, out = StreamingDecoder(default_backend), []
    n_frames = codes[2].size
    for f in range(0, n_frames, group):
        out += dec.push([codes[0][f // 4:(f + group) // 4], codes[1][f // 2:(f + group) // 2],
                         codes[2][f:f + group]])
    got = np.concatenate(out)
    assert got.shape == audio.shape
    assert np.abs(got - audio).max() <= 1e-4


def test_causality_prefix_outputs_never_change(default_backend, offline, speech_30s):
    codes, audio = offline
    for seconds in (1.0, 7.3, 12.0):
        n = int(seconds * 16000)
        whole = n // 1920
        pc = encode_all(default_backend, speech_30s[:n])
        for level, per in enumerate((1, 2, 4)):
            assert np.array_equal(pc[level][:whole * per], codes[level][:whole * per])
        pa = decode_all(default_backend, [c[:whole * p] for c, p in zip(codes, (1, 2, 4))])
        assert np.array_equal(pa, audio[:whole * 1920])


def test_decoded_audio_is_finite_and_bounded(offline):
    _, audio = offline
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
