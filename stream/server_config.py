"""The server's settings, validated once: a bad value is a one-line ValueError naming it."""
from __future__ import annotations

import math
import ssl
from dataclasses import dataclass
from pathlib import Path

from .protocol import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_QUEUED_SECONDS, DEFAULT_MAX_TEXT_BYTES


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port (see StreamServer.port)
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_connections: int = 64
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # any message (the WebSocket layer closes with 1009)
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES  # a text (JSON) message: refused before it is parsed
    max_queued_seconds: float = DEFAULT_MAX_QUEUED_SECONDS  # per connection: audio received but not yet sent back
    idle_timeout: float = 30.0  # seconds without a client message
    token: str | None = None  # bearer token required for /v1/* and /metrics
    origins: tuple[str, ...] = ()  # allowed Origin headers (browsers); empty: any
    drain_timeout: float = 10.0  # shutdown: seconds to finish blocks in flight
    workers: int | None = None  # steps run at once (None: one per core, at most 2)
    tls_cert: str | None = None  # PEM certificate chain: serve https:// and wss:// (with tls_key)
    tls_key: str | None = None  # PEM private key of tls_cert

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_batch", "max_connections", "max_message_bytes", "max_text_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            problems.append(f"port must be an integer in 0..65535 (0: any free port), got {self.port!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            problems.append(f"workers must be an integer >= 1, got {self.workers!r}")
        for name, low, strict in (("max_wait_ms", 0.0, False), ("idle_timeout", 0.0, True),
                                  ("drain_timeout", 0.0, False), ("max_queued_seconds", 0.0, True)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < low or (strict and v == low):
                problems.append(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {v!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("tls_cert and tls_key go together (--tls-cert FILE --tls-key FILE), got only "
                            + ("tls_cert" if self.tls_cert is not None else "tls_key"))
        for name in ("tls_cert", "tls_key"):
            v = getattr(self, name)
            if v is not None and not Path(v).is_file():
                problems.append(f"{name} {v!r} is not a file (accepted: a PEM file)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without TLS); ValueError naming the files when they do not load."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"tls_cert {self.tls_cert!r} / tls_key {self.tls_key!r}: cannot load a PEM certificate "
                             f"chain and its private key ({e})") from None
        return ctx
