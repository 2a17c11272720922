"""Export the streaming steps as self-describing ONNX graphs.

Three graphs, each a pure step function with explicit state (icefall-style
wrapper modules, no ``forward`` swapping):

* ``encoder.onnx``: ``pcm [B, block]`` + encoder states -> ``codes0 [B, n_0]``,
  ``codes1``, ``codes2`` (int64) + ``{state}_out``;
* ``decoder.onnx``: ``codes0..2`` + decoder states -> ``pcm [B, block]`` + ``{state}_out``;
* ``quantizer.onnx``: ``latent [B, C, frames_per_block]`` -> ``codes0..2``
  (the cosine search on its own, stateless; for runtimes that run the search
  apart from the encoder, e.g. in float32 next to a float16 encoder engine).

Only the batch axis is dynamic. Weight norm is folded and the quantizer's
projected tables (``table``, ``table_unit``) are constants in the graphs.
``metadata_props`` hold the facts of :class:`llmcodec.export.metadata.GraphInfo`.

Exporter: the dynamo exporter (``torch.onnx.export(dynamo=True)``, needs
``onnxscript``) exports all three graphs at torch 2.13, so it is used for
every graph. The legacy TorchScript exporter (``dynamo=False``) is only the
fallback if dynamo fails; at torch 2.13 its decoder graph does not load in
ONNX Runtime (it traces the transposed conv's ``weight.reshape(cin, -1)``
into a wrong constant shape), so a fallback graph is kept only after ONNX
Runtime has loaded it.

In the graphs, the attention's ``torch.stack`` of windows becomes
Unsqueeze + Concat and the kernel-2s transposed convolution a MatMul + Pad +
Add (no ConvTranspose); ONNX Runtime needs its extended graph optimizations
(``ORT_ENABLE_ALL`` in ``llmcodec.stream.onnx_backend``): with basic ones only, a
step of the default model takes over twice as long.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from llmcodec.checkpoint import LoadedCodec, load_model
from llmcodec.model import LLMCodec
from llmcodec.state import StreamState

from .int8 import quantize_int8
from .metadata import (CONFIG_FILE, EXPORT_VERSION, FORMAT, LATENT_NAME, MANIFEST_FILE, OUT_SUFFIX,
                       PCM_NAME, TOKENIZER_FILE, VOCAB_FILE, GraphInfo, codes_names, onnx_file)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
MAX_BATCH_DIM = 4096  # upper bound of the dynamic batch axis (dynamo's Dim)
QUANTIZER_SCOPE = "quantizer"  # module-path word marking the search/lookup nodes


# ---- wrapper modules ------------------------------------------------------------
class EncoderStep(nn.Module):
    """``(pcm [B, block], *states) -> (*codes [B, n_l] int64, *new_states)``."""

    def __init__(self, model: LLMCodec):
        super().__init__()
        self.model = model
        self.names = model.init_encoder_state(1).names()

    def forward(self, pcm: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        codes, new = self.model.encode_step(pcm, StreamState.unflatten(self.names, list(states)))
        return (*codes, *[new[n] for n in self.names])


class DecoderStep(nn.Module):
    """``(*codes [B, n_l] int64, *states) -> (pcm [B, block], *new_states)``.

    Runs ``decode_step``'s two calls without its value checks (data-dependent
    checks cannot be traced; runtimes validate codes with ``check_codes``).
    """

    def __init__(self, model: LLMCodec):
        super().__init__()
        self.model = model
        self.levels = model.cfg.num_levels
        self.names = model.init_decoder_state(1).names()

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        codes, states = list(inputs[:self.levels]), inputs[self.levels:]
        y, new = self.model.decoder.step(self.model.quantizer.decode(codes),
                                         dict(zip(self.names, states)))
        return (y.squeeze(1), *[new[n] for n in self.names])


class QuantizerStep(nn.Module):
    """``latent [B, C, frames_per_block] -> *codes [B, n_l]`` (stateless)."""

    def __init__(self, model: LLMCodec):
        super().__init__()
        self.model = model
        self.names: list[str] = []

    def forward(self, latent: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.quantizer(latent).codes)


# ---- results ----------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote."""

    directory: Path
    files: dict[str, Path]  # "encoder", "decoder", "quantizer", "encoder.int8", ...
    exporters: dict[str, str]  # graph -> "dynamo" | "legacy"
    seconds: dict[str, float] = field(default_factory=dict)


