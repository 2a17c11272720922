"""encode / decode / roundtrip / info."""
from __future__ import annotations

import argparse
import json

import numpy as np

from llmcodec.stream.backends import BACKENDS


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "info":
        p.add_argument("--model", help="model directory (default: the bundled model)")
        p.add_argument("--backend", default="torch", choices=BACKENDS)
        return
    p.add_argument("input", help={"decode": "token JSON file"}.get(name, "audio file (any rate, any channels)"))
    p.add_argument("-o", "--output", required=True,
                   help="token JSON file" if name == "encode" else "audio file to write (16 kHz)")
    p.add_argument("--chunk", type=int, default=None,
                   help="stream in chunks of N samples (decode: N level-3 tokens) instead of offline")
    p.add_argument("--model", help="model directory or export directory (default: the bundled model)")
    p.add_argument("--backend", default="torch", choices=BACKENDS)


def _backend(args: argparse.Namespace):
    from llmcodec.stream.backends import make_backend
    return make_backend(args.backend, args.model)


def _chunks(n: int, chunk: int):
    if chunk < 1:
        raise ValueError(f"--chunk must be a positive number of samples, got {chunk}")
    for i in range(0, n, chunk):
        yield slice(i, min(i + chunk, n))


def encode_file(backend, path: str, chunk: int | None):
    from llmcodec.audio import load_audio
    from llmcodec.stream.buffer import StreamingEncoder, encode_all
    facts = backend.facts
    wav, sr = load_audio(path, facts.sample_rate)
    if chunk is None:
        codes = encode_all(backend, wav)
    else:
        enc = StreamingEncoder(backend)
        blocks = []
        for s in _chunks(wav.size, chunk):
            blocks += enc.push(wav[s])
        blocks += enc.flush()
        codes = [np.concatenate([b.codes[l] for b in blocks]) for l in range(len(facts.tokens_per_block))]
    return wav, sr, codes


def decode_codes(backend, codes: list[np.ndarray], chunk: int | None) -> np.ndarray:
    from llmcodec.stream.buffer import StreamingDecoder, decode_all
    if chunk is None:
        return decode_all(backend, codes)
    if chunk < 1:
        raise ValueError(f"--chunk must be a positive number of tokens, got {chunk}")
    dec = StreamingDecoder(backend)
    strides = backend.facts.vq_strides
    n_frames = codes[-1].size * strides[-1]
    out = []
    for f in range(0, n_frames, chunk):  # frames [f, f + chunk): each level's share
        part = [c[f // s: (f + chunk) // s] for c, s in zip(codes, strides)]
        out += dec.push(part)
    if dec.pending:
        raise ValueError("the token file ends with an incomplete block")
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def run(args: argparse.Namespace) -> int:
    from llmcodec.tokens_io import TokenFile
    backend = _backend(args)
    facts, vocab = backend.facts, backend.vocab
    if args.command == "info":
        print(json.dumps({**facts.__dict__, "tokens_per_second": facts.tokens_per_second,
                          "backend": backend.name}, indent=2))
        return 0
    if args.command in ("encode", "roundtrip"):
        wav, sr, codes = encode_file(backend, args.input, args.chunk)
        tf = TokenFile(facts.name, facts.llm_name, facts.sample_rate, int(wav.size), facts.block_size,
                       facts.tokens_per_second, tuple(tuple(int(i) for i in c) for c in codes), sr)
        if args.command == "encode":
            tf.save(args.output, vocab)
            print(f"{args.input}: {wav.size / facts.sample_rate:.2f} s -> "
                  f"{sum(len(c) for c in codes)} tokens ({facts.tokens_per_second:.2f}/s) -> {args.output}")
            return 0
    else:
        tf = TokenFile.load(args.input, vocab)
        if tf.sample_rate != facts.sample_rate:
            raise ValueError(f"{args.input}: sample_rate {tf.sample_rate} does not match the model's {facts.sample_rate}")
        codes = tf.arrays()
    from llmcodec.audio import save_audio
    from llmcodec.stream.backend import check_codes
    check_codes(facts, [c[None, :] for c in codes], blocks=None)
    wav_out = decode_codes(backend, codes, args.chunk)[:tf.num_samples]
    save_audio(args.output, wav_out, facts.sample_rate)
    print(f"{args.input} -> {wav_out.size / facts.sample_rate:.2f} s -> {args.output}")
    return 0
