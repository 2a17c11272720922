"""Admission: whether a request for a WebSocket endpoint (or /metrics) is let in, and if not,
the HTTP answer it gets instead of the handshake (the plain server and the Ray Serve replica alike)."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .auth import check_token
from .server_config import ServerConfig


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer instead of the WebSocket handshake."""

    status: int
    text: str
    reason: str  # the label of llmcodec_refused_connections_total
    headers: dict[str, str] | None = None


def refusal(request, config: ServerConfig, draining: bool, *, websocket: bool = True,
            open_connections: int = 0) -> Refusal | None:
    """Why a request for a WebSocket endpoint (or /metrics) is refused, or None.

    ``request``: ``.path`` (with the query) and ``.headers`` (``get``, ``get_all``)."""
    auth = check_token(request, config.token)
    if auth == "missing":
        return Refusal(401, "this server needs a bearer token: send the header 'Authorization: Bearer TOKEN', "
                       "the WebSocket subprotocol 'llmcodec.token.<base64url of TOKEN>' beside 'llmcodec.v1' "
                       "(browsers), or ?token=TOKEN", "unauthorized", {"WWW-Authenticate": "Bearer"})
    if auth == "wrong":
        return Refusal(403, "the bearer token is not valid", "forbidden")
    if not websocket:
        return None
    origin = request.headers.get("Origin")
    same_origin = origin is not None and urlsplit(origin).netloc == request.headers.get("Host")
    if config.origins and origin is not None and origin not in config.origins and not same_origin:
        return Refusal(403, f"origin {origin!r} is not allowed; allowed: {list(config.origins)}", "origin")
    if draining:
        return Refusal(503, "the server is shutting down", "draining", {"Retry-After": "5"})
    if open_connections >= config.max_connections:
        return Refusal(503, f"the server is at its limit of {config.max_connections} streams; retry later",
                       "capacity", {"Retry-After": "1"})
    return None
