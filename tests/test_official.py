"""Loading the published LLM-Codec checkpoint layout: parity with the reference."""
import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_llmcodec import FULL_SIZE, ReferenceLLMCodec, tiny_reference  # noqa: E402

from llmcodec.config import preset  # noqa: E402
from llmcodec.model import EncodedAudio, LLMCodec  # noqa: E402
from llmcodec.checkpoint import load_model  # noqa: E402
from llmcodec.cli import main as cli  # noqa: E402
from llmcodec.convert_official import (build_official, convert_official, fold_weight,  # noqa: E402
                                       infer_config, load_official_checkpoint, split_official_state_dict)
from llmcodec.reference import (official_decode, official_encode, pad_multiple,  # noqa: E402
                                quantize_reference)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # old weight_norm API

ROOT = Path(__file__).resolve().parents[1]


def randomized_reference(seed: int = 0) -> ReferenceLLMCodec:
    """tiny_reference (noise off) with random values in every parameter."""
    torch.manual_seed(seed)
    ref = tiny_reference().eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(".alpha"):
                p.uniform_(0.3, 2.0)
            elif name.endswith(".weight_g"):
                p.uniform_(0.25, 1.0)
            elif ".norm." in name:
                p.uniform_(0.7, 1.3) if name.endswith("weight") else p.normal_(0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0, 0.01)
            elif name.endswith("codebook.weight"):
                p.normal_(0, 1)
            else:  # weight_v, to_qkv, to_out, cb_proj
                p.normal_(0, 1 / math.sqrt(p[0].numel()))
    return ref


def test_audio(batch: int, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    sine = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (220.0, 523.0)[:batch]])
    return sine + 0.1 * torch.randn(batch, n, generator=g)


test_audio.__test__ = False  # not a test


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a busy machine OpenMP spinning costs seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    ref = randomized_reference()
    path = tmp_path_factory.mktemp("official") / "ckpt.pth"
    torch.save({"codec_model": ref.state_dict()}, path)  # the published layout
    return ref, path


@pytest.fixture(scope="module")
def loaded(ckpt):
    return load_official_checkpoint(ckpt[1])


def test_weights_are_random(ckpt):
    ref, _ = ckpt
    torch.manual_seed(0)
    default = tiny_reference().state_dict()
    for k, v in ref.state_dict().items():
        if k.endswith("inv_freq"):
            assert torch.equal(v, default[k])
        else:
            assert not torch.allclose(v, default[k]), k


def test_saved_file_has_published_layout(ckpt):
    ref, path = ckpt
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert list(obj) == ["codec_model"]
    sd = obj["codec_model"]
    assert list(sd) == list(ref.state_dict())
    for k in ["encoder.block.0.weight_g", "encoder.block.0.weight_v", "encoder.block.4.block.4.weight_v",
              "encoder.block.5.rel_pos.inv_freq", "decoder.model.2.rel_pos.inv_freq",
              "decoder.model.3.block.1.weight_g", "decoder.model.3.block.2.linear.weight_v",
              "quantizer.quantizers.0.codebook.weight", "quantizer.quantizers.2.cb_proj.bias"]:
        assert k in sd, k
    assert not any(re.search(r"\.weight$", k) and k.replace(".weight", ".weight_v") in sd for k in sd)
    # ConvTranspose1d: weight norm over dim 0 = input channels
    assert sd["decoder.model.3.block.1.weight_g"].shape == (32, 1, 1)
    assert sd["decoder.model.3.block.1.weight_v"].shape == (32, 16, 16)


def test_fold_matches_old_weight_norm():
    from torch.nn.utils import remove_weight_norm, weight_norm
    torch.manual_seed(0)
    for m in (torch.nn.Conv1d(6, 4, 5, groups=2), torch.nn.ConvTranspose1d(6, 3, 8, stride=4)):
        m = weight_norm(m)
        with torch.no_grad():
            m.weight_g.uniform_(0.5, 2.0)
        g, v = m.weight_g.detach().clone(), m.weight_v.detach().clone()
        # norm over every axis but 0 (for ConvTranspose1d: the input channels)
        manual = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1)
        folded = fold_weight(g, v)
        assert torch.allclose(folded, manual, rtol=1e-6, atol=0)
        remove_weight_norm(m)
        assert torch.equal(folded, m.weight.detach())


