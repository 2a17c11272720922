"""Convert the published (non-causal) UniAudio 1.5 LLM-Codec checkpoint to a model directory.

The published file holds ``{'codec_model': state_dict}`` with the old
``torch.nn.utils.weight_norm`` pairs (``weight_g``/``weight_v``), the rotary
``rel_pos.inv_freq`` buffers and the frozen LLM codebooks
(``quantizer.quantizers.{i}.codebook.weight``). Our ``LLMCodec`` with the
``official`` configuration has the same module tree, so loading is: fold the
weight-norm pairs, drop the rotary buffers (recomputed by our attention), take
the codebooks out as the quantizer's frozen tables.

``llmcodec convert-official llm3_codec_uni.pth -o DIR`` writes a model directory
(``checkpoint.save_model``: ``config.json``, ``model.safetensors`` with the folded
weights, and the LLaMA tables as ``codebooks.safetensors``); ``checkpoint.load_model``
reads it back without pickle, and ``reference.py`` runs it as the published code does.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import save_model
from .config import CodecConfig, preset
from .model import LLMCodec

CODEC_KEY = "codec_model"
_ACCEPTED = ("{'codec_model': state_dict} (the published LLM-Codec layout) or a bare state dict "
             "with 'encoder.block.*', 'decoder.model.*' and 'quantizer.quantizers.*' tensors")
_CODEBOOK = re.compile(r"^quantizer\.quantizers\.(\d+)\.codebook\.weight$")
_INV_FREQ_SUFFIX = ".rel_pos.inv_freq"


# ---------------------------------------------------------------- reading the file
def _unwrap(obj: object, source: str) -> dict[str, Tensor]:
    """The codec state dict inside a loaded checkpoint object."""
    if isinstance(obj, dict) and CODEC_KEY in obj:
        obj = obj[CODEC_KEY]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{source}: not an LLM-Codec checkpoint (got {type(obj).__name__}); "
                         f"accepted: {_ACCEPTED}")
    keys = list(obj)
    if all(isinstance(k, str) and k.startswith("module.") for k in keys):  # DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad or not any(k.startswith("encoder.block.") for k in obj) \
            or not any(k.startswith("decoder.model.") for k in obj):
        shown = sorted(map(str, obj))[:8]
        raise ValueError(f"{source}: not an LLM-Codec checkpoint (keys {shown}"
                         f"{' ...' if len(obj) > 8 else ''}); accepted: {_ACCEPTED}")
    return dict(obj)


def read_official_state_dict(path: str | Path, *, map_location: str | torch.device = "cpu"
                             ) -> dict[str, Tensor]:
    """``torch.load`` (weights only) and unwrap the codec's state dict."""
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:  # missing or unreadable file: not a format problem
        raise
    except Exception as e:  # the weights-only unpickler raises many types on foreign data
        raise ValueError(f"{path}: cannot read as a weights-only torch checkpoint ({e}); "
                         f"accepted: {_ACCEPTED}") from None
    return _unwrap(obj, str(path))


# ---------------------------------------------------------------- folding
def _weight_norm_dim(g: Tensor, v: Tensor) -> int:
    """The ``dim`` the old ``weight_norm`` used: the one axis where g is not 1."""
    if g.dim() == v.dim():
        axes = [d for d in range(v.dim()) if g.shape[d] != 1]
        if not axes or (len(axes) == 1 and g.shape[axes[0]] == v.shape[axes[0]]):
            return axes[0] if axes else 0
    if g.numel() == 1:  # weight_norm(dim=None): one norm over the whole tensor
        return -1
    raise ValueError(f"weight_g shape {tuple(g.shape)} does not fit weight_v shape {tuple(v.shape)}")


