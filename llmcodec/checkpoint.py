"""Model directories: ``config.json`` + ``model.safetensors`` (+ codebooks).

A model directory holds:

* ``config.json``: the ``CodecConfig``;
* ``model.safetensors``: the codec's weights, weight norm folded, without the
  frozen LLM tables;
* the frozen tables, from one of: ``codebooks.safetensors`` (keys ``level0``..,
  used for converted official checkpoints), a ``vocab/`` folder (a
  ``Vocabulary``), or the bundled SmolLM2 vocabulary when ``llm_name`` names it.

Nothing here unpickles: weights are safetensors, configs JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from .config import CodecConfig
from .model import LLMCodec
from .vocab import Vocabulary, default_directory

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CODEBOOKS_FILE = "codebooks.safetensors"
VOCAB_DIR = "vocab"
TRAINING_JSON = "training.json"  # written by training next to the weights: steps, hours, data


def default_model_dir() -> Path:
    """The bundled default model shipped inside the package."""
    return Path(__file__).resolve().parent / "assets" / "default"


@dataclass(frozen=True)
class LoadedCodec:
    """A ready-to-run codec and the vocabulary that names its codes (None if unknown)."""

    model: LLMCodec
    vocab: Vocabulary | None
    directory: Path


def save_model(model: LLMCodec, directory: str | Path, *, half: bool = False,
               vocab_dir: str | Path | None = None, codebooks: bool = False) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (float16 when ``half``); with
    ``codebooks`` also the frozen tables as ``codebooks.safetensors`` (for an LLM whose
    vocabulary is not bundled, such as the official checkpoint's LLaMA-2)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.cfg.save(directory / CONFIG_FILE)
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        sd[k] = v.half() if half and v.is_floating_point() else v
    save_file(sd, str(directory / WEIGHTS_FILE), metadata={"format": "llmcodec", "model": model.cfg.name})
    if vocab_dir is not None:
        Vocabulary.load(vocab_dir).save(directory / VOCAB_DIR)
    if codebooks:
        save_file({f"level{i}": q.codebook.detach().cpu().contiguous()
                   for i, q in enumerate(model.quantizer.quantizers)},
                  str(directory / CODEBOOKS_FILE), metadata={"format": "llmcodec", "llm": model.cfg.llm_name})
    return directory


def _vocabulary_for(cfg: CodecConfig, directory: Path) -> Vocabulary | None:
    if (directory / VOCAB_DIR).is_dir():
        return Vocabulary.load(directory / VOCAB_DIR)
    bundled = default_directory()
    import json
    meta = json.loads((bundled / "vocab.json").read_text())
    if meta["llm_name"] == cfg.llm_name:
        return Vocabulary.default()
    return None


def load_model(directory: str | Path | None = None, *, device: str = "cpu",
               inference: bool = True) -> LoadedCodec:
    """Load a model directory (the bundled default when ``None``)."""
    directory = Path(directory) if directory is not None else default_model_dir()
    if not (directory / CONFIG_FILE).is_file():
        raise ValueError(f"{directory} is not a model directory: no {CONFIG_FILE}")
    if not (directory / WEIGHTS_FILE).is_file():
        raise ValueError(f"{directory} is not a model directory: no {WEIGHTS_FILE}")
    cfg = CodecConfig.load(directory / CONFIG_FILE)
    model = LLMCodec(cfg)
    sd = {k: v.float() if v.is_floating_point() else v
          for k, v in load_file(str(directory / WEIGHTS_FILE)).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_FILE} does not fit config {cfg.name!r}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    vocab = _vocabulary_for(cfg, directory)
    if (directory / CODEBOOKS_FILE).is_file():
        books = load_file(str(directory / CODEBOOKS_FILE))
        tables = [books[f"level{i}"].float() for i in range(cfg.num_levels)]
    elif vocab is not None:
        tables = [vocab.codebook(i) for i in range(cfg.num_levels)]
    else:
        raise ValueError(f"{directory}: no codebooks.safetensors, no vocab/ and "
                         f"llm {cfg.llm_name!r} is not the bundled vocabulary")
    model.set_codebooks(tables)
    model.to(device)
    if inference:
        model.prepare_inference()
    return LoadedCodec(model, vocab, directory)


def read_training_json(model_dir: str | Path) -> dict:
    """A model directory's ``training.json`` (empty when the model was not trained here)."""
    path = Path(model_dir) / TRAINING_JSON
    return json.loads(path.read_text()) if path.is_file() else {}