# ---- facts --------------------------------------------------------------------------
def graph_info(model: LLMCodec, graph: str, exporter: str = "", opset: int = DEFAULT_OPSET,
               vocab_size: int | None = None) -> GraphInfo:
    """The metadata of one of ``model``'s step graphs."""
    cfg = model.cfg
    if graph == "encoder":
        shapes = model.encoder.state_shapes()
    elif graph == "decoder":
        shapes = model.decoder.state_shapes()
    else:
        shapes = {}
    return GraphInfo(
        graph=graph, model_name=cfg.name, model_version=cfg.version, sample_rate=cfg.sample_rate,
        hop=cfg.hop, block_size=cfg.block_size, enc_strides=cfg.enc_strides,
        dec_strides=cfg.dec_strides, vq_strides=cfg.vq_strides,
        tokens_per_block=cfg.tokens_per_block, level_sizes=cfg.level_sizes,
        vocab_size=vocab_size or max(cfg.level_sizes), llm_name=cfg.llm_name,
        latent_dim=cfg.latent_dim, state_shapes={k: tuple(v) for k, v in shapes.items()},
        exporter=exporter, opset=opset,
        extra={"torch_version": torch.__version__, "config": json.dumps(cfg.to_dict())},
    )


def _example(model: LLMCodec, graph: str, batch: int = 2) -> tuple[Tensor, ...]:
    cfg = model.cfg
    if graph == "encoder":
        return (torch.zeros(batch, cfg.block_size), *model.init_encoder_state(batch).flatten())
    if graph == "decoder":
        return (*[torch.zeros(batch, n, dtype=torch.long) for n in cfg.tokens_per_block],
                *model.init_decoder_state(batch).flatten())
    return (torch.zeros(batch, cfg.latent_dim, cfg.frames_per_block),)


def _wrapper(model: LLMCodec, graph: str) -> nn.Module:
    return {"encoder": EncoderStep, "decoder": DecoderStep, "quantizer": QuantizerStep}[graph](model)


# ---- one graph --------------------------------------------------------------------
def _export_dynamo(wrapper: nn.Module, args: tuple[Tensor, ...], n_data: int, path: Path,
                   info: GraphInfo, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH_DIM)
    dyn = {0: batch}
    # forward(data..., *states): dynamo wants the varargs as one nested tuple.
    if isinstance(wrapper, DecoderStep):  # forward(*inputs)
        shapes: tuple = (tuple(dyn for _ in args),)
    elif wrapper.names:
        shapes = (*[dyn] * n_data, tuple(dyn for _ in args[n_data:]))
    else:
        shapes = tuple(dyn for _ in args)
    prog = torch.onnx.export(wrapper, args, input_names=info.input_names,
                             output_names=info.output_names, dynamic_shapes=shapes,
                             opset_version=opset, dynamo=True, optimize=True, verbose=False)
    prog.save(str(path))


def _export_legacy(wrapper: nn.Module, args: tuple[Tensor, ...], path: Path, info: GraphInfo,
                   opset: int) -> None:
    names = info.input_names + info.output_names
    torch.onnx.export(wrapper, args, str(path), input_names=info.input_names,
                      output_names=info.output_names, opset_version=opset, dynamo=False,
                      dynamic_axes={n: {0: "batch"} for n in names})


def _finish(path: Path, info: GraphInfo) -> None:
    """Check names and static axes, write ``metadata_props``, save, and load in ORT."""
    import onnx
    m = onnx.load(str(path))
    ins = [i.name for i in m.graph.input]
    outs = [o.name for o in m.graph.output]
    if ins != info.input_names or outs != info.output_names:
        raise RuntimeError(f"{path.name}: graph names {ins} -> {outs} differ from "
                           f"{info.input_names} -> {info.output_names}")
    for v in list(m.graph.input) + list(m.graph.output):
        dims = v.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims[1:]):
            raise RuntimeError(f"{path.name}: {v.name} has a dynamic axis other than the batch")
    onnx.helper.set_model_props(m, info.to_props())
    onnx.save(m, str(path))
    onnx.checker.check_model(str(path))
    import onnxruntime as ort
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_graph(model: LLMCodec, graph: str, path: str | Path, *, opset: int = DEFAULT_OPSET,
                 vocab_size: int | None = None) -> str:
    """Export one step graph to ``path``; returns the exporter that succeeded."""
    if opset < 17:
        raise ValueError(f"opset {opset} is too old; accepted: 17 or newer")
    path = Path(path)
    wrapper = _wrapper(model, graph).eval()
    args = _example(model, graph)
    n_data = {"encoder": 1, "decoder": model.cfg.num_levels, "quantizer": 1}[graph]
    try:
        info = graph_info(model, graph, "dynamo", opset, vocab_size)
        _export_dynamo(wrapper, args, n_data, path, info, opset)
        _finish(path, info)
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - any dynamo failure falls back to legacy
        first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        hint = " (the dynamo exporter needs the `onnxscript` package)" \
            if isinstance(e, ImportError) else ""
        log.warning("dynamo export of %s failed (%s)%s; trying the legacy exporter", graph, first, hint)
    # Legacy TorchScript exporter: the fallback only. It is kept only if ONNX
    # Runtime loads its graph (at torch 2.13 its decoder graph does not load).
    info = graph_info(model, graph, "legacy", opset, vocab_size)
    try:
        _export_legacy(wrapper, args, path, info, opset)
        _finish(path, info)
    except Exception as e:  # noqa: BLE001
        path.unlink(missing_ok=True)
        raise RuntimeError(f"could not export the {graph} graph: dynamo failed ({first}){hint}; "
                           f"legacy failed ({type(e).__name__}: {str(e)[:300]})") from None
    return "legacy"


