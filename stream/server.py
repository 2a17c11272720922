"""The streaming server: WebSocket sessions around one shared model and one batcher.

``StreamServer`` serves protocol v1 (stream/protocol.py) with the websockets
asyncio server. HTTP requests are answered in ``process_request`` before any
handshake: ``/health``, ``/metrics`` (Prometheus), 404 for unknown paths,
401/403 for a missing or wrong bearer token, 403 for an origin outside the
allow-list, 503 above ``max_connections`` or while shutting down.

Each connection owns a ``Session``; its receive loop validates frames and
submits complete blocks to the ``Batcher``; a sender task sends results in
order. ``shutdown`` refuses new connections, lets every session finish the
blocks it already completed, then closes it with 1001.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .admission import refusal
from .auth import select_subprotocol
from .backend import Backend
from .batcher import Batcher, default_workers
from .metrics import ServerMetrics
from .page import PAGE_PATHS, load_page
from .protocol import (DECODE_PATH, HEALTH_PATH, METRICS_PATH, PROTOCOL_VERSION,
                       STREAM_PATH, WS_PATHS, Audio, End, ProtocolError, Ready, Timing, Tokens, close_reason,
                       parse_start, parse_text, parse_tokens)
from .server_config import ServerConfig
from .session import Outgoing, Phase, Session, StepResult

log = logging.getLogger("llmcodec.server")

# messages the WebSocket layer buffers per connection while backpressure holds the reader;
# with max_message_bytes this bounds a connection's buffered input (4 x 1 MiB by default)
MAX_QUEUED_MESSAGES = 4


class StreamServer:
    """Serve one backend to many WebSocket streams."""

    def __init__(self, backend: Backend, config: ServerConfig = ServerConfig()):
        self.backend = backend
        self.config = config
        self.facts = backend.facts
        self.vocab = backend.vocab
        self.metrics = ServerMetrics()
        self.sessions: dict[str, Session] = {}
        self.draining = False
        self.batcher: Batcher | None = None
        self._ws: Server | None = None
        self.workers = config.workers or default_workers()
        # per connection: blocks received but not yet sent back before its input is read again
        self.max_unsent = max(1, math.ceil(config.max_queued_seconds / self.facts.block_seconds))
        self._closed = asyncio.Event()
        self.page = load_page()
        self.session_prefix = ""  # before each session id (a Ray Serve replica's id)

    # ---- lifecycle ------------------------------------------------------------
    def start_batcher(self) -> None:
        """The batching consumer alone (the Ray Serve replica brings its own WebSocket layer)."""
        self.batcher = Batcher(self.backend, self.config.max_batch, self.config.max_wait_ms, self.metrics,
                               workers=self.workers)
        self.batcher.start()

    async def start(self) -> "StreamServer":
        self.start_batcher()
        self._ws = await serve(self._handler, self.config.host, self.config.port,
                               process_request=self._process_request, compression=None,
                               max_size=self.config.max_message_bytes, server_header=None,
                               max_queue=MAX_QUEUED_MESSAGES, select_subprotocol=select_subprotocol,
                               ssl=self.config.ssl_context())
        log.info("listening on %s", self.url)
        return self

    @property
    def port(self) -> int:
        return self._ws.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (``wss://`` with TLS)."""
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{'wss' if self.config.tls else 'ws'}://{host}:{self.port}"

    @property
    def page_url(self) -> str:
        """The browser page: ``http://HOST:PORT/`` (``https://`` with TLS)."""
        return "http" + self.url[2:] + "/"

    async def shutdown(self) -> None:
        """Refuse new connections, finish complete blocks in flight, close every session with 1001."""
        if self.draining:
            await self._closed.wait()
            return
        self.draining = True
        log.info("shutting down: draining %d session(s)", len(self.sessions))
        await asyncio.gather(*(self._drain(s) for s in list(self.sessions.values())))
        end = time.monotonic() + 5.0  # let the senders deliver going_away before closing the rest
        while self.sessions and time.monotonic() < end:
            await asyncio.sleep(0.01)
        if self._ws is not None:
            self._ws.close(close_connections=True)  # connections still before 'start' get 1001
            try:
                await asyncio.wait_for(self._ws.wait_closed(), self.config.drain_timeout + 5)
            except TimeoutError:
                log.warning("connections did not close in time")
        await self.batcher.stop()
        self._closed.set()
        log.info("server closed")

    async def _drain(self, s: Session) -> None:
        if not s.accepting:  # ended, failed or closed already
            return
        s.drain()
        try:
            await asyncio.wait_for(s.wait_idle(), self.config.drain_timeout)
        except TimeoutError:
            pass
        if s.phase is Phase.DRAINING:
            if s.delivered == s.next_seq:
                told = (f"all {s.delivered} complete block(s) were sent; audio after the last complete block "
                        "was not encoded")
            else:
                told = (f"{s.delivered} of {s.next_seq} complete block(s) were sent before the drain timeout "
                        f"({self.config.drain_timeout:g} s); the other {s.next_seq - s.delivered} and any audio "
                        "after the last complete block were not encoded")
            s.fail(ProtocolError("going_away", f"the server is shutting down; {told}"))

    def health(self) -> dict:
        """The body of /health."""
        return {"status": "draining" if self.draining else "ok", "protocol": PROTOCOL_VERSION,
                "active_streams": len(self.sessions), "max_connections": self.config.max_connections,
                "backend": self.backend.name, "model": self.facts.name,
                "queue_depth": self.batcher.queue_depth if self.batcher else 0}

    # ---- HTTP before the handshake ------------------------------------------------
    def _respond(self, connection: ServerConnection, status: int, text: str, reason: str | None = None,
                 content_type: str | None = None, headers: dict[str, str] | None = None):
        if reason:
            self.metrics.refused.labels(reason).inc()
        resp = connection.respond(status, text if text.endswith("\n") else text + "\n")
        if content_type:
            del resp.headers["Content-Type"]
            resp.headers["Content-Type"] = content_type
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp

    def _page_file(self, path: str) -> Response:
        f = self.page[path]
        headers = Headers([("Content-Type", f.content_type), ("Content-Length", str(len(f.body))),
                           ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"),
                           ("Connection", "close")])
        return Response(200, "OK", headers, f.body)

    def _process_request(self, connection: ServerConnection, request):
        path = urlsplit(request.path).path
        if path in self.page:  # the browser page: no token needed to load it
            return self._page_file(path)
        if path == HEALTH_PATH:
            return self._respond(connection, 503 if self.draining else 200, json.dumps(self.health()),
                                 content_type="application/json")
        if path not in WS_PATHS + (METRICS_PATH,):
            return self._respond(connection, 404, f"unknown path {path!r}; WebSocket endpoints: "
                                 f"{', '.join(WS_PATHS)}; HTTP: {HEALTH_PATH}, {METRICS_PATH}, the page at "
                                 f"{', '.join(PAGE_PATHS)}", "not_found")
        if path == METRICS_PATH:
            refused = refusal(request, self.config, self.draining, websocket=False)
            if refused is None:
                return self._respond(connection, 200, self.metrics.render().decode(),
                                     content_type=self.metrics.content_type)
        else:
            # No await between here and the 101 response, so the connection count cannot race.
            refused = refusal(request, self.config, self.draining, open_connections=len(self._ws.connections))
        if refused is None:
            return None
        return self._respond(connection, refused.status, refused.text, refused.reason, headers=refused.headers)

    # ---- one WebSocket connection ----------------------------------------------------
    async def _recv(self, ws: ServerConnection):
        try:
            return await asyncio.wait_for(ws.recv(), self.config.idle_timeout)
        except TimeoutError:
            raise ProtocolError("idle_timeout", f"no message for {self.config.idle_timeout:g} s; "
                                "send audio (or tokens) continuously and end with {\"type\": \"end\"}") from None

    async def _handler(self, ws: ServerConnection) -> None:
        await self.serve_connection(ws, urlsplit(ws.request.path).path)

    async def serve_connection(self, ws, path: str) -> None:
        """One accepted WebSocket connection at ``path``, from ``start`` to its close.

        ``ws``: anything with websockets' ``recv()``, ``send(str | bytes)`` and ``close(code,
        reason)`` that raises ``ConnectionClosed`` once the client is gone (a websockets
        connection, or the Ray Serve replica's Starlette adapter)."""
        session: Session | None = None
        sender: asyncio.Task | None = None
        try:
            try:
                session = await self._open(ws, path)
            except ProtocolError as e:
                self.metrics.errors.labels(e.code).inc()
                await ws.send(e.to_json())
                await ws.close(e.close_code, close_reason(e.message))
                return
            await self._send_ready(ws, session)  # after `session` is set: a failed send still cleans up
            sender = asyncio.create_task(self._sender(ws, session))
            await self._receive_loop(ws, session)
            await sender
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
            if session is not None:
                self.batcher.remove(session)
                self.sessions.pop(session.id, None)
                self.metrics.active_streams.labels(path).dec()

    async def _open(self, ws: ServerConnection, path: str) -> Session:
        msg = await self._recv(ws)
        if isinstance(msg, bytes):
            raise ProtocolError("not_started", "the first message must be a JSON start message "
                                "(text frame), e.g. {\"type\": \"start\", \"sample_rate\": 16000, "
                                "\"format\": \"pcm_f32le\", \"channels\": 1}")
        d = self._parse(msg)
        if d["type"] != "start":
            raise ProtocolError("not_started", f"got {d['type']!r} before 'start'; the first message must be start")
        start = parse_start(d, path, vocabulary=self.vocab is not None)
        if self.draining:
            raise ProtocolError("going_away", "the server is shutting down")
        session = Session(path, start, self.facts)
        session.id = self.session_prefix + session.id
        self.batcher.attach(session)
        self.sessions[session.id] = session
        self.metrics.active_streams.labels(path).inc()
        self.metrics.connections.labels(path).inc()
        return session

    async def _send_ready(self, ws: ServerConnection, session: Session) -> None:
        f, path, start = self.facts, session.endpoint, session.start
        stream = path == STREAM_PATH
        ready = Ready(session.id, path, f.name, self.backend.name, f.sample_rate, f.block_size,
                      tuple(f.tokens_per_block), tuple(f.level_sizes),
                      self.vocab.llm_name if self.vocab is not None else None,
                      start.sample_rate if stream else None, start.format if stream else None,
                      start.channels if stream else None, start.returns, self.config.max_message_bytes)
        await ws.send(ready.to_json())

    async def _receive_loop(self, ws: ServerConnection, s: Session) -> None:
        """Until end (queues End after the last result), an error, or the client leaves.

        Backpressure: after each message, the next is read only once at most ``max_unsent``
        of this connection's blocks are waiting (queued, in a step, or not yet sent), so one
        connection holds at most ``max_queued_seconds`` of work plus one message."""
        while True:
            try:
                await s.wait_unsent_below(self.max_unsent)
                msg = await self._recv(ws)
                if not s.accepting:
                    continue  # draining: the sender closes the connection soon
                now = time.monotonic()
                if isinstance(msg, bytes):
                    if s.endpoint == DECODE_PATH:
                        raise ProtocolError("unexpected_binary", "/v1/decode takes JSON token messages, not binary "
                                            "frames; send audio to /v1/stream")
                    self.batcher.submit(s, s.push_pcm(msg, now))
                    continue
                d = self._parse(msg)
                t = d["type"]
                if t == "start":
                    raise ProtocolError("unexpected_message", "'start' was already received; after it send "
                                        + ("binary PCM frames" if s.endpoint == STREAM_PATH else "tokens")
                                        + " and finally {\"type\": \"end\"}")
                if t == "tokens":
                    if s.endpoint == STREAM_PATH:
                        raise ProtocolError("unexpected_message", "/v1/stream takes binary PCM frames and "
                                            "{\"type\": \"end\"}; send tokens to /v1/decode")
                    codes = parse_tokens(d, self.facts.tokens_per_block, self.facts.level_sizes, self.vocab)
                    blocks = codes[0].size // self.facts.tokens_per_block[0]
                    if blocks > self.max_unsent:
                        raise ProtocolError("too_large", f"a tokens message holds {blocks} blocks; a connection "
                                            f"may have at most {self.max_unsent} blocks "
                                            f"({self.config.max_queued_seconds:g} s of audio) waiting, so send "
                                            "fewer blocks per message")
                    self.batcher.submit(s, s.push_codes(codes, now))
                    continue
                # end
                if len(d) > 1:
                    raise ProtocolError("unexpected_message", f"end takes no fields, got {sorted(set(d) - {'type'})}")
                if s.endpoint == STREAM_PATH:
                    self.batcher.submit(s, s.finish(now))
                s.end()
                await s.wait_idle()
                if not s.dropped:
                    s.out.put_nowait(Outgoing("end", blocks=s.next_seq))
                return
            except ProtocolError as e:
                s.fail(e)  # nothing if the session already failed or closed
                return

    def _parse(self, msg: str) -> dict:
        """A text message -> its JSON object, refusing one over ``max_text_bytes`` before parsing."""
        size = len(msg) if len(msg) * 4 <= self.config.max_text_bytes else len(msg.encode("utf-8", "replace"))
        if size > self.config.max_text_bytes:
            raise ProtocolError("too_large", f"a text message of {size} bytes is over this server's limit of "
                                f"{self.config.max_text_bytes} bytes for JSON messages (refused before parsing); "
                                "send fewer blocks per tokens message")
        return parse_text(msg)

    def _message(self, s: Session, r: StepResult) -> tuple[str, bytes | None]:
        if s.endpoint == STREAM_PATH:
            codes = levels = text = None
            if "tokens" in s.start.returns:
                codes = tuple(tuple(int(i) for i in c) for c in r.codes)
                if self.vocab is not None:
                    levels = tuple(tuple(self.vocab.codes_to_token_ids(l, c)) for l, c in enumerate(r.codes))
            if "text" in s.start.returns:
                text = tuple(self.vocab.codes_to_text(l, c) for l, c in enumerate(r.codes))
            audio = r.audio if s.wants_audio else None
            timing = self._timing(r)
            return Tokens(r.seq, codes, levels, text, timing, audio is not None).to_json(), \
                None if audio is None else audio.astype("<f4").tobytes()
        return Audio(r.seq, int(r.audio.size), self._timing(r)).to_json(), r.audio.astype("<f4").tobytes()

    def _timing(self, r: StepResult) -> Timing:
        now = time.monotonic()
        return Timing(r.input_samples, (r.t_start - r.t_ready) * 1e3, (r.t_done - r.t_start) * 1e3,
                      (now - r.t_ready) * 1e3, r.batch)

    async def _sender(self, ws: ServerConnection, s: Session) -> None:
        try:
            await self._send_loop(ws, s)
        except ConnectionClosed:
            pass  # the receive loop sees the close too

    async def _send_loop(self, ws: ServerConnection, s: Session) -> None:
        while True:
            item = await s.out.get()
            if item.kind == "result":
                r = item.result
                text, data = self._message(s, r)
                await ws.send(text)
                if data is not None:
                    await ws.send(data)
                s.was_sent()
                self.metrics.blocks.labels(s.endpoint).inc()
                self.metrics.queue_seconds.observe(r.t_start - r.t_ready)
                self.metrics.block_latency.labels(s.endpoint).observe(time.monotonic() - r.t_ready)
            elif item.kind == "end":
                await ws.send(End(item.blocks).to_json())
                await ws.close(1000, "end")
                return
            else:
                e: ProtocolError = item.error
                self.metrics.errors.labels(e.code).inc()
                await ws.send(e.to_json())
                await ws.close(e.close_code, close_reason(e.message))
                return


async def run_server(backend: Backend, config: ServerConfig, stop: asyncio.Event,
                     ready: "callable | None" = None) -> None:
    """Serve until ``stop`` is set, then shut down gracefully."""
    server = await StreamServer(backend, config).start()
    if ready is not None:
        ready(server)
    await stop.wait()
    await server.shutdown()
