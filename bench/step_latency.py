"""Per-block step latency of every backend present, by batch size and thread count.

    .venv/bin/python -m llmcodec.bench.step_latency [--quick] [--model DIR] [--export DIR]

For each (batch B, threads) every available backend streams real speech
through ``encode_step`` then ``decode_step`` (states carried, so attention
caches are full as in a live stream); backends take turns block by block in a
random order (``stats.interleave``) so that load from other processes falls on
all of them alike. Reported per configuration: encode, decode and both
(p50/p90/p99 after warm-up), the real-time factor of one step, the real-time
streams the batch sustains, the algorithmic latency, and the paired median
ratio against torch eager.

Backends that cannot run here (no export, no GPU, no tensorrt wheel) come back
as ``Unavailable(name, reason)``, never as an exception.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from llmcodec.stream.backend import Backend

from .stats import Summary, interleave, paired_ratio, summarize

BACKENDS = ("torch", "onnx-fp32", "onnx-int8", "torch-cuda", "onnx-cuda", "tensorrt")
GPU_BACKENDS = ("torch-cuda", "onnx-cuda", "tensorrt")
REFERENCE = "torch"


@dataclass(frozen=True)
class Unavailable:
    backend: str
    reason: str


@dataclass(frozen=True)
class StepSettings:
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    threads: tuple[int, ...] = (1, 2)
    base_blocks: int = 400  # measured blocks at B=1; B gets base_blocks // B ...
    min_blocks: int = 20  # ... but never fewer than this
    warmup: int = 10  # blocks run and discarded before measuring
    max_seconds: float = 25.0  # per (batch, threads): stop early after this, once min_blocks are measured
    seed: int = 0

    def blocks(self, batch: int) -> int:
        return max(self.min_blocks, self.base_blocks // batch)


QUICK_STEP = StepSettings(batches=(1, 16), threads=(1,), base_blocks=100, min_blocks=8, warmup=3, max_seconds=8.0)


@dataclass(frozen=True)
class StepTiming:
    """One backend at one (batch, threads): durations of one batched step, in seconds."""

    backend: str
    batch: int
    threads: int
    encode: Summary
    decode: Summary
    both: Summary
    block_seconds: float
    vs_reference: float | None  # paired median of both / torch's both (None for torch itself)
    samples: tuple[float, ...] = field(repr=False)  # both, per block (for the CDF)

    @property
    def rtf(self) -> float:
        """Median step time over the block's duration: < 1 keeps B streams real-time."""
        return self.both.p50 / self.block_seconds

    @property
    def streams(self) -> float:
        """Real-time streams this batch size sustains: B * block / median step."""
        return self.batch * self.block_seconds / self.both.p50

    @property
    def algorithmic_latency(self) -> float:
        """Seconds from a block's first sample until its tokens could exist, before compute:
        one whole block is buffered, and the causal model looks no further ahead."""
        return self.block_seconds


# ---- backends -------------------------------------------------------------------------------
def ensure_export(model_dir: str | Path | None, export_dir: str | Path | None = None,
                  log: Callable[[str], None] = print) -> tuple[Path | None, str]:
    """An export directory with fp32 and int8 graphs: ``export_dir`` if given, else the cached
    export of ``model_dir`` (``llmcodec.export.cache``). Returns (path, "") or (None, reason)."""
    if export_dir is not None:
        p = Path(export_dir)
        return (p, "") if (p / "export.json").is_file() else (None, f"{p} is not an export directory")
    try:
        from llmcodec.export.cache import cached_export
        return cached_export(model_dir, log), ""
    except Exception as e:  # noqa: BLE001 - any failure is reported, never fatal
        return None, f"export failed: {type(e).__name__}: {e}"


def load_backend(name: str, model_dir: str | Path | None, export_dir: Path | None,
                 threads: int, export_reason: str = "no export directory") -> Backend | Unavailable:
    """One backend by name, or ``Unavailable`` with the reason it cannot run here."""
    try:
        if name in ("torch", "torch-cuda"):
            import torch
            from llmcodec.checkpoint import load_model
            from llmcodec.stream.torch_backend import TorchBackend
            if name == "torch-cuda" and not torch.cuda.is_available():
                return Unavailable(name, "torch sees no CUDA device")
            device = "cuda" if name == "torch-cuda" else "cpu"
            return TorchBackend(load_model(model_dir, device=device), device=device)
        if export_dir is None:
            return Unavailable(name, export_reason)
        from llmcodec.stream.onnx_backend import OnnxBackend
        if name == "onnx-fp32":
            return OnnxBackend(export_dir, providers=["CPUExecutionProvider"], threads=threads)
        if name == "onnx-int8":
            return OnnxBackend(export_dir, providers=["CPUExecutionProvider"], variant="int8", threads=threads)
        if name == "onnx-cuda":
            return OnnxBackend(export_dir, providers=["CUDAExecutionProvider"], threads=threads)
        if name == "tensorrt":
            from llmcodec.stream.tensorrt_backend import TensorRTBackend
            return TensorRTBackend(export_dir, build=True)
    except Exception as e:  # noqa: BLE001 - ImportError, RuntimeError, ValueError: all "not here"
        return Unavailable(name, f"{type(e).__name__}: {e}".splitlines()[0][:200])
    raise ValueError(f"unknown backend {name!r}; accepted: {list(BACKENDS)}")


