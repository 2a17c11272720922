"""How often two models give the same token, per level, on real recordings.

    .venv/bin/python -m llmcodec.bench.token_agreement --model B --against A --data DIR [--limit 40]

For a distilled encoder (``TrainConfig.teacher``) behind its teacher's quantizer: the fraction of
positions where B's code equals A's, per level, over ``--limit`` files spread evenly over the
sorted ``*.wav`` files of ``--data`` (offline encoding with torch; the same steps as streaming).

``--swap`` also says what each level's disagreement costs: every mix of the two models' codes
(B's at some levels, A's at the others) is decoded by A and scored by STOI and PESQ-WB against
the recording, so a student sees which of its levels lose the most.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Agreement:
    files: int
    seconds: float
    positions: tuple[int, ...]  # per level
    equal: tuple[float, ...]  # per level: fraction of positions with the same code
    # --swap: (levels with B's codes, 1-based; mean STOI; mean PESQ-WB) of A's decoding of each mix
    swaps: tuple[tuple[tuple[int, ...], float, float], ...] = ()

    def table(self, a: str, b: str) -> str:
        rows = [f"{b} against {a}: {self.files} files, {self.seconds:.0f} s",
                "| level | positions | same code |", "|---|---|---|"]
        rows += [f"| {i + 1} | {n} | {e:.1%} |" for i, (n, e) in enumerate(zip(self.positions, self.equal))]
        if self.swaps:
            rows += ["", f"{a} decoding {b}'s codes at some levels and its own at the others:",
                     "| levels from B | STOI | PESQ-WB |", "|---|---|---|"]
            rows += [f"| {', '.join(map(str, lv)) or 'none'} | {st:.3f} | {pq:.3f} |" for lv, st, pq in self.swaps]
        return "\n".join(rows)


def spread(files: list[Path], limit: int | None) -> list[Path]:
    """``limit`` files evenly spaced over ``files`` (all when ``limit`` is None or larger)."""
    if limit is None or limit >= len(files):
        return files
    return [files[i * len(files) // limit] for i in range(limit)]


def run(model: str, against: str | None, data: str, limit: int | None = 40, swap: bool = False) -> Agreement:
    import itertools

    import numpy as np
    import torch
    from llmcodec.audio import load_audio
    from llmcodec.checkpoint import load_model
    from llmcodec.eval.metrics import pesq_wb, stoi
    a, b = load_model(against).model, load_model(model).model
    if a.cfg.level_sizes != b.cfg.level_sizes or a.block_size != b.block_size:
        raise SystemExit("the two models have different levels or blocks; their tokens do not compare")
    files = spread(sorted(Path(data).glob("*.wav")), limit)
    if not files:
        raise SystemExit(f"no .wav files in {data}")
    same = [0] * a.cfg.num_levels
    total = [0] * a.cfg.num_levels
    seconds = 0.0
    masks = list(itertools.product((False, True), repeat=a.cfg.num_levels)) if swap else []
    scores: dict[tuple[bool, ...], list[tuple[float, float]]] = {m: [] for m in masks}
    for f in files:
        wav, sr = load_audio(f, a.sample_rate)
        seconds += len(wav) / sr
        x = torch.from_numpy(wav)[None]
        codes_a, codes_b = a.encode(x).codes, b.encode(x).codes
        for i, (ca, cb) in enumerate(zip(codes_a, codes_b)):
            same[i] += int((ca == cb).sum())
            total[i] += ca.numel()
        for m in masks:
            y = a.decode([cb if take else ca for ca, cb, take in zip(codes_a, codes_b, m)], len(wav))[0].numpy()
            scores[m].append((stoi(wav, y), pesq_wb(wav, y)))
    swaps = tuple((tuple(i + 1 for i, take in enumerate(m) if take), float(np.nanmean([v[0] for v in scores[m]])),
                   float(np.nanmean([v[1] for v in scores[m]]))) for m in masks)
    return Agreement(len(files), seconds, tuple(total), tuple(s / max(t, 1) for s, t in zip(same, total)), swaps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.token_agreement", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory B")
    p.add_argument("--against", help="model directory A (default: the bundled model)")
    p.add_argument("--data", required=True, help="folder of .wav files")
    p.add_argument("--limit", type=int, default=40, help="files, spread over the folder (default 40; 0: all)")
    p.add_argument("--swap", action="store_true",
                   help="also decode every mix of the two models' codes with A (STOI, PESQ-WB per mix)")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    r = run(args.model, args.against, args.data, args.limit or None, swap=args.swap)
    print(r.table(args.against or "bundled default", args.model))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(r), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