def test_inferred_config(ckpt, loaded):
    cfg = loaded.cfg
    assert not cfg.causal and cfg.depthwise and cfg.noise and cfg.code_dim is None
    assert (cfg.enc_channels, cfg.latent_dim, cfg.dec_channels) == (8, 128, 32)
    assert cfg.enc_strides == (3, 4, 5, 8) and cfg.dec_strides == (8, 5, 4, 3)
    assert (cfg.attn_head_dim, cfg.attn_window, cfg.vq_strides) == (16, 8, (4, 2, 1))
    assert (cfg.llm_dim, cfg.level_sizes) == (16, (50, 100, 100))
    assert pad_multiple(cfg) == 3840 == ckpt[0].pad_multiple
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for q, n in zip(loaded.quantizer.quantizers, ("0", "1", "2")):
        assert torch.equal(q.codebook, ckpt[0].state_dict()[f"quantizer.quantizers.{n}.codebook.weight"])


@pytest.mark.parametrize("n", [2 * 3840, 3840 + 1234])
def test_parity_with_reference(ckpt, loaded, n):
    ref, _ = ckpt
    wav = test_audio(2, n)
    with torch.no_grad():
        ref_codes = ref.encode(wav.unsqueeze(1))
        ref_wav = ref.decode(ref_codes).squeeze(1)
        ref_fwd, _ = ref(wav.unsqueeze(1))
    enc = official_encode(loaded, wav)
    assert isinstance(enc, EncodedAudio) and enc.num_samples == n
    frames = -(-n // 3840) * 8
    assert [c.shape for c in enc.codes] == [(2, frames // 4), (2, frames // 2), (2, frames)]
    for level, (ours, theirs) in enumerate(zip(enc.codes, ref_codes)):
        assert torch.equal(ours, theirs), f"level {level + 1}: {(ours != theirs).sum()} codes differ"
        assert theirs.unique().numel() > 3  # a meaningful comparison, not one code everywhere
    out = official_decode(loaded, enc.codes)
    assert out.shape == ref_wav.shape == (2, frames * 480)
    assert (out - ref_wav).abs().max() < 1e-5
    assert 0.01 < ref_wav.std() and ref_wav.abs().max() < 0.999  # not silent, not saturated
    trimmed = official_decode(loaded, enc)
    assert trimmed.shape == (2, n) and torch.equal(trimmed, out[:, :n])
    assert (trimmed - ref_fwd.squeeze(1)).abs().max() < 1e-5  # infer.py's forward path


def test_convert_roundtrip(ckpt, loaded, tmp_path):
    out = convert_official(ckpt[1], tmp_path / "conv")
    assert sorted(p.name for p in out.iterdir()) == ["codebooks.safetensors", "config.json", "model.safetensors"]
    from safetensors.torch import load_file
    weights = load_file(str(out / "model.safetensors"))
    assert not any("codebook" in k or "inv_freq" in k or k.endswith(("_g", "_v")) for k in weights)
    assert sorted(load_file(str(out / "codebooks.safetensors"))) == ["level0", "level1", "level2"]
    back = load_model(out).model  # the one model-directory format; LLaMA tables from codebooks.safetensors
    assert back.cfg == loaded.cfg
    wav = test_audio(1, 3840 + 100, seed=3)
    a, b = official_encode(loaded, wav), official_encode(back, wav)
    assert all(torch.equal(x, y) for x, y in zip(a.codes, b.codes))
    assert torch.equal(official_decode(loaded, a), official_decode(back, b))


def test_cli(ckpt, tmp_path):
    assert cli(["convert-official", str(ckpt[1]), "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "config.json").is_file()
    r = subprocess.run([sys.executable, "-m", "llmcodec.cli", "convert-official", str(tmp_path / "nope.pth"),
                        "-o", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "error" in r.stderr


def test_bare_state_dict(ckpt, loaded, tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(ckpt[0].state_dict(), path)
    m = load_official_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("obj", [{"model": {"a": torch.zeros(1)}}, {"codec_model": {"x.y": torch.zeros(2)}},
                                 [torch.zeros(3)], torch.zeros(3), {"codec_model": [1, 2]}])
def test_bad_files(tmp_path, obj):
    path = tmp_path / "bad.pth"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=r"not an LLM-Codec checkpoint.*accepted: \{'codec_model'"):
        load_official_checkpoint(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="accepted"):
        load_official_checkpoint(path)


def test_missing_and_unexpected_keys(ckpt, tmp_path):
    sd = dict(ckpt[0].state_dict())
    del sd["encoder.block.5.to_out.weight"]
    sd["decoder.model.9.extra"] = torch.zeros(1)
    path = tmp_path / "keys.pth"
    torch.save({"codec_model": sd}, path)
    with pytest.raises(ValueError, match=r"missing keys: \[encoder\.block\.5\.to_out\.weight\]; "
                                         r"unexpected keys: \[decoder\.model\.9\.extra\]"):
        load_official_checkpoint(path)


def test_tampered_rotary_table(ckpt, tmp_path):
    sd = dict(ckpt[0].state_dict())
    sd["decoder.model.2.rel_pos.inv_freq"] = sd["decoder.model.2.rel_pos.inv_freq"] * 2
    path = tmp_path / "rot.pth"
    torch.save({"codec_model": sd}, path)
    with pytest.raises(ValueError, match="rotary"):
        load_official_checkpoint(path)


def test_full_size_shapes_meta():
    """The official preset's parameter shapes equal the reference's after folding."""
    with torch.device("meta"):
        ref = ReferenceLLMCodec(**FULL_SIZE)
        ours = LLMCodec(preset("official"))
    sd = ref.state_dict()
    cfg = infer_config(sd)
    assert cfg == dataclasses.replace(preset("official"), name="official")
    weights, codebooks, inv_freqs = split_official_state_dict(sd)
    our_sd = ours.state_dict()
    assert sorted(weights) == sorted(our_sd)
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape) for k, v in our_sd.items()}
    assert [tuple(c.shape) for c in codebooks] == [(3248, 4096), (32000, 4096), (32000, 4096)]
    assert sorted(inv_freqs) == ["decoder.model.2.rel_pos.inv_freq", "encoder.block.5.rel_pos.inv_freq"]
    assert [tuple(q.codebook.shape) for q in ours.quantizer.quantizers] == [tuple(c.shape) for c in codebooks]
    n = sum(v.numel() for v in weights.values())
    ref_n = sum(v.numel() for k, v in sd.items() if not k.endswith(("weight_g", "inv_freq", "codebook.weight")))
    assert n == ref_n == sum(p.numel() for p in ours.parameters())
    assert 45e6 < n < 47e6  # 46.07M trainable-shaped weights (cb_proj included), codebooks excluded


def test_near_ties_follow_reference_formula(ckpt):
    """Near-duplicate codes: the reference's distance formula and a plain cosine argmax
    disagree on float rounding; the official path reproduces the reference exactly."""
    sd = dict(ckpt[0].state_dict())
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1, 16, generator=g)
    for i, n in enumerate((50, 100, 100)):
        sd[f"quantizer.quantizers.{i}.codebook.weight"] = base + 1e-6 * torch.randn(n, 16, generator=g)
    ref = ReferenceLLMCodec(encoder_dim=8, latent_dim=128, decoder_dim=32, codebook_sizes=(50, 100, 100),
                            llm_dim=16, attn_dim_head=16, noise_at_inference=False)
    ref.load_state_dict(sd)
    ours = build_official(sd)
    proj = ours.quantizer.quantizers[0].table.mean(0)
    z = proj.view(1, -1, 1) + 1e-3 * torch.randn(4, 128, 64, generator=g)
    with torch.no_grad():
        _, ref_codes = ref.quantizer(z)
    codes = quantize_reference(ours, z)
    assert all(torch.equal(a, b) for a, b in zip(codes, ref_codes))
    cosine = ours.quantizer(z).codes
    assert any(not torch.equal(a, b) for a, b in zip(cosine, ref_codes))  # the formula matters here


def test_other_shapes_inferred(tmp_path):
    """Strides, channels and the noise block are read from the shapes, not assumed."""
    torch.manual_seed(2)
    ref = tiny_reference(encoder_dim=4, latent_dim=64, encoder_rates=(2, 4, 8, 8), decoder_rates=(8, 8, 4, 2),
                         decoder_dim=64, noise=False, codebook_sizes=(30, 40, 50), llm_dim=8).eval()
    path = tmp_path / "other.pth"
    torch.save({"codec_model": ref.state_dict()}, path)
    m = load_official_checkpoint(path)
    cfg = m.cfg
    assert (cfg.enc_channels, cfg.enc_strides, cfg.dec_channels, cfg.dec_strides, cfg.noise) == \
        (4, (2, 4, 8, 8), 64, (8, 8, 4, 2), False)
    assert (cfg.level_sizes, cfg.llm_dim, pad_multiple(cfg)) == ((30, 40, 50), 8, 4096)
    wav = test_audio(1, 5000)
    with torch.no_grad():
        ref_codes = ref.encode(wav.unsqueeze(1))
        ref_wav = ref.decode(ref_codes).squeeze(1)
    enc = official_encode(m, wav)
    assert all(torch.equal(a, b) for a, b in zip(enc.codes, ref_codes))
    assert (official_decode(m, enc.codes) - ref_wav).abs().max() < 1e-5
