"""Reference (ground-truth) re-implementation of the published LLM-Codec (UniAudio 1.5).

Used only by tests: the project's own loader of official checkpoints must reproduce it.
Non-causal, exactly as published; module names match the checkpoint's `codec_model` dict.

Transcribed from (stored copies of public GitHub code):
  yangdongchao/LLM-Codec  codec/MSCodec.py   @ a2eff73c6664944dc3c3895a38497707f49e13f4  (MSCodecLM)
  yangdongchao/LLM-Codec  codec/layers.py    @ a2eff73c6664944dc3c3895a38497707f49e13f4  (Encoder/Decoder)
  yangdongchao/LLM-Codec  codec/attention.py @ fe3d026429f5dab21bb5c7d18dbcab4dc2138d88  (LocalMHA)
  yangdongchao/LLM-Codec  codec/vq.py        @ a2eff73c6664944dc3c3895a38497707f49e13f4  (VQ with LLM codebooks)
  yangdongchao/LLM-Codec  config.yaml, infer.py @ a2eff73c6664944dc3c3895a38497707f49e13f4 (hyperparameters, API)
  cross-checked with hubertsiuzdak/snac snac/{layers,attention}.py @ ccfc8115..., snac/vq.py @ c2b4da9d...,
  snac/snac.py @ 3f25bd4d... (LLM-Codec is SNAC with the VQ replaced; LLM-Codec keeps the old
  `torch.nn.utils.weight_norm`, hence `weight_g`/`weight_v` keys, and computes attention by hand
  instead of SDPA).

Deviations (none change the state-dict keys or, with defaults, the numerics):
  * codebooks are given as sizes (+ optional tensors) instead of file paths
    (original: level 1 from `layer1.pth` [3248, 4096], levels 2-3 from `embed_llama2.pt`['weight']).
  * `attn_dim_head` (original hard-codes 64) so tiny test models can have attention.
  * `noise_at_inference`: the original NoiseBlock draws `torch.randn` on every call, also in eval();
    set False to skip it (x unchanged) for deterministic tests. Default True = original.
  * no einops; no losses (commitment/codebook/semantic terms are not needed for inference).
  * use_cblinear=False (in_proj/out_proj) is not supported: the released config uses True.
"""
import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm  # old API on purpose: weight_g / weight_v keys

FULL_SIZE = dict(  # config.yaml `generator.config` of the released checkpoint
    sample_rate=16000, encoder_dim=32, encoder_rates=(3, 4, 5, 8), latent_dim=512,
    decoder_dim=1536, decoder_rates=(8, 5, 4, 3), attn_window_size=8, vq_strides=(4, 2, 1),
    noise=True, depthwise=True, codebook_sizes=(3248, 32000, 32000), llm_dim=4096,
)


def WNConv1d(*args, **kwargs):
    return weight_norm(nn.Conv1d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs):
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def snake(x, alpha):
    shape = x.shape
    x = x.reshape(shape[0], shape[1], -1)
    x = x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    return x.reshape(shape)


class Snake1d(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x):
        return snake(x, self.alpha)


# ---------------------------------------------------------------- attention (codec/attention.py)
class SinusoidalEmbeddings(nn.Module):
    def __init__(self, dim, scale_base=None, use_xpos=False):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)  # persistent -> `rel_pos.inv_freq` key
        self.use_xpos = use_xpos  # always False in LLM-Codec
        self.scale_base = scale_base
        scale = (torch.arange(0, dim, 2) + 0.4 * dim) / (1.4 * dim)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x):
        seq_len = x.shape[-2]
        t = torch.arange(seq_len, device=x.device).type_as(self.inv_freq)
        freqs = torch.einsum("i , j -> i j", t, self.inv_freq)
        freqs = torch.cat((freqs, freqs), dim=-1)
        if not self.use_xpos:
            return freqs, torch.ones(1, device=x.device)
        power = (t - (seq_len // 2)) / self.scale_base
        scale = self.scale ** power[:, None]
        return freqs, torch.cat((scale, scale), dim=-1)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)  # == rearrange "b ... (r d) -> b ... r d", r=2; unbind
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, freqs, scale=1):
    q_len = q.shape[-2]
    q_freqs = freqs[..., -q_len:, :]
    inv_scale = scale ** -1
    if scale.ndim == 2:
        scale = scale[-q_len:, :]
    q = (q * q_freqs.cos() * scale) + (rotate_half(q) * q_freqs.sin() * scale)
    k = (k * freqs.cos() * inv_scale) + (rotate_half(k) * freqs.sin() * inv_scale)
    return q, k


