"""``make demo``: the main job on the bundled default model.

Streams 12 s of real recorded speech through the streaming encoder in 20 ms
chunks (as a microphone would deliver it), prints each block's LLM tokens as
they come out, then decodes the tokens back to audio. Writes
``demo_out/tokens.json`` and ``demo_out/roundtrip.wav``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--chunk-ms", type=float, default=20.0)
    p.add_argument("--model", default=None, help="model or export directory (default: bundled)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "tensorrt"])
    p.add_argument("--out", default="demo_out")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from llmcodec.audio import save_audio
    from llmcodec.speech import speech_clip
    from llmcodec.tokens_io import TokenFile
    from stream.backends import make_backend
    from stream.buffer import StreamingDecoder, StreamingEncoder

    backend = make_backend(args.backend, args.model)
    facts, vocab = backend.facts, getattr(backend, "vocab", None)
    print(f"model {facts.name} ({args.backend}), LLM vocabulary {facts.llm_name}: "
          f"{facts.block_size} samples = {facts.block_seconds * 1000:.0f} ms per block, "
          f"tokens/block {facts.tokens_per_block}, {facts.tokens_per_second:.2f} tokens/s")
    wav = speech_clip(args.seconds, facts.sample_rate)
    chunk = int(facts.sample_rate * args.chunk_ms / 1000)
    enc, dec = StreamingEncoder(backend), StreamingDecoder(backend)
    step_ms, blocks, audio = [], [], []
    print(f"streaming {args.seconds:.1f} s of real speech in {args.chunk_ms:.0f} ms chunks:")
    for i in range(0, wav.size + chunk, chunk):
        t0 = time.perf_counter()
        new = enc.push(wav[i:i + chunk]) if i < wav.size else enc.flush()
        if new:
            step_ms.append((time.perf_counter() - t0) * 1000 / len(new))
        for b in new:
            blocks.append(b)
            audio += dec.push(list(b.codes))
            if vocab is not None:
                words = [vocab.codes_to_text(l, b.codes[l]) for l in range(3)]
                print(f"  block {b.seq:3d}  L1{words[0]:<14s} L2 {words[1]:<28s} L3 {words[2]}")
            else:
                print(f"  block {b.seq:3d}  " + "  ".join(str(list(c)) for c in b.codes))
    codes = [np.concatenate([b.codes[l] for b in blocks]) for l in range(3)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    TokenFile(facts.name, facts.llm_name, facts.sample_rate, int(wav.size), facts.block_size,
              facts.tokens_per_second, tuple(tuple(int(x) for x in c) for c in codes),
              facts.sample_rate).save(out / "tokens.json", vocab)
    save_audio(out / "roundtrip.wav", np.concatenate(audio)[:wav.size], facts.sample_rate)
    save_audio(out / "input.wav", wav, facts.sample_rate)
    ms = np.array(step_ms)
    print(f"{len(blocks)} blocks, {sum(c.size for c in codes)} tokens; encode step per block "
          f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms "
          f"(block = {facts.block_seconds * 1000:.0f} ms, real-time factor {np.median(ms) / (facts.block_seconds * 1000):.3f})")
    print(f"wrote {out}/tokens.json, {out}/input.wav, {out}/roundtrip.wav")
    card = Path(__file__).parent / "assets" / "default" / "MODEL_CARD.md"
    if args.model is None and card.exists() and "UNTRAINED" in card.read_text():
        print("note: the bundled default model is UNTRAINED (seeded); its audio is not yet speech. See README.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