# ---- measurement ----------------------------------------------------------------------------
class _Stream:
    """B rows of real speech through one backend, block by block, states carried."""

    def __init__(self, backend: Backend, blocks: np.ndarray, batch: int):
        self.backend, self.blocks, self.batch = backend, blocks, batch
        n = blocks.shape[0]
        self.offsets = (np.arange(batch) * 37) % n  # rows hear different speech
        self.i = 0
        self.enc = backend.init_encoder_state(batch)
        self.dec = backend.init_decoder_state(batch)

    def step(self) -> tuple[float, float]:
        pcm = self.blocks[(self.offsets + self.i) % self.blocks.shape[0]]  # [B, block]
        self.i += 1
        t0 = time.perf_counter()
        codes, self.enc = self.backend.encode_step(pcm, self.enc)
        t1 = time.perf_counter()
        _, self.dec = self.backend.decode_step(codes, self.dec)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1


def speech_blocks(block_size: int, sample_rate: int, seconds: float = 30.0) -> np.ndarray:
    """Real speech cut into blocks: float32 [n, block_size]."""
    from llmcodec.speech import speech_clip
    wav = speech_clip(seconds, sample_rate)
    n = wav.size // block_size
    return np.ascontiguousarray(wav[: n * block_size].reshape(n, block_size))


def measure_config(backends: dict[str, Backend], batch: int, threads: int, settings: StepSettings,
                   blocks: np.ndarray) -> list[StepTiming]:
    """Interleaved measurement of several backends at one (batch, threads)."""
    import torch
    torch.set_num_threads(threads)
    streams = {n: _Stream(b, blocks, batch) for n, b in backends.items()}
    runs = interleave({n: s.step for n, s in streams.items()}, settings.blocks(batch), settings.warmup,
                      settings.seed + batch * 10 + threads, settings.max_seconds, settings.min_blocks)
    both = {n: [e + d for e, d in r] for n, r in runs.items()}
    out = []
    for n, r in runs.items():
        b = backends[n]
        ref = paired_ratio(both[n], both[REFERENCE]) if REFERENCE in both and n != REFERENCE else None
        out.append(StepTiming(n, batch, threads, summarize([e for e, _ in r]), summarize([d for _, d in r]),
                              summarize(both[n]), b.facts.block_seconds, ref, tuple(both[n])))
    return out


def run(settings: StepSettings = StepSettings(), model_dir: str | Path | None = None,
        export_dir: str | Path | None = None, backends: tuple[str, ...] = BACKENDS,
        log: Callable[[str], None] = print, export_reason: str | None = None
        ) -> tuple[list[StepTiming], list[Unavailable]]:
    """Measure every backend in ``backends`` that can run here over the settings' grid.

    Without ``export_dir`` a cached export is made, unless ``export_reason`` says why
    there is none (then the ONNX and TensorRT backends are reported with it)."""
    needs_export = any(b not in ("torch", "torch-cuda") for b in backends)
    if export_dir is None and export_reason is not None:
        exp, reason = None, export_reason
    elif needs_export:
        exp, reason = ensure_export(model_dir, export_dir, log)
    else:
        exp, reason = None, "not requested"
    results: list[StepTiming] = []
    missing: dict[str, Unavailable] = {}
    blocks = None
    for threads in settings.threads:
        loaded: dict[str, Backend] = {}
        for name in backends:
            if name in missing or (name in GPU_BACKENDS and threads != settings.threads[0]):
                continue
            b = load_backend(name, model_dir, exp, threads, reason)
            if isinstance(b, Unavailable):
                missing[name] = b
            else:
                loaded[name] = b
        if not loaded:
            continue
        if blocks is None:
            f = next(iter(loaded.values())).facts
            blocks = speech_blocks(f.block_size, f.sample_rate)
        for batch in settings.batches:
            log(f"step latency: batch {batch:2d}, {threads} thread(s): {', '.join(loaded)}")
            results += measure_config(loaded, batch, threads, settings, blocks)
    return results, list(missing.values())


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.step_latency", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batches 1 and 16 on one thread, fewer blocks")
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--export", help="export directory with int8 graphs (default: a cached export)")
    p.add_argument("--batches", help="comma-separated batch sizes (default 1,2,4,...,64)")
    p.add_argument("--threads", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"subset of {','.join(BACKENDS)}")
    return p


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ValueError(f"{what} must be comma-separated positive integers, got {text!r}")
    return vals


def main(argv: list[str] | None = None) -> int:
    import dataclasses
    from .report import step_table, unavailable_lines
    p = get_parser()
    args = p.parse_args(argv)
    s = QUICK_STEP if args.quick else StepSettings()
    names = tuple(args.backends.split(","))
    try:
        if args.batches:
            s = dataclasses.replace(s, batches=_ints(args.batches, "--batches"))
        if args.threads:
            s = dataclasses.replace(s, threads=_ints(args.threads, "--threads"))
        bad = [n for n in names if n not in BACKENDS]
        if bad:
            raise ValueError(f"unknown backends {bad}; accepted: {list(BACKENDS)}")
    except ValueError as e:
        p.error(str(e))
    results, missing = run(s, args.model, args.export, names)
    print(step_table(results))
    print("\n".join(unavailable_lines(missing)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
