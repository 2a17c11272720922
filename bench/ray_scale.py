"""Past one machine, measured on this one: corpus tokenization (here, Ray 1 and 2 workers) and
the streams Ray Serve holds with 1 and 2 replicas, side by side.

``python -m llmcodec.bench.ray_scale [--minutes 30] [--streams 4 8 12 16] [--json FILE]``

Tokenization: a corpus of real speech files (llmcodec.speech, 20 s each, at 8, 16 and
44.1 kHz) tokenized with the ONNX backend in this process, then on a local Ray instance with
1 and 2 encoder actors; audio-hours per hour over the whole job (start-up included) and after
the first file (steady state). Serving: ``llmcodec.bench.server_load`` against the Serve
application with 1 and then 2 replicas (one step worker each), every stream's tokens checked.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenizeRun:
    mode: str
    workers: int
    files: int
    audio_hours: float
    seconds: float
    first_row_seconds: float

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_hours * 3600 / self.seconds

    @property
    def steady_audio_hours_per_hour(self) -> float:
        return self.audio_hours * 3600 / max(self.seconds - self.first_row_seconds, 1e-9)


def make_corpus(d: Path, minutes: float) -> Path:
    import soundfile as sf
    import soxr

    from llmcodec.speech import speech_clip
    d.mkdir(parents=True, exist_ok=True)
    speech = {lang: speech_clip(120.0, lang=lang) for lang in ("en", "fr", "es")}
    n = max(1, int(minutes * 3))
    for i in range(n):
        src = speech[("en", "fr", "es")[i % 3]]
        start = (i * 7 * 16000) % (src.size - 20 * 16000)
        clip = src[start:start + 20 * 16000]
        rate = (8000, 16000, 44100)[i % 3]
        x = clip if rate == 16000 else soxr.resample(clip, 16000, rate).astype(np.float32)
        sf.write(str(d / f"f{i:04d}_{rate}.wav"), x, rate, subtype="PCM_16")
    return d


def tokenize_runs(corpus: Path, tmp: Path) -> list[TokenizeRun]:
    from llmcodec.corpus.job import tokenize
    runs = []
    for mode, workers in (("here", 1), ("ray", 1), ("ray", 2)):
        out = tmp / f"out_{mode}_{workers}"
        r = tokenize(str(corpus), out, backend="onnx", use_ray=mode == "ray", workers=workers, log=lambda m: None)
        runs.append(TokenizeRun(mode, workers, r.tokenized, r.audio_seconds / 3600, r.seconds, r.first_row_seconds))
        print(f"tokenize {mode} x{workers}: {r.tokenized} files, {r.audio_seconds / 3600:.3f} h in {r.seconds:.1f} s "
              f"(first row after {r.first_row_seconds:.1f} s): {runs[-1].audio_hours_per_hour:.0f} audio-h/h "
              f"overall, {runs[-1].steady_audio_hours_per_hour:.0f} after the first file", flush=True)
    return runs


def serve_runs(streams: list[int], seconds: float, chunk_ms: float = 20.0, port: int = 8799) -> dict:
    import ray
    from ray import serve

    from llmcodec.bench import server_load
    from llmcodec.export.cache import resolve_model
    from llmcodec.stream.ray_serve import APP_NAME, PROXY_ENV, build_app
    os.environ.update(PROXY_ENV)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    export = resolve_model("onnx", None)
    out = {}
    for replicas in (1, 2):
        serve.run(build_app({"replicas": replicas, "backend": "onnx", "model": export}), name=APP_NAME,
                  route_prefix="/")
        time.sleep(3)
        res = server_load.main(["--url", f"ws://127.0.0.1:{port}", "--check-exact", "--backend", "onnx", "--model", export,
                                "--streams", *map(str, streams), "--seconds", str(seconds),
                                "--chunk-ms", str(chunk_ms)])
        out[replicas] = dataclasses.asdict(res) if dataclasses.is_dataclass(res) else res
        serve.delete(APP_NAME)
        time.sleep(2)
    serve.shutdown()
    ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmcodec.bench.ray_scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="audio in the tokenize corpus (default 30)")
    ap.add_argument("--streams", type=int, nargs="*", default=[4, 8, 12, 16], help="N for the Serve load runs")
    ap.add_argument("--seconds", type=float, default=8.0, help="speech per stream in the Serve runs (default 8)")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="audio per client message in the Serve runs")
    ap.add_argument("--skip-tokenize", action="store_true")
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    result: dict = {"machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if not args.skip_tokenize:
            corpus = make_corpus(tmp / "corpus", args.minutes)
            runs = tokenize_runs(corpus, tmp)
            result["tokenize"] = [{**dataclasses.asdict(r), "audio_hours_per_hour": r.audio_hours_per_hour,
                                   "steady_audio_hours_per_hour": r.steady_audio_hours_per_hour} for r in runs]
        if not args.skip_serve:
            result["serve"] = serve_runs(args.streams, args.seconds, args.chunk_ms)
            result["serve_chunk_ms"] = args.chunk_ms
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
