"""convert-official: the published LLM-Codec checkpoint -> llmcodec's model directory."""
from __future__ import annotations

import argparse


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="published .pth ({'codec_model': state_dict}); read with weights_only=True")
    p.add_argument("-o", "--output", required=True, help="model directory to write")


def run(args: argparse.Namespace) -> int:
    from llmcodec.config import CodecConfig
    from llmcodec.convert_official import convert_official
    out = convert_official(args.checkpoint, args.output)
    cfg = CodecConfig.load(out / "config.json")
    print(f"wrote {out} (config.json, model.safetensors, codebooks.safetensors): latent {cfg.latent_dim}, "
          f"levels {cfg.level_sizes} x {cfg.llm_dim}, strides {cfg.enc_strides}")
    return 0
