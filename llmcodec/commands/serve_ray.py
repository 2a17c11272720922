"""serve --ray: the streaming server as a Ray Serve application of N replicas (stream/ray_serve.py)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import threading
from pathlib import Path

from llmcodec.stream.server_config import ServerConfig

# ServerConfig fields the proxy owns (its address) or that do not apply behind it
PROXY_FIELDS = ("host", "port", "tls_cert", "tls_key")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="serve on Ray Serve: a cluster's address ('auto': the local `ray start` cluster); without "
                        "ADDRESS a new local Ray instance. --host/--port become the Serve proxy's")
    p.add_argument("--replicas", type=int, default=2, help="with --ray: replicas, each one model and its own "
                   "batcher on one CPU (default 2)")
    p.add_argument("--serve-config", default=None, metavar="FILE",
                   help="with --ray: also write the Serve config file (YAML) for `serve deploy FILE`")


def options(args: argparse.Namespace, config: ServerConfig):
    from llmcodec.stream.ray_serve import ServeOptions
    if config.tls:
        raise ValueError("--tls-cert/--tls-key do not apply with --ray: terminate TLS in front of Serve's proxy "
                         "(a load balancer or reverse proxy)")
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in PROXY_FIELDS}
    fields["origins"] = list(fields["origins"])
    if args.workers is None:
        fields["workers"] = 1  # one replica per core
    return ServeOptions(replicas=args.replicas, backend=args.backend, model=args.model, threads=args.threads,
                        server=fields)


def run(args: argparse.Namespace, config: ServerConfig) -> int:
    from llmcodec.stream.ray_serve import APP_NAME, PROXY_ENV, build_app, config_yaml
    opts = options(args, config)
    if args.serve_config:
        Path(args.serve_config).write_text(config_yaml(opts, args.host, args.port))
        print(f"llmcodec serve --ray: Serve config -> {args.serve_config} (serve deploy {args.serve_config})",
              flush=True)
    os.environ.update(PROXY_ENV)  # the proxy of a local cluster started here inherits them
    import ray
    from ray import serve
    if args.ray:
        ray.init(address=args.ray, log_to_driver=False)
    else:
        ray.init(log_to_driver=False, include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port}, proxy_location="HeadOnly")
    serve.run(build_app(dataclasses.asdict(opts)), name=APP_NAME, route_prefix="/")
    print(f"llmcodec serve: listening on ws://{args.host}:{args.port} (Ray Serve, {opts.replicas} replica(s), "
          f"backend {opts.backend}); the browser page: http://{args.host}:{args.port}/", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.delete(APP_NAME)
    serve.shutdown()
    print("llmcodec serve: stopped", flush=True)
    return 0
