"""Build a seeded, UNTRAINED ``small`` codec whose codebooks are the real
SmolLM2-135M embeddings (the first bundled default, before trained weights).
``python -m llmcodec.build_default -o DIR``; it refuses to overwrite a trained
model (a directory with ``training.json``) unless ``--force``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .checkpoint import default_model_dir, save_model
from .config import preset
from .model import LLMCodec
from .vocab import Vocabulary


def build(name: str = "small", seed: int = 0) -> LLMCodec:
    torch.manual_seed(seed)
    vocab = Vocabulary.default()
    cfg = preset(name)
    if cfg.level_sizes[0] != vocab.num_words or cfg.llm_dim != vocab.embedding_dim:
        raise ValueError(f"preset {name} does not fit the bundled vocabulary {vocab}")
    model = LLMCodec(cfg)
    model.set_codebooks([vocab.codebook(i) for i in range(cfg.num_levels)])
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default=str(default_model_dir()))
    p.add_argument("--force", action="store_true", help="overwrite a trained model in --out")
    args = p.parse_args(argv)
    if (Path(args.out) / "training.json").is_file() and not args.force:
        print(f"{args.out} holds a trained model (training.json); pass --force to replace it "
              f"with untrained weights", file=sys.stderr)
        return 2
    out = save_model(build(args.preset, args.seed), args.out, half=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