# ---- the quantizer's nodes (kept float32 in int8 graphs) -------------------------------
def quantizer_nodes(path: str | Path) -> list[str]:
    """Names of the nodes inside the quantizer module (search, table lookups).

    The dynamo exporter records each node's module path in its
    ``metadata_props`` (``pkg.torch.onnx.name_scopes``).
    """
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    out = []
    for n in m.graph.node:
        scopes = {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
        if f".{QUANTIZER_SCOPE}" in scopes or n.name.startswith(f"/{QUANTIZER_SCOPE}") \
                or f"/{QUANTIZER_SCOPE}/" in n.name:
            out.append(n.name)
    return out


def spectral_nodes(path: str | Path) -> list[str]:
    """Names of the nodes of the STFT analysis (``stft_encoder.STFTFeatures``) and the
    inverse-STFT head (``istft_decoder.ISTFTHead``): they stay float32 in int8 graphs. The
    head's projection feeds an ``exp`` and its inverse DFT sees spectra spanning 50 dB, which
    one uint8 scale per call cannot hold (decoded audio of 6 unseen clips, int8 against
    float32: 29 dB SNR with the head in int8, 50 dB without it; the SNAC decoder's int8 graph:
    43 dB); the analysis feeds a ``log`` of the power spectrum the same way."""
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    out = []
    for n in m.graph.node:
        scopes = {p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", "")
        if "decoder.head" in scopes or "encoder.stft" in scopes or \
                any(i.endswith(("decoder.head.basis", "encoder.stft.basis")) for i in n.input):
            out.append(n.name)
    return out


# ---- a whole directory -------------------------------------------------------------
def _vocab_source(loaded: LoadedCodec) -> Path | None:
    """Where the model's vocabulary files live (model dir's ``vocab/`` or the bundled one)."""
    if loaded.vocab is None:
        return None
    local = loaded.directory / "vocab"
    if (local / VOCAB_FILE).is_file():
        return local
    from llmcodec.vocab import default_directory
    return default_directory()


def export_model(model: LLMCodec | LoadedCodec | str | Path | None, out_dir: str | Path, *,
                 int8: bool = False, opset: int = DEFAULT_OPSET,
                 graphs: tuple[str, ...] = ("encoder", "decoder", "quantizer")) -> ExportResult:
    """Export ``model`` (an ``LLMCodec``, a loaded codec, a model directory or None for
    the bundled default) into ``out_dir``; the model itself is not modified."""
    if model is None or isinstance(model, (str, Path)):
        model = load_model(model)
    loaded = model if isinstance(model, LoadedCodec) else None
    net = copy.deepcopy(loaded.model if loaded else model).prepare_inference()
    if not net.cfg.causal:
        raise ValueError(f"model {net.cfg.name!r} is not causal: only causal models export as steps")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = loaded.vocab.vocab_size if loaded and loaded.vocab is not None else None
    files: dict[str, Path] = {}
    exporters: dict[str, str] = {}
    seconds: dict[str, float] = {}
    with torch.no_grad():
        for g in graphs:
            t0 = time.perf_counter()
            files[g] = out / onnx_file(g)
            exporters[g] = export_graph(net, g, files[g], opset=opset, vocab_size=vocab_size)
            seconds[g] = time.perf_counter() - t0
    if int8:
        for g in graphs:
            if g == "quantizer":
                continue  # the search stays float32
            t0 = time.perf_counter()
            # the search (cosine over up to 49152 codes, table lookups) stays float32:
            # int8 tables blur near-ties. See export/int8.py for the weight settings.
            files[f"{g}.int8"] = quantize_int8(files[g], out / onnx_file(g, "int8"),
                                               exclude=quantizer_nodes(files[g]) + spectral_nodes(files[g]))
            seconds[f"{g}.int8"] = time.perf_counter() - t0
    net.cfg.save(out / CONFIG_FILE)
    src = _vocab_source(loaded) if loaded else None
    if src is not None:
        for name in (VOCAB_FILE, TOKENIZER_FILE):
            shutil.copyfile(src / name, out / name)
    manifest = {
        "format": FORMAT, "export_version": EXPORT_VERSION, "model": net.cfg.name,
        "model_version": net.cfg.version, "opset": opset, "torch_version": torch.__version__,
        "exporters": exporters, "files": {k: v.name for k, v in files.items()},
        "vocab": src is not None, "config": net.cfg.to_dict(),
        "graphs": {g: graph_info(net, g, exporters[g], opset, vocab_size).to_props()
                   for g in graphs},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportResult(out, files, exporters, seconds)


__all__ = ["DecoderStep", "EncoderStep", "ExportResult", "QuantizerStep", "export_graph",
           "export_model", "graph_info", "quantizer_nodes",
           "LATENT_NAME", "PCM_NAME", "OUT_SUFFIX", "codes_names"]
