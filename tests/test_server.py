"""The streaming server on loopback with real speech: exact tokens, batching, audio,
/v1/decode, health and metrics, disconnects, auth, origins, admission, shutdown, CLIs."""
from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from llmcodec.audio import load_audio
from llmcodec.speech import speech_clip
from conftest import shut_down_mid_stream, token_differences
from llmcodec.stream.buffer import decode_all, encode_all
from llmcodec.stream.client import ConnectError, decode_codes, open_connection, stream_file, stream_pcm
from llmcodec.stream.protocol import STREAM_PATH, Start
from llmcodec.stream.server_config import ServerConfig
from llmcodec.stream.server_thread import ServerThread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(default_backend):
    with ServerThread(default_backend, ServerConfig(port=0, max_batch=8, max_wait_ms=5.0)) as st:
        yield st


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory):
    """Four different real speech recordings: (path, chunk samples), at 16/16/44.1/48 kHz."""
    d = tmp_path_factory.mktemp("speech")
    out = []
    specs = [  # seconds, prompt index, rate, channels, subtype, chunk
        (3.0, 0, 16000, 1, "FLOAT", 333),
        (2.5, 20, 16000, 1, "PCM_16", 1920 * 2 + 7),
        (2.7, 40, 44100, 2, "FLOAT", 4410),
        (2.2, 60, 48000, 1, "PCM_16", 480),
    ]
    for i, (sec, start, rate, ch, subtype, chunk) in enumerate(specs):
        x = speech_clip(sec, start=start)
        if rate != 16000:
            x = soxr.resample(x, 16000, rate).astype(np.float32)
        if ch == 2:
            x = np.stack([x, 0.5 * x], axis=1)
        path = d / f"speech{i}_{rate}_{ch}ch_{subtype}.wav"
        sf.write(str(path), x, rate, subtype=subtype)
        out.append((str(path), chunk))
    return out


def offline(backend, path: str) -> list[np.ndarray]:
    return encode_all(backend, load_audio(path, 16000)[0])


