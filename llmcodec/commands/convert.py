"""convert-official: the published LLM-Codec checkpoint -> llmcodec's model directory."""
from __future__ import annotations

import argparse


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="published .pth ({'codec_model': state_dict}); read with weights_only=True")
    p.add_argument("-o", "--output", required=True, help="model directory to write")


def run(args: argparse.Namespace) -> int:
    from llmcodec.official import main
    return main([args.checkpoint, "-o", args.output])
