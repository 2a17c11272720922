"""The frame-rate inverse-STFT decoder: streaming equals offline, causality, its state sizes,
the inverse DFT's unit gain, and its ONNX graph against PyTorch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from llmcodec.config import preset
from llmcodec.istft_decoder import ISTFTDecoder, ISTFTHead
from llmcodec.model import LLMCodec

from conftest import make_tiny


@pytest.fixture(scope="module")
def tiny_istft() -> LLMCodec:
    return make_tiny(3, name="tiny_istft", decoder="istft", istft_dim=32, istft_hidden=64, istft_layers=2)


def test_config_names_the_decoder():
    with pytest.raises(ValueError, match="decoder must be 'snac' or 'istft'"):
        dataclasses.replace(preset("small"), decoder="vocos")
    with pytest.raises(ValueError, match="istft_up 7 must divide the hop 480"):
        dataclasses.replace(preset("small"), decoder="istft", istft_up=7)
    cfg = preset("small_istft")
    assert isinstance(LLMCodec(cfg).decoder, ISTFTDecoder)
    assert cfg.block_size == preset("small").block_size  # same blocks, same tokens per block


def test_state_is_sized_from_hyperparameters():
    dec = ISTFTDecoder(latent=16, dim=24, hidden=48, layers=3, up=3, hop=480, n_fft=640)
    shapes = dec.state_shapes()
    assert shapes["conv_in.tail"] == (16, 6)  # kernel 7 at frame rate
    assert [shapes[f"blocks.{i}.tail"] for i in range(3)] == [(6, 24)] * 3  # time-major, kernel 7
    assert shapes["head.tail"] == (640 - 160,)  # the overlap still to be added
    assert len(shapes) == 5
    assert dec.init_state(2)["head.tail"].shape == (2, 480)


def test_inverse_dft_overlap_add_has_unit_gain():
    """Spectra of rectangular frames ``x[t h : t h + n]`` come back as ``x`` wherever four frames overlap."""
    n, h = 640, 160
    head = ISTFTHead(8, n, h)
    torch.manual_seed(0)
    x = torch.randn(1, 40 * h, dtype=torch.float32)
    frames = x.unfold(-1, n, h)  # [1, T, n], frame t starts at t * h
    spec = torch.fft.rfft(frames.double(), dim=-1)
    y = head._overlap_add(torch.cat([spec.real, spec.imag], dim=-1).float() @ head.basis)
    full = slice(n - h, frames.shape[1] * h)  # samples covered by n / h frames
    assert torch.allclose(y[:, full], x[:, full], atol=1e-4)


def test_streaming_equals_whole_sequence_and_is_causal(tiny_istft):
    m = tiny_istft
    torch.manual_seed(5)
    wav = torch.randn(2, m.block_size * 5) * 0.3
    enc = m.encode(wav)
    steps = m.decode(enc.codes)  # block by block through decode_step
    with torch.no_grad():
        whole = m.decoder(m.quantizer.decode(enc.codes)).squeeze(1)
    assert steps.shape == wav.shape
    assert torch.allclose(steps, whole, atol=1e-6)
    # changing blocks 3.. leaves the audio of blocks 0..2 untouched, bit for bit
    codes = [c.clone() for c in enc.codes]
    for c, n in zip(codes, m.tokens_per_block):
        c[:, 3 * n:] = (c[:, 3 * n:] + 1) % 64
    changed = m.decode(codes)
    cut = 3 * m.block_size
    assert torch.equal(changed[:, :cut], steps[:, :cut])
    assert not torch.equal(changed[:, cut:], steps[:, cut:])


def test_onnx_decoder_matches_torch(tiny_istft, tmp_path):
    """The exported decoder graph, run by ONNX Runtime block by block with its state, against torch."""
    import onnxruntime as ort
    from llmcodec.export.onnx_export import export_model, spectral_nodes
    from llmcodec.speech import speech_clip
    m = tiny_istft
    export_model(m, tmp_path, graphs=("decoder",), int8=True)
    import onnx
    i8 = onnx.load(str(tmp_path / "decoder.int8.onnx"))
    integer = [n for n in i8.graph.node if n.op_type == "MatMulInteger"]
    assert integer, "the ConvNeXt MatMuls are int8"
    head = [n for n in onnx.load(str(tmp_path / "decoder.onnx")).graph.node
            if n.name in spectral_nodes(tmp_path / "decoder.onnx") and n.op_type == "MatMul"]
    assert len(head) == 2  # the projection and the inverse DFT ...
    float_matmuls = {n.name for n in i8.graph.node if n.op_type == "MatMul"}
    assert {n.name for n in head} <= float_matmuls  # ... stay float32 in the int8 graph
    sess = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    wav = torch.from_numpy(speech_clip(3.0, start=10))[None]
    codes = m.encode(wav).codes
    ref = m.decode(codes)[0].numpy()
    state = {k: v.numpy() for k, v in m.init_decoder_state(1).tensors.items()}
    out = []
    for b in range(codes[0].shape[1] // m.tokens_per_block[0]):
        feed = {f"codes{i}": c[:, b * n:(b + 1) * n].numpy() for i, (c, n) in enumerate(zip(codes, m.tokens_per_block))}
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(names, {**feed, **state})))
        out.append(res["pcm"][0])
        state = {k: res[k + "_out"] for k in state}
    got = np.concatenate(out)
    assert got.shape == ref.shape == (codes[0].shape[1] // m.tokens_per_block[0] * m.block_size,)
    err = np.sqrt(np.mean((got - ref) ** 2)) / max(np.sqrt(np.mean(ref ** 2)), 1e-9)
    assert err < 1e-4, err
