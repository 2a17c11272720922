"""The ONNX Runtime backend: streams from an export directory alone, without torch.

Its whole import chain is numpy + onnxruntime (+ ``tokenizers``, only when
``vocab`` is first used); zero states come from the graphs' ``metadata_props``.

Providers, first available wins unless ``providers`` is given: TensorRT EP
(engine and timing caches under ``<export>/tensorrt/ort_cache``), CUDA EP,
CPU. ``providers`` reports what the sessions really got
(``session.get_providers()``). On a GPU provider, inputs and outputs go
through IOBinding (``io_binding=True`` forces it on CPU too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from llmcodec.export.int8 import Int8Settings, int8_fault, this_cpu
from llmcodec.export.metadata import TENSORRT_DIR, GraphInfo, onnx_file, read_manifest
from llmcodec.export.vocab import load_export_vocab
from llmcodec.token_forms import TokenForms

from .backend import facts_from_info
from .graph_backend import GraphStepBackend

PROVIDER_PRIORITY = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ProviderSpec = str | tuple[str, dict[str, Any]]


class OnnxBackend(GraphStepBackend):
    """``Backend`` over ONNX Runtime sessions of ``encoder.onnx`` and ``decoder.onnx``.

    ``variant="int8"`` runs the dynamically quantized CPU graphs; graphs whose recorded
    quantization settings give wrong results on this CPU are refused (``export/int8.py``).
    ``threads`` sets intra-op threads (None: ONNX Runtime's default).
    """

    name = "onnx"

    def __init__(self, export_dir: str | Path | None, providers: Sequence[ProviderSpec] | None = None,
                 variant: str = "fp32", *, threads: int | None = None,
                 io_binding: bool | None = None, device_id: int = 0, max_batch: int = 64,
                 trt_fp16: bool = False):
        if export_dir is None:
            raise ValueError("the onnx backend needs an export directory "
                             "(make one with `llmcodec export -o OUT_DIR`, then pass --model OUT_DIR)")
        self.directory = Path(export_dir)
        self.manifest = read_manifest(self.directory)
        self.variant = variant
        self.device_id = device_id
        self._max_batch, self._trt_fp16 = max_batch, trt_fp16
        paths = {}
        for g in ("encoder", "decoder"):
            paths[g] = self.directory / onnx_file(g, variant)  # raises on a bad variant
            if not paths[g].is_file():
                hint = " (export with --int8)" if variant == "int8" else ""
                raise ValueError(f"{self.directory}: no {paths[g].name}{hint}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            so.intra_op_num_threads = threads
        self.sessions: dict[str, ort.InferenceSession] = {}
        self.info: dict[str, GraphInfo] = {}
        for g, p in paths.items():
            provs = self._providers(providers, g)
            sess = ort.InferenceSession(str(p), so, providers=provs)
            props = sess.get_modelmeta().custom_metadata_map
            if variant == "int8":
                fault = int8_fault(Int8Settings.from_props(props), this_cpu())
                if fault:
                    raise ValueError(f"{p}: {fault}")
            self.sessions[g] = sess
            self.info[g] = GraphInfo.from_props(props, str(p))
        self.facts = facts_from_info(self.info["encoder"])
        if facts_from_info(self.info["decoder"]) != self.facts:
            raise ValueError(f"{self.directory}: encoder and decoder graphs describe different models")
        self.providers: list[str] = self.sessions["encoder"].get_providers()
        self.decoder_providers: list[str] = self.sessions["decoder"].get_providers()
        on_gpu = self.providers[0] != "CPUExecutionProvider"
        self.io_binding = on_gpu if io_binding is None else bool(io_binding)
        self._out_device = "cuda" if on_gpu else "cpu"
        self._vocab: TokenForms | None | bool = False  # loaded on first use

    # ---- providers -----------------------------------------------------------------
    def _providers(self, requested: Sequence[ProviderSpec] | None, graph: str) -> list[ProviderSpec]:
        available = ort.get_available_providers()
        if requested is None:
            names = [p for p in PROVIDER_PRIORITY if p in available]
            return [self._with_options(n, graph) for n in names]
        out: list[ProviderSpec] = []
        for p in requested:
            name = p if isinstance(p, str) else p[0]
            if name not in available:
                raise ValueError(f"execution provider {name!r} is not available in this onnxruntime; "
                                 f"available: {available}")
            out.append(self._with_options(name, graph) if isinstance(p, str) else p)
        if not out:
            raise ValueError(f"providers must name at least one of {available}")
        return out

    def _with_options(self, name: str, graph: str) -> ProviderSpec:
        if name == "CUDAExecutionProvider":
            return (name, {"device_id": str(self.device_id)})
        if name != "TensorrtExecutionProvider":
            return name
        cache = self.directory / TENSORRT_DIR / "ort_cache"
        cache.mkdir(parents=True, exist_ok=True)
        info = GraphInfo.from_props(self.manifest["graphs"][graph], graph)
        shapes = self._io_shapes(info)
        profile = lambda b: ",".join(f"{n}:{'x'.join(str(d) for d in (b, *s))}"  # noqa: E731
                                     for n, s in shapes.items())
        return (name, {
            "device_id": str(self.device_id), "trt_fp16_enable": str(self._trt_fp16),
            "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": profile(1),
            "trt_profile_opt_shapes": profile(min(8, self._max_batch)),
            "trt_profile_max_shapes": profile(self._max_batch),
        })

    @staticmethod
    def _io_shapes(info: GraphInfo) -> dict[str, tuple[int, ...]]:
        """Per-row input shapes of a graph (for TensorRT profiles)."""
        if info.graph == "encoder":
            head = {"pcm": (info.block_size,)}
        else:
            head = {f"codes{i}": (n,) for i, n in enumerate(info.tokens_per_block)}
        return {**head, **info.state_shapes}

    # ---- vocabulary (torch-free) -------------------------------------------------------
    @property
    def vocab(self) -> TokenForms | None:
        """Token names from the export's ``vocab.json`` + ``tokenizer.json`` (None if absent)."""
        if self._vocab is False:
            self._vocab = load_export_vocab(self.directory)
        return self._vocab

    # ---- the runtime call (GraphStepBackend checks inputs and states) -------------------
    def _run(self, graph: str, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        info = self.info[graph]
        sess = self.sessions[graph]
        if not self.io_binding:
            return sess.run(info.output_names, feeds)
        binding = sess.io_binding()
        for k, v in feeds.items():
            binding.bind_cpu_input(k, v)
        for k in info.output_names:
            binding.bind_output(k, self._out_device, self.device_id if self._out_device != "cpu" else 0)
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()