def http_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(predicate, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("rate, channels, fmt", [(16000, 1, "pcm_f32le"), (8000, 1, "pcm_s16le"),
                                                 (22050, 2, "pcm_f32le"), (44100, 1, "pcm_f32le"),
                                                 (48000, 2, "pcm_s16le")])
def test_session_blocks_equal_offline_resampling(default_backend, rate, channels, fmt):
    """The session's blocks are the offline-loaded signal (down-mix, soxr HQ), zero-padded."""
    from llmcodec.stream.client import to_bytes
    from llmcodec.stream.session import Session
    x = speech_clip(1.3, sample_rate=rate, start=7)  # ends mid-word: the resampler tail matters
    x = np.stack([x, -0.25 * x], axis=1) if channels == 2 else x
    if fmt == "pcm_s16le":
        x = np.round(np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)
    data = to_bytes(x, fmt)
    async def run():
        s = Session(STREAM_PATH, Start(rate, fmt, channels), default_backend.facts)
        blocks, rng, i = [], np.random.default_rng(rate), 0
        frame = s.start.frame_bytes
        while i < len(data):
            n = int(rng.integers(0, 3000)) * frame
            blocks += s.push_pcm(data[i:i + n])
            i += n
        return s, blocks + s.finish()
    s, blocks = asyncio.run(run())
    mono = (x.astype(np.float32) / (32768 if x.dtype == np.int16 else 1)).astype(np.float32)
    mono = mono.mean(axis=1) if channels == 2 else mono
    want = soxr.resample(mono, rate, 16000, quality="HQ") if rate != 16000 else mono
    got = np.concatenate([b.pcm for b in blocks])
    assert [b.seq for b in blocks] == list(range(len(blocks))) and len(blocks) == math.ceil(want.size / 1920)
    np.testing.assert_array_equal(got[:want.size], want)
    assert not got[want.size:].any() and s.samples_in == len(x)


def test_concurrent_clients_get_exactly_the_offline_tokens(server, default_backend, speech_files):
    async def run():
        return await asyncio.gather(*(stream_file(server.url, p, chunk=c) for p, c in speech_files))
    results = asyncio.run(run())
    batches = set()
    for (path, _), r in zip(speech_files, results):
        ref = offline(default_backend, path)
        n = math.ceil(load_audio(path, 16000)[0].size / 1920)
        assert r.end_blocks == len(r.blocks) == n, path
        assert [b.seq for b in r.blocks] == list(range(n))
        for level, (got, want) in enumerate(zip(r.codes(), ref)):
            mism = np.flatnonzero(got != want)
            assert got.shape == want.shape and mism.size == 0, \
                f"{path} level {level + 1}: {mism.size} token(s) differ from offline encoding, first at {mism[:5]}"
        for b in r.blocks:
            t = b.timing
            assert t.queue_ms >= 0 and t.compute_ms > 0 and t.server_ms >= t.queue_ms + t.compute_ms - 1e-3
            assert 1 <= t.batch <= 8 and b.client_ms is not None and b.client_ms >= 0
        batches |= {b.timing.batch for b in r.blocks}
    assert max(batches) > 1, f"four concurrent streams never shared a step: batch sizes {batches}"


def test_text_levels_and_audio_match_offline(server, default_backend):
    vocab = default_backend.vocab
    clips = [speech_clip(1.5, start=80), speech_clip(1.3, start=90)]

    async def run():
        return await asyncio.gather(*(stream_pcm(server.url, c, 16000, chunk=700, returns=("tokens", "text", "audio"))
                                      for c in clips))
    for clip, r in zip(clips, asyncio.run(run())):
        ref = encode_all(default_backend, clip)
        assert token_differences(r.codes(), ref) == []
        for b in r.blocks:
            assert b.levels == tuple(tuple(vocab.codes_to_token_ids(l, c)) for l, c in enumerate(b.codes))
            assert b.text == tuple(vocab.codes_to_text(l, c) for l, c in enumerate(b.codes))
            assert b.audio is not None and b.audio.dtype == np.float32 and b.audio.shape == (1920,)
        # Batched decode steps may differ from batch-1 offline decoding in the last float bits only.
        np.testing.assert_allclose(r.audio(), decode_all(default_backend, ref), atol=1e-5, rtol=0)


def test_decode_endpoint_codes_levels_and_text(server, default_backend):
    clip = speech_clip(1.2, start=100)
    codes = encode_all(default_backend, clip)
    want = decode_all(default_backend, codes)
    for send, per in (("codes", 1), ("levels", 4), ("text", 3)):
        r = asyncio.run(decode_codes(server.url, codes, send=send, blocks_per_message=per,
                                     vocab=default_backend.vocab))
        assert r.end_blocks == len(r.timings) == codes[0].size, send
        assert [t.batch >= 1 for t in r.timings] and len(r.client_ms) == r.end_blocks
        np.testing.assert_allclose(r.audio, want, atol=1e-5, rtol=0, err_msg=send)


def test_health_and_metrics(server):
    base = server.url.replace("ws://", "http://")
    status, body = http_get(base + "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["model"] == "small"
    assert health["active_streams"] == 0
    asyncio.run(stream_pcm(server.url, speech_clip(0.5), 16000))
    status, text = http_get(base + "/metrics")
    assert status == 200
    for name in ("llmcodec_step_seconds_bucket", "llmcodec_batch_size_count", "llmcodec_active_streams",
                 "llmcodec_queue_depth", "llmcodec_block_latency_seconds_count", "llmcodec_blocks_total"):
        assert name in text, name
    count = [l for l in text.splitlines() if l.startswith('llmcodec_batch_size_count{kind="encode"}')]
    assert count and float(count[0].split()[-1]) > 0


@pytest.mark.parametrize("how", ["abort", "close"])
def test_disconnect_mid_block_leaves_no_session(server, how):
    clip = speech_clip(2.0, start=120)

    async def run():
        ws = await open_connection(server.url)
        await ws.send(Start(16000, "pcm_f32le", 1).to_json())
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        await ws.send(clip[:2880].tobytes())  # 1.5 blocks
        assert json.loads(await ws.recv())["type"] == "tokens"
        await ws.send(clip[2880:2880 + 1920 * 10 + 500].tobytes())  # 10 more blocks queued, mid-block
        await asyncio.sleep(0.01)
        assert server.call(lambda: len(server.server.sessions)) == 1
        if how == "abort":
            ws.transport.abort()  # no close frame: a vanished client
        else:
            await ws.close()
    asyncio.run(run())
    assert wait_for(lambda: server.call(lambda: len(server.server.sessions)) == 0), "a session was left behind"
    assert wait_for(lambda: server.call(lambda: server.server.batcher.queue_depth) == 0)
    status, body = http_get(server.url.replace("ws://", "http://") + "/health")
    assert json.loads(body)["active_streams"] == 0


def test_client_gone_before_ready_leaves_no_session(server):
    """Start, then vanish at once: the server's 'ready' send fails, the session must still go."""
    async def run():
        for _ in range(20):
            ws = await open_connection(server.url)
            await ws.send(Start(16000, "pcm_f32le", 1).to_json())
            ws.transport.abort()  # start and the connection's end arrive together
    asyncio.run(run())
    assert wait_for(lambda: server.call(lambda: len(server.server.sessions)) == 0), \
        f"sessions left behind: {server.call(lambda: list(server.server.sessions.values()))}"


def test_ctrl_c_stop_ends_cleanly_with_the_prefix_tokens(server, default_backend):
    clip = speech_clip(3.0, start=140)

    async def run():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.6, stop.set)
        return await stream_pcm(server.url, clip, 16000, chunk=320, realtime=True, stop=stop)
    r = asyncio.run(run())
    assert 0 < r.samples_sent < clip.size and r.end_blocks == len(r.blocks)
    ref = encode_all(default_backend, clip[:r.samples_sent])
    assert token_differences(r.codes(), ref) == []


def test_client_library_raises_the_servers_errors(server):
    from llmcodec.stream.client import ServerError
    with pytest.raises(ServerError) as e:
        asyncio.run(stream_pcm(server.url, speech_clip(0.2), 4000))
    assert e.value.code == "unsupported_rate" and "8000" in e.value.message
    bad = speech_clip(1.0)
    bad[9000] = np.nan
    with pytest.raises(ServerError) as e:
        asyncio.run(stream_pcm(server.url, bad, 16000, chunk=1000))
    assert e.value.code == "non_finite" and e.value.close_code == 1007


def test_auth_refuses_a_missing_or_wrong_token(default_backend):
    with ServerThread(default_backend, ServerConfig(port=0, token="s3cret")) as st:
        for token, status in ((None, 401), ("wrong", 403), ("s3cre", 403)):
            with pytest.raises(ConnectError) as e:
                asyncio.run(stream_pcm(st.url, speech_clip(0.2), 16000, token=token))
            assert e.value.status == status and "token" in str(e.value)
        r = asyncio.run(stream_pcm(st.url, speech_clip(0.3), 16000, token="s3cret"))
        assert r.end_blocks == 3
        r = asyncio.run(stream_pcm(st.url + STREAM_PATH + "?token=s3cret", speech_clip(0.2), 16000))
        assert r.end_blocks == 2
        base = st.url.replace("ws://", "http://")
        assert http_get(base + "/metrics")[0] == 401
        assert http_get(base + "/metrics", {"Authorization": "Bearer s3cret"})[0] == 200
        assert http_get(base + "/health")[0] == 200


def test_origin_allow_list(default_backend):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus
    with ServerThread(default_backend, ServerConfig(port=0, origins=("https://ok.example",))) as st:
        async def try_origin(origin):
            async with connect(st.url + STREAM_PATH, origin=origin) as ws:
                await ws.send(Start().to_json())
                return json.loads(await ws.recv())["type"]
        assert asyncio.run(try_origin("https://ok.example")) == "ready"
        assert asyncio.run(try_origin(None)) == "ready"
        with pytest.raises(InvalidStatus) as e:
            asyncio.run(try_origin("https://evil.example"))
        assert e.value.response.status_code == 403 and b"not allowed" in e.value.response.body


def test_admission_control_503_and_client_retry(default_backend):
    with ServerThread(default_backend, ServerConfig(port=0, max_connections=2)) as st:
        async def run():
            held = [await open_connection(st.url) for _ in range(2)]
            with pytest.raises(ConnectError) as e:
                await open_connection(st.url)
            assert e.value.status == 503 and "limit of 2" in str(e.value)
            asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(held[0].close()))
            r = await stream_pcm(st.url, speech_clip(0.3), 16000, retries=6)  # retried until a slot frees
            await held[1].close()
            return r
        assert asyncio.run(run()).end_blocks == 3
        _, text = http_get(st.url.replace("ws://", "http://") + "/metrics")
        assert 'llmcodec_refused_connections_total{reason="capacity"}' in text


