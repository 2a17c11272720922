"""The registry of backends: every backend name is defined here once."""
from __future__ import annotations

from .backend import Backend

BACKENDS = ("torch", "onnx", "tensorrt")  # `--backend` choices everywhere
# which directory each one reads: a model directory or an export directory
NEEDS_EXPORT = {"torch": False, "onnx": True, "tensorrt": True}


def make_backend(name: str, model: str | None = None, *, threads: int | None = None, **kwargs) -> Backend:
    """``torch`` (a model directory, None: the bundled default) or ``onnx``/``tensorrt``
    (an export directory). ``threads``: intra-op threads of each step on the CPU (None: the
    runtime's default; TensorRT runs on the GPU and ignores it)."""
    if name == "torch":
        from llmcodec.checkpoint import load_model
        from .torch_backend import TorchBackend
        return TorchBackend(load_model(model), threads=threads, **kwargs)
    if name == "onnx":
        from .onnx_backend import OnnxBackend
        return OnnxBackend(model, threads=threads, **kwargs)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend
        return TensorRTBackend(model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
