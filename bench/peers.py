"""Our codec beside its peers, measured interleaved in one process.

    .venv/bin/python -m llmcodec.bench.peers [--quick] [--seconds 10]

Contenders, all on one thread:

* ``ours-small``: the shipped model (torch eager), the reference of every ratio;
* ``ours-base``: the ``base`` preset (the reference's size made causal), seeded random weights;
* ``ours-small onnx-int8`` / ``onnx-fp32`` when an export directory is given;
* ``opus``: libopus through opuslib, 16 kHz mono VOIP at 6 kbps, 20 ms frames;
* ``mimi``: transformers ``MimiModel(MimiConfig())``, default config, seeded random weights
  (the arithmetic is what matters), 24 kHz, 80 ms frames.

Two measurements of encode + decode compute per second of audio (real-time factor):

* offline: each contender codes the whole clip once per round, rounds in random order;
* streaming: the clip is cut into 240 ms chunks (a whole number of 20, 80 and 120 ms
  frames); each round every contender codes the next chunk frame by frame, its
  streaming state carried, in a random order.

Ratios are the median over rounds of (peer time / ours-small time) in the same round.
"""
from __future__ import annotations

import argparse
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .stats import Summary, interleave, paired_ratio, summarize, timed

CHUNK_SECONDS = 0.24  # lcm of 20 ms (Opus), 80 ms (Mimi), 120 ms (ours)
REFERENCE = "ours-small"


@dataclass(frozen=True)
class PeerSettings:
    seconds: float = 10.0  # clip length
    offline_rounds: int = 5
    warmup_chunks: int = 2
    opus_bitrate: int = 6000
    seed: int = 0


QUICK_PEERS = PeerSettings(seconds=2.4, offline_rounds=1, warmup_chunks=1)


@dataclass(frozen=True)
class PeerResult:
    """One codec: RTFs (compute seconds per audio second) and paired ratios against ours-small."""

    name: str
    sample_rate: int
    frame_seconds: float
    bitrate_bps: float  # measured (Opus) or nominal from codebook sizes (token codecs)
    algorithmic_latency: float  # seconds: frame + lookahead
    offline: Summary
    streaming: Summary
    offline_vs_ours: float | None
    streaming_vs_ours: float | None
    note: str = ""


@dataclass(frozen=True)
class PeerUnavailable:
    name: str
    reason: str


class Contender(Protocol):
    name: str
    sample_rate: int
    frame_size: int
    bitrate_bps: float
    algorithmic_latency: float
    note: str

    def offline(self, wav: np.ndarray) -> None: ...

    def reset(self) -> None: ...

    def stream(self, chunk: np.ndarray) -> None: ...


# ---- contenders -----------------------------------------------------------------------------
class Opus:
    """libopus (opuslib), mono VOIP; offline is the same 20 ms frame loop (Opus has no other)."""

    def __init__(self, bitrate: int = 6000, sample_rate: int = 16000):
        import opuslib
        self._opuslib = opuslib
        self.name, self.sample_rate, self.target = "opus", sample_rate, bitrate
        self.frame_size = sample_rate // 50
        self.bytes = 0
        self.coded_seconds = 0.0
        self.reset()
        self.algorithmic_latency = (self.frame_size + self.enc.lookahead) / sample_rate
        version = opuslib.api.info.get_version_string().decode()
        self.note = f"{version}, {bitrate // 1000} kbps VBR, complexity {self.enc.complexity}"

    @property
    def bitrate_bps(self) -> float:
        return 8 * self.bytes / self.coded_seconds if self.coded_seconds else float("nan")

    def reset(self) -> None:
        o = self._opuslib
        self.enc = o.Encoder(self.sample_rate, 1, o.APPLICATION_VOIP)
        self.enc.bitrate = self.target
        self.dec = o.Decoder(self.sample_rate, 1)

    def _frames(self, wav: np.ndarray) -> None:
        pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
        f = self.frame_size
        for i in range(0, pcm.size - f + 1, f):
            packet = self.enc.encode(pcm[i:i + f].tobytes(), f)
            self.dec.decode(packet, f)
            self.bytes += len(packet)
            self.coded_seconds += f / self.sample_rate

    def offline(self, wav: np.ndarray) -> None:
        self.reset()
        self._frames(wav)

    def stream(self, chunk: np.ndarray) -> None:
        self._frames(chunk)


