"""Async client of protocol v1: stream audio in, collect tokens, timings and audio;
decode tokens back to audio. Used by ``llmcodec stream``/``mic``, the tests and
the benchmarks.

Client-observed latency of a block: the time its tokens arrived minus the time
the client sent the frame holding the block's last sample (the server reports
that sample count as ``timing.input_samples``).
"""
from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .protocol import (DECODE_PATH, ERRORS, FORMATS, MAX_CHANNELS, STREAM_PATH, Audio, End, ErrorMessage, Ready,
                       Start, Timing, Tokens, parse_server_message)


class ServerError(RuntimeError):
    """The server sent an error (or closed without one): ``code`` as in protocol.ERRORS."""

    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.close_code = code, message, close_code


class ConnectError(ConnectionError):
    """The connection could not be opened (refused, HTTP 401/403/404/503, ...)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def endpoint_url(url: str, path: str) -> str:
    """``ws://host:port`` (or with a path) -> the endpoint URL; keeps an explicit path."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"URL {url!r} must start with ws:// or wss://")
    if parts.path in ("", "/"):
        parts = parts._replace(path=path)
    return urlunsplit(parts)


async def open_connection(url: str, path: str = STREAM_PATH, *, token: str | None = None,
                          retries: int = 0, backoff: float = 0.5, origin: str | None = None,
                          open_timeout: float = 10.0, ssl: SSLContext | None = None) -> ClientConnection:
    """Connect, retrying refused connections and HTTP 503 ``retries`` times with exponential backoff.

    ``ssl``: the TLS context for ``wss://`` (default: the system's trusted CAs)."""
    target = endpoint_url(url, path)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    tls = {"ssl": ssl} if ssl is not None and target.startswith("wss:") else {}
    for attempt in range(retries + 1):
        try:
            return await connect(target, additional_headers=headers, compression=None, origin=origin,
                                 open_timeout=open_timeout, max_size=None, **tls)
        except InvalidStatus as e:
            status = e.response.status_code
            body = bytes(e.response.body or b"").decode(errors="replace").strip()
            if status != 503 or attempt == retries:
                raise ConnectError(f"{target}: HTTP {status}: {body}", status) from None
        except (OSError, TimeoutError) as e:
            if attempt == retries:
                raise ConnectError(f"{target}: cannot connect: {e}") from None
        await asyncio.sleep(min(backoff * 2 ** attempt, 5.0))
    raise AssertionError("unreachable")


# ---- results -------------------------------------------------------------------
@dataclass(frozen=True)
class LatencySummary:
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values_ms: list[float]) -> "LatencySummary":
        if not values_ms:
            return cls(0, *([float("nan")] * 5))
        a = np.asarray(values_ms, dtype=np.float64)
        p = np.percentile(a, [50, 90, 99])
        return cls(int(a.size), float(p[0]), float(p[1]), float(p[2]), float(a.mean()), float(a.max()))

    def short(self) -> str:
        """p50 p90 p99, ms."""
        return f"{self.p50:6.1f} {self.p90:6.1f} {self.p99:6.1f}"

    def format(self) -> str:
        return (f"p50 {self.p50:7.1f} ms  p90 {self.p90:7.1f} ms  p99 {self.p99:7.1f} ms  "
                f"max {self.max:7.1f} ms  (n={self.n})")


@dataclass
class ReceivedBlock:
    seq: int
    codes: tuple[tuple[int, ...], ...] | None
    levels: tuple[tuple[int, ...], ...] | None
    text: tuple[str, ...] | None
    timing: Timing
    received_at: float  # time.monotonic() on arrival
    sent_at: float | None  # when the frame with the block's last sample was sent
    audio: np.ndarray | None = None  # float32 [block_size]

    @property
    def client_ms(self) -> float | None:
        return None if self.sent_at is None else (self.received_at - self.sent_at) * 1000.0


