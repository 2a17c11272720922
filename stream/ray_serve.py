"""The streaming server as a Ray Serve application: N replicas, protocol v1 unchanged.

Each replica (``StreamReplica``) holds one shared model and its own batcher: the same
``StreamServer`` as ``llmcodec serve``, behind Serve's HTTP proxy instead of its own socket.
A WebSocket connection is one Serve request, so it stays on one replica for its life; the
proxy spreads new connections over the replicas by their open connections. Endpoints:

* ``/v1/stream``, ``/v1/decode``: protocol v1 (docs/PROTOCOL.md); the session id in ``ready``
  names the replica (``<replica>-s<n>``);
* ``/health``: the replica that answers, and the application (every live replica);
* ``/metrics``: the answering replica's Prometheus metrics; ``/metrics/application``: the
  application's (streams, blocks and errors per replica);
* ``/`` and the page's files: the browser page.

**A replica that dies** (crash, SIGKILL, lost node) cannot close its connections, so the
proxy's middleware (stream/serve_proxy.py) does: each of its clients gets the error
``replica_lost`` and the close code 1012 (Service Restart). A client that reconnects is sent
to a live replica, and Serve starts a replacement. The other replicas' streams are untouched.
The middleware and the proxy's routing are set by environment variables of the Ray nodes
(``PROXY_ENV``), which ``llmcodec serve --ray`` sets for a local cluster; on a real cluster,
give them to ``ray start`` on each node.
"""
# no `from __future__ import annotations`: FastAPI reads the WebSocket parameters by their type

import dataclasses
import os
import threading
import time

from fastapi import FastAPI, WebSocket
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from websockets.exceptions import ConnectionClosed

from .admission import refusal
from .auth import SUBPROTOCOL, offered_subprotocols
from .protocol import DECODE_PATH, STREAM_PATH
from .serve_proxy import PROXY_ENV
from .server import StreamServer
from .server_config import ServerConfig

APP_NAME = "llmcodec"
DEPLOYMENT = "StreamReplica"
REGISTRY = "llmcodec-replicas"  # a named actor: what each replica last reported
REGISTRY_NAMESPACE = "llmcodec"
REPORT_EVERY_S = 1.0
LIVE_WITHIN_S = 5.0

api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


# ---- the replica side ---------------------------------------------------------------------------
class _Request:
    """A Starlette WebSocket handshake or HTTP request as ``admission.refusal`` reads it."""

    def __init__(self, r: WebSocket | Request):
        self.path = r.url.path + (f"?{r.url.query}" if r.url.query else "")
        self.headers = _Headers(r)


class _Headers:
    def __init__(self, r: WebSocket | Request):
        self._h = r.headers

    def get(self, name: str, default=None):
        return self._h.get(name, default)

    def get_all(self, name: str) -> list[str]:
        return self._h.getlist(name)


