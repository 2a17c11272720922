"""Convolution layers that run both on whole sequences and step by step.

Each streaming layer has ``forward(x)`` for whole sequences (training),
``state_shapes()`` (per-row buffer shapes from its own hyperparameters),
``init_state(batch)`` and a pure ``step(x, state) -> (y, new_state)``.
Causal layers pad on the left only; ``step`` carries the needed input tail.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .state import StateDict, prefixed, sub_state


class Streaming(nn.Module):
    """Base: a layer with no state. Override ``state_shapes`` and ``step``."""

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init_state(self, batch: int, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> StateDict:
        return {k: torch.zeros((batch, *s), device=device, dtype=dtype)
                for k, s in self.state_shapes().items()}

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        return self(x), {}


class Snake(Streaming):
    """Snake activation x + sin(a x)^2 / a, one ``alpha`` per channel. [B, C, T]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sin(self.alpha * x)
        return x + (self.alpha + 1e-9).reciprocal() * (s * s)  # s * s: one Mul in the graph, not a Pow


class Tanh(Streaming):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class Conv1d(nn.Conv1d, Streaming):
    """Conv1d, causal (left padding, carried tail) or symmetric (``padding``).

    Input ``[B, C_in, T]``, output ``[B, C_out, T / stride]`` when causal and
    ``T`` is a multiple of the stride.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True,
                 causal: bool = True, padding: int | None = None):
        super().__init__(cin, cout, kernel_size, stride=stride, dilation=dilation,
                         groups=groups, bias=bias)
        self.causal = causal
        effective = (kernel_size - 1) * dilation + 1
        if causal:
            self.pad_left, self.pad_right = max(effective - stride, 0), 0
        else:
            p = (effective - 1) // 2 if padding is None else padding
            self.pad_left = self.pad_right = p

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"tail": (self.in_channels, self.pad_left)} if self.causal and self.pad_left else {}

    def _conv(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(F.pad(x, (self.pad_left, self.pad_right)))

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        if not self.causal:
            raise RuntimeError("a non-causal convolution cannot stream")
        if x.shape[-1] % self.stride[0]:
            raise ValueError(f"step length {x.shape[-1]} is not a multiple of stride {self.stride[0]}")
        if not self.pad_left:
            return self._conv(x), {}
        xx = torch.cat([state["tail"], x], dim=-1)
        return self._conv(xx), {"tail": xx[..., xx.shape[-1] - self.pad_left:]}


class ConvTranspose1d(nn.ConvTranspose1d, Streaming):
    """Transposed conv. Causal: emits ``T * stride`` samples, carries the overlap.

    Input ``[B, C_in, T]``, output ``[B, C_out, T * stride]``. The carried
    ``partial`` [B, C_out, kernel - stride] holds the overlap without bias.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int,
                 causal: bool = True, groups: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel_size, stride=stride, groups=groups, bias=bias)
        self.causal = causal
        overlap = kernel_size - stride
        if causal:
            self.trim_left, self.trim_right = 0, overlap
        else:  # the reference: padding ceil(s/2), output_padding s % 2
            p = math.ceil(stride / 2)
            self.trim_left, self.trim_right = p, p - stride % 2

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        overlap = self.kernel_size[0] - self.stride[0]
        return {"partial": (self.out_channels, overlap)} if self.causal and overlap > 0 else {}

    def _full(self, x: Tensor) -> Tensor:
        """The whole transposed convolution without bias: ``[B, C_out, (T - 1) * s + k]``."""
        s, k = self.stride[0], self.kernel_size[0]
        if k != 2 * s or self.groups != 1:
            return F.conv_transpose1d(x, self.weight, None, s, 0, 0, self.groups)
        # kernel 2s: one matmul, then overlap-add of two halves (much faster than
        # PyTorch's CPU conv_transpose1d on short inputs, and plain ONNX ops).
        b, cin, t = x.shape
        cols = torch.matmul(x.transpose(1, 2), self.weight.reshape(cin, -1))
        cols = cols.view(b, t, self.out_channels, 2, s)
        first = F.pad(cols[:, :, :, 0], (0, 0, 0, 0, 0, 1))   # frame t -> slot t
        second = F.pad(cols[:, :, :, 1], (0, 0, 0, 0, 1, 0))  # frame t -> slot t + 1
        return (first + second).permute(0, 2, 1, 3).reshape(b, self.out_channels, (t + 1) * s)

    def _bias(self, y: Tensor) -> Tensor:
        return y if self.bias is None else y + self.bias.view(1, -1, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self._full(x)
        return self._bias(y[..., self.trim_left: y.shape[-1] - self.trim_right])

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        if not self.causal:
            raise RuntimeError("a non-causal transposed convolution cannot stream")
        y = self._full(x)
        n = x.shape[-1] * self.stride[0]
        overlap = y.shape[-1] - n
        if overlap == 0:
            return self._bias(y), {}
        p = state["partial"]
        head = y[..., :overlap] + p if n >= overlap else None
        if head is None:  # fewer new samples than the overlap: not used by our blocks
            raise ValueError(f"step of {x.shape[-1]} frames is shorter than the overlap")
        y = torch.cat([head, y[..., overlap:]], dim=-1)
        return self._bias(y[..., :n]), {"partial": y[..., n:]}


class Sequential(nn.Sequential, Streaming):
    """Runs streaming layers in order; state names are ``"{index}.{name}"``."""

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for i, layer in enumerate(self):
            out.update({f"{i}.{k}": s for k, s in layer.state_shapes().items()})
        return out

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        new: StateDict = {}
        for i, layer in enumerate(self):
            x, s = layer.step(x, sub_state(str(i), state))
            new.update(prefixed(str(i), s))
        return x, new


class ResidualUnit(Streaming):
    """Snake, conv k7 (dilated, depthwise by default), Snake, 1x1 conv; plus x."""

    def __init__(self, dim: int, dilation: int, kernel: int = 7, groups: int = 1,
                 causal: bool = True):
        super().__init__()
        self.block = Sequential(
            Snake(dim),
            Conv1d(dim, dim, kernel, dilation=dilation, groups=groups, causal=causal),
            Snake(dim),
            Conv1d(dim, dim, 1, causal=causal),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return prefixed_shapes("block", self.block.state_shapes())

    def step(self, x: Tensor, state: StateDict) -> tuple[Tensor, StateDict]:
        y, s = self.block.step(x, sub_state("block", state))
        return x + y, prefixed("block", s)


def prefixed_shapes(prefix: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": v for k, v in shapes.items()}


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Remove every weight-norm parametrisation in place, keeping the folded weight."""
    from torch.nn.utils import parametrize
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Weight-normalise every convolution (for training)."""
    from torch.nn.utils.parametrizations import weight_norm
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            weight_norm(m)
    return module
