"""tokenize: many audio files -> a Parquet dataset of LLM tokens, here or on a Ray cluster."""
from __future__ import annotations

import argparse
import sys

from llmcodec.stream.backends import BACKENDS


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="a folder of audio files (recursive), a quoted glob ('data/**/*.wav'), a manifest "
                   "(.txt/.lst: one path per line) or one audio file")
    p.add_argument("-o", "--output", required=True,
                   help="dataset folder: OUT/tokens/*.parquet and OUT/errors/*.parquet; a re-run resumes")
    p.add_argument("--backend", default="onnx", choices=BACKENDS,
                   help="runtime (default onnx; tokens equal `llmcodec encode --backend` of the same runtime)")
    p.add_argument("--model", help="model or export directory (default: the bundled model)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray Data: a cluster's address (e.g. 10.0.0.1:6379, or 'auto' for the local "
                        "`ray start` cluster); without ADDRESS a new local Ray instance (or $RAY_ADDRESS)")
    p.add_argument("--workers", type=int, default=1,
                   help="with --ray: encoder actors, one CPU and one model each (default 1)")
    p.add_argument("--rows-per-part", type=int, default=64,
                   help="files per Parquet part; what a killed job loses at most (default 64)")
    p.add_argument("--segment-seconds", type=float, default=60.0,
                   help="a long file is read and encoded this much at a time (default 60)")


def run(args: argparse.Namespace) -> int:
    from llmcodec.corpus.job import tokenize
    use_ray = args.ray is not None
    if not use_ray and args.workers != 1:
        raise ValueError("--workers needs --ray (without Ray the job runs in this process, one worker)")
    r = tokenize(args.input, args.output, backend=args.backend, model=args.model, use_ray=use_ray,
                 ray_address=args.ray or None, workers=args.workers, rows_per_part=args.rows_per_part,
                 segment_seconds=args.segment_seconds)
    return 0 if r.tokenized + r.skipped > 0 or r.files == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.tokenize``: the same as ``llmcodec tokenize``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("tokenize", argv)


if __name__ == "__main__":
    sys.exit(main())