@dataclass
class StreamResult:
    ready: Ready
    blocks: list[ReceivedBlock] = field(default_factory=list)
    end_blocks: int | None = None  # the server's count; None if the stream was cut
    samples_sent: int = 0
    seconds: float = 0.0  # wall time from ready to end

    def codes(self) -> list[np.ndarray]:
        """Codes per level, int64 [blocks * tokens_per_block[l]]."""
        return [np.asarray([i for b in self.blocks for i in b.codes[l]], dtype=np.int64)
                for l in range(len(self.ready.tokens_per_block))]

    def audio(self) -> np.ndarray:
        parts = [b.audio for b in self.blocks if b.audio is not None]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def latency(self, kind: str = "client") -> LatencySummary:
        """``client`` (observed on the wire), ``server``, ``queue`` or ``compute`` (ms)."""
        if kind == "client":
            return LatencySummary.of([b.client_ms for b in self.blocks if b.client_ms is not None])
        attr = {"server": "server_ms", "queue": "queue_ms", "compute": "compute_ms"}[kind]
        return LatencySummary.of([getattr(b.timing, attr) for b in self.blocks])


# ---- audio sources --------------------------------------------------------------------
def to_bytes(pcm: np.ndarray, fmt: str) -> bytes:
    """[T] or [T, C] samples (int16 or float) -> interleaved little-endian PCM of ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; accepted: {list(FORMATS)}")
    if fmt == "pcm_s16le":
        if pcm.dtype != np.int16:
            pcm = np.round(np.clip(pcm, -1.0, 32767 / 32768) * 32768).astype(np.int16)
        return pcm.astype("<i2", copy=False).tobytes()
    if pcm.dtype == np.int16:
        pcm = pcm.astype(np.float32) / np.float32(32768)
    return np.ascontiguousarray(pcm, dtype="<f4").tobytes()


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int, str]:
    """A file at its own rate and channels -> (samples [T] or [T, C], rate, the lossless format).

    16-bit PCM files are read as int16 and sent as pcm_s16le; others as float32.
    """
    import soundfile as sf
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
        int16 = info.subtype == "PCM_16"
        data, rate = sf.read(str(path), dtype="int16" if int16 else "float32", always_2d=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: unsupported or corrupt audio file ({e})") from None
    if data.shape[1] > MAX_CHANNELS:
        data = data.astype(np.float32).mean(axis=1, keepdims=True)
        int16 = False
    data = data[:, 0] if data.shape[1] == 1 else data
    return data, int(rate), "pcm_s16le" if int16 else "pcm_f32le"


async def paced_chunks(pcm: np.ndarray, sample_rate: int, chunk: int, realtime: bool = True,
                       speed: float = 1.0) -> AsyncIterator[np.ndarray]:
    """Chunks of ``chunk`` samples; with ``realtime``, each when its last sample would be captured."""
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {chunk}")
    t0 = time.monotonic()
    for i in range(0, len(pcm), chunk):
        end = min(i + chunk, len(pcm))
        if realtime:
            delay = t0 + end / (sample_rate * speed) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield pcm[i:end]


# ---- /v1/stream -------------------------------------------------------------------------
def _closed_error(e: ConnectionClosed, blocks: int) -> ServerError:
    rcvd = e.rcvd
    code = rcvd.code if rcvd is not None else None
    reason = rcvd.reason if rcvd is not None else "no close frame"
    name = {1009: "too_large", 1001: "going_away"}.get(code, "closed")
    return ServerError(name, f"the server closed the connection ({code} {reason}) after {blocks} block(s)", code)


async def stream_chunks(url: str, chunks: AsyncIterator[np.ndarray], sample_rate: int, *,
                        channels: int = 1, fmt: str = "pcm_f32le", returns: tuple[str, ...] = ("tokens",),
                        token: str | None = None, retries: int = 0, origin: str | None = None,
                        on_ready: Callable[[Ready], None] | None = None,
                        on_block: Callable[[ReceivedBlock], None] | None = None,
                        stop: asyncio.Event | None = None, end_timeout: float = 60.0,
                        ssl: SSLContext | None = None) -> StreamResult:
    """Stream audio chunks ([T] or [T, channels]) to /v1/stream; returns every block received.

    Setting ``stop`` ends the stream early (as Ctrl-C does): the client sends
    ``end`` and still collects the blocks the server completes.
    """
    ws = await open_connection(url, STREAM_PATH, token=token, retries=retries, origin=origin, ssl=ssl)
    async with ws:
        await ws.send(Start(sample_rate, fmt, channels, tuple(returns)).to_json())
        first = parse_server_message(await ws.recv())
        if isinstance(first, ErrorMessage):
            raise ServerError(first.code, first.message)
        ready: Ready = first
        if on_ready is not None:
            on_ready(ready)
        result = StreamResult(ready)
        sent_n: list[int] = []
        sent_t: list[float] = []
        t_start = time.monotonic()

        async def send_audio() -> None:
            async for c in chunks:
                if not len(c):
                    continue
                data = to_bytes(np.asarray(c), fmt)
                t = time.monotonic()  # before the send, which may yield to the receiver
                result.samples_sent += len(c)
                sent_n.append(result.samples_sent)
                sent_t.append(t)
                await ws.send(data)

        async def receive() -> None:
            pending: ReceivedBlock | None = None
            try:
                async for msg in ws:
                    now = time.monotonic()
                    if isinstance(msg, bytes):
                        if pending is None:
                            raise ServerError("closed", "unexpected binary frame from the server")
                        pending.audio = np.frombuffer(msg, dtype="<f4").astype(np.float32)
                        result.blocks.append(pending)
                        if on_block is not None:
                            on_block(pending)
                        pending = None
                        continue
                    m = parse_server_message(msg)
                    if isinstance(m, Tokens):
                        k = bisect.bisect_left(sent_n, m.timing.input_samples)
                        b = ReceivedBlock(m.seq, m.codes, m.levels, m.text, m.timing, now,
                                          sent_t[k] if k < len(sent_t) else None)
                        if m.audio:
                            pending = b
                        else:
                            result.blocks.append(b)
                            if on_block is not None:
                                on_block(b)
                    elif isinstance(m, End):
                        result.end_blocks = m.blocks
                        return
                    elif isinstance(m, ErrorMessage):
                        raise ServerError(m.code, m.message, int(ERRORS[m.code][0]) if m.code in ERRORS else None)
            except ConnectionClosed as e:
                raise _closed_error(e, len(result.blocks)) from None
            raise _closed_error(ConnectionClosed(ws.close_rcvd, ws.close_sent), len(result.blocks))

        recv_task = asyncio.create_task(receive())
        send_task = asyncio.create_task(send_audio())
        stop_task = asyncio.create_task(stop.wait()) if stop is not None else None
        waiters = {recv_task, send_task} | ({stop_task} if stop_task else set())
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if recv_task not in done:
                closed = False
                if send_task in done:
                    err = send_task.exception()
                    closed = isinstance(err, ConnectionClosed)  # the receiver reports why
                    if err is not None and not closed:
                        raise err
                else:
                    send_task.cancel()
                if not closed:
                    try:
                        await ws.send(End().to_json())
                    except ConnectionClosed:
                        pass
                await asyncio.wait_for(asyncio.shield(recv_task), end_timeout)
            recv_task.result()
        finally:
            for t in (recv_task, send_task, stop_task):
                if t is not None and not t.done():
                    t.cancel()
            await asyncio.gather(*(t for t in (recv_task, send_task, stop_task) if t is not None),
                                 return_exceptions=True)
        result.seconds = time.monotonic() - t_start
        return result


async def stream_pcm(url: str, pcm: np.ndarray, sample_rate: int, *, chunk: int | None = None,
                     realtime: bool = False, speed: float = 1.0, fmt: str | None = None,
                     **kwargs) -> StreamResult:
    """Stream an array ([T] or [T, C]; int16 or float) in chunks (default 20 ms)."""
    pcm = np.asarray(pcm)
    if pcm.ndim not in (1, 2):
        raise ValueError(f"pcm must be [T] or [T, channels], got shape {pcm.shape}")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    fmt = fmt or ("pcm_s16le" if pcm.dtype == np.int16 else "pcm_f32le")
    chunk = chunk or max(1, sample_rate // 50)
    return await stream_chunks(url, paced_chunks(pcm, sample_rate, chunk, realtime, speed), sample_rate,
                               channels=channels, fmt=fmt, **kwargs)


async def stream_file(url: str, path: str | Path, **kwargs) -> StreamResult:
    """Stream an audio file at its own rate and channels, losslessly (see read_audio_file)."""
    pcm, rate, fmt = read_audio_file(path)
    kwargs.setdefault("fmt", fmt)
    return await stream_pcm(url, pcm, rate, **kwargs)


# ---- /v1/decode ----------------------------------------------------------------------------
@dataclass
class DecodeResult:
    ready: Ready
    audio: np.ndarray  # float32 [blocks * block_size] at ready.sample_rate
    timings: list[Timing]
    client_ms: list[float]  # message with the block sent -> its audio received
    end_blocks: int | None


async def decode_codes(url: str, codes: list[np.ndarray], *, blocks_per_message: int = 1,
                       send: str = "codes", vocab=None, token: str | None = None,
                       retries: int = 0, ssl: SSLContext | None = None) -> DecodeResult:
    """Codes per level [blocks * tokens_per_block[l]] -> audio from /v1/decode.

    ``send``: ``codes`` (codebook indices), ``levels`` (LLM token ids) or
    ``text``; the latter two need the model's ``vocab``.
    """
    import json
    ws = await open_connection(url, DECODE_PATH, token=token, retries=retries, ssl=ssl)
    async with ws:
        await ws.send(json.dumps({"type": "start"}))
        first = parse_server_message(await ws.recv())
        if isinstance(first, ErrorMessage):
            raise ServerError(first.code, first.message)
        ready: Ready = first
        tpb = ready.tokens_per_block
        blocks = len(codes[0]) // tpb[0]
        sent_t: list[float] = []
        parts, timings, client_ms = [], [], []

        async def sender() -> None:
            for i in range(0, blocks, blocks_per_message):
                j = min(i + blocks_per_message, blocks)
                part = [np.asarray(c[i * n:j * n]) for c, n in zip(codes, tpb)]
                if send == "codes":
                    body = [[int(x) for x in p] for p in part]
                elif send == "levels":
                    body = [vocab.codes_to_token_ids(l, p) for l, p in enumerate(part)]
                else:
                    body = [vocab.codes_to_text(l, p) for l, p in enumerate(part)]
                sent_t.extend([time.monotonic()] * (j - i))
                await ws.send(json.dumps({"type": "tokens", "seq": i, send: body}))
            await ws.send(End().to_json())

        send_task = asyncio.create_task(sender())
        end_blocks = None
        try:
            header: Audio | None = None
            async for msg in ws:
                if isinstance(msg, bytes):
                    parts.append(np.frombuffer(msg, dtype="<f4").astype(np.float32))
                    client_ms.append((time.monotonic() - sent_t[header.seq]) * 1000.0)
                    continue
                m = parse_server_message(msg)
                if isinstance(m, Audio):
                    header = m
                    timings.append(m.timing)
                elif isinstance(m, End):
                    end_blocks = m.blocks
                    break
                elif isinstance(m, ErrorMessage):
                    raise ServerError(m.code, m.message)
            else:
                raise _closed_error(ConnectionClosed(ws.close_rcvd, ws.close_sent), len(parts))
        finally:
            if not send_task.done():
                send_task.cancel()
            await asyncio.gather(send_task, return_exceptions=True)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return DecodeResult(ready, audio, timings, client_ms, end_blocks)