class LocalMHA(nn.Module):
    def __init__(self, dim=1024, window_size=32, dim_head=64, use_rotary_pos_emb=True):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.heads = dim // dim_head
        self.window_size = window_size
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.rel_pos = SinusoidalEmbeddings(dim_head, scale_base=window_size // 2) if use_rotary_pos_emb else None
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x):  # x [B, C, T], T a multiple of window_size
        B, C, T = x.shape
        residual = x
        x = self.norm(x.transpose(1, 2))
        w, n, h = T // self.window_size, self.window_size, self.heads

        def split(t):  # "b (w n) (h d) -> b h w n d"
            return t.reshape(B, w, n, h, -1).permute(0, 3, 1, 2, 4)

        q, k, v = map(split, self.to_qkv(x).chunk(3, dim=-1))
        if self.rel_pos is not None:
            pos_emb, scale = self.rel_pos(k)  # positions 0..n-1 inside each window
            q, k = apply_rotary_pos_emb(q, k, pos_emb, scale)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        out = F.softmax(att, dim=-1) @ v
        out = out.permute(0, 2, 3, 1, 4).reshape(B, T, -1)  # "b h w n d -> b (w n) (h d)"
        return self.to_out(out).transpose(1, 2) + residual


# ---------------------------------------------------------------- conv stacks (codec/layers.py)
class ResidualUnit(nn.Module):
    def __init__(self, dim=16, dilation=1, kernel=7, groups=1):
        super().__init__()
        pad = ((kernel - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=kernel, dilation=dilation, padding=pad, groups=groups),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x):
        y = self.block(x)
        pad = (x.shape[-1] - y.shape[-1]) // 2  # always 0 here ("same" padding)
        if pad > 0:
            x = x[..., pad:-pad]
        return x + y


class EncoderBlock(nn.Module):
    def __init__(self, output_dim=16, input_dim=None, stride=1, groups=1):
        super().__init__()
        input_dim = input_dim or output_dim // 2
        self.block = nn.Sequential(
            ResidualUnit(input_dim, dilation=1, groups=groups),
            ResidualUnit(input_dim, dilation=3, groups=groups),
            ResidualUnit(input_dim, dilation=9, groups=groups),
            Snake1d(input_dim),
            WNConv1d(input_dim, output_dim, kernel_size=2 * stride, stride=stride,
                     padding=math.ceil(stride / 2)),
        )

    def forward(self, x):
        return self.block(x)


class NoiseBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = WNConv1d(dim, dim, kernel_size=1, bias=False)
        self.active = True  # original: always active (train and eval)

    def forward(self, x):
        if not self.active:
            return x
        B, C, T = x.shape
        noise = torch.randn((B, 1, T), device=x.device, dtype=x.dtype)
        return x + noise * self.linear(x)


