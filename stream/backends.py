"""Pick a backend by name."""
from __future__ import annotations

from .backend import Backend


def make_backend(name: str, model: str | None = None, **kwargs) -> Backend:
    """``torch`` (model directory) or ``onnx``/``tensorrt`` (export directory)."""
    if name == "torch":
        from llmcodec.checkpoint import load_model
        from .torch_backend import TorchBackend
        loaded = load_model(model)
        b = TorchBackend(loaded, **kwargs)
        b.vocab = loaded.vocab
        return b
    if name == "onnx":
        from .onnx_backend import OnnxBackend  # added by the export work
        return OnnxBackend(model, **kwargs)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend
        return TensorRTBackend(model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; accepted: torch, onnx, tensorrt")
