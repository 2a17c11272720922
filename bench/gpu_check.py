"""One prepared check for a machine with an NVIDIA GPU: the torch CUDA backend's exact tokens
and a batch sweep, written to one folder. On a machine without CUDA it runs the same on the
CPU (CI runs it that way, so it cannot rot).

    bench/gpu_check.sh                          # on the GPU machine: under 8 minutes
    .venv/bin/python -m llmcodec.bench.gpu_check --device cpu --quick --out /tmp/g   # CI

Writes ``OUT/results.json`` and ``OUT/results.md``:

* **exactness**: 30 s of real speech; each of four streams joins a shared batch at a
  staggered block and is compared with its own batch-1 offline tokens on the same device,
  and the device's batch-1 tokens with the CPU's (agreement, since runtimes sum in other orders);
* **sweep**: per batch size, the median time of one encode + decode step, through the
  backend (numpy in and out, as the server runs it) and on device-resident tensors (the
  model alone), and the per-stream cost.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SweepPoint:
    batch: int
    backend_ms: float  # median encode + decode step through TorchBackend (numpy boundary)
    model_ms: float  # median encode + decode step on device-resident tensors
    steps: int

    @property
    def per_stream_ms(self) -> float:
        return self.backend_ms / self.batch


@dataclass
class GpuCheck:
    device: str
    device_name: str
    torch: str
    seconds: float
    staggered_exact: list[bool] = field(default_factory=list)  # per stream: tokens == its batch-1 tokens
    cpu_agreement: float = float("nan")  # fraction of device batch-1 tokens equal to the CPU's
    sweep: list[SweepPoint] = field(default_factory=list)
    wall_s: float = 0.0
    command: str = ""

    def markdown(self) -> str:
        rows = "\n".join(f"| {p.batch} | {p.backend_ms:.2f} | {p.model_ms:.2f} | {p.per_stream_ms:.3f} |"
                         for p in self.sweep)
        return (f"# GPU check: {self.device} ({self.device_name}), torch {self.torch}\n\n"
                f"Exact tokens, {self.seconds:g} s of real speech, 4 staggered streams in shared batches vs "
                f"each one's batch-1 offline tokens: {sum(self.staggered_exact)}/{len(self.staggered_exact)} "
                f"exact. Batch-1 tokens equal to the CPU's: {self.cpu_agreement:.4%}.\n\n"
                "| batch | step ms (backend) | step ms (model) | per stream ms |\n|---|---|---|---|\n"
                f"{rows}\n\nWall time {self.wall_s:.0f} s. Reproduce: `{self.command}`\n")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def _sweep_point(backend, batch: int, steps: int, device: str) -> SweepPoint:
    import torch
    rng = np.random.default_rng(batch)
    pcm = (rng.standard_normal((batch, backend.facts.block_size)) * 0.1).astype(np.float32)
    enc, dec = backend.init_encoder_state(batch), backend.init_decoder_state(batch)
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        codes, enc = backend.encode_step(pcm, enc)
        _, dec = backend.decode_step(codes, dec)
        if i >= 3:
            times.append(time.perf_counter() - t)
    m = backend.model
    x = torch.from_numpy(pcm).to(backend.device)
    es, ds = m.init_encoder_state(batch, backend.device), m.init_decoder_state(batch, backend.device)
    model_times = []
    with torch.inference_mode():
        for i in range(steps + 3):
            _sync(device)
            t = time.perf_counter()
            c, es = m.encode_step(x, es)
            _, ds = m.decode_step(c, ds)
            _sync(device)
            if i >= 3:
                model_times.append(time.perf_counter() - t)
    return SweepPoint(batch, float(np.median(times) * 1e3), float(np.median(model_times) * 1e3), steps)


def run(device: str, seconds: float, batches: tuple[int, ...], steps: int, budget: float) -> GpuCheck:
    import torch
    from llmcodec.bench.onnx_parity import agreement, run_staggered
    from llmcodec.speech import speech_clip
    from llmcodec.stream.buffer import encode_all
    from llmcodec.stream.torch_backend import TorchBackend

    t0 = time.monotonic()
    backend = TorchBackend(device=device)
    name = torch.cuda.get_device_name(backend.device) if device.startswith("cuda") else platform.processor() or "cpu"
    out = GpuCheck(device, name, torch.__version__, seconds)
    wav = speech_clip(seconds)
    ref = encode_all(backend, wav)
    blk = backend.facts.block_size
    starts = [0, 3, 7, 12]
    wavs = [wav[s * blk // 2:] for s in range(len(starts))]  # four different offsets of the speech
    codes, _ = run_staggered(backend, wavs, starts)
    for w, c in zip(wavs, codes):
        want = encode_all(backend, w)
        out.staggered_exact.append(all(np.array_equal(a, b) for a, b in zip(c, want)))
    cpu = ref if device == "cpu" else encode_all(TorchBackend(device="cpu"), wav)
    out.cpu_agreement = agreement(cpu, ref)[0]
    for b in batches:
        if time.monotonic() - t0 > budget:
            break
        out.sweep.append(_sweep_point(backend, b, steps, device))
    out.wall_s = time.monotonic() - t0
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--out", default="results/gpu_check", help="results folder (default results/gpu_check)")
    p.add_argument("--quick", action="store_true", help="5 s of speech, batches 1 and 4, 5 steps (CI)")
    p.add_argument("--budget", type=float, default=360.0, help="stop the sweep after this many s (default 360)")
    return p


def main(argv: list[str] | None = None) -> GpuCheck:
    import sys
    import torch
    args = get_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    seconds, batches, steps = (5.0, (1, 4), 5) if args.quick else (30.0, (1, 2, 4, 8, 16, 32, 64, 128), 30)
    res = run(device, seconds, batches, steps, args.budget)
    res.command = "python -m llmcodec.bench.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = asdict(res)
    d["sweep"] = [{**asdict(p), "per_stream_ms": p.per_stream_ms} for p in res.sweep]
    (out / "results.json").write_text(json.dumps(d, indent=1) + "\n")
    (out / "results.md").write_text(res.markdown())
    print(res.markdown())
    return res


if __name__ == "__main__":
    main()
