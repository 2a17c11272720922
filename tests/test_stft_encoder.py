"""The frame-rate STFT encoder: streaming equals the whole-sequence pass, causality bit for bit,
state sizes from its hyperparameters, the analysis's scale, and its ONNX graph against PyTorch."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from llmcodec.config import preset
from llmcodec.model import LLMCodec
from llmcodec.stft_encoder import STFTEncoder, STFTFeatures

from conftest import make_tiny


@pytest.fixture(scope="module")
def tiny_stft() -> LLMCodec:
    return make_tiny(4, name="tiny_stft", encoder="stft", stft_dim=32, stft_hidden=64, stft_layers=2,
                     decoder="istft", istft_dim=32, istft_hidden=64, istft_layers=2)


def test_config_names_the_encoder():
    with pytest.raises(ValueError, match="encoder must be 'snac' or 'stft'"):
        dataclasses.replace(preset("small"), encoder="mel")
    with pytest.raises(ValueError, match="stft_sub 7 must divide the hop"):
        dataclasses.replace(preset("small_stft"), stft_sub=7)
    cfg = preset("small_stft")
    assert isinstance(LLMCodec(cfg).encoder, STFTEncoder)
    assert cfg.block_size == preset("small").block_size and cfg.latent_dim == preset("small").latent_dim


def test_state_is_sized_from_hyperparameters():
    enc = STFTEncoder(latent=16, dim=24, hidden=48, layers=3, sub=3, hop=480, n_fft=640)
    shapes = enc.state_shapes()
    assert shapes["stft.tail"] == (640 - 160,)  # the samples before the block that its windows span
    assert [shapes[f"blocks.{i}.tail"] for i in range(3)] == [(6, 24)] * 3  # kernel 7 at frame rate
    assert len(shapes) == 4
    assert enc.init_state(2)["stft.tail"].shape == (2, 480)


def test_analysis_reads_a_full_scale_sine_as_one():
    """A sine on a bin's centre frequency reads magnitude ~1 in that bin once the window is full."""
    n, h = 640, 160
    feats = STFTFeatures(n, h)
    k = 40  # 1 kHz at 16 kHz
    x = torch.sin(2 * math.pi * k / n * torch.arange(8 * h, dtype=torch.float32))[None, None]
    logmag = feats(x)[0, :, : n // 2 + 1]
    assert logmag.shape == (8, n // 2 + 1)
    assert abs(float(logmag[5, k].exp()) - 1.0) < 1e-3
    assert float(logmag[5].exp().sum() - logmag[5, k].exp()) < 1.1  # the rest: Hann's two side bins


def test_streaming_equals_whole_sequence_and_is_causal(tiny_stft):
    m = tiny_stft
    torch.manual_seed(6)
    wav = torch.randn(2, 1, m.block_size * 5) * 0.3
    with torch.no_grad():
        whole = m.encoder(wav)
        state, steps = m.encoder.init_state(2), []
        for i in range(5):
            z, state = m.encoder.step(wav[..., i * m.block_size:(i + 1) * m.block_size], state)
            steps.append(z)
    steps = torch.cat(steps, dim=-1)
    assert steps.shape == whole.shape == (2, m.cfg.latent_dim, 5 * m.cfg.frames_per_block)
    assert torch.allclose(steps, whole, atol=1e-5)
    # tokens: changing samples from block 3 on leaves the tokens of blocks 0..2 alone, bit for bit
    codes = m.encode(wav[:, 0]).codes
    later = wav.clone()
    later[..., 3 * m.block_size:] = torch.randn_like(later[..., 3 * m.block_size:])
    changed = m.encode(later[:, 0]).codes
    frames = 3 * m.cfg.frames_per_block
    with torch.no_grad():
        a, b = m.encoder(wav), m.encoder(later)
    assert torch.equal(a[..., :frames], b[..., :frames])
    assert not torch.equal(a[..., frames:], b[..., frames:])
    for c, d, n in zip(codes, changed, m.tokens_per_block):
        assert torch.equal(c[:, :3 * n], d[:, :3 * n])


def test_onnx_encoder_matches_torch(tiny_stft, tmp_path):
    """The exported encoder graph, run by ONNX Runtime block by block, gives torch's tokens; its
    STFT analysis stays float32 in the int8 graph."""
    import onnx
    import onnxruntime as ort
    from llmcodec.export.onnx_export import export_model, spectral_nodes
    from llmcodec.speech import speech_clip
    m = tiny_stft
    export_model(m, tmp_path, graphs=("encoder",), int8=True)
    fp32 = tmp_path / "encoder.onnx"
    analysis = [n.name for n in onnx.load(str(fp32)).graph.node
                if n.name in spectral_nodes(fp32) and n.op_type == "MatMul"]
    assert len(analysis) == 1  # the windowed DFT ...
    i8 = onnx.load(str(tmp_path / "encoder.int8.onnx"))
    assert any(n.op_type == "MatMulInteger" for n in i8.graph.node), "the ConvNeXt MatMuls are int8"
    assert set(analysis) <= {n.name for n in i8.graph.node if n.op_type == "MatMul"}  # ... is not
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    wav = torch.from_numpy(speech_clip(3.0, start=10))[None]
    ref = m.encode(wav).codes
    state = {k: v.numpy() for k, v in m.init_encoder_state(1).tensors.items()}
    names = [o.name for o in sess.get_outputs()]
    got: list[list[np.ndarray]] = [[] for _ in ref]
    blocks = ref[0].shape[1] // m.tokens_per_block[0]
    pcm = torch.nn.functional.pad(wav, (0, blocks * m.block_size - wav.shape[-1])).numpy()
    for b in range(blocks):
        res = dict(zip(names, sess.run(names, {"pcm": pcm[:, b * m.block_size:(b + 1) * m.block_size], **state})))
        for i, lst in enumerate(got):
            lst.append(res[f"codes{i}"])
        state = {k: res[k + "_out"] for k in state}
    for r, g in zip(ref, got):
        assert np.array_equal(np.concatenate(g, axis=1), r.numpy())
