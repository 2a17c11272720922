"""Build TensorRT engines from the exported ONNX step graphs (TensorRT 10 Python API).

One optimization profile over the batch axis (min 1, opt ``typical``, max
``max_batch``; every other axis is static), float16 as an option, and two
caches on disk under ``<export>/tensorrt/``:

* engine cache: ``{graph}.{fp16|fp32}.plan`` with a ``.json`` key beside it
  (hash of the ONNX file, the profile, the precision and TensorRT's version);
  a matching key skips the build;
* timing cache: ``timing.cache``, read before and written after every build,
  so rebuilding (other batch sizes, fp16) reuses kernel timings.

With fp16, the layers of the quantizer (cosine search over up to 49152 codes,
table lookups; found by the ONNX nodes' module scopes) are pinned to float32
(``PREFER_PRECISION_CONSTRAINTS``): float16 cosines would flip near-ties.

The ``tensorrt`` wheel is imported only inside these functions; on machines
without it they raise ``ImportError`` naming what to install.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .metadata import TENSORRT_DIR, engine_file, onnx_file, read_manifest

log = logging.getLogger(__name__)

TIMING_CACHE_FILE = "timing.cache"
WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class EngineBuild:
    """One engine on disk and whether it came from the engine cache."""

    graph: str
    path: Path
    fp16: bool
    profile: tuple[int, int, int]
    cached: bool
    seconds: float


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ImportError("TensorRT is not installed: install the `tensorrt` wheel (>= 10) on a "
                          f"machine with an NVIDIA GPU, or use `llmcodec.[gpu]` ({e})") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise ImportError(f"TensorRT {trt.__version__} is too old; accepted: 10 or newer")
    return trt


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _quantizer_outputs(onnx_path: Path) -> set[str]:
    """Output tensor names of the quantizer's ONNX nodes (TensorRT names tensors after them)."""
    import onnx
    from .onnx_export import quantizer_nodes
    names = set(quantizer_nodes(onnx_path))
    m = onnx.load(str(onnx_path), load_external_data=False)
    return {o for n in m.graph.node if n.name in names for o in n.output}


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, min_batch: int = 1,
                 opt_batch: int = 8, max_batch: int = 64, fp16: bool = False,
                 timing_cache: str | Path | None = None, workspace: int = WORKSPACE_BYTES,
                 force: bool = False) -> EngineBuild:
    """Build (or reuse from the engine cache) one engine with a batch-axis profile."""
    import time
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                         f"{min_batch}, {opt_batch}, {max_batch}")
    trt = _trt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    graph = onnx_path.name.split(".")[0]
    key = {"onnx_sha256": _sha256(onnx_path), "profile": [min_batch, opt_batch, max_batch],
           "fp16": fp16, "tensorrt": trt.__version__}
    key_path = engine_path.with_suffix(".json")
    t0 = time.perf_counter()
    if not force and engine_path.is_file() and key_path.is_file() \
            and json.loads(key_path.read_text()) == key:
        return EngineBuild(graph, engine_path, fp16, (min_batch, opt_batch, max_batch), True, 0.0)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        keep = _quantizer_outputs(onnx_path)
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            outs = [layer.get_output(j) for j in range(layer.num_outputs)]
            floats = [j for j, o in enumerate(outs) if o.dtype == trt.float32]
            if floats and any(o.name in keep for o in outs):
                layer.precision = trt.float32
                for j in floats:  # integer outputs (ArgMax indices) keep their type
                    layer.set_output_type(j, trt.float32)
                pinned += 1
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        log.info("%s: %d quantizer layers pinned to float32", graph, pinned)

    cache_data = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_data = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_data)
    config.set_timing_cache(cache, ignore_mismatch=False)

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        row = tuple(t.shape)[1:]
        if any(d < 0 for d in row):
            raise RuntimeError(f"{onnx_path}: input {t.name} has a dynamic axis besides the batch")
        profile.set_shape(t.name, (min_batch, *row), (opt_batch, *row), (max_batch, *row))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    key_path.write_text(json.dumps(key) + "\n")
    if timing_cache is not None:
        Path(timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    return EngineBuild(graph, engine_path, fp16, (min_batch, opt_batch, max_batch), False,
                       time.perf_counter() - t0)


def build_engines(export_dir: str | Path, *, max_batch: int = 64, opt_batch: int | None = None,
                  fp16: bool = False, force: bool = False) -> list[EngineBuild]:
    """Engines for ``encoder.onnx`` and ``decoder.onnx`` of an export directory."""
    _trt()  # a clear ImportError first, on machines without TensorRT
    export_dir = Path(export_dir)
    read_manifest(export_dir)
    if max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
    opt = opt_batch or min(8, max_batch)
    cache = export_dir / TENSORRT_DIR / TIMING_CACHE_FILE
    cache.parent.mkdir(parents=True, exist_ok=True)
    return [build_engine(export_dir / onnx_file(g), export_dir / engine_file(g, fp16),
                         opt_batch=opt, max_batch=max_batch, fp16=fp16, timing_cache=cache,
                         force=force)
            for g in ("encoder", "decoder")]
