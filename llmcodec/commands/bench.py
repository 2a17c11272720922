"""bench: latency and throughput by backend and concurrent streams, beside Opus and Mimi.

``llmcodec bench [--quick] [--out DIR]`` runs ``llmcodec.bench.run_all``: step latency of every
backend present, the real server under N real-time clients, and the peers; it prints
the Markdown tables and writes them with PNG plots into ``--out``.
"""
from __future__ import annotations

import argparse


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    from llmcodec.bench.run_all import add_arguments as bench_arguments
    bench_arguments(p)


def run(args: argparse.Namespace) -> int:
    from llmcodec.bench.run_all import command_line, run_args
    return run_args(args, command_line("llmcodec bench", args))