class Mimi:
    """transformers' Mimi, default config, seeded random weights, on CPU."""

    def __init__(self, seed: int = 0):
        import torch
        from transformers import MimiConfig, MimiModel
        self._torch = torch
        cfg = MimiConfig()
        torch.manual_seed(seed)
        self.model = MimiModel(cfg).eval()
        self.name, self.sample_rate = "mimi", int(cfg.sampling_rate)
        self.frame_size = int(round(cfg.sampling_rate / cfg.frame_rate))
        self.bitrate_bps = cfg.frame_rate * cfg.num_quantizers * math.log2(cfg.codebook_size)
        self.algorithmic_latency = self.frame_size / self.sample_rate
        params = inspect.signature(self.model.encode).parameters
        self.streaming_api = "padding_cache" in params and "use_streaming" in params
        # The KV-cache argument and output names changed in transformers 5.24 (*_past_key_values -> *_cache).
        self._enc_cache = "encoder_cache" if "encoder_cache" in params else "encoder_past_key_values"
        dec_params = inspect.signature(self.model.decode).parameters
        self._dec_cache = "decoder_cache" if "decoder_cache" in dec_params else "decoder_past_key_values"
        self.note = (f"MimiConfig() random weights, {cfg.num_quantizers} codebooks, "
                     + ("encoder: use_streaming + padding_cache + KV cache; decoder: per-frame calls with "
                        "KV cache (its SEANet takes no conv cache in this transformers)"
                        if self.streaming_api else "per-frame calls (no streaming API in this transformers)"))
        self.reset()

    def reset(self) -> None:
        self._enc_kv = self._pad = self._dec_kv = None

    def offline(self, wav: np.ndarray) -> None:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, None]
            codes = self.model.encode(x).audio_codes
            self.model.decode(codes)

    def stream(self, chunk: np.ndarray) -> None:
        torch, f = self._torch, self.frame_size
        with torch.inference_mode():
            for i in range(0, chunk.size - f + 1, f):
                x = torch.from_numpy(np.ascontiguousarray(chunk[i:i + f], dtype=np.float32))[None, None]
                if self.streaming_api:
                    e = self.model.encode(x, padding_cache=self._pad, use_streaming=True,
                                          **{self._enc_cache: self._enc_kv})
                    self._enc_kv, self._pad = getattr(e, self._enc_cache), e.padding_cache
                else:
                    e = self.model.encode(x)
                d = self.model.decode(e.audio_codes, use_cache=True, **{self._dec_cache: self._dec_kv})
                self._dec_kv = getattr(d, self._dec_cache)


class Ours:
    """Our codec through any backend: offline and streaming are the same block steps."""

    def __init__(self, name: str, backend, note: str = ""):
        self.name, self.backend, self.note = name, backend, note
        f = backend.facts
        self.sample_rate, self.frame_size = f.sample_rate, f.block_size
        self.bitrate_bps = sum(n * math.log2(k) for n, k in zip(f.tokens_per_block, f.level_sizes)) \
            / f.block_seconds
        self.algorithmic_latency = f.block_seconds
        self.reset()

    def reset(self) -> None:
        self._enc = self.backend.init_encoder_state(1)
        self._dec = self.backend.init_decoder_state(1)

    def offline(self, wav: np.ndarray) -> None:
        from llmcodec.stream.buffer import decode_all, encode_all
        decode_all(self.backend, encode_all(self.backend, wav))

    def stream(self, chunk: np.ndarray) -> None:
        f = self.frame_size
        for i in range(0, chunk.size - f + 1, f):
            codes, self._enc = self.backend.encode_step(chunk[None, i:i + f], self._enc)
            _, self._dec = self.backend.decode_step(codes, self._dec)


def ours_base(seed: int = 0):
    """The ``base`` preset with seeded random weights and the bundled codebooks, torch eager."""
    from llmcodec.build_default import build
    from llmcodec.checkpoint import LoadedCodec
    from llmcodec.stream.torch_backend import TorchBackend
    return TorchBackend(LoadedCodec(build("base", seed).prepare_inference(), None, Path(".")))


def make_contenders(settings: PeerSettings, model_dir: str | Path | None = None,
                    export_dir: str | Path | None = None, include: tuple[str, ...] | None = None
                    ) -> tuple[list[Contender], list[PeerUnavailable]]:
    """Build every contender that can run here; the rest come back with their reason."""
    makers: dict[str, Callable[[], Contender]] = {
        "ours-small": lambda: Ours("ours-small", _torch_backend(model_dir), "shipped model, torch eager"),
        "ours-base": lambda: Ours("ours-base", ours_base(settings.seed), "base preset, random weights, torch eager"),
        "ours-small onnx-fp32": lambda: Ours("ours-small onnx-fp32", _onnx(export_dir, "fp32"),
                                             "ONNX Runtime CPU"),
        "ours-small onnx-int8": lambda: Ours("ours-small onnx-int8", _onnx(export_dir, "int8"),
                                             "ONNX Runtime CPU, dynamic int8"),
        "opus": lambda: Opus(settings.opus_bitrate),
        "mimi": lambda: Mimi(settings.seed),
    }
    out, missing = [], []
    for name, make in makers.items():
        if include is not None and name not in include:
            continue
        if name.startswith("ours-small onnx") and export_dir is None:
            missing.append(PeerUnavailable(name, "no export directory"))
            continue
        try:
            out.append(make())
        except Exception as e:  # noqa: BLE001 - a peer that cannot run here is reported
            missing.append(PeerUnavailable(name, f"{type(e).__name__}: {e}".splitlines()[0][:200]))
    return out, missing


