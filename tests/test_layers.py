"""Each streaming layer: step-by-step equals whole-sequence, for many shapes and chunkings."""
from __future__ import annotations


import pytest
import torch

from llmcodec.attention import LocalAttention
from llmcodec.layers import Conv1d, ConvTranspose1d, ResidualUnit, Snake, fold_weight_norm, apply_weight_norm


def run_steps(layer, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    state, outs, i = layer.init_state(x.shape[0]), [], 0
    for n in chunks:
        y, state = layer.step(x[..., i:i + n], state)
        outs.append(y)
        i += n
    assert i == x.shape[-1]
    return torch.cat(outs, dim=-1)


def chunkings(total: int, unit: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(total)
    rnd, left = [], total // unit
    while left:
        n = int(torch.randint(1, min(left, 5) + 1, (1,), generator=g))
        rnd.append(n * unit)
        left -= n
    return [[total], [unit] * (total // unit), rnd]


@pytest.mark.parametrize("k,s,d,groups", [(7, 1, 1, 1), (7, 1, 9, 4), (6, 3, 1, 1), (16, 8, 1, 1), (1, 1, 1, 1), (3, 2, 2, 2)])
def test_conv_streaming_equals_offline(k, s, d, groups):
    torch.manual_seed(0)
    conv = Conv1d(4, 8, k, stride=s, dilation=d, groups=groups)
    x = torch.randn(2, 4, 48 * s)
    full = conv(x)
    assert full.shape[-1] == x.shape[-1] // s
    for ch in chunkings(x.shape[-1], s):
        assert torch.allclose(run_steps(conv, x, ch), full, atol=1e-5)


@pytest.mark.parametrize("s", [2, 3, 5, 8])
def test_conv_transpose_streaming_equals_offline(s):
    torch.manual_seed(s)
    conv = ConvTranspose1d(6, 3, 2 * s, s)
    x = torch.randn(2, 6, 24)
    full = conv(x)
    assert full.shape[-1] == 24 * s
    ref = torch.nn.functional.conv_transpose1d(x, conv.weight, conv.bias, s)[..., :24 * s]
    assert torch.allclose(full, ref, atol=1e-5)  # the fast overlap-add path is exact
    for ch in chunkings(24, 1):
        assert torch.allclose(run_steps(conv, x, ch), full, atol=1e-5)


@pytest.mark.parametrize("window,t", [(8, 4), (8, 1), (3, 7)])
def test_attention_streaming_equals_offline(window, t):
    torch.manual_seed(1)
    att = LocalAttention(32, window, head_dim=8)
    x = torch.randn(2, 32, 40 - 40 % t)
    full = att(x)
    for ch in ([t] * (x.shape[-1] // t), [x.shape[-1]]):
        assert torch.allclose(run_steps(att, x, ch), full, atol=1e-5)


def test_attention_is_local_and_causal():
    torch.manual_seed(2)
    att = LocalAttention(16, 4, head_dim=8)
    x = torch.randn(1, 16, 20)
    y = att(x)
    x2 = x.clone()
    x2[..., 10] += torch.randn(16)  # change one frame (not a constant: LayerNorm removes those)
    y2 = att(x2)
    changed = (y2 - y).abs().amax(dim=1)[0] > 1e-6
    assert not changed[:10].any()           # the past never changes
    assert changed[10:15].all()              # frames 10..14 see frame 10
    assert not changed[15:].any()           # beyond the window: unaffected


def test_residual_unit_causal_prefix_invariance():
    torch.manual_seed(3)
    ru = ResidualUnit(4, dilation=9, groups=4)
    x = torch.randn(1, 4, 200)
    y_prefix = ru(x[..., :120])
    y_full = ru(x)
    assert torch.allclose(y_full[..., :120], y_prefix, atol=1e-6)


def test_snake_is_identity_at_zero_and_smooth():
    s = Snake(3)
    x = torch.zeros(1, 3, 5)
    assert torch.equal(s(x), x)
    assert torch.all(s(torch.ones(1, 3, 1)) > 1.0)


def test_weight_norm_fold_preserves_function():
    torch.manual_seed(4)
    conv = Conv1d(4, 4, 7)
    x = torch.randn(1, 4, 30)
    ref = conv(x)
    apply_weight_norm(conv)
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(1.5)  # g changes the function
    scaled = conv(x)
    fold_weight_norm(conv)
    assert not hasattr(conv, "parametrizations")
    assert torch.allclose(conv(x), scaled, atol=1e-5)
    assert not torch.allclose(scaled, ref)


def test_step_rejects_partial_stride():
    conv = Conv1d(2, 2, 6, stride=3)
    with pytest.raises(ValueError, match="multiple of stride"):
        conv.step(torch.zeros(1, 2, 4), conv.init_state(1))
