"""``llmcodec``: the command line. Each subcommand lives in its own module with
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches, and
``subcommand_main`` is every module's ``python -m`` entry."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "encode": ("llmcodec.commands.codec", "audio file -> LLM token JSON"),
    "decode": ("llmcodec.commands.codec", "LLM token JSON -> audio file"),
    "roundtrip": ("llmcodec.commands.codec", "audio file -> tokens -> audio file"),
    "tokenize": ("llmcodec.commands.tokenize", "many audio files -> a Parquet dataset of LLM tokens (here or on Ray)"),
    "info": ("llmcodec.commands.codec", "print a model's facts"),
    "icl": ("llmcodec.commands.icl", "few-shot audio task learning with a frozen LLM (in-context)"),
    "prepare-data": ("llmcodec.commands.prepare_data", "build the local training corpus cache"),
    "train": ("llmcodec.commands.train", "train a codec (the LLM-Codec recipe), resumable"),
    "eval": ("llmcodec.commands.eval", "PESQ/STOI/WER/DNSMOS of a model and Opus 6 kbps"),
    "export": ("llmcodec.commands.export", "model -> ONNX step graphs (+ int8, TensorRT engines)"),
    "bench": ("llmcodec.commands.bench", "latency/throughput by backend and concurrent streams, vs Opus and Mimi"),
    "convert-official": ("llmcodec.commands.convert", "published UniAudio 1.5 checkpoint -> model directory"),
    "serve": ("llmcodec.commands.serve", "the streaming WebSocket server (mic to tokens, many streams)"),
    "stream": ("llmcodec.commands.stream_client", "stream an audio file to a server, tokens live + latency"),
    "mic": ("llmcodec.commands.stream_client", "stream the microphone to a server, tokens live"),
}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmcodec", description="llmcodec: live audio <-> token ids of a real LLM's vocabulary "
        "(a streaming UniAudio 1.5 LLM-Codec). `llmcodec COMMAND --help` for each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as e:  # user errors: one line, non-zero exit
        print(f"llmcodec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def subcommand_main(name: str, argv: list[str] | None = None) -> int:
    """``llmcodec NAME ARGV...`` (``argv`` None: the process's arguments): the ``main`` of
    ``python -m llmcodec.commands.MODULE``."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