def _torch_backend(model_dir):
    from llmcodec.checkpoint import load_model
    from llmcodec.stream.torch_backend import TorchBackend
    return TorchBackend(load_model(model_dir))


def _onnx(export_dir, variant: str):
    from llmcodec.stream.onnx_backend import OnnxBackend
    return OnnxBackend(export_dir, providers=["CPUExecutionProvider"], variant=variant, threads=1)


# ---- measurement ----------------------------------------------------------------------------
def clip_for(c: Contender, wav16: np.ndarray, sr: int = 16000) -> np.ndarray:
    if c.sample_rate == sr:
        return wav16
    import soxr
    return soxr.resample(wav16, sr, c.sample_rate).astype(np.float32)


def measure(contenders: list[Contender], wav16: np.ndarray, settings: PeerSettings,
            log: Callable[[str], None] = print) -> list[PeerResult]:
    """Offline and streaming RTFs of every contender, interleaved. wav16 float32 [T] at 16 kHz."""
    import torch
    torch.set_num_threads(1)
    seconds = wav16.size / 16000
    clips = {c.name: clip_for(c, wav16) for c in contenders}
    by_name = {c.name: c for c in contenders}
    log(f"peers: offline, {settings.offline_rounds} rounds of {seconds:.1f} s: {', '.join(by_name)}")
    offline = interleave({n: timed(lambda c=c: c.offline(clips[c.name])) for n, c in by_name.items()},
                         settings.offline_rounds, warmup=1, seed=settings.seed)
    for c in contenders:
        c.reset()
    chunks = wav16.size // int(round(CHUNK_SECONDS * 16000))
    if chunks <= settings.warmup_chunks:
        raise ValueError(f"a {seconds:.2f} s clip has {chunks} chunks of {CHUNK_SECONDS} s; "
                         f"need more than warmup_chunks={settings.warmup_chunks}")
    pos = {n: 0 for n in by_name}

    def chunk_task(c: Contender) -> Callable[[], float]:
        n = int(round(CHUNK_SECONDS * c.sample_rate))

        def run() -> float:
            x = clips[c.name][pos[c.name]:pos[c.name] + n]
            pos[c.name] += n
            return timed(lambda: c.stream(x))()
        return run

    log(f"peers: streaming, {chunks - settings.warmup_chunks} chunks of {CHUNK_SECONDS * 1e3:.0f} ms")
    streaming = interleave({n: chunk_task(c) for n, c in by_name.items()},
                           chunks - settings.warmup_chunks, warmup=settings.warmup_chunks, seed=settings.seed + 1)
    out = []
    for n, c in by_name.items():
        ref_ok = REFERENCE in by_name and n != REFERENCE
        out.append(PeerResult(
            n, c.sample_rate, c.frame_size / c.sample_rate, float(c.bitrate_bps), c.algorithmic_latency,
            summarize(offline[n]).scaled(1 / seconds), summarize(streaming[n]).scaled(1 / CHUNK_SECONDS),
            paired_ratio(offline[n], offline[REFERENCE]) if ref_ok else None,
            paired_ratio(streaming[n], streaming[REFERENCE]) if ref_ok else None,
            c.note))
    return out


def run(settings: PeerSettings = PeerSettings(), model_dir: str | Path | None = None,
        export_dir: str | Path | None = None, include: tuple[str, ...] | None = None,
        log: Callable[[str], None] = print) -> tuple[list[PeerResult], list[PeerUnavailable]]:
    from llmcodec.speech import speech_clip
    contenders, missing = make_contenders(settings, model_dir, export_dir, include)
    if not contenders:
        return [], missing
    return measure(contenders, speech_clip(settings.seconds), settings, log), missing


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.peers", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2.4 s clip, 1 offline round")
    p.add_argument("--seconds", type=float, help="clip length in seconds (default 10)")
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--export", help="export directory: adds ONNX Runtime rows")
    return p


def main(argv: list[str] | None = None) -> int:
    import dataclasses
    from .report import peers_table, unavailable_lines
    args = get_parser().parse_args(argv)
    s = QUICK_PEERS if args.quick else PeerSettings()
    if args.seconds is not None:
        s = dataclasses.replace(s, seconds=args.seconds)
    results, missing = run(s, args.model, args.export)
    print(peers_table(results))
    print("\n".join(unavailable_lines(missing)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
