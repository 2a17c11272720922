"""How a connection carries the server's bearer token, and how the server checks it.

Three carriers, checked in this order:

* the header ``Authorization: Bearer TOKEN`` (Python clients, curl, proxies);
* the WebSocket subprotocol ``llmcodec.token.<base64url of the UTF-8 token, no padding>``,
  offered beside ``llmcodec.v1``: browsers cannot set headers on a WebSocket, and unlike
  the query string a subprotocol is not written to access logs or browser history. The
  server answers with ``llmcodec.v1`` and never echoes the token back;
* the query ``?token=TOKEN`` (kept for simple clients; it can leak into logs).

The page (stream/page/app.js) uses the subprotocol.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import parse_qs, urlsplit

SUBPROTOCOL = "llmcodec.v1"
TOKEN_SUBPROTOCOL_PREFIX = "llmcodec.token."


def token_subprotocol(token: str) -> str:
    """The subprotocol that carries ``token`` (any Unicode string) as RFC 6455 token characters."""
    data = base64.urlsafe_b64encode(token.encode("utf-8")).rstrip(b"=").decode("ascii")
    return TOKEN_SUBPROTOCOL_PREFIX + data


def token_from_subprotocols(offered: list[str] | tuple[str, ...]) -> str | None:
    """The token carried by one of the offered subprotocols; None when none carries one (or it is garbled)."""
    for value in offered:
        if value.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            data = value[len(TOKEN_SUBPROTOCOL_PREFIX):]
            try:
                return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return ""  # present but not decodable: a wrong token, not a missing one
    return None


def offered_subprotocols(headers) -> list[str]:
    """The values of every ``Sec-WebSocket-Protocol`` header of a request, in order."""
    values: list[str] = []
    for header in headers.get_all("Sec-WebSocket-Protocol"):
        values.extend(v.strip() for v in header.split(",") if v.strip())
    return values


def given_token(request) -> str | None:
    """The token a request carries (header, subprotocol or query), or None."""
    auth = request.headers.get("Authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    carried = token_from_subprotocols(offered_subprotocols(request.headers))
    if carried is not None:
        return carried
    return (parse_qs(urlsplit(request.path).query).get("token") or [None])[0]


def check_token(request, expected: str | None) -> str | None:
    """None when allowed (no token set, or the right one), else ``"missing"`` or ``"wrong"``."""
    if not expected:
        return None
    given = given_token(request)
    if given is None:
        return "missing"
    return None if hmac.compare_digest(given.encode(), expected.encode()) else "wrong"


def select_subprotocol(connection, offered) -> str | None:
    """websockets' ``select_subprotocol``: ``llmcodec.v1`` when offered, else none (non-browser clients)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
