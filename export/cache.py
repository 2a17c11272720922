"""A cached ONNX export of a model directory, made once per model and exporter.

``cached_export(None)`` is the bundled default's export, under
``$XDG_CACHE_HOME/llmcodec/export/<key>`` (default ``~/.cache``): the key hashes the model's
config and weights, the exporter's source and the model code, so a changed model, exporter
or layer exports again.
The export is written to a temporary directory and renamed into place, so a process that
stops midway, or two that export at once, never leave a half export behind.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from .metadata import MANIFEST_FILE, onnx_file

# the model code the graphs are traced from (with the exporter's own files, the cache key)
MODEL_CODE = ("layers.py", "codec_blocks.py", "attention.py", "istft_decoder.py", "stft_encoder.py", "quantizer.py",
              "model.py", "state.py", "config.py")


def export_cache_dir(model_dir: str | Path | None) -> Path:
    """Where the export of ``model_dir`` (None: the bundled default) is kept."""
    import llmcodec
    from llmcodec.checkpoint import CONFIG_FILE, WEIGHTS_FILE, default_model_dir
    d = Path(model_dir) if model_dir is not None else default_model_dir()
    here, core = Path(__file__).resolve().parent, Path(llmcodec.__file__).resolve().parent
    code = sorted(here.glob("*.py")) + [core / f for f in MODEL_CODE]
    h = hashlib.sha256()
    for p in [d / CONFIG_FILE, d / WEIGHTS_FILE, *code]:
        h.update(p.read_bytes())
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmcodec" / "export"
    return root / h.hexdigest()[:16]


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in (MANIFEST_FILE, onnx_file("encoder", "fp32"), onnx_file("decoder", "fp32"),
                                           onnx_file("encoder", "int8"), onnx_file("decoder", "int8")))


def cached_export(model_dir: str | Path | None = None, log=None) -> Path:
    """The export directory (fp32 and int8 encoder/decoder graphs) of ``model_dir``, exported
    now if it is not cached yet (about a minute on two cores). ``log``: progress lines
    (default: standard error)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out = export_cache_dir(model_dir)
    if _complete(out):
        return out
    from .onnx_export import export_model
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"exporting {'the bundled model' if model_dir is None else model_dir} to ONNX once, into {out} ...")
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization's pre-processing advice
    t0 = time.perf_counter()
    try:
        export_model(model_dir, tmp, int8=True, graphs=("encoder", "decoder"))
    finally:
        root.setLevel(level)
    if not _complete(out):
        shutil.rmtree(out, ignore_errors=True)  # a half export from before this scheme
        try:
            tmp.rename(out)
        except OSError:  # another process put its export in place first
            pass
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"exported in {time.perf_counter() - t0:.0f} s (cached for the next runs)")
    return out


def resolve_model(backend: str, model: str | Path | None) -> str | None:
    """What ``make_backend(backend, ...)`` reads for ``model``: the onnx backend takes an export
    directory, so a model directory (None: the bundled model) becomes its cached export."""
    if backend == "onnx" and (model is None or not (Path(model) / MANIFEST_FILE).is_file()):
        return str(cached_export(model))
    return None if model is None else str(model)
