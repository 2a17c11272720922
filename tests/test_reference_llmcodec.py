"""Self-check of the reference LLM-Codec (tests/reference_llmcodec.py)."""
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_llmcodec import FULL_SIZE, ReferenceLLMCodec, tiny_reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def key_patterns(keys):
    return sorted({re.sub(r"\.\d+\.", ".N.", re.sub(r"\.\d+\.", ".N.", k)) for k in keys})


EXPECTED_PATTERNS = [
    "decoder.model.N.alpha",
    "decoder.model.N.bias",
    "decoder.model.N.block.N.alpha",
    "decoder.model.N.block.N.bias",
    "decoder.model.N.block.N.block.N.alpha",
    "decoder.model.N.block.N.block.N.bias",
    "decoder.model.N.block.N.block.N.weight_g",
    "decoder.model.N.block.N.block.N.weight_v",
    "decoder.model.N.block.N.linear.weight_g",
    "decoder.model.N.block.N.linear.weight_v",
    "decoder.model.N.block.N.weight_g",
    "decoder.model.N.block.N.weight_v",
    "decoder.model.N.norm.bias",
    "decoder.model.N.norm.weight",
    "decoder.model.N.rel_pos.inv_freq",
    "decoder.model.N.to_out.weight",
    "decoder.model.N.to_qkv.weight",
    "decoder.model.N.weight_g",
    "decoder.model.N.weight_v",
    "encoder.block.N.bias",
    "encoder.block.N.block.N.alpha",
    "encoder.block.N.block.N.bias",
    "encoder.block.N.block.N.block.N.alpha",
    "encoder.block.N.block.N.block.N.bias",
    "encoder.block.N.block.N.block.N.weight_g",
    "encoder.block.N.block.N.block.N.weight_v",
    "encoder.block.N.block.N.weight_g",
    "encoder.block.N.block.N.weight_v",
    "encoder.block.N.norm.bias",
    "encoder.block.N.norm.weight",
    "encoder.block.N.rel_pos.inv_freq",
    "encoder.block.N.to_out.weight",
    "encoder.block.N.to_qkv.weight",
    "encoder.block.N.weight_g",
    "encoder.block.N.weight_v",
    "quantizer.quantizers.N.cb_proj.bias",
    "quantizer.quantizers.N.cb_proj.weight",
    "quantizer.quantizers.N.codebook.weight",
]


def test_tiny_state_dict_keys():
    sd = tiny_reference().state_dict()
    pats = key_patterns(sd)
    print("\n".join(pats))
    assert pats == EXPECTED_PATTERNS
    # exact anchors from the published module tree
    for k in ["encoder.block.0.weight_g", "encoder.block.4.block.4.weight_v", "encoder.block.5.to_qkv.weight",
              "encoder.block.5.rel_pos.inv_freq", "encoder.block.6.weight_g", "decoder.model.2.norm.weight",
              "decoder.model.3.block.1.weight_g", "decoder.model.3.block.2.linear.weight_v",
              "decoder.model.6.block.5.block.3.weight_g", "decoder.model.7.alpha", "decoder.model.8.weight_v",
              "quantizer.quantizers.2.cb_proj.bias"]:
        assert k in sd, k
    assert "encoder.block.5.rel_pos.scale" not in sd  # non-persistent buffer
    assert not any("in_proj" in k or "out_proj" in k for k in sd)
    assert sd["quantizer.quantizers.0.codebook.weight"].shape == (50, 16)
    assert sd["quantizer.quantizers.1.cb_proj.weight"].shape == (128, 16)


@pytest.mark.parametrize("blocks", [1, 2])
def test_tiny_encode_decode_lengths(blocks):
    torch.manual_seed(0)
    m = tiny_reference().eval()
    T = 3840 * blocks
    wav = torch.randn(2, 1, T) * 0.1
    with torch.no_grad():
        codes = m.encode(wav)
        assert [c.shape for c in codes] == [(2, T // 480 // 4), (2, T // 480 // 2), (2, T // 480)]
        assert codes[0].max() < 50 and codes[1].max() < 100
        out = m.decode(codes)
        assert out.shape == (2, 1, T)
        assert torch.equal(out, m.decode(codes))  # deterministic with noise off
        # forward (infer.py path) == encode + decode up to straight-through rounding
        y, codes_f = m(wav)
        assert all(torch.equal(a, b) for a, b in zip(codes, codes_f))
        assert torch.allclose(y, out, atol=1e-5)
        # right padding to a multiple of 3840
        codes_short = m.encode(wav[..., : T - 1000])
        assert [c.shape[-1] for c in codes_short] == [c.shape[-1] for c in codes]
        assert m(wav[..., : T - 1000])[0].shape[-1] == T - 1000


def test_noise_flag():
    m = tiny_reference(noise_at_inference=True).eval()
    codes = m.encode(torch.randn(1, 1, 3840) * 0.1)
    with torch.no_grad():
        assert not torch.equal(m.decode(codes), m.decode(codes))  # original: stochastic decoder
        m.set_noise_active(False)
        assert torch.equal(m.decode(codes), m.decode(codes))


def test_full_size_shapes_meta():
    with torch.device("meta"):
        m = ReferenceLLMCodec(**{k: v for k, v in FULL_SIZE.items()})
    sd = m.state_dict()
    assert m.pad_multiple == 3840 and m.hop_length == 480
    assert sd["encoder.block.0.weight_v"].shape == (32, 1, 7)
    assert sd["encoder.block.5.to_qkv.weight"].shape == (1536, 512)
    assert sd["encoder.block.5.rel_pos.inv_freq"].shape == (32,)
    assert sd["decoder.model.2.to_qkv.weight"].shape == (4608, 1536)
    assert sd["decoder.model.3.block.1.weight_v"].shape == (1536, 768, 16)
    assert sd["decoder.model.3.block.1.weight_g"].shape == (1536, 1, 1)
    assert sd["quantizer.quantizers.0.codebook.weight"].shape == (3248, 4096)
    assert sd["quantizer.quantizers.2.codebook.weight"].shape == (32000, 4096)
    assert sd["quantizer.quantizers.0.cb_proj.weight"].shape == (512, 4096)
