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

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from llmcodec.export.int8 import Int8Settings, int8_fault, this_cpu
from llmcodec.export.metadata import (TENSORRT_DIR, TOKENIZER_FILE, VOCAB_FILE, GraphInfo,
                             onnx_file, read_manifest)

from .backend import ModelFacts, State, check_codes

PROVIDER_PRIORITY = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ProviderSpec = str | tuple[str, dict[str, Any]]


def facts_from_info(info: GraphInfo) -> ModelFacts:
    return ModelFacts(info.model_name, info.sample_rate, info.block_size, info.hop,
                      info.vq_strides, info.tokens_per_block, info.level_sizes, info.llm_name)


class OnnxBackend:
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
        self._vocab: Any = False  # loaded on first use

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
    def vocab(self) -> "ExportVocab | None":
        """Token names from the export's ``vocab.json`` + ``tokenizer.json`` (None if absent)."""
        if self._vocab is False:
            d = self.directory
            ok = (d / VOCAB_FILE).is_file() and (d / TOKENIZER_FILE).is_file()
            self._vocab = ExportVocab.load(d) if ok else None
        return self._vocab

    @vocab.setter
    def vocab(self, value: Any) -> None:
        self._vocab = value

    # ---- Backend protocol ----------------------------------------------------------------
    def init_encoder_state(self, batch: int) -> State:
        return self.info["encoder"].zero_state(batch)

    def init_decoder_state(self, batch: int) -> State:
        return self.info["decoder"].zero_state(batch)

    def encode_step(self, pcm: np.ndarray, state: State) -> tuple[list[np.ndarray], State]:
        pcm = np.asarray(pcm)
        if pcm.ndim != 2 or pcm.shape[1] != self.facts.block_size:
            raise ValueError(f"encode_step takes pcm [B, {self.facts.block_size}], got shape {pcm.shape}")
        feeds = {"pcm": np.ascontiguousarray(pcm, dtype=np.float32)}
        outs = self._run("encoder", feeds, state, pcm.shape[0])
        n = len(self.facts.tokens_per_block)
        return outs[:n], dict(zip(self.info["encoder"].state_names, outs[n:]))

    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        check_codes(self.facts, codes, blocks=1)
        feeds = {f"codes{i}": np.ascontiguousarray(c, dtype=np.int64) for i, c in enumerate(codes)}
        outs = self._run("decoder", feeds, state, int(np.asarray(codes[0]).shape[0]))
        return outs[0], dict(zip(self.info["decoder"].state_names, outs[1:]))

    def _run(self, graph: str, feeds: dict[str, np.ndarray], state: State, batch: int) -> list[np.ndarray]:
        info = self.info[graph]
        if set(state) != set(info.state_names):
            missing = sorted(set(info.state_names) - set(state))
            extra = sorted(set(state) - set(info.state_names))
            raise ValueError(f"{graph} state does not fit this model: missing {missing[:3]}, "
                             f"unexpected {extra[:3]} (use init_{graph}_state)")
        for k, v in state.items():
            if v.shape != (batch, *info.state_shapes[k]):
                raise ValueError(f"{graph} state {k!r} has shape {v.shape}, expected "
                                 f"{(batch, *info.state_shapes[k])}")
            feeds[k] = np.ascontiguousarray(v, dtype=np.float32)
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


class ExportVocab:
    """Torch-free token names of an export directory (same forms as ``llmcodec.vocab.Vocabulary``):
    level 0 codes index whole words (1 or 2 LLM tokens each), levels 1 and 2 are token ids."""

    def __init__(self, meta: dict, tokenizer: Any):
        self.llm_name: str = meta["llm_name"]
        self.vocab_size: int = int(meta["vocab_size"])
        self.words: tuple[str, ...] = tuple(meta["words"])
        self.word_token_ids = tuple(tuple(int(i) for i in ids) for ids in meta["word_token_ids"])
        self.tokenizer = tokenizer
        pieces = tokenizer.get_vocab(with_added_tokens=True)
        self._pieces = [""] * self.vocab_size
        for piece, idx in pieces.items():
            if 0 <= idx < self.vocab_size:
                self._pieces[idx] = piece
        self._piece_to_id = dict(pieces)
        self._word_to_code = {w: k for k, w in enumerate(self.words)}

    @classmethod
    def load(cls, directory: str | Path) -> "ExportVocab":
        import tokenizers
        d = Path(directory)
        meta = json.loads((d / VOCAB_FILE).read_text(encoding="utf-8"))
        return cls(meta, tokenizers.Tokenizer.from_file(str(d / TOKENIZER_FILE)))

    @property
    def num_words(self) -> int:
        return len(self.words)

    def level_size(self, level: int) -> int:
        return self.num_words if self._level(level) == 0 else self.vocab_size

    @staticmethod
    def _level(level: int) -> int:
        if not isinstance(level, (int, np.integer)) or isinstance(level, bool) or not 0 <= level < 3:
            raise ValueError(f"level must be an int in [0, 2], got {level!r}")
        return int(level)

    def _ints(self, values: Any, size: int, what: str) -> list[int]:
        arr = np.asarray(values)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{what}s must be a 1-D sequence of ints, got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= size:
            raise ValueError(f"{what}s must be in [0, {size - 1}], got {arr.min()}..{arr.max()}")
        return [int(v) for v in arr]

    def codes_to_token_ids(self, level: int, codes: Any) -> list[int]:
        values = self._ints(codes, self.level_size(level), f"level-{level} code")
        if level == 0:
            return [i for c in values for i in self.word_token_ids[c]]
        return values

    def token_ids_to_codes(self, level: int, ids: Any) -> list[int]:
        values = self._ints(ids, self.vocab_size, "token id")
        if self._level(level) != 0:
            return values
        codes = self.text_to_codes(0, self.tokenizer.decode(values, skip_special_tokens=False))
        if self.codes_to_token_ids(0, codes) != values:
            raise ValueError("level-0 token ids are not the word-wise tokenization of their text")
        return codes

    def codes_to_text(self, level: int, codes: Any) -> str:
        values = self._ints(codes, self.level_size(level), f"level-{level} code")
        if level == 0:
            return "".join(" " + self.words[c] for c in values)
        return " ".join(self._pieces[c] for c in values)

    def text_to_codes(self, level: int, text: str) -> list[int]:
        level = self._level(level)
        if text == "":
            return []
        if level == 0:
            if not text.startswith(" "):
                raise ValueError(f"level-0 text must start with a space, got {text[:40]!r}")
            table, items, what = self._word_to_code, text[1:].split(" "), "level-0 word"
        else:
            table, items, what = self._piece_to_id, text.split(" "), f"{self.llm_name} token piece"
        out = []
        for pos, item in enumerate(items):
            if item not in table:
                raise ValueError(f"{item!r} at position {pos} is not a {what}")
            out.append(table[item])
        return out

