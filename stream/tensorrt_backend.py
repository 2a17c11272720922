"""The native TensorRT backend: serialized engines from ``llmcodec export --tensorrt``.

TensorRT 10 Python API: deserialize the engines, ``set_input_shape`` per call
(one optimization profile over the batch axis), ``set_tensor_address`` for
every I/O tensor, ``execute_async_v3`` on a CUDA stream.

Device buffers are torch CUDA tensors (chosen over cuda-python: torch is
already a dependency of the package and its CUDA build is what a GPU machine
installs; it gives allocation, dtype conversion, streams and copies in one
well-kept library). The ``Backend`` protocol is numpy at its boundary, so each
step copies its inputs and states host -> device and its outputs back, then
synchronises the stream once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmcodec.export.metadata import GraphInfo, engine_file, read_manifest
from llmcodec.export.vocab import load_export_vocab
from llmcodec.token_forms import TokenForms

from .backend import facts_from_info
from .graph_backend import GraphStepBackend


class TensorRTBackend(GraphStepBackend):
    name = "tensorrt"

    def __init__(self, export_dir: str | Path | None, *, fp16: bool = False, device: int = 0,
                 build: bool = False, max_batch: int = 64):
        if export_dir is None:
            raise ValueError("the tensorrt backend needs an export directory "
                             "(make one with `llmcodec export --tensorrt -o OUT_DIR`)")
        try:
            import tensorrt as trt
            import torch
        except ImportError as e:
            raise ImportError(f"the tensorrt backend needs the `tensorrt` wheel (>= 10) and a CUDA "
                              f"build of torch: {e}") from None
        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs an NVIDIA GPU, and torch sees no CUDA device")
        self.directory = Path(export_dir)
        manifest = read_manifest(self.directory)
        if build:
            from llmcodec.export.tensorrt_build import build_engines
            build_engines(self.directory, max_batch=max_batch, fp16=fp16)
        self._trt, self._torch = trt, torch
        self.device = torch.device("cuda", device)
        self.info = {g: GraphInfo.from_props(manifest["graphs"][g], g) for g in ("encoder", "decoder")}
        self.facts = facts_from_info(self.info["encoder"])
        self.fp16 = fp16
        self.vocab: TokenForms | None = load_export_vocab(self.directory)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._stream = torch.cuda.Stream(device=self.device)
        self.engines, self.contexts, self.max_batch = {}, {}, {}
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                  trt.int64: torch.int64, trt.bool: torch.bool}
        self._dtypes = dtypes
        with torch.cuda.device(self.device):
            for g in ("encoder", "decoder"):
                path = self.directory / engine_file(g, fp16)
                if not path.is_file():
                    raise ValueError(f"{self.directory}: no {engine_file(g, fp16)} (build it with "
                                     f"`llmcodec export --tensorrt{' --fp16' if fp16 else ''}` "
                                     f"or TensorRTBackend(..., build=True))")
                engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise RuntimeError(f"{path}: TensorRT could not deserialize the engine "
                                       f"(built by another TensorRT version or GPU?)")
                self.engines[g] = engine
                self.contexts[g] = engine.create_execution_context()
                first = self.info[g].input_names[0]
                self.max_batch[g] = int(engine.get_tensor_profile_shape(first, 0)[2][0])

    def _run(self, graph: str, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        torch, info = self._torch, self.info[graph]
        if batch > self.max_batch[graph]:
            raise ValueError(f"batch {batch} exceeds the engine's profile maximum "
                             f"{self.max_batch[graph]} (rebuild with --max-batch)")
        engine, ctx = self.engines[graph], self.contexts[graph]
        keep = []  # device tensors must outlive the launch
        with torch.cuda.stream(self._stream):
            for name in info.input_names:
                dtype = self._dtypes[engine.get_tensor_dtype(name)]
                t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device, non_blocking=True)
                t = t.to(dtype).contiguous()
                ctx.set_input_shape(name, tuple(t.shape))
                ctx.set_tensor_address(name, t.data_ptr())
                keep.append(t)
            outs = []
            for name in info.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                t = torch.empty(shape, dtype=self._dtypes[engine.get_tensor_dtype(name)], device=self.device)
                ctx.set_tensor_address(name, t.data_ptr())
                outs.append(t)
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT {graph} step failed to launch")
            host = [(o.float() if o.is_floating_point() else o.long()).cpu() for o in outs]
        self._stream.synchronize()
        return [h.numpy() for h in host]