def fold_weight(g: Tensor, v: Tensor) -> Tensor:
    """``g * v / ||v||``, the norm over every axis but ``dim`` (the old API's
    ``torch._weight_norm``: for ConvTranspose1d, dim 0 is the input channels)."""
    dim = _weight_norm_dim(g, v)
    if v.dtype not in (torch.float32, torch.float64):
        g, v = g.float(), v.float()
    if hasattr(torch, "_weight_norm"):  # the very op the reference runs at every forward
        return torch._weight_norm(v, g, dim)
    if dim == -1:
        return v * (g / v.norm())
    norm = v.transpose(0, dim).reshape(v.shape[dim], -1).norm(dim=1)
    shape = [1] * v.dim()
    shape[dim] = -1
    return v * (g / norm.view(shape))


def _check_inv_freq(key: str, inv_freq: Tensor) -> None:
    if inv_freq.is_meta:
        return
    d = 2 * inv_freq.numel()
    ours = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    if not torch.allclose(inv_freq.double().cpu(), ours, rtol=1e-6, atol=0):
        raise ValueError(f"{key} is not the standard rotary table for head dim {d}: "
                         "our attention would compute different positions")


def split_official_state_dict(sd: dict[str, Tensor]
                              ) -> tuple[dict[str, Tensor], list[Tensor], dict[str, Tensor]]:
    """-> (our weights with weight norm folded, codebook tables by level, inv_freq buffers)."""
    weights: dict[str, Tensor] = {}
    codebooks: dict[int, Tensor] = {}
    inv_freqs: dict[str, Tensor] = {}
    for k, t in sd.items():
        m = _CODEBOOK.match(k)
        if m:
            codebooks[int(m.group(1))] = t
        elif k.endswith(_INV_FREQ_SUFFIX):
            _check_inv_freq(k, t)
            inv_freqs[k] = t
        elif k.endswith(".weight_g"):
            base = k[: -len("_g")]
            if base + "_v" not in sd:
                raise ValueError(f"{k} has no matching {base}_v")
            weights[base] = fold_weight(t, sd[base + "_v"])
        elif k.endswith(".weight_v"):
            if k[: -len("_v")] + "_g" not in sd:
                raise ValueError(f"{k} has no matching {k[:-len('_v')]}_g")
        else:
            weights[k] = t
    if sorted(codebooks) != list(range(len(codebooks))):
        raise ValueError(f"codebook levels {sorted(codebooks)} are not 0..n-1")
    return weights, [codebooks[i] for i in range(len(codebooks))], inv_freqs


# ---------------------------------------------------------------- configuration
def _shape(sd: dict[str, Tensor], key: str) -> tuple[int, ...]:
    for k in (key, key + "_v"):
        if k in sd:
            return tuple(sd[k].shape)
    raise ValueError(f"checkpoint has no {key!r} (needed to infer the model's shape)")


