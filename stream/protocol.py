"""Protocol v1 of the streaming server: messages, validation, error and close codes.

One module for the server and every client (docs/PROTOCOL.md is its prose).
Text frames carry JSON objects with a ``type``; binary frames carry raw PCM.

``/v1/stream`` (audio -> tokens)::

    client: {"type": "start", "sample_rate": 48000, "format": "pcm_s16le", "channels": 1,
             "return": ["tokens", "text", "audio"]}
    server: {"type": "ready", ...model facts...}
    client: binary PCM frames (any whole number of sample frames) ...
    server: {"type": "tokens", "seq": k, "codes": [[..], [..], [..]], "levels": [..],
             "text": [..], "timing": {...}}   (+ a binary float32 16 kHz block with "audio")
    client: {"type": "end"}
    server: {"type": "end", "blocks": N}, then close 1000

``/v1/decode`` (tokens -> audio): ``start`` / ``ready`` as above (no audio
fields), then token messages of the same shape, each answered per block by
``{"type": "audio", "seq": k, "samples": n, "timing": {...}}`` and a binary
float32 frame; ``end`` as above.

Errors: ``{"type": "error", "code": ..., "message": ...}`` then a close with
the code's close code (``ERRORS``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from llmcodec.codes import check_codes

PROTOCOL_VERSION = 1
STREAM_PATH = "/v1/stream"
DECODE_PATH = "/v1/decode"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
WS_PATHS = (STREAM_PATH, DECODE_PATH)

# Input PCM formats: name -> little-endian numpy dtype of one sample.
FORMATS: dict[str, np.dtype] = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}
AUDIO_OUT_FORMAT = "pcm_f32le"  # decoded audio frames: float32 at the model's rate
RETURNS = ("tokens", "text", "audio")
DECODE_RETURNS = ("audio",)
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: ~5 s of 48 kHz float32 mono
DEFAULT_MAX_TEXT_BYTES = 64 << 10  # a JSON message: refused by size before it is parsed
DEFAULT_MAX_QUEUED_SECONDS = 5.0  # per connection: audio received but not yet answered; then input waits


class Close(IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4.1) used by the server."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


# error code -> (close code, when it is sent)
ERRORS: dict[str, tuple[Close, str]] = {
    "bad_json": (Close.INVALID_DATA, "a text frame is not valid UTF-8 JSON"),
    "bad_message": (Close.INVALID_DATA, "a JSON message is not an object with a string 'type'"),
    "unknown_type": (Close.POLICY_VIOLATION, "a message type the endpoint does not know"),
    "unexpected_message": (Close.POLICY_VIOLATION, "a known message at the wrong time (second start, tokens on /v1/stream, ...)"),
    "not_started": (Close.POLICY_VIOLATION, "audio, tokens or end before the start message"),
    "bad_start": (Close.INVALID_DATA, "a start message with a missing, mistyped or unknown field"),
    "unsupported_rate": (Close.UNSUPPORTED_DATA, f"sample_rate outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"),
    "unsupported_format": (Close.UNSUPPORTED_DATA, f"format other than {', '.join(FORMATS)}"),
    "unsupported_channels": (Close.UNSUPPORTED_DATA, f"channels outside 1..{MAX_CHANNELS}"),
    "unsupported_return": (Close.UNSUPPORTED_DATA, "a 'return' the endpoint or model cannot give"),
    "bad_audio": (Close.INVALID_DATA, "a binary frame that is not a whole number of sample frames"),
    "non_finite": (Close.INVALID_DATA, "float samples that are NaN or Inf"),
    "unexpected_binary": (Close.UNSUPPORTED_DATA, "a binary frame on /v1/decode"),
    "bad_tokens": (Close.INVALID_DATA, "token messages of the wrong shape, type or range"),
    "too_large": (Close.MESSAGE_TOO_BIG, "a message over the size limit (the WebSocket layer closes with 1009 itself)"),
    "idle_timeout": (Close.POLICY_VIOLATION, "no message for idle_timeout seconds"),
    "going_away": (Close.GOING_AWAY, "the server is shutting down; blocks in flight were sent first"),
    "internal": (Close.INTERNAL_ERROR, "the model step failed"),
    "replica_lost": (Close.SERVICE_RESTART, "Ray Serve: the replica serving the stream stopped; reconnect"),
}


class ProtocolError(ValueError):
    """A client broke the protocol: ``code`` names what, ``message`` says what is accepted."""

    def __init__(self, code: str, message: str):
        if code not in ERRORS:
            raise KeyError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> int:
        return int(ERRORS[self.code][0])

    def to_json(self) -> str:
        return json.dumps({"type": "error", "code": self.code, "message": self.message})


def close_reason(message: str) -> str:
    """A close frame reason fits in 123 UTF-8 bytes."""
    b = message.encode()
    return message if len(b) <= 123 else b[:120].decode(errors="ignore") + "..."


# ---- messages -------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """The client's first message. ``returns`` is a subset of RETURNS."""

    sample_rate: int = 16000
    format: str = "pcm_f32le"
    channels: int = 1
    returns: tuple[str, ...] = ("tokens",)

    def to_json(self) -> str:
        return json.dumps({"type": "start", "sample_rate": self.sample_rate, "format": self.format,
                           "channels": self.channels, "return": list(self.returns)})

    @property
    def dtype(self) -> np.dtype:
        return FORMATS[self.format]

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (all channels of one instant)."""
        return self.dtype.itemsize * self.channels


@dataclass(frozen=True)
class Timing:
    """Server-side timing of one block, in milliseconds.

    ``input_samples``: input samples (per channel, at the client's rate) the
    server had received when the block was complete; ``queue_ms``: block
    complete -> batch step starts; ``compute_ms``: the batched step;
    ``server_ms``: block complete -> message leaves (queue + compute + send
    preparation); ``batch``: streams in the step.
    """

    input_samples: int
    queue_ms: float
    compute_ms: float
    server_ms: float
    batch: int

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Timing":
        return cls(int(d["input_samples"]), float(d["queue_ms"]), float(d["compute_ms"]),
                   float(d["server_ms"]), int(d["batch"]))


@dataclass(frozen=True)
class Ready:
    """The server's answer to ``start``: the model's facts and what was agreed."""

    session: str
    endpoint: str
    model: str
    backend: str
    sample_rate: int  # the model's (decoded audio's) rate
    block_size: int  # samples per block at sample_rate
    tokens_per_block: tuple[int, ...]
    level_sizes: tuple[int, ...]
    vocabulary: str | None  # the LLM whose token ids "levels" holds; None: codes only
    input_sample_rate: int | None = None
    format: str | None = None
    channels: int | None = None
    returns: tuple[str, ...] = ()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    audio_format: str = AUDIO_OUT_FORMAT
    protocol: int = PROTOCOL_VERSION

    @property
    def block_seconds(self) -> float:
        return self.block_size / self.sample_rate

    def to_json(self) -> str:
        d = {"type": "ready", **asdict(self)}
        d["tokens_per_block"], d["level_sizes"] = list(self.tokens_per_block), list(self.level_sizes)
        d["returns"] = list(self.returns)
        return json.dumps(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Ready":
        d = {k: v for k, v in d.items() if k != "type"}
        for k in ("tokens_per_block", "level_sizes", "returns"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


@dataclass(frozen=True)
class Tokens:
    """One block's tokens as the server sends them (fields by ``return``)."""

    seq: int
    codes: tuple[tuple[int, ...], ...] | None
    levels: tuple[tuple[int, ...], ...] | None
    text: tuple[str, ...] | None
    timing: Timing
    audio: bool = False  # a binary float32 block follows

    def to_json(self) -> str:
        d: dict[str, Any] = {"type": "tokens", "seq": self.seq}
        if self.codes is not None:
            d["codes"] = [list(c) for c in self.codes]
        if self.levels is not None:
            d["levels"] = [list(c) for c in self.levels]
        if self.text is not None:
            d["text"] = list(self.text)
        d["timing"] = self.timing.to_dict()
        if self.audio:
            d["audio"] = True
        return json.dumps(d)


@dataclass(frozen=True)
class Audio:
    """Header of one decoded block on /v1/decode; the binary frame follows."""

    seq: int
    samples: int
    timing: Timing

    def to_json(self) -> str:
        return json.dumps({"type": "audio", "seq": self.seq, "samples": self.samples,
                           "timing": self.timing.to_dict()})


@dataclass(frozen=True)
class End:
    blocks: int | None = None  # set by the server

    def to_json(self) -> str:
        return json.dumps({"type": "end"} if self.blocks is None else {"type": "end", "blocks": self.blocks})


@dataclass(frozen=True)
class ErrorMessage:
    code: str
    message: str


# ---- parsing and validation (server side) ----------------------------------
CLIENT_TYPES = ("start", "end", "tokens")


def parse_text(text: str | bytes) -> dict:
    """A text frame -> a JSON object with a string ``type``; raises ProtocolError."""
    try:
        d = json.loads(text)
    except RecursionError:
        raise ProtocolError("bad_json", "text frames must be JSON objects; this one nests too deeply to parse") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise ProtocolError("bad_json", f"text frames must be JSON objects; could not parse: {str(e)[:200]}") from None
    if not isinstance(d, dict):
        raise ProtocolError("bad_message", f"a message must be a JSON object, got {type(d).__name__}")
    t = d.get("type")
    if not isinstance(t, str):
        raise ProtocolError("bad_message", f"a message needs a string 'type'; accepted: {', '.join(CLIENT_TYPES)}")
    if t not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {t!r}; accepted: {', '.join(CLIENT_TYPES)}")
    return d


def _int(d: dict, key: str, default: int) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError("bad_start", f"start: {key!r} must be an integer, got {v!r}")
    return v


def parse_start(d: dict, endpoint: str = STREAM_PATH, *, vocabulary: bool = True) -> Start:
    """Validate a ``start`` object for ``endpoint``; ``vocabulary``: the model can give text."""
    keys = ("type", "sample_rate", "format", "channels", "return") if endpoint == STREAM_PATH else ("type", "return")
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise ProtocolError("bad_start", f"start on {endpoint}: unknown field(s) {unknown}; accepted: {list(keys[1:])}")
    allowed = RETURNS if endpoint == STREAM_PATH else DECODE_RETURNS
    ret = d.get("return", ["tokens"] if endpoint == STREAM_PATH else ["audio"])
    if not isinstance(ret, list) or not all(isinstance(r, str) for r in ret) or not ret:
        raise ProtocolError("bad_start", f"start: 'return' must be a non-empty list drawn from {list(allowed)}, got {ret!r}")
    bad = [r for r in ret if r not in allowed]
    if bad:
        raise ProtocolError("unsupported_return", f"start: cannot return {bad} on {endpoint}; accepted: {list(allowed)}")
    if "text" in ret and not vocabulary:
        raise ProtocolError("unsupported_return", "start: this model has no LLM vocabulary, so 'text' is unavailable; "
                            "accepted: ['tokens', 'audio']")
    returns = tuple(dict.fromkeys(ret))
    if endpoint != STREAM_PATH:
        return Start(returns=returns)
    rate = _int(d, "sample_rate", -1)
    if "sample_rate" not in d:
        raise ProtocolError("bad_start", "start: 'sample_rate' is required (an integer in Hz, e.g. 16000 or 48000)")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError("unsupported_rate", f"start: sample_rate {rate} Hz is not supported; "
                            f"accepted: integers {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    fmt = d.get("format", "pcm_f32le")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ProtocolError("unsupported_format", f"start: format {fmt!r} is not supported; accepted: {list(FORMATS)}")
    ch = _int(d, "channels", 1)
    if not 1 <= ch <= MAX_CHANNELS:
        raise ProtocolError("unsupported_channels", f"start: channels {ch} is not supported; accepted: 1..{MAX_CHANNELS} "
                            "(interleaved, averaged to mono)")
    return Start(rate, fmt, ch, returns)


def decode_pcm(data: bytes, start: Start) -> np.ndarray:
    """A binary frame -> float32 mono [T]; raises ProtocolError on a partial frame or NaN/Inf."""
    fb = start.frame_bytes
    if len(data) % fb:
        raise ProtocolError("bad_audio", f"binary frame of {len(data)} bytes is not a whole number of sample frames: "
                            f"{start.format} x {start.channels} channel(s) needs a multiple of {fb} bytes")
    x = np.frombuffer(data, dtype=start.dtype)
    if start.format == "pcm_s16le":
        x = x.astype(np.float32) / np.float32(32768.0)
    else:
        if not np.isfinite(x).all():
            n = int((~np.isfinite(x)).sum())
            raise ProtocolError("non_finite", f"{n} float sample(s) in the frame are NaN or Inf; only finite samples are accepted")
        x = x.astype(np.float32)
    if start.channels > 1:
        x = x.reshape(-1, start.channels).mean(axis=1, dtype=np.float32)
    return x


def _int_list(v: Any, what: str, size: int) -> list[int]:
    """``v`` as a list of ints in ``[0, size)``, or a ``bad_tokens`` error naming the first bad item."""
    if not isinstance(v, list):
        raise ProtocolError("bad_tokens", f"{what} must be a list of integers, got {type(v).__name__}")
    for pos, i in enumerate(v):
        if not isinstance(i, int) or isinstance(i, bool):
            raise ProtocolError("bad_tokens", f"{what} holds {type(i).__name__} at position {pos}; "
                                f"accepted: integers in [0, {size})")
        if not 0 <= i < size:
            shown = str(i) if i.bit_length() < 200 else f"an integer of {i.bit_length()} bits"
            raise ProtocolError("bad_tokens", f"{what} holds {shown} at position {pos}; "
                                f"accepted: integers in [0, {size})")
    return v


def parse_tokens(d: dict, tokens_per_block: tuple[int, ...], level_sizes: tuple[int, ...],
                 vocab: Any = None) -> list[np.ndarray]:
    """A ``tokens`` message on /v1/decode -> codes per level, int64 [k * tokens_per_block[l]].

    Accepts ``codes`` (codebook indices), else ``levels`` (the LLM's token ids)
    or ``text`` (the LLM text of each level), as /v1/stream sends them; holds
    k >= 1 whole blocks.
    """
    n = len(tokens_per_block)
    for key in ("codes", "levels", "text"):
        if key in d:
            break
    else:
        raise ProtocolError("bad_tokens", "a tokens message needs 'codes', 'levels' or 'text' "
                            f"(a list of {n} lists, one per level)")
    v = d[key]
    if not isinstance(v, list) or len(v) != n:
        raise ProtocolError("bad_tokens", f"'{key}' must be a list of {n} levels, got "
                            f"{len(v) if isinstance(v, list) else type(v).__name__}")
    if key != "codes" and vocab is None:
        raise ProtocolError("bad_tokens", f"this model has no LLM vocabulary; send 'codes', not '{key}'")
    codes = []
    for l, item in enumerate(v):
        try:
            if key == "codes":
                c = _int_list(item, f"codes level {l + 1}", level_sizes[l])
            elif key == "levels":
                c = vocab.token_ids_to_codes(l, _int_list(item, f"levels level {l + 1}", vocab.vocab_size))
            else:
                if not isinstance(item, str):
                    raise ProtocolError("bad_tokens", f"text level {l + 1} must be a string")
                c = vocab.text_to_codes(l, item)
        except ProtocolError:
            raise
        except ValueError as e:
            raise ProtocolError("bad_tokens", f"{key} level {l + 1}: {e}") from None
        codes.append(np.asarray(c, dtype=np.int64))
    try:
        check_codes([c[None, :] for c in codes], tokens_per_block, level_sizes, empty=False)
    except ValueError as e:
        raise ProtocolError("bad_tokens", str(e)) from None
    return codes


# ---- parsing (client side) ---------------------------------------------------
ServerMessage = Ready | Tokens | Audio | End | ErrorMessage


def parse_server_message(text: str | bytes) -> ServerMessage:
    """A text frame from the server -> its dataclass; raises ValueError on anything else."""
    d = json.loads(text)
    t = d.get("type") if isinstance(d, dict) else None
    if t == "ready":
        return Ready.from_dict(d)
    if t == "tokens":
        tup = lambda v: None if v is None else tuple(tuple(int(i) for i in c) for c in v)  # noqa: E731
        return Tokens(int(d["seq"]), tup(d.get("codes")), tup(d.get("levels")),
                      None if d.get("text") is None else tuple(d["text"]),
                      Timing.from_dict(d["timing"]), bool(d.get("audio", False)))
    if t == "audio":
        return Audio(int(d["seq"]), int(d["samples"]), Timing.from_dict(d["timing"]))
    if t == "end":
        return End(d.get("blocks"))
    if t == "error":
        return ErrorMessage(str(d.get("code")), str(d.get("message")))
    raise ValueError(f"unexpected message from the server: {str(text)[:120]}")