class _Connection:
    """websockets' connection interface (recv/send/close) over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket):
        self.ws = ws

    async def recv(self):
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise ConnectionClosed(None, None)
        return msg["bytes"] if msg.get("bytes") is not None else msg.get("text", "")

    async def send(self, data) -> None:
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                await self.ws.send_bytes(bytes(data))
            else:
                await self.ws.send_text(data)
        except (RuntimeError, OSError) as e:  # sent after the client left
            raise ConnectionClosed(None, None) from e

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self.ws.close(code, reason)
        except (RuntimeError, OSError):
            pass


def _node_id() -> str:
    import ray
    return ray.get_runtime_context().get_node_id()


# what every replica last reported (defined before the deployment: Serve pickles its globals)
def _registry_class():
    import ray

    @ray.remote
    class _ReplicaRegistry:
        def __init__(self):
            self.replicas: dict[str, dict] = {}

        def report(self, stats: dict) -> None:
            self.replicas[stats["replica"]] = {**stats, "reported": time.time()}

        def live(self, within_s: float) -> dict[str, dict]:
            now = time.time()
            return {k: v for k, v in self.replicas.items() if now - v["reported"] <= within_s}
    return _ReplicaRegistry


ReplicaRegistry = _registry_class()


# health checks tolerate a busy machine (a replica is only replaced after 30 s without an answer)
@serve.deployment(name=DEPLOYMENT, ray_actor_options={"num_cpus": 1}, health_check_period_s=5.0,
                  health_check_timeout_s=30.0, graceful_shutdown_timeout_s=15.0)
@serve.ingress(api)
class StreamReplica:
    """One replica: one shared model and its own batcher behind Serve's proxy."""

    def __init__(self, backend: str = "onnx", model: str | None = None, threads: int = 1,
                 server: dict | None = None):
        from llmcodec.export.cache import resolve_model
        from .backends import make_backend
        self.replica = serve.get_replica_context().replica_id.unique_id
        fields = {**(server or {}), "port": 0}
        fields["origins"] = tuple(fields.get("origins", ()))  # a list in the YAML config
        config = ServerConfig(**fields)
        self.server = StreamServer(make_backend(backend, resolve_model(backend, model), threads=threads), config)
        self.server.session_prefix = f"{self.replica}-"
        self.connections = 0
        self._registry = ReplicaRegistry.options(name=REGISTRY, namespace=REGISTRY_NAMESPACE, get_if_exists=True,
                                                 lifetime="detached", num_cpus=0).remote()
        self._stop = threading.Event()
        threading.Thread(target=self._report_loop, name="llmcodec-report", daemon=True).start()

    async def _started(self) -> StreamServer:
        if self.server.batcher is None:  # on the replica's event loop
            self.server.start_batcher()
        return self.server

    def _stats(self) -> dict:
        m = self.server.metrics
        blocks = sum(s.value for metric in m.blocks.collect() for s in metric.samples if s.name.endswith("_total"))
        errors = sum(s.value for metric in m.errors.collect() for s in metric.samples if s.name.endswith("_total"))
        return {"replica": self.replica, "pid": os.getpid(), "node": _node_id(), "connections": self.connections,
                "active_streams": len(self.server.sessions), "blocks": blocks, "errors": errors,
                "queue_depth": self.server.batcher.queue_depth if self.server.batcher else 0}

    def _report_loop(self) -> None:
        """Every second, tell the registry this replica is alive and what it holds."""
        import ray
        while not self._stop.wait(REPORT_EVERY_S):
            try:  # the stats are read off the event loop, so a read can race it: then the next second
                ray.get(self._registry.report.remote(self._stats()), timeout=10)
            except Exception:  # noqa: BLE001 - this thread must outlive any one failed report
                continue

    def __del__(self):
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    async def _application(self) -> dict:
        live = await self._registry.live.remote(LIVE_WITHIN_S)
        return {**live, self.replica: self._stats()}

    @api.get("/health")
    async def health(self):
        server = await self._started()
        replicas = await self._application()
        body = {**server.health(), "replica": self.replica, "connections": self.connections,
                "application": {"replicas": len(replicas),
                                "active_streams": sum(r["active_streams"] for r in replicas.values()),
                                "per_replica": replicas}}
        return JSONResponse(body, status_code=503 if server.draining else 200)

    def _metrics_refused(self, request: Request) -> Response | None:
        # the token, as for llmcodec serve
        refused = refusal(_Request(request), self.server.config, self.server.draining, websocket=False)
        if refused is None:
            return None
        self.server.metrics.refused.labels(refused.reason).inc()
        return PlainTextResponse(refused.text + "\n", status_code=refused.status, headers=refused.headers)

    @api.get("/metrics")
    async def metrics(self, request: Request):
        server = await self._started()
        return self._metrics_refused(request) or Response(server.metrics.render(),
                                                          media_type=server.metrics.content_type)

    @api.get("/metrics/application")
    async def application_metrics(self, request: Request):
        refused = self._metrics_refused(request)
        if refused is not None:
            return refused
        replicas = await self._application()
        r = CollectorRegistry()
        Gauge("llmcodec_app_replicas", "Live replicas (reported within 5 s)", registry=r).set(len(replicas))
        per = {key: Gauge(f"llmcodec_app_{key}", help_, ["replica"], registry=r) for key, help_ in (
            ("active_streams", "Open sessions per replica"), ("blocks", "Blocks processed per replica"),
            ("errors", "Error messages sent per replica"), ("queue_depth", "Blocks waiting per replica"))}
        for rid, stats in replicas.items():
            for key, g in per.items():
                g.labels(rid).set(stats[key])
        return Response(generate_latest(r), media_type=self.server.metrics.content_type)

    @api.get("/{name:path}")
    async def page(self, name: str):
        f = self.server.page.get("/" + name)
        if f is None:
            return Response(f"unknown path '/{name}'\n", status_code=404, media_type="text/plain")
        return Response(f.body, media_type=f.content_type, headers={"Cache-Control": "no-cache"})

    @api.websocket(STREAM_PATH)
    async def stream(self, ws: WebSocket):
        await self._serve(ws, STREAM_PATH)

    @api.websocket(DECODE_PATH)
    async def decode(self, ws: WebSocket):
        await self._serve(ws, DECODE_PATH)

    async def _serve(self, ws: WebSocket, path: str) -> None:
        server = await self._started()
        refused = refusal(_Request(ws), server.config, server.draining, open_connections=self.connections)
        if refused is not None:  # an HTTP answer instead of the handshake, as llmcodec serve gives
            server.metrics.refused.labels(refused.reason).inc()
            await ws.send_denial_response(PlainTextResponse(refused.text + "\n", status_code=refused.status,
                                                            headers=refused.headers))
            return
        self.connections += 1
        try:
            await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(_Headers(ws)) else None)
            await server.serve_connection(_Connection(ws), path)
        finally:
            self.connections -= 1