def infer_config(sd: dict[str, Tensor], name: str = "official") -> CodecConfig:
    """A non-causal ``CodecConfig`` from the tensor shapes of an official state dict.

    Read from shapes: encoder/decoder channels and strides (kernel = 2 * stride),
    depthwise, noise, attention head dim (``inv_freq`` length), level sizes and
    LLM dim. Not visible in shapes, so taken from the ``official`` preset: the
    attention window (8) and the VQ strides (4, 2, 1).
    """
    base = preset("official")
    enc = "encoder.block"
    c0 = _shape(sd, f"{enc}.0.weight")[0]
    enc_strides, i = [], 1
    while f"{enc}.{i}.block.4.weight_v" in sd or f"{enc}.{i}.block.4.weight" in sd:
        enc_strides.append(_shape(sd, f"{enc}.{i}.block.4.weight")[2] // 2)
        i += 1
    if not enc_strides:
        raise ValueError("checkpoint has no encoder blocks ('encoder.block.1.block.4.weight_v')")
    depthwise = _shape(sd, f"{enc}.1.block.0.block.1.weight")[1] == 1 and c0 > 1
    inv = f"{enc}.{i}.rel_pos.inv_freq"
    if inv not in sd:  # the published attention always uses rotary positions (as ours does)
        raise ValueError(f"checkpoint has no {inv!r} (the encoder attention's rotary table)")
    head_dim = 2 * _shape(sd, inv)[0]

    dec = "decoder.model"
    first = 1 if depthwise else 0
    dec_channels = _shape(sd, f"{dec}.{first}.weight")[0]
    j = first + 2  # after the input conv(s) and the attention
    dec_strides, noise = [], False
    while f"{dec}.{j}.block.1.weight_v" in sd or f"{dec}.{j}.block.1.weight" in sd:
        dec_strides.append(_shape(sd, f"{dec}.{j}.block.1.weight")[2] // 2)
        noise = noise or any(k.startswith(f"{dec}.{j}.block.2.linear.") for k in sd)
        j += 1

    levels = sorted(int(m.group(1)) for m in map(_CODEBOOK.match, sd) if m)
    if not levels:
        raise ValueError("checkpoint has no 'quantizer.quantizers.{i}.codebook.weight' tables")
    tables = [_shape(sd, f"quantizer.quantizers.{n}.codebook.weight") for n in levels]
    vq_strides = base.vq_strides
    if len(levels) != len(vq_strides):
        raise ValueError(f"{len(levels)} quantizer levels; the official layout has {len(vq_strides)} "
                         f"(strides {vq_strides}) and the strides cannot be read from shapes")
    try:
        cfg = dataclasses.replace(
            base, name=name, causal=False, enc_channels=c0, enc_strides=tuple(enc_strides),
            dec_channels=dec_channels, dec_strides=tuple(dec_strides), depthwise=depthwise,
            noise=noise, attn_head_dim=head_dim, vq_strides=vq_strides, code_dim=None,
            llm_dim=tables[0][1], level_sizes=tuple(t[0] for t in tables))
    except ValueError as e:
        raise ValueError(f"checkpoint shapes give an invalid configuration: {e}") from None
    proj = _shape(sd, "quantizer.quantizers.0.cb_proj.weight")
    if proj != (cfg.latent_dim, cfg.llm_dim):
        raise ValueError(f"cb_proj shape {proj} != (latent {cfg.latent_dim}, llm dim {cfg.llm_dim})")
    return cfg


# ---------------------------------------------------------------- building the model
def _limited(keys: list[str], n: int = 20) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _load_weights(model: LLMCodec, weights: dict[str, Tensor], source: str) -> None:
    ours = model.state_dict()
    missing = sorted(set(ours) - set(weights))
    unexpected = sorted(set(weights) - set(ours))
    if missing or unexpected:
        raise ValueError(f"{source}: checkpoint does not fit the inferred model "
                         f"(missing keys: [{_limited(missing)}]; unexpected keys: [{_limited(unexpected)}])")
    wrong = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
             for k, v in ours.items() if tuple(weights[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(f"{source}: shape mismatches: {_limited(wrong)}")
    model.load_state_dict(weights, strict=True)


def build_official(sd: dict[str, Tensor], source: str = "checkpoint") -> LLMCodec:
    """An inference-ready ``LLMCodec`` from an official (un-folded) state dict."""
    cfg = infer_config(sd)
    weights, codebooks, inv_freqs = split_official_state_dict(sd)
    for k, t in inv_freqs.items():  # our attention recomputes these for cfg.attn_head_dim
        if 2 * t.numel() != cfg.attn_head_dim:
            raise ValueError(f"{k} implies head dim {2 * t.numel()}, the encoder's is {cfg.attn_head_dim}")
    model = LLMCodec(cfg)
    _load_weights(model, weights, source)
    model.set_codebooks(codebooks)
    return model.prepare_inference()


def load_official_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> LLMCodec:
    """The published checkpoint (``torch.load(path)['codec_model']``) as our ``LLMCodec``."""
    return build_official(read_official_state_dict(path, map_location=map_location), str(path))


def convert_official(path: str | Path, out_dir: str | Path, *,
                     map_location: str | torch.device = "cpu") -> Path:
    """Published checkpoint -> a model directory with its codebooks (``checkpoint.save_model``)."""
    return save_model(load_official_checkpoint(path, map_location=map_location), out_dir, codebooks=True)
