"""The codec model: contract, state, quantizer, whole-sequence vs step equivalence."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from llmcodec.config import CodecConfig, PRESETS, preset
from llmcodec.model import LLMCodec
from llmcodec.state import StreamState


def test_block_contract_of_presets():
    for name in ("tiny", "small", "base"):
        cfg = preset(name)
        assert cfg.hop == 480 and cfg.block_size == 1920 and cfg.frames_per_block == 4
        assert cfg.tokens_per_block == (1, 2, 4)
        assert abs(cfg.tokens_per_second - 58.333) < 1e-3
        assert cfg.causal
    assert not preset("official").causal
    with pytest.raises(ValueError, match="accepted"):
        preset("huge")


def test_config_json_round_trip(tmp_path):
    for cfg in PRESETS.values():
        cfg.save(tmp_path / "c.json")
        assert CodecConfig.load(tmp_path / "c.json") == cfg
    (tmp_path / "bad.json").write_text('{"name": "x", "colour": 3}')
    with pytest.raises(ValueError, match="unknown config keys"):
        CodecConfig.load(tmp_path / "bad.json")


def test_configurable_strides_change_block():
    cfg = dataclasses.replace(preset("tiny"), vq_strides=(3, 1), level_sizes=(16, 32), llm_dim=8)
    assert cfg.block_size == 1440 and cfg.tokens_per_block == (1, 3)
    m = LLMCodec(cfg)
    m.set_codebooks([torch.randn(16, 8), torch.randn(32, 8)])
    m.prepare_inference()
    enc = m.encode(torch.randn(1, 1440 * 3) * 0.1)
    assert [c.shape[1] for c in enc.codes] == [3, 9]


def test_step_shapes_and_state_names(tiny_model):
    m = tiny_model
    st = m.init_encoder_state(3)
    assert all(t.shape[0] == 3 for t in st.flatten())
    assert len(set(st.names())) == len(st.names())
    assert any(n.endswith(".k") for n in st.names()) and any(n.endswith(".tail") for n in st.names())
    codes, st2 = m.encode_step(torch.randn(3, 1920) * 0.1, st)
    assert [tuple(c.shape) for c in codes] == [(3, 1), (3, 2), (3, 4)]
    assert st2.names() == st.names()
    assert all(a.shape == b.shape for a, b in zip(st.flatten(), st2.flatten()))
    y, _ = m.decode_step(codes, m.init_decoder_state(3))
    assert y.shape == (3, 1920)
    rebuilt = StreamState.unflatten(st2.names(), st2.flatten())
    assert rebuilt.names() == st2.names()


def test_step_is_pure(tiny_model):
    """No hidden state: the same inputs give the same outputs; inputs are not modified."""
    m = tiny_model
    st = m.init_encoder_state(1)
    _, st = m.encode_step(torch.randn(1, 1920) * 0.1, st)
    before = [t.clone() for t in st.flatten()]
    x = torch.randn(1, 1920) * 0.1
    a, sa = m.encode_step(x, st)
    b, sb = m.encode_step(x, st)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(before, st.flatten()))


def test_reset_rows_restarts_one_stream(tiny_model):
    m = tiny_model
    torch.manual_seed(5)
    x = torch.randn(2, 3, 1920) * 0.1
    st = m.init_encoder_state(2)
    for i in range(3):
        _, st = m.encode_step(x[:, i], st)
    st = st.reset_rows(torch.tensor([True, False]))
    y = torch.randn(2, 1920) * 0.1
    codes, _ = m.encode_step(y, st)
    fresh, _ = m.encode_step(y[:1], m.init_encoder_state(1))
    assert all(torch.equal(c[0], f[0]) for c, f in zip(codes, fresh))
    cont, _ = m.encode_step(y[1:], st.select([1]))
    assert all(torch.equal(c[1], f[0]) for c, f in zip(codes, cont))


def test_whole_sequence_forward_matches_steps(tiny_model):
    """Training's parallel forward computes the same function as the streaming steps."""
    m = tiny_model
    torch.manual_seed(6)
    wav = torch.randn(2, 1920 * 6) * 0.2
    with torch.no_grad():
        out = m(wav.unsqueeze(1))
    enc = m.encode(wav)
    z_codes = out.quant.codes
    agree = sum(int((a == b).sum()) for a, b in zip(z_codes, enc.codes)) / sum(c.numel() for c in enc.codes)
    assert agree > 0.97
    dec = m.decode(z_codes)
    assert torch.allclose(dec, out.audio.squeeze(1), atol=1e-4)


def test_quantizer_levels_and_gradients():
    torch.manual_seed(7)
    cfg = dataclasses.replace(preset("tiny"), level_sizes=(16, 64, 64), llm_dim=8)
    m = LLMCodec(cfg)
    books = [torch.randn(n, 8) for n in cfg.level_sizes]
    m.set_codebooks(books)
    m.train()
    z = torch.randn(2, cfg.latent_dim, 8, requires_grad=True)
    r = m.quantizer(z)
    assert [tuple(c.shape) for c in r.codes] == [(2, 2), (2, 4), (2, 8)]
    assert r.commitment_loss > 0 and r.codebook_loss > 0
    (r.quantized.sum() + r.commitment_loss + r.codebook_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0       # straight-through
    for q in m.quantizer.quantizers:
        assert q.cb_proj.weight.grad.abs().sum() > 0           # projection learns
        assert not q.codebook.requires_grad                    # LLM table frozen
    # decoding ids is one gather per level and reproduces the quantized latent
    m.eval()
    m.quantizer.freeze_tables()
    r2 = m.quantizer(z.detach())
    assert torch.allclose(m.quantizer.decode(r2.codes), r2.quantized, atol=1e-5)
    # the first levels alone: the sum of those levels' vectors only
    for n in (1, 2):
        want = sum(lv.repeat_interleave(q.stride, dim=-1) for lv, q in zip(r2.levels[:n], m.quantizer.quantizers))
        assert torch.allclose(m.quantizer.decode(r2.codes[:n]), want, atol=1e-5)
    with pytest.raises(ValueError, match="levels of codes"):
        m.quantizer.decode([])
    # level 1 code is the cosine nearest neighbour of the pooled latent
    q0 = m.quantizer.quantizers[0]
    pooled = torch.nn.functional.avg_pool1d(z.detach(), 4)
    zz = q0.in_proj(pooled)[0, :, 0]
    cos = torch.nn.functional.cosine_similarity(zz[None], q0.projected(), dim=-1)
    assert int(cos.argmax()) == int(r2.codes[0][0, 0])


def test_bad_shapes_are_named(tiny_model):
    m = tiny_model
    with pytest.raises(ValueError, match=r"\[B, 1920\]"):
        m.encode_step(torch.zeros(1, 1000), m.init_encoder_state(1))
    with pytest.raises(ValueError, match="level 2"):
        m.decode_step([torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                       torch.zeros(1, 4, dtype=torch.long)], m.init_decoder_state(1))
    with pytest.raises(ValueError, match=r"in \[0, 64\)"):
        m.decode_step([torch.full((1, 1), 99), torch.zeros(1, 2, dtype=torch.long),
                       torch.zeros(1, 4, dtype=torch.long)], m.init_decoder_state(1))