# ---- the application -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What ``llmcodec serve --ray`` deploys (also the ``args`` of the Serve config file)."""

    replicas: int = 2
    backend: str = "onnx"
    model: str | None = None
    threads: int = 1
    server: dict = dataclasses.field(default_factory=dict)  # ServerConfig fields (workers 1: a replica per core)

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        # a bad server field fails here, with its name
        ServerConfig(**{**self.server, "port": 0, "origins": tuple(self.server.get("origins", ()))})


def build_app(args: dict) -> serve.Application:
    """The Serve application builder (``import_path: llmcodec.stream.ray_serve:build_app``)."""
    o = ServeOptions(**args)
    server = {"workers": 1, **o.server}
    max_connections = server.get("max_connections", ServerConfig.max_connections)
    deployment = StreamReplica.options(num_replicas=o.replicas, max_ongoing_requests=max_connections + 8)
    return deployment.bind(backend=o.backend, model=o.model, threads=o.threads, server=server)


def serve_config(o: ServeOptions, host: str, port: int) -> dict:
    """The Serve config file of ``o`` (``serve deploy FILE`` on a running cluster)."""
    app = {"name": APP_NAME, "route_prefix": "/", "import_path": "llmcodec.stream.ray_serve:build_app",
           "args": dataclasses.asdict(o)}
    return {"proxy_location": "HeadOnly", "http_options": {"host": host, "port": port}, "applications": [app]}


def config_yaml(o: ServeOptions, host: str, port: int) -> str:
    import yaml
    env = " ".join(f"{k}={v}" for k, v in PROXY_ENV.items())
    head = (f"# llmcodec on Ray Serve: {o.replicas} replica(s) of {DEPLOYMENT}, protocol v1 at "
            f"ws://{host}:{port}/v1/stream\n"
            f"# start each node with the proxy's settings, then deploy:\n"
            f"#   {env} ray start --head   (workers: ... ray start --address HEAD:6379)\n"
            f"#   serve deploy THIS_FILE\n")
    return head + yaml.safe_dump(serve_config(o, host, port), sort_keys=False)