def test_graceful_shutdown_finishes_blocks_in_flight(default_backend):
    clip = speech_clip(1.5, start=160)  # 12.5 blocks: 12 complete, half a block never encoded
    st = ServerThread(default_backend, ServerConfig(port=0, max_batch=4)).start()
    try:
        seqs, error, close_code = shut_down_mid_stream(
            st, [clip[i:i + 4000].tobytes() for i in range(0, clip.size, 4000)],
            lambda s: s.samples_in == clip.size)
        assert seqs == list(range(12))
        assert error["type"] == "error" and error["code"] == "going_away" and "12" in error["message"]
        assert close_code == 1001
    finally:
        st.stop()


def test_stream_cli_fast_writes_tokens_and_audio(server, default_backend, speech_files, tmp_path, capsys):
    from llmcodec.commands import stream_client
    from llmcodec.tokens_io import TokenFile
    path = speech_files[2][0]  # 44.1 kHz stereo float
    tok, wav = tmp_path / "t.json", tmp_path / "o.wav"
    rc = stream_client.main(["stream", path, "--url", server.url, "--fast", "--show", "none",
                             "--tokens-out", str(tok), "--audio-out", str(wav)])
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 0 and "p50" in out and "p99" in out and "batch sizes" in out, cap.err
    codes = TokenFile.load(tok, None).arrays()
    wav16 = load_audio(path, 16000)[0]
    assert token_differences(codes, offline(default_backend, path)) == []
    audio, sr = sf.read(str(wav))
    assert sr == 16000 and audio.size == load_audio(path, 16000)[0].size


