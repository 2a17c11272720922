"""What an exported step graph says about itself, and the export directory's layout.

Torch-free (json + numpy only): the export writes it, every runtime reads it.
Each ONNX file carries these facts in ``metadata_props`` (string -> string;
lists and dicts as JSON), so a runtime builds zero states from the file alone:

    info = GraphInfo.from_props(session.get_modelmeta().custom_metadata_map)
    state = info.zero_state(batch)          # {name: float32 [B, *shape]}

An export directory holds ``encoder.onnx`` (encoder + quantizer step),
``decoder.onnx`` (decoder step), ``quantizer.onnx`` (latent -> codes),
optional ``*.int8.onnx`` variants and ``tensorrt/*.plan`` engines,
``config.json`` (the model's ``CodecConfig``), ``export.json`` (this
manifest) and, when the model has one, the vocabulary's ``vocab.json`` and
``tokenizer.json`` (token names without torch).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmcodec.token_forms import TOKENIZER_FILE, VOCAB_FILE  # noqa: F401  (an export holds them too)

FORMAT = "llmcodec-onnx-step"
EXPORT_VERSION = 1
MANIFEST_FILE = "export.json"
CONFIG_FILE = "config.json"
TENSORRT_DIR = "tensorrt"
GRAPHS = ("encoder", "decoder", "quantizer")
VARIANTS = ("fp32", "int8")
PCM_NAME = "pcm"
LATENT_NAME = "latent"
OUT_SUFFIX = "_out"


def codes_names(levels: int) -> list[str]:
    """Per-level code tensor names: ``codes0``, ``codes1``, ..."""
    return [f"codes{i}" for i in range(levels)]


def onnx_file(graph: str, variant: str = "fp32") -> str:
    """File name of one graph: ``encoder.onnx``, ``encoder.int8.onnx``, ..."""
    if graph not in GRAPHS:
        raise ValueError(f"unknown graph {graph!r}; accepted: {list(GRAPHS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; accepted: {list(VARIANTS)}")
    return f"{graph}.onnx" if variant == "fp32" else f"{graph}.{variant}.onnx"


def engine_file(graph: str, fp16: bool = False) -> str:
    """TensorRT engine path inside an export directory: ``tensorrt/encoder.fp16.plan``."""
    return f"{TENSORRT_DIR}/{graph}.{'fp16' if fp16 else 'fp32'}.plan"


@dataclass(frozen=True)
class GraphInfo:
    """Facts of one step graph (all that ``metadata_props`` holds).

    ``state_shapes`` are per-row shapes (without the batch axis), in graph
    input order; the state inputs are named ``name`` and outputs ``name_out``.
    """

    graph: str
    model_name: str
    model_version: int
    sample_rate: int
    hop: int
    block_size: int
    enc_strides: tuple[int, ...]
    dec_strides: tuple[int, ...]
    vq_strides: tuple[int, ...]
    tokens_per_block: tuple[int, ...]
    level_sizes: tuple[int, ...]
    vocab_size: int
    llm_name: str
    latent_dim: int
    state_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    exporter: str = ""
    opset: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    # ---- names -----------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return list(self.state_shapes)

    @property
    def input_names(self) -> list[str]:
        """Graph inputs in order: the data input(s), then the states."""
        levels = len(self.vq_strides)
        head = {"encoder": [PCM_NAME], "decoder": codes_names(levels),
                "quantizer": [LATENT_NAME]}[self.graph]
        return head + self.state_names

    @property
    def output_names(self) -> list[str]:
        levels = len(self.vq_strides)
        head = {"encoder": codes_names(levels), "decoder": [PCM_NAME],
                "quantizer": codes_names(levels)}[self.graph]
        return head + [n + OUT_SUFFIX for n in self.state_names]

    @property
    def frames_per_block(self) -> int:
        return self.block_size // self.hop

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """The initial state of ``batch`` streams: float32 zeros ``[B, *shape]``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return {k: np.zeros((batch, *s), np.float32) for k, s in self.state_shapes.items()}

    # ---- metadata_props ---------------------------------------------------
    def to_props(self) -> dict[str, str]:
        d = {
            "format": FORMAT, "export_version": str(EXPORT_VERSION), "graph": self.graph,
            "model_name": self.model_name, "model_version": str(self.model_version),
            "sample_rate": str(self.sample_rate), "hop": str(self.hop),
            "block_size": str(self.block_size),
            "enc_strides": json.dumps(list(self.enc_strides)),
            "dec_strides": json.dumps(list(self.dec_strides)),
            "vq_strides": json.dumps(list(self.vq_strides)),
            "tokens_per_block": json.dumps(list(self.tokens_per_block)),
            "level_sizes": json.dumps(list(self.level_sizes)),
            "vocab_size": str(self.vocab_size), "llm_name": self.llm_name,
            "latent_dim": str(self.latent_dim),
            "state_names": json.dumps(self.state_names),
            "state_shapes": json.dumps({k: list(v) for k, v in self.state_shapes.items()}),
            "state_dtype": "float32",
            "inputs": json.dumps(self.input_names), "outputs": json.dumps(self.output_names),
            "exporter": self.exporter, "opset": str(self.opset),
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "ONNX metadata") -> "GraphInfo":
        if props.get("format") != FORMAT:
            raise ValueError(f"{where}: not an llmcodec step graph (metadata 'format' is "
                             f"{props.get('format')!r}, expected {FORMAT!r})")
        try:
            names = json.loads(props["state_names"])
            shapes = json.loads(props["state_shapes"])
            ints = lambda k: tuple(int(v) for v in json.loads(props[k]))  # noqa: E731
            known = {"format", "export_version", "graph", "model_name", "model_version",
                     "sample_rate", "hop", "block_size", "enc_strides", "dec_strides",
                     "vq_strides", "tokens_per_block", "level_sizes", "vocab_size", "llm_name",
                     "latent_dim", "state_names", "state_shapes", "state_dtype", "inputs",
                     "outputs", "exporter", "opset"}
            return cls(
                graph=props["graph"], model_name=props["model_name"],
                model_version=int(props["model_version"]), sample_rate=int(props["sample_rate"]),
                hop=int(props["hop"]), block_size=int(props["block_size"]),
                enc_strides=ints("enc_strides"), dec_strides=ints("dec_strides"),
                vq_strides=ints("vq_strides"), tokens_per_block=ints("tokens_per_block"),
                level_sizes=ints("level_sizes"), vocab_size=int(props["vocab_size"]),
                llm_name=props["llm_name"], latent_dim=int(props["latent_dim"]),
                state_shapes={n: tuple(int(d) for d in shapes[n]) for n in names},
                exporter=props.get("exporter", ""), opset=int(props.get("opset", 0)),
                extra={k: v for k, v in props.items() if k not in known},
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{where}: incomplete llmcodec metadata ({type(e).__name__}: {e})") from None


def read_manifest(export_dir: str | Path) -> dict:
    """``export.json`` of an export directory; a clear error if it is not one."""
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST_FILE
    if not path.is_file():
        hint = (" (that is a model directory: run `llmcodec export --model DIR -o OUT_DIR` first)"
                if (export_dir / "model.safetensors").is_file() else "")
        raise ValueError(f"{export_dir} is not an llmcodec export directory: no {MANIFEST_FILE}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest
