"""Bad input on a real server: each case gets a clear error and a fitting close code,
while a well-behaved stream keeps streaming in real time next to them and still gets
exactly the offline tokens."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from llmcodec.speech import speech_clip
from conftest import token_differences
from llmcodec.stream.auth import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, token_from_subprotocols, token_subprotocol
from llmcodec.stream.buffer import encode_all
from llmcodec.stream.client import stream_pcm
from llmcodec.stream.page import protocol_constants
from llmcodec.stream.protocol import DECODE_PATH, STREAM_PATH
from llmcodec.stream.server_config import ServerConfig
from llmcodec.stream.server_thread import ServerThread

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = {"type": "start", "sample_rate": 16000, "format": "pcm_f32le", "channels": 1}
START_S16 = {**START, "format": "pcm_s16le"}
AUDIO = speech_clip(0.2, start=3).astype("<f4").tobytes()  # 1.67 blocks of real speech
BLOCK = {"type": "tokens", "codes": [[1], [2, 3], [4, 5, 6, 7]]}


@pytest.fixture(scope="module")
def server(default_backend):
    cfg = ServerConfig(port=0, max_batch=8, idle_timeout=1.5, token=TOKEN)
    with ServerThread(default_backend, cfg) as st:
        yield st


class GoodStream:
    """A real-time paced client in its own thread, streaming until told to stop."""

    def __init__(self, url: str, clip: np.ndarray):
        self.url, self.clip = url, clip
        self.result = self.error = None
        self.blocks = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(30) and self.error is None, self.error

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()

        def on_block(b) -> None:
            self.blocks += 1
            self._ready.set()
        try:
            self.result = await stream_pcm(self.url, self.clip, 16000, chunk=320, realtime=True, stop=self.stop,
                                           token=TOKEN, on_block=on_block)
        except BaseException as e:  # reported by the final test
            self.error = e
            self._ready.set()

    def finish(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self._thread.join(60)
        return self.result


@pytest.fixture(scope="module")
def good(server, speech_30s):
    g = GoodStream(server.url, speech_30s)
    yield g
    if g._thread.is_alive():
        g.finish()


async def exchange(url: str, path: str, steps: list, headers=AUTH):
    """Send ``steps`` (dict -> JSON text, str -> text, bytes -> binary); collect the error and close."""
    error = None
    ws = await connect(url + path, additional_headers=headers, compression=None, max_size=None)
    try:
        for s in steps:
            await ws.send(json.dumps(s) if isinstance(s, dict) else s)
            await asyncio.sleep(0)
        async for msg in ws:
            if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                error = json.loads(msg)
    except ConnectionClosed:
        pass
    finally:
        try:
            await ws.close()
        except Exception:  # the server already tore the connection down (1009)
            pass
    return error, ws.close_code, ws.close_reason


NAN = np.array([0.1, np.nan, 0.2], "<f4").tobytes()
INF = np.array([0.1, 0.2, np.inf], "<f4").tobytes()
CASES = {  # name: (path, steps, error code, close code, words the message must contain)
    "bad json": (STREAM_PATH, ["{not json"], "bad_json", 1007, "JSON"),
    "json array": (STREAM_PATH, ["[1, 2, 3]"], "bad_message", 1007, "object"),
    "missing type": (STREAM_PATH, [{"sample_rate": 16000}], "bad_message", 1007, "type"),
    "unknown type": (STREAM_PATH, [{"type": "hello"}], "unknown_type", 1008, "accepted"),
    "audio before start": (STREAM_PATH, [AUDIO], "not_started", 1008, "start"),
    "end before start": (STREAM_PATH, [{"type": "end"}], "not_started", 1008, "start"),
    "unsupported rate": (STREAM_PATH, [{**START, "sample_rate": 4000}], "unsupported_rate", 1003, "8000"),
    "rate as string": (STREAM_PATH, [{**START, "sample_rate": "48000"}], "bad_start", 1007, "integer"),
    "missing rate": (STREAM_PATH, [{"type": "start"}], "bad_start", 1007, "sample_rate"),
    "unsupported format": (STREAM_PATH, [{**START, "format": "mp3"}], "unsupported_format", 1003, "pcm_s16le"),
    "zero channels": (STREAM_PATH, [{**START, "channels": 0}], "unsupported_channels", 1003, "1..8"),
    "unknown return": (STREAM_PATH, [{**START, "return": ["video"]}], "unsupported_return", 1003, "accepted"),
    "unknown start field": (STREAM_PATH, [{**START, "rate": 1}], "bad_start", 1007, "accepted"),
    "second start": (STREAM_PATH, [START, AUDIO, START], "unexpected_message", 1008, "already"),
    "odd byte count s16": (STREAM_PATH, [START_S16, AUDIO[:3]], "bad_audio", 1007, "multiple of 2"),
    "partial float sample": (STREAM_PATH, [START, AUDIO, AUDIO[:6]], "bad_audio", 1007, "multiple of 4"),
    "partial stereo frame": (STREAM_PATH, [{**START_S16, "channels": 2}, AUDIO[:6]], "bad_audio", 1007,
                             "multiple of 4"),
    "NaN samples": (STREAM_PATH, [START, AUDIO, NAN], "non_finite", 1007, "NaN"),
    "Inf samples": (STREAM_PATH, [START, INF], "non_finite", 1007, "finite"),
    "text frame mid-audio": (STREAM_PATH, [START, AUDIO, "hello"], "bad_json", 1007, "JSON"),
    "tokens mid-audio": (STREAM_PATH, [START, AUDIO, BLOCK], "unexpected_message", 1008, "/v1/decode"),
    "end with fields": (STREAM_PATH, [START, AUDIO, {"type": "end", "now": True}], "unexpected_message", 1008, "end"),
    "binary on decode": (DECODE_PATH, [{"type": "start"}, AUDIO], "unexpected_binary", 1003, "/v1/stream"),
    "audio fields on decode": (DECODE_PATH, [START], "bad_start", 1007, "accepted"),
    "tokens before start": (DECODE_PATH, [BLOCK], "not_started", 1008, "start"),
    "two levels": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [[1], [2, 3]]}],
                   "bad_tokens", 1007, "3 levels"),
    "wrong level length": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [[1], [2, 3], [4, 5, 6]]}],
                           "bad_tokens", 1007, "multiple of 4"),
    "blocks disagree": (DECODE_PATH, [{"type": "start"},
                                      {"type": "tokens", "codes": [[1, 1], [2, 3], [4, 5, 6, 7]]}],
                        "bad_tokens", 1007, "disagree"),
    "code out of range": (DECODE_PATH, [{"type": "start"},
                                        {"type": "tokens", "codes": [[1], [2, 3], [4, 5, 6, 49152]]}],
                          "bad_tokens", 1007, "49152"),
    "float token": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [[1.5], [2, 3], [4, 5, 6, 7]]}],
                    "bad_tokens", 1007, "integers"),
    "bad LLM token id": (DECODE_PATH, [{"type": "start"},
                                       {"type": "tokens", "levels": [[99999], [2, 3], [4, 5, 6, 7]]}],
                         "bad_tokens", 1007, "level 1"),
    "no tokens field": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "ids": [1]}], "bad_tokens", 1007,
                        "'codes'"),
    # Inputs that once closed with 1000 and no message:
    "JSON nested 20000 deep before start": (STREAM_PATH, ["[" * 20_000 + "]" * 20_000], "bad_json", 1007,
                                            "nests too deeply"),
    "JSON nested 10000 deep mid-stream": (STREAM_PATH, [START, AUDIO, '{"a":' * 10_000 + "1" + "}" * 10_000],
                                          "bad_json", 1007, "nests too deeply"),
    "JSON nested 100000 deep before start": (STREAM_PATH, ["[" * 100_000 + "]" * 100_000], "too_large", 1009,
                                             "refused before parsing"),
    "JSON nested 100000 deep mid-stream": (STREAM_PATH, [START, AUDIO, '{"a":' * 100_000 + "1" + "}" * 100_000],
                                           "too_large", 1009, "refused before parsing"),
    "5000-digit integer": (STREAM_PATH, ['{"type": "start", "sample_rate": ' + "9" * 5000 + "}"], "bad_json", 1007,
                           "digits"),
    "format as a list": (STREAM_PATH, [{**START, "format": ["pcm_s16le"]}], "unsupported_format", 1003,
                         "pcm_f32le"),
    "format as an object": (STREAM_PATH, [{**START, "format": {"a": 1}}], "unsupported_format", 1003,
                            "pcm_f32le"),
    "decode id 2**70": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [[2 ** 70], [2, 3], [4, 5, 6, 7]]}],
                        "bad_tokens", 1007, "accepted: integers in [0, 4096)"),
    "LLM token id 2**70": (DECODE_PATH, [{"type": "start"},
                                         {"type": "tokens", "levels": [[2 ** 70], [2, 3], [4, 5, 6, 7]]}],
                           "bad_tokens", 1007, "[0, 49152)"),
    "text message over max_text_bytes": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [[1] * 40000,
                                         [2] * 80000, [3] * 160000]}], "too_large", 1009, "refused before parsing"),
    "tokens message over the queue limit": (DECODE_PATH, [{"type": "start"}, {"type": "tokens", "codes": [
        [1] * 500, [2] * 1000, [3] * 2000]}], "too_large", 1009, "fewer blocks per message"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(server, good, name):
    path, steps, code, close, words = CASES[name]
    error, close_code, reason = asyncio.run(exchange(server.url, path, steps))
    assert error is not None, f"{name}: no error message (closed {close_code} {reason!r})"
    assert error["code"] == code and words in error["message"], error
    assert close_code == close and reason, (close_code, reason)


def test_a_10_mb_frame_is_refused_with_1009(server, good):
    error, close_code, reason = asyncio.run(exchange(server.url, STREAM_PATH, [START, b"\x00" * (10 << 20)]))
    assert close_code == 1009 and "exceeds limit of 1048576 bytes" in reason, (close_code, reason)


def test_idle_stream_times_out(server, good):
    t = time.monotonic()
    error, close_code, _ = asyncio.run(exchange(server.url, STREAM_PATH, [START, AUDIO]))
    assert error["code"] == "idle_timeout" and "1.5 s" in error["message"] and close_code == 1008
    assert time.monotonic() - t >= 1.4


@pytest.mark.parametrize("path, headers, status, words", [
    ("/v2/stream", AUTH, 404, "/v1/stream"),
    ("/index.htm", AUTH, 404, "unknown path"),
    (STREAM_PATH, {}, 401, "bearer token"),
    (STREAM_PATH, {"Authorization": "Bearer nope"}, 403, "not valid"),
    (DECODE_PATH, {"Authorization": "Basic dTpw"}, 401, "bearer token"),
])
def test_http_refusals(server, good, path, headers, status, words):
    with pytest.raises(InvalidStatus) as e:
        asyncio.run(exchange(server.url, path, [START], headers))
    assert e.value.response.status_code == status and words in e.value.response.body.decode()


def test_token_as_a_subprotocol(server, good):
    """Browsers send the token as the subprotocol llmcodec.token.<base64url>; the server answers
    llmcodec.v1 (never echoing the token); a wrong or garbled one is 403, as in the header."""
    async def run(protocols):
        async with connect(server.url + STREAM_PATH, subprotocols=protocols) as ws:
            await ws.send(json.dumps(START))
            return ws.subprotocol, json.loads(await ws.recv())["type"]
    assert asyncio.run(run([SUBPROTOCOL, token_subprotocol(TOKEN)])) == (SUBPROTOCOL, "ready")
    for bad in (token_subprotocol("nope"), TOKEN_SUBPROTOCOL_PREFIX + "____"):  # ____: not UTF-8
        with pytest.raises(InvalidStatus) as e:
            asyncio.run(run([SUBPROTOCOL, bad]))
        assert e.value.response.status_code == 403


def test_token_subprotocol_carries_any_token():
    for token in ("s3cret", "a/b+c=d==", "é ü 中文", ""):
        sp = token_subprotocol(token)
        assert re.fullmatch(r"llmcodec\.token\.[A-Za-z0-9_-]*", sp)  # RFC 6455 token characters
        assert token_from_subprotocols(["llmcodec.v1", sp]) == token
    assert token_from_subprotocols(["llmcodec.v1", "chat"]) is None


def test_the_page_is_served_without_a_token(server, good):
    """The browser page loads without the token (the page asks for it); its protocol constants
    come from the Python protocol module."""
    import urllib.request
    base = server.url.replace("ws://", "http://")
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        assert b'src="app.js"' in r.read()
    for path, kind in (("/app.js", "text/javascript"), ("/capture-worklet.js", "text/javascript"),
                       ("/style.css", "text/css")):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            assert r.headers["Content-Type"].startswith(kind) and len(r.read()) > 100
    with urllib.request.urlopen(base + "/protocol.json", timeout=10) as r:
        constants = json.loads(r.read())
    assert constants == protocol_constants()
    assert constants["stream_path"] == STREAM_PATH and constants["subprotocol"] == SUBPROTOCOL


def test_the_good_stream_kept_streaming_and_got_the_offline_tokens(server, good, default_backend):
    """Runs last: the real-time stream beside every bad case above."""
    before = good.blocks
    time.sleep(0.3)
    assert good.error is None and good.blocks > before, "the good stream stalled"
    r = good.finish()
    assert good.error is None, good.error
    assert r.end_blocks == len(r.blocks) > 5
    ref = encode_all(default_backend, good.clip[:r.samples_sent])
    assert token_differences(r.codes(), ref) == []
    # Every bad client above is gone: none of their sessions may be left registered (one once
    # was: a client that vanished before reading 'ready'; see test_server.py).
    deadline = time.monotonic() + 15
    while server.call(lambda: len(server.server.sessions)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.call(lambda: list(server.server.sessions.values())) == []
    _, text = asyncio.run(asyncio.to_thread(_metrics, server.url))
    assert 'llmcodec_errors_total{code="bad_tokens"}' in text and 'llmcodec_errors_total{code="non_finite"}' in text


def _metrics(url: str):
    import urllib.request
    req = urllib.request.Request(url.replace("ws://", "http://") + "/metrics", headers=AUTH)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode()