def test_stream_cli_sigint_is_clean(server, speech_files):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "llmcodec.commands.stream_client", "stream", speech_files[0][0],
                          "--url", server.url, "--show", "tokens"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()  # a block arrived: streaming in real time
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert first.startswith("#0") and p.returncode == 0, err
    assert "stopping" in err and "latency on the wire" in out and "Traceback" not in err


def test_serve_cli_starts_answers_health_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "llmcodec.commands.serve", "--port", "0", "--log-level", "WARNING"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "listening on ws://127.0.0.1:" in line, line + p.stderr.read()
        url = line.split("listening on ")[1].split()[0]
        status, body = http_get(url.replace("ws://", "http://") + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "stopped" in out, err
    finally:
        if p.poll() is None:
            p.kill()


def test_mic_without_an_input_device_is_a_clear_error(server, capsys):
    from llmcodec.commands import stream_client
    try:
        from llmcodec.stream.mic import resolve_device
        resolve_device(None)
        pytest.skip("this machine has an audio input device; the no-device error cannot be shown")
    except ValueError:
        pass
    rc = stream_client.main(["mic", "--url", server.url])
    err = capsys.readouterr().err
    assert rc == 2 and "llmcodec mic: error:" in err
    assert "input device" in err or "PortAudio" in err or "sounddevice" in err
