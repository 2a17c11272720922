"""``llmcodec export``: a model directory -> ONNX step graphs (+ int8, + TensorRT engines)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="export directory to write")
    p.add_argument("--int8", action="store_true",
                   help="also write dynamically quantized int8 CPU graphs (*.int8.onnx)")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build TensorRT engines (needs the tensorrt wheel and a GPU)")
    p.add_argument("--fp16", action="store_true", help="TensorRT engines in float16")
    p.add_argument("--max-batch", type=int, default=64, metavar="B",
                   help="largest batch of the TensorRT profile (default 64)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; 17 or newer)")


def int8_agreement(export_dir: Path, seconds: float = 10.0) -> str:
    """One line: how many of the int8 graphs' tokens equal the float32 graphs' on
    ``seconds`` of real speech, on this CPU (int8 is opt-in: it is not exact)."""
    from llmcodec.bench.onnx_parity import agreement
    from llmcodec.export.int8 import this_cpu
    from llmcodec.speech import speech_clip
    from llmcodec.stream.buffer import encode_all
    from llmcodec.stream.onnx_backend import OnnxBackend
    try:
        wav = speech_clip(seconds)
    except FileNotFoundError as e:
        return f"int8 agreement not measured: {e}"
    ref = encode_all(OnnxBackend(export_dir, threads=1), wav)
    total, per = agreement(ref, encode_all(OnnxBackend(export_dir, variant="int8", threads=1), wav))
    return (f"int8 tokens equal to float32 on {seconds:.0f} s of real speech on this "
            f"{this_cpu().describe()}: {100 * total:.1f}% (levels "
            f"{', '.join(f'{100 * p:.1f}%' for p in per)}); int8 is opt-in, float32 is exact")


def run(args: argparse.Namespace) -> int:
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.fp16 and not args.tensorrt:
        raise ValueError("--fp16 applies to TensorRT engines: add --tensorrt")
    if args.tensorrt:  # fail before the slow export, not after
        from llmcodec.export.tensorrt_build import _trt
        try:
            _trt()
        except ImportError as e:
            raise ValueError(str(e)) from None
    import logging
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    from llmcodec.export.onnx_export import DEFAULT_OPSET, export_model
    result = export_model(args.model, args.output, int8=args.int8,
                          opset=args.opset or DEFAULT_OPSET)
    for key, path in result.files.items():
        size = path.stat().st_size / 2 ** 20
        how = result.exporters.get(key, "onnxruntime.quantization")
        print(f"{key:14s} {path}  {size:6.1f} MiB  {result.seconds.get(key, 0):5.1f} s  ({how})")
    if args.int8:
        print(int8_agreement(Path(args.output)))
    if args.tensorrt:
        from llmcodec.export.tensorrt_build import build_engines
        for b in build_engines(args.output, max_batch=args.max_batch, fp16=args.fp16):
            print(f"{b.graph + ' engine':14s} {b.path}  profile {b.profile}  "
                  f"{'cached' if b.cached else f'{b.seconds:.1f} s'}")
    print(f"export directory: {Path(args.output)} (use --backend onnx --model {args.output})")
    return 0
