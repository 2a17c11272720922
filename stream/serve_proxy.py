"""Ray Serve's proxy side of the llmcodec application (stream/ray_serve.py): kept light, since
the proxy imports it at start.

The Ray nodes' environment (``PROXY_ENV``) sets the proxy's middleware and routing: a WebSocket
whose replica died gets a clean close, and new connections go to the least loaded replica
rather than to one on the proxy's own node (Serve's default), judged by a fresh count of each
replica's open connections.
"""
from __future__ import annotations

from starlette.middleware import Middleware

from .protocol import ProtocolError, close_reason

PROXY_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "llmcodec.stream.serve_proxy:proxy_middlewares",
             "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
             # ask the replicas their open connections for every new one (a connection lasts minutes;
             # a cached count would send a burst of new connections all to one replica)
             "RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S": "0"}


class ReplicaLossMiddleware:
    """ASGI middleware of Serve's proxy: a WebSocket whose replica vanished without closing it
    gets the ``replica_lost`` error and close 1012, instead of a dropped TCP connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        state = {"accepted": False, "closed": False}

        async def tracked_receive():
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                state["closed"] = True
            return msg

        async def tracked_send(msg):
            if msg["type"] == "websocket.accept":
                state["accepted"] = True
            elif msg["type"] == "websocket.close":
                state["closed"] = True
            await send(msg)
        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            if state["accepted"] and not state["closed"]:
                e = ProtocolError("replica_lost", "the Ray Serve replica serving this stream stopped; blocks not yet "
                                  "answered are lost. Reconnect: a new stream goes to a live replica")
                try:
                    await send({"type": "websocket.send", "text": e.to_json()})
                    await send({"type": "websocket.close", "code": e.close_code, "reason": close_reason(e.message)})
                except Exception:  # noqa: BLE001 - the client may be gone too
                    pass


def proxy_middlewares() -> list:
    """``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` target: the proxy's middlewares."""
    return [Middleware(ReplicaLossMiddleware)]


