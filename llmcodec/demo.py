"""``make demo``: the main job on the bundled default model.

Starts the streaming server on loopback (``llmcodec serve``'s code), streams
12 s of real recorded speech to it in 20 ms chunks paced in real time, as a
microphone would, prints each block's LLM tokens as they arrive, checks them
against offline encoding, decodes the tokens back to audio and prints the
per-block latency. Writes ``demo_out/tokens.json``, ``input.wav`` and
``roundtrip.wav``.
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np

from llmcodec.stream.backends import BACKENDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--chunk-ms", type=float, default=20.0)
    p.add_argument("--fast", action="store_true", help="do not pace in real time")
    p.add_argument("--model", default=None, help="model or export directory (default: bundled)")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--out", default="demo_out")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from llmcodec.audio import save_audio
    from llmcodec.speech import speech_clip
    from llmcodec.tokens_io import TokenFile
    from llmcodec.stream.backends import make_backend
    from llmcodec.stream.buffer import decode_all, encode_all
    from llmcodec.stream.client import stream_pcm
    from llmcodec.stream.server_config import ServerConfig
    from llmcodec.stream.server_thread import ServerThread

    backend = make_backend(args.backend, args.model)
    facts, vocab = backend.facts, backend.vocab
    print(f"model {facts.name} ({args.backend}), LLM vocabulary {facts.llm_name}: "
          f"{facts.block_size} samples = {facts.block_seconds * 1000:.0f} ms per block, "
          f"tokens/block {facts.tokens_per_block}, {facts.tokens_per_second:.2f} tokens/s")
    wav = speech_clip(args.seconds, facts.sample_rate)

    def show(b) -> None:
        if b.text:
            print(f"  block {b.seq:3d}  L1{b.text[0]:<14s} L2 {b.text[1]:<28s} L3 {b.text[2]}  "
                  f"({b.timing.server_ms:.1f} ms)", flush=True)
        else:
            print(f"  block {b.seq:3d}  {b.codes}", flush=True)

    with ServerThread(backend, ServerConfig(port=0)) as server:
        print(f"server on {server.url}; streaming {args.seconds:.1f} s of real speech in "
              f"{args.chunk_ms:.0f} ms chunks{'' if args.fast else ', paced in real time'}:")
        result = asyncio.run(stream_pcm(
            server.url, wav, facts.sample_rate, chunk=int(facts.sample_rate * args.chunk_ms / 1000),
            realtime=not args.fast, returns=("tokens", "text", "audio"), on_block=show))
    codes = result.codes()
    offline = encode_all(backend, wav)
    same = all(np.array_equal(a, b) for a, b in zip(codes, offline))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    TokenFile(facts.name, facts.llm_name, facts.sample_rate, int(wav.size), facts.block_size,
              facts.tokens_per_second, tuple(tuple(int(x) for x in c) for c in codes),
              facts.sample_rate).save(out / "tokens.json", vocab)
    audio = result.audio()[:wav.size]
    save_audio(out / "roundtrip.wav", audio, facts.sample_rate)
    save_audio(out / "input.wav", wav, facts.sample_rate)
    print(f"{len(result.blocks)} blocks, {sum(c.size for c in codes)} tokens; "
          f"streamed tokens {'==' if same else '!='} offline tokens; "
          f"streamed audio vs offline decode max diff "
          f"{np.abs(audio - decode_all(backend, offline)[:wav.size]).max():.1e}")
    print(f"latency per block, server (last sample in -> tokens out): {result.latency('server').format()}")
    print(f"latency per block, on the wire (sent -> tokens received):  {result.latency('client').format()}")
    print(f"wrote {out}/tokens.json, {out}/input.wav, {out}/roundtrip.wav")
    if args.model is None:
        print(f"model: {default_model_note()}")
    return 0 if same else 1


def default_model_note() -> str:
    """One line on the bundled default's training (from its training.json) and where its quality is."""
    import json
    d = Path(__file__).parent / "assets" / "default"
    try:
        t = json.loads((d / "training.json").read_text())
    except (OSError, ValueError):
        return "the bundled default is UNTRAINED (seeded); its audio is not speech. See README."
    return (f"the bundled default was trained {t.get('steps')} steps ({t.get('hours')} h on CPU); "
            f"held-out quality in {d / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
