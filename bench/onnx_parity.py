"""ONNX Runtime (float32 and int8) against PyTorch on real speech: tokens, audio, speed.

    .venv/bin/python -m llmcodec.bench.onnx_parity [--export DIR] [--seconds 30]

Prints, for the default model (exported to a temporary directory unless
``--export`` names one made with ``--int8``):

* offline token agreement per level and decoded-audio SNR against PyTorch
  (decoder alone on PyTorch's codes, and end to end on the backend's own codes);
* the streaming path with several chunk sizes;
* batches of 1, 3 and 8 streams that started at different blocks;
* the cosine margins (best minus second best) of PyTorch's choices, overall
  and where a backend chose differently;
* the median per-block step time at batch 1 on one thread of torch, ONNX fp32
  and ONNX int8, measured interleaved in one run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from llmcodec.stream.backend import Backend
from llmcodec.stream.slots import StatePool

CHUNKS = (160, 1000, 1920, 4801)
BATCHES = (1, 3, 8)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - test|^2); inf when identical."""
    n = min(ref.size, test.size)
    err = float(np.sum((ref[:n].astype(np.float64) - test[:n]) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref[:n].astype(np.float64) ** 2)) / err)


def agreement(ref: list[np.ndarray], test: list[np.ndarray]) -> tuple[float, list[float]]:
    """Fraction of identical tokens over all levels, and per level."""
    per = [float(np.mean(np.asarray(a) == np.asarray(b))) for a, b in zip(ref, test)]
    total = sum(int(np.sum(np.asarray(a) == np.asarray(b))) for a, b in zip(ref, test))
    return total / sum(np.asarray(a).size for a in ref), per


