"""Two models side by side: per-block encode and decode step times, interleaved in one run.

    .venv/bin/python -m llmcodec.bench.model_compare --model B [--against A] [--batches 1,16]

``A`` (default: the bundled model) and ``B`` each run on torch eager and on ONNX Runtime
fp32 (a cached export), block by block in a random order (``stats.interleave``), so the
load of other processes falls on both alike. The "x torch" column is the paired median
ratio against ``A`` on torch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .report import step_table
from .step_latency import StepSettings, ensure_export, load_backend, measure_config, speech_blocks


def run(model: str, against: str | None, batches: tuple[int, ...], threads: int = 1,
        backends: tuple[str, ...] = ("torch", "onnx-fp32")) -> list:
    from llmcodec.checkpoint import load_model
    names = {"A": against, "B": model}
    loaded = {}
    for tag, directory in names.items():
        exp, reason = ensure_export(directory) if "onnx-fp32" in backends else (None, "not requested")
        for b in backends:
            backend = load_backend(b, directory, exp, threads, reason)
            if not hasattr(backend, "facts"):
                raise SystemExit(f"{tag} {b}: {backend.reason}")
            # the reference of "x torch" is A on torch
            loaded["torch" if (tag, b) == ("A", "torch") else f"{tag}:{b}"] = backend
    facts = {k: b.facts for k, b in loaded.items()}
    if len({(f.block_size, f.sample_rate) for f in facts.values()}) != 1:
        raise SystemExit("the two models have different blocks; nothing to compare per block")
    f = next(iter(facts.values()))
    blocks = speech_blocks(f.block_size, f.sample_rate)
    s = StepSettings(batches=batches, threads=(threads,))
    out = []
    for batch in batches:
        out += measure_config(loaded, batch, threads, s, blocks)
    for tag, directory in names.items():
        cfg = load_model(directory).model.cfg
        print(f"{tag}: {directory or 'bundled default'} ({cfg.name}, decoder {cfg.decoder})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.model_compare", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory B")
    p.add_argument("--against", help="model directory A (default: the bundled model)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the medians here")
    args = p.parse_args(argv)
    batches = tuple(int(x) for x in args.batches.split(","))
    results = run(args.model, args.against, batches, args.threads)
    print("(torch = A on torch eager; A:onnx-fp32, B:torch, B:onnx-fp32)")
    print(step_table(results))
    if args.json:
        rows = [{"backend": r.backend, "batch": r.batch, "threads": r.threads, "encode_p50_ms": r.encode.p50 * 1e3,
                 "decode_p50_ms": r.decode.p50 * 1e3, "both_p50_ms": r.both.p50 * 1e3,
                 "both_p99_ms": r.both.p99 * 1e3, "x_torch": r.vs_reference, "blocks": r.both.n}
                for r in results]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"A": args.against or "default", "B": args.model,
                                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