class DecoderBlock(nn.Module):
    def __init__(self, input_dim=16, output_dim=8, stride=1, noise=False, groups=1):
        super().__init__()
        layers = [
            Snake1d(input_dim),
            WNConvTranspose1d(input_dim, output_dim, kernel_size=2 * stride, stride=stride,
                              padding=math.ceil(stride / 2), output_padding=stride % 2),
        ]
        if noise:
            layers.append(NoiseBlock(output_dim))
        layers += [
            ResidualUnit(output_dim, dilation=1, groups=groups),
            ResidualUnit(output_dim, dilation=3, groups=groups),
            ResidualUnit(output_dim, dilation=9, groups=groups),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, d_model=64, strides=(3, 3, 7, 7), depthwise=False, attn_window_size=32, dim_head=64):
        super().__init__()
        layers = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            groups = d_model // 2 if depthwise else 1
            layers += [EncoderBlock(output_dim=d_model, stride=stride, groups=groups)]
        if attn_window_size is not None:
            layers += [LocalMHA(dim=d_model, window_size=attn_window_size, dim_head=dim_head)]
        groups = d_model if depthwise else 1
        layers += [WNConv1d(d_model, d_model, kernel_size=7, padding=3, groups=groups)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, input_channel, channels, rates, noise=False, depthwise=False,
                 attn_window_size=32, d_out=1, dim_head=64):
        super().__init__()
        if depthwise:
            layers = [
                WNConv1d(input_channel, input_channel, kernel_size=7, padding=3, groups=input_channel),
                WNConv1d(input_channel, channels, kernel_size=1),
            ]
        else:
            layers = [WNConv1d(input_channel, channels, kernel_size=7, padding=3)]
        if attn_window_size is not None:
            layers += [LocalMHA(dim=channels, window_size=attn_window_size, dim_head=dim_head)]
        for i, stride in enumerate(rates):
            input_dim = channels // 2 ** i
            output_dim = channels // 2 ** (i + 1)
            groups = output_dim if depthwise else 1
            layers.append(DecoderBlock(input_dim, output_dim, stride, noise, groups=groups))
        layers += [Snake1d(output_dim), WNConv1d(output_dim, d_out, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------- quantizer (codec/vq.py)
class VectorQuantizeLLM(nn.Module):
    def __init__(self, input_dim: int, stride: int, codebook: torch.Tensor):
        super().__init__()
        self.codebook_size, self.codebook_dim = codebook.shape
        self.stride = stride
        self.cb_proj = nn.Linear(self.codebook_dim, input_dim)  # use_cblinear=True
        self.codebook = nn.Embedding(self.codebook_size, self.codebook_dim)
        self.codebook.weight.data = codebook.float()
        self.codebook.weight.requires_grad = False  # frozen LLM embeddings

    def forward(self, z):
        if self.stride > 1:
            z = F.avg_pool1d(z, self.stride, self.stride)
        z_e = z
        z_q, indices = self.decode_latents(z_e)
        z_q = z_e + (z_q - z_e).detach()  # straight-through; value = projected code
        if self.stride > 1:
            z_q = z_q.repeat_interleave(self.stride, dim=-1)
        return z_q, indices

    def embed_code(self, embed_id):
        return F.embedding(embed_id, self.cb_proj(self.codebook.weight))

    def decode_code(self, embed_id):
        return self.embed_code(embed_id).transpose(1, 2)

    def decode_latents(self, latents):
        encodings = latents.transpose(1, 2).reshape(-1, latents.shape[1])  # "b d t -> (b t) d"
        codebook = self.cb_proj(self.codebook.weight)
        encodings = F.normalize(encodings)
        codebook = F.normalize(codebook)
        dist = (encodings.pow(2).sum(1, keepdim=True) - 2 * encodings @ codebook.t()
                + codebook.pow(2).sum(1, keepdim=True).t())
        indices = (-dist).max(1)[1].reshape(latents.size(0), -1)
        return self.decode_code(indices), indices


class ResidualVectorQuantizeLLM(nn.Module):
    def __init__(self, input_dim: int, vq_strides: Sequence[int], codebooks: Sequence[torch.Tensor]):
        super().__init__()
        self.n_codebooks = len(vq_strides)
        self.quantizers = nn.ModuleList(
            [VectorQuantizeLLM(input_dim, s, codebooks[i]) for i, s in enumerate(vq_strides)])

    def forward(self, z):
        z_q, residual, codes = 0, z, []
        for quantizer in self.quantizers:
            z_q_i, indices_i = quantizer(residual)
            z_q = z_q + z_q_i
            residual = residual - z_q_i
            codes.append(indices_i)
        return z_q, codes

    def from_codes(self, codes: List[torch.Tensor]) -> torch.Tensor:
        z_q = 0.0
        for i in range(self.n_codebooks):
            z_q_i = self.quantizers[i].decode_code(codes[i])
            z_q = z_q + z_q_i.repeat_interleave(self.quantizers[i].stride, dim=-1)
        return z_q


# ---------------------------------------------------------------- model (codec/MSCodec.py)
class ReferenceLLMCodec(nn.Module):
    """MSCodecLM. Defaults = released checkpoint (llm3_codec_uni.pth, config.yaml)."""

    def __init__(self, sample_rate=16000, encoder_dim=32, encoder_rates=(3, 4, 5, 8), latent_dim=None,
                 decoder_dim=1536, decoder_rates=(8, 5, 4, 3), attn_window_size=8, vq_strides=(4, 2, 1),
                 noise=True, depthwise=True, codebook_sizes=(3248, 32000, 32000), llm_dim=4096,
                 codebooks: Optional[Sequence[torch.Tensor]] = None, attn_dim_head=64,
                 noise_at_inference=True):
        super().__init__()
        self.sampling_rate = sample_rate
        self.encoder_rates, self.decoder_rates = list(encoder_rates), list(decoder_rates)
        if latent_dim is None:
            latent_dim = encoder_dim * (2 ** len(encoder_rates))
        self.latent_dim = latent_dim
        self.hop_length = int(math.prod(encoder_rates))
        self.vq_strides = list(vq_strides)
        self.attn_window_size = attn_window_size
        self.encoder = Encoder(encoder_dim, encoder_rates, depthwise=depthwise,
                               attn_window_size=attn_window_size, dim_head=attn_dim_head)
        if codebooks is None:  # placeholder for the frozen LLM embeddings (load_state_dict fills them)
            codebooks = [torch.randn(n, llm_dim) for n in codebook_sizes]
        self.quantizer = ResidualVectorQuantizeLLM(latent_dim, vq_strides, codebooks)
        self.decoder = Decoder(latent_dim, decoder_dim, decoder_rates, noise, depthwise=depthwise,
                               attn_window_size=attn_window_size, dim_head=attn_dim_head)
        self.set_noise_active(noise_at_inference)

    def set_noise_active(self, active: bool):
        for m in self.modules():
            if isinstance(m, NoiseBlock):
                m.active = active

    @property
    def pad_multiple(self) -> int:  # 480 * lcm(4, 8) = 3840 for the released model
        return self.hop_length * math.lcm(self.vq_strides[0], self.attn_window_size or 1)

    def preprocess(self, audio_data):
        length = audio_data.shape[-1]
        pad_to = self.pad_multiple
        right_pad = math.ceil(length / pad_to) * pad_to - length
        return F.pad(audio_data, (0, right_pad))  # zeros on the right

    def forward(self, audio_data):
        """What infer.py calls: returns (wav trimmed to input length, codes)."""
        length = audio_data.shape[-1]
        z = self.encoder(self.preprocess(audio_data))
        z_q, codes = self.quantizer(z)
        return self.decoder(z_q)[..., :length], codes

    def encode(self, audio_data: torch.Tensor) -> List[torch.Tensor]:
        """wav [B,1,T] -> [codes L1 [B,F/4], L2 [B,F/2], L3 [B,F]], F = padded T / 480."""
        z = self.encoder(self.preprocess(audio_data))
        _, codes = self.quantizer(z)
        return codes

    def decode(self, codes: List[torch.Tensor]) -> torch.Tensor:
        """codes -> wav [B,1,F*480] (padded length; not trimmed)."""
        return self.decoder(self.quantizer.from_codes(codes))


def tiny_reference(**overrides) -> ReferenceLLMCodec:
    """A small instance for tests (same structure and key names)."""
    cfg = dict(encoder_dim=8, latent_dim=128, decoder_dim=32, codebook_sizes=(50, 100, 100), llm_dim=16,
               attn_dim_head=16, noise_at_inference=False)
    cfg.update(overrides)
    return ReferenceLLMCodec(**cfg)