def run_staggered(backend: Backend, wavs: list[np.ndarray], starts: list[int], decode: bool = True
                  ) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """Encode and decode several streams in shared batches, stream ``i`` joining at block
    ``starts[i]`` with a zero state. wavs float32 [T_i] (zero-padded to whole blocks).
    Returns per-stream codes (per level) and decoded audio (from its own codes; empty
    arrays with ``decode=False``, which only encodes)."""
    blk, tpb = backend.facts.block_size, backend.facts.tokens_per_block
    blocks = [max(1, -(-w.size // blk)) for w in wavs]
    padded = [np.pad(w, (0, n * blk - w.size)).astype(np.float32) for w, n in zip(wavs, blocks)]
    enc_pool = StatePool(backend.init_encoder_state(1))  # the server's state rows (stream/slots.py)
    dec_pool = StatePool(backend.init_decoder_state(1))
    enc, dec = {}, {}  # stream -> slot
    codes: list[list[list[np.ndarray]]] = [[[] for _ in tpb] for _ in wavs]
    audio: list[list[np.ndarray]] = [[] for _ in wavs]
    for tick in range(max(s + n for s, n in zip(starts, blocks))):
        active = [i for i, (s, n) in enumerate(zip(starts, blocks)) if s <= tick < s + n]
        if not active:
            continue
        for i in active:
            if tick == starts[i]:
                enc[i], dec[i] = enc_pool.acquire(), dec_pool.acquire()
        pcm = np.stack([padded[i][(tick - starts[i]) * blk:(tick - starts[i] + 1) * blk] for i in active])
        es, ds = [enc[i] for i in active], [dec[i] for i in active]
        c, new = backend.encode_step(pcm, enc_pool.gather(es))
        enc_pool.scatter(es, new)
        y = None
        if decode:
            y, new = backend.decode_step(c, dec_pool.gather(ds))
            dec_pool.scatter(ds, new)
        for row, i in enumerate(active):
            for lvl in range(len(tpb)):
                codes[i][lvl].append(c[lvl][row])
            audio[i].append(y[row] if y is not None else np.zeros(0, np.float32))
    return ([[np.concatenate(l) for l in c] for c in codes], [np.concatenate(a) for a in audio])


def stream_chunks(backend: Backend, wav: np.ndarray, chunk: int, decode: bool = True
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode ``wav`` pushed in chunks of ``chunk`` samples, decode pushing one block's codes per
    level-3 token group of ``chunk // hop`` frames (at least 1; no audio with ``decode=False``)."""
    from llmcodec.stream.buffer import StreamingDecoder, StreamingEncoder
    enc = StreamingEncoder(backend)
    blocks = []
    for i in range(0, wav.size, chunk):
        blocks += enc.push(wav[i:i + chunk])
    blocks += enc.flush()
    codes = [np.concatenate([b.codes[l] for b in blocks]) for l in range(len(backend.facts.tokens_per_block))]
    if not decode:
        return codes, np.zeros(0, np.float32)
    dec, out = StreamingDecoder(backend), []
    frames = max(1, chunk // backend.facts.hop)
    strides = backend.facts.vq_strides
    for f in range(0, codes[-1].size * strides[-1], frames):
        out += dec.push([c[f // s:(f + frames) // s] for c, s in zip(codes, strides)])
    return codes, np.concatenate(out)


def torch_margins(model, wav: np.ndarray) -> list[np.ndarray]:
    """Per level, the cosine margin (best - second best) of each of PyTorch's choices."""
    import torch
    import torch.nn.functional as F
    blk = model.cfg.block_size
    n = -(-wav.size // blk)
    x = torch.from_numpy(np.pad(wav, (0, n * blk - wav.size)).astype(np.float32))
    state = dict(model.init_encoder_state(1).tensors)
    out: list[list[np.ndarray]] = [[] for _ in model.cfg.vq_strides]
    with torch.inference_mode():
        for i in range(n):
            z, state = model.encoder.step(x[None, None, i * blk:(i + 1) * blk], state)
            residual = z
            for lvl, q in enumerate(model.quantizer.quantizers):
                pooled = F.avg_pool1d(residual, q.stride) if q.stride > 1 else residual
                zz = q.in_proj(pooled) if q.in_proj is not None else pooled
                sims = F.normalize(zz.transpose(1, 2), dim=-1) @ q.table_unit.t()
                top = sims.topk(2, dim=-1).values[0]
                out[lvl].append((top[:, 0] - top[:, 1]).numpy())
                _, zq, _, _ = q(residual)
                residual = residual - zq
    return [np.concatenate(o) for o in out]


def step_times(backends: dict[str, Backend], wav: np.ndarray, blocks: int
               ) -> dict[str, dict[str, float]]:
    """Median encode and decode step times (ms) at batch 1, the backends interleaved block by
    block: wall clock, and the calling thread's CPU time (robust on a shared machine; valid
    for one intra-op thread, where every backend computes on the calling thread)."""
    blk = next(iter(backends.values())).facts.block_size
    st = {k: [b.init_encoder_state(1), b.init_decoder_state(1)] for k, b in backends.items()}
    rec: dict[str, dict[str, list[float]]] = {k: {"enc": [], "dec": [], "enc_cpu": [], "dec_cpu": []}
                                              for k in backends}
    n = wav.size // blk
    for i in range(blocks + 5):
        x = wav[None, (i % n) * blk:(i % n + 1) * blk]
        for k, b in backends.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            c, st[k][0] = b.encode_step(x, st[k][0])
            w1, c1 = time.perf_counter(), time.thread_time()
            _, st[k][1] = b.decode_step(c, st[k][1])
            w2, c2 = time.perf_counter(), time.thread_time()
            if i >= 5:  # warm-up
                for key, v in (("enc", w1 - w0), ("dec", w2 - w1), ("enc_cpu", c1 - c0), ("dec_cpu", c2 - c1)):
                    rec[k][key].append(v)
    return {k: {key: float(np.median(v)) * 1e3 for key, v in r.items()} for k, r in rec.items()}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export", help="export directory with int8 graphs (default: export now)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--blocks", type=int, default=150, help="timed blocks per backend")
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from llmcodec.speech import speech_clip
    from llmcodec.stream.backends import make_backend
    from llmcodec.stream.buffer import decode_all, encode_all
    from llmcodec.stream.onnx_backend import OnnxBackend

    tb = make_backend("torch")
    tmp = None
    if args.export is None:
        from llmcodec.export.onnx_export import export_model
        tmp = tempfile.TemporaryDirectory(prefix="llmcodec-export-")
        t0 = time.perf_counter()
        export_model(tb.loaded, tmp.name, int8=True)
        print(f"export (encoder, decoder, quantizer, int8): {time.perf_counter() - t0:.1f} s")
    export_dir = Path(args.export or tmp.name)
    backends: dict[str, Backend] = {
        "torch": tb,
        "onnx fp32": OnnxBackend(export_dir, threads=args.threads),
        "onnx int8": OnnxBackend(export_dir, variant="int8", threads=args.threads),
    }
    print(f"model {tb.facts.name}, providers {backends['onnx fp32'].providers}, threads {args.threads}")
    wav = speech_clip(args.seconds)
    ref = encode_all(tb, wav)
    ref_audio = decode_all(tb, ref)
    n_tok = sum(c.size for c in ref)
    print(f"\n{args.seconds:.0f} s of real speech, {n_tok} tokens per backend")
    margins = torch_margins(tb.model, wav)
    allm = np.concatenate(margins)
    print(f"torch cosine margins (best - 2nd): min {allm.min():.2e}, 1st pct {np.percentile(allm, 1):.2e}, "
          f"median {np.median(allm):.2e}; below 1e-4: {int((allm < 1e-4).sum())}, below 1e-3: "
          f"{int((allm < 1e-3).sum())} of {allm.size}")
    for name in ("onnx fp32", "onnx int8"):
        b = backends[name]
        codes = encode_all(b, wav)
        total, per = agreement(ref, codes)
        dec_same = decode_all(b, ref)
        dec_own = decode_all(b, codes)
        diff = np.concatenate([np.asarray(a) != np.asarray(c) for a, c in zip(ref, codes)])
        flip = f"; margins where they differ: max {allm[diff].max():.2e}, median {np.median(allm[diff]):.2e}" \
            if diff.any() else ""
        print(f"  {name:9s} offline: tokens {100 * total:.3f}% identical (levels "
              f"{', '.join(f'{100 * p:.2f}%' for p in per)}){flip}")
        print(f"  {name:9s} offline: SNR vs torch {snr_db(ref_audio, dec_same):.1f} dB (decoder on torch's codes), "
              f"{snr_db(ref_audio, dec_own):.1f} dB (end to end)")
    print("\nstreaming path (onnx vs torch offline):")
    for name in ("onnx fp32", "onnx int8"):
        for chunk in CHUNKS:
            codes, audio = stream_chunks(backends[name], wav, chunk)
            total, _ = agreement(ref, codes)
            print(f"  {name:9s} chunk {chunk:5d} samples: tokens {100 * total:.3f}%, "
                  f"SNR {snr_db(ref_audio, audio):.1f} dB")
    print("\nbatches of streams starting at different blocks (each stream vs its own torch run; "
          "'alone': vs the same backend at batch 1):")
    seg = max(tb.facts.block_size, wav.size // 4)
    for batch in BATCHES:
        wavs = [wav[(i * 7919 * 5) % (wav.size - seg):][:seg] for i in range(batch)]
        starts = [3 * i for i in range(batch)]
        refs = [encode_all(tb, w) for w in wavs]
        ref_audios = [decode_all(tb, rc) for rc in refs]
        for name in ("torch", "onnx fp32", "onnx int8"):
            codes, audio = run_staggered(backends[name], wavs, starts)
            alone = [encode_all(backends[name], w) for w in wavs]
            n = sum(x.size for rc in refs for x in rc)
            agree = sum(int(np.sum(x == y)) for rc, c in zip(refs, codes) for x, y in zip(rc, c))
            same = sum(int(np.sum(x == y)) for al, c in zip(alone, codes) for x, y in zip(al, c))
            snr = min(snr_db(ra, a) for ra, a in zip(ref_audios, audio))
            print(f"  {name:9s} batch {batch}: tokens {100 * agree / n:.3f}% (alone {100 * same / n:.3f}%), "
                  f"min SNR {snr:.1f} dB")
    print(f"\nper-block step time, batch 1, {args.threads} thread(s), median of {args.blocks} interleaved blocks:")
    times = step_times(backends, wav, args.blocks)
    for k, t in times.items():
        wall, cpu = t["enc"] + t["dec"], t["enc_cpu"] + t["dec_cpu"]
        print(f"  {k:9s}: wall encode {t['enc']:6.2f} + decode {t['dec']:6.2f} = {wall:6.2f} ms "
              f"({wall / (1000 * tb.facts.block_seconds):.3f} of real time); thread CPU "
              f"{t['enc_cpu']:6.2f} + {t['dec_cpu']:6.2f} = {cpu:6.2f} ms")
    for kind, suffix in (("wall", ""), ("thread CPU", "_cpu")):
        tot = {k: t["enc" + suffix] + t["dec" + suffix] for k, t in times.items()}
        print(f"  {kind}: int8 / fp32 {tot['onnx int8'] / tot['onnx fp32']:.2f} "
              f"(int8 speed-up {tot['onnx fp32'] / tot['onnx int8']:.2f}x); "
              f"torch / onnx fp32 {tot['torch'] / tot['onnx fp32']:.2f}x")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"  (1-minute load average at the end: {load})")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
