"""serve: the streaming WebSocket server (protocol: docs/PROTOCOL.md)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from llmcodec.export.metadata import MANIFEST_FILE
from llmcodec.stream.backends import BACKENDS
from llmcodec.stream.protocol import (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_QUEUED_SECONDS,
                                      DEFAULT_MAX_TEXT_BYTES)


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: all; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port; default 8765)")
    p.add_argument("--backend", default="onnx", choices=BACKENDS,
                   help="runtime (default onnx: measured to hold the most real-time streams here)")
    p.add_argument("--model", help="model directory, or export directory for onnx/tensorrt (default: the bundled "
                   "model; onnx exports a model directory once, cached)")
    p.add_argument("--max-batch", type=int, default=16, help="most streams in one batched step (default 16)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="longest wait for more streams after a block is ready (default 5)")
    p.add_argument("--max-connections", type=int, default=64, help="streams above this get HTTP 503 (default 64)")
    p.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                   help=f"largest client message, bytes (default {DEFAULT_MAX_MESSAGE_BYTES})")
    p.add_argument("--max-text-bytes", type=int, default=DEFAULT_MAX_TEXT_BYTES,
                   help=f"largest JSON message, refused before parsing (default {DEFAULT_MAX_TEXT_BYTES})")
    p.add_argument("--max-queued-seconds", type=float, default=DEFAULT_MAX_QUEUED_SECONDS,
                   help="per connection: audio received but not yet answered before the server stops reading "
                        f"that connection (backpressure; default {DEFAULT_MAX_QUEUED_SECONDS:g})")
    p.add_argument("--idle-timeout", type=float, default=30.0, help="close a stream silent this long (s, default 30)")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="on shutdown, seconds to finish the blocks in flight (default 10)")
    p.add_argument("--workers", type=int, default=None,
                   help="batched steps run at once, one per core (default: cores, at most 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads of each step (default 1: the cores go to --workers)")
    p.add_argument("--token", default=os.environ.get("LLMCODEC_TOKEN"),
                   help="require this bearer token (default: $LLMCODEC_TOKEN; none: no auth)")
    p.add_argument("--tls-cert", default=None,
                   help="PEM certificate (chain): serve https:// and wss://, so the browser page can use the "
                        "microphone from other machines (with --tls-key)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument("--origin", action="append", default=[],
                   help="allowed browser Origin (repeatable; default: any)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    from llmcodec.commands import serve_ray
    serve_ray.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from llmcodec.stream.backends import make_backend
    from llmcodec.stream.server import ServerConfig, run_server

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    config = ServerConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                          max_connections=args.max_connections, max_message_bytes=args.max_message_bytes,
                          max_text_bytes=args.max_text_bytes, max_queued_seconds=args.max_queued_seconds,
                          idle_timeout=args.idle_timeout, token=args.token or None, origins=tuple(args.origin),
                          drain_timeout=args.drain_timeout, workers=args.workers, tls_cert=args.tls_cert,
                          tls_key=args.tls_key)
    if args.ray is None:
        config.ssl_context()  # a certificate that does not load fails here, before the model loads
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.ray is not None:
        from llmcodec.commands import serve_ray
        return serve_ray.run(args, config)
    model = args.model
    if args.backend == "onnx" and (model is None or not (Path(model) / MANIFEST_FILE).is_file()):
        from llmcodec.export.cache import cached_export
        model = str(cached_export(model))  # a model directory: its cached export
    try:
        backend = make_backend(args.backend, model, threads=args.threads)
    except ImportError as e:
        raise ValueError(f"backend {args.backend!r} is not available here ({e}); accepted: torch") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(server) -> None:
            f = backend.facts
            print(f"llmcodec serve: listening on {server.url} (backend {backend.name}, model {f.name}, "
                  f"block {f.block_size} samples at {f.sample_rate} Hz, max batch {config.max_batch}, "
                  f"{server.workers} worker(s) x {args.threads} thread(s), "
                  f"auth {'on' if config.token else 'off'}); the browser page: {server.page_url}", flush=True)
        await run_server(backend, config, stop, ready)
        print("llmcodec serve: stopped", flush=True)

    asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.serve``: the same as ``llmcodec serve``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("serve", argv)


if __name__ == "__main__":
    sys.exit(main())
