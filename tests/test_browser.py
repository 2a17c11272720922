"""The browser page (stream/page/) in real headless Chromium against the real server on loopback.

Chromium is Debian's (``make test`` installs it), driven by Playwright through its executable
path; its fake microphone plays real recorded speech. The page records what it sends (``?record``),
so its tokens are checked against offline encoding of exactly that audio.
"""
from __future__ import annotations

import json
import re
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from websockets.exceptions import InvalidStatus

from llmcodec.audio import resample
from llmcodec.bench import browser_latency as bl
from llmcodec.stream.auth import SUBPROTOCOL, token_subprotocol
from llmcodec.stream.buffer import decode_all, encode_all
from llmcodec.stream.server_config import ServerConfig
from llmcodec.stream.server_thread import ServerThread
from llmcodec.tokens_io import TokenFile

from conftest import token_differences

if bl.chromium_path() is None:
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")

# the page's elements a person reads while streaming
ELEMENTS = ("#words", "#level2", "#level3", "#latency-server", "#latency-wire", "#bps", "#blocks", "#meter-bar")
HOST = "llmcodec.test"  # resolved to 127.0.0.1 by Chromium: an origin that is not localhost


@pytest.fixture(scope="module")
def mic_file(tmp_path_factory) -> str:
    return bl.write_mic_file(tmp_path_factory.mktemp("mic") / "speech48k.wav", seconds=12.0)


@pytest.fixture(scope="module")
def pw():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def server(default_backend):
    with ServerThread(default_backend, ServerConfig(port=0)) as st:
        yield st


@pytest.fixture(scope="module")
def browser(pw, mic_file):
    b = bl.launch(pw, mic_file=mic_file, extra=(f"--host-resolver-rules=MAP {HOST} 127.0.0.1",))
    yield b
    b.close()


def message(page, kinds: tuple[str, ...], timeout_s: float = 30.0) -> dict:
    """Wait for the page's message box to show one of ``kinds``; returns {kind, text}."""
    page.wait_for_function(f"window.llmcodecPage.message && {list(kinds)}.includes(window.llmcodecPage.message.kind)",
                           timeout=timeout_s * 1000)
    shown = page.locator("#message")
    assert shown.is_visible()
    m = page.evaluate("window.llmcodecPage.message")
    assert shown.inner_text().strip() == m["text"].strip()
    return m


def offline_codes(backend, sent: np.ndarray, rate: int) -> list[np.ndarray]:
    """Offline tokens of exactly the audio the page sent (the server resamples as soxr does)."""
    return encode_all(backend, resample(sent, rate, backend.facts.sample_rate))


def check_screenshot(page, path: Path) -> None:
    """Each element a person reads is on screen, and the screenshot shows something there (not blank)."""
    from PIL import Image
    boxes = lambda: [page.locator(sel).bounding_box() for sel in ELEMENTS]  # noqa: E731
    where = lambda bs: [(b["x"], b["y"]) if b else None for b in bs]  # noqa: E731
    for _ in range(20):  # the page keeps changing: use a screenshot the layout did not move around
        before = boxes()
        page.screenshot(path=str(path), full_page=True)
        if where(boxes()) == where(before):
            break
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    for sel, box in zip(ELEMENTS, before):
        assert box is not None and box["width"] > 2 and box["height"] > 2, f"{sel} is not shown"
        x0, y0 = int(box["x"]), int(box["y"])
        x1, y1 = int(box["x"] + box["width"]), int(box["y"] + box["height"])
        assert x1 <= img.shape[1] and y1 <= img.shape[0], f"{sel} is outside the screenshot"
        crop = img[y0:y1, x0:x1]
        if sel == "#meter-bar":  # a coloured bar: differs from the page background
            assert abs(float(crop.mean()) - float(img[5, 5])) > 20, "the level meter is empty"
        else:  # text: dark glyph pixels on a light background
            assert (crop < 128).mean() > 0.01, f"{sel} at {box} shows no text in the screenshot {path}"


def test_page_streams_the_microphone_live_with_exact_tokens(server, browser, default_backend, tmp_path):
    """Fake microphone (real speech) -> AudioWorklet -> /v1/stream: live tokens, latency, meter,
    decoded audio; the tokens equal offline encoding of exactly the audio sent; the download matches."""
    page = bl.open_page(browser, server.server.page_url + "?record")
    assert page.evaluate("isSecureContext")  # localhost: the microphone is allowed without TLS
    page.check("#playback")
    page.click("#mic")
    bl.wait_blocks(page, 25)
    assert page.evaluate("window.llmcodecPage.status") == "streaming"
    assert re.fullmatch(r"p50 [\d.]+ ms · p99 [\d.]+ ms", page.inner_text("#latency-server"))
    assert re.fullmatch(r"p50 [\d.]+ ms · p99 [\d.]+ ms", page.inner_text("#latency-wire"))
    assert float(page.inner_text("#bps")) > 4.0  # ~8.3 blocks/s in real time
    assert page.locator("#words span").count() >= 20  # the newest blocks' words (level 1)
    assert page.locator("#level2 .piece").count() >= 2 * 16  # their LLM tokens (the page keeps 16 blocks)
    assert page.locator("#level3 .piece").count() >= 4 * 16
    shot = tmp_path / "browser.png"
    check_screenshot(page, shot)  # docs/browser.png is the same view: python -m llmcodec.bench.browser_latency
    page.click("#stop")
    bl.wait_ended(page)
    s = page.evaluate("({blocks: llmcodecPage.stream.blocks, end: llmcodecPage.stream.endBlocks, "
                      "audio: llmcodecPage.stream.audioBlocks, rate: llmcodecPage.stream.rate})")
    assert s["end"] == s["blocks"] == s["audio"] >= 25
    sent, rate = bl.sent_audio(page)
    assert rate == s["rate"] and 8000 <= rate <= 192000
    assert np.abs(sent).max() > 0.05  # the speech arrived through the fake microphone
    want = offline_codes(default_backend, sent, rate)
    assert want[0].size == s["blocks"]
    assert token_differences(bl.page_codes(page), want) == []
    # the decoded audio the page played: the server's decoder on those tokens
    np.testing.assert_allclose(bl.decoded_audio(page), decode_all(default_backend, want), atol=1e-4)
    with page.expect_download() as dl:
        page.click("#download")
    got = json.loads(Path(dl.value.path()).read_text())
    facts = default_backend.facts
    offline = TokenFile(facts.name, facts.llm_name, facts.sample_rate,
                        round(sent.size * facts.sample_rate / rate), facts.block_size, facts.tokens_per_second,
                        tuple(tuple(int(i) for i in c) for c in want), rate).to_json(default_backend.vocab)
    assert got == offline  # the same JSON as `llmcodec encode` writes for that audio
    page.close()


def test_file_picker_streams_a_file_with_exact_tokens(server, browser, default_backend, tmp_path):
    """Without a microphone: the file picker streams a local file in real time, then ends by itself."""
    import soundfile as sf
    from llmcodec.speech import speech_clip
    path = tmp_path / "clip.wav"
    sf.write(str(path), speech_clip(3.0, lang="fr"), 16000, subtype="PCM_16")
    page = bl.open_page(browser, server.server.page_url + "?record&frame_ms=100")
    page.set_input_files("#file", str(path))
    bl.wait_ended(page)
    assert page.evaluate("window.llmcodecPage.stream.kind") == "file clip.wav"
    sizes = page.evaluate("window.llmcodecPage.stream.sent.map((c) => c.length)")
    sent, rate = bl.sent_audio(page)
    assert set(sizes[:-1]) == {round(rate * 0.1)} and 0 < sizes[-1] <= round(rate * 0.1)  # ?frame_ms=100
    assert abs(sent.size / rate - 3.0) < 0.01  # the whole file, once
    want = offline_codes(default_backend, sent, rate)
    assert token_differences(bl.page_codes(page), want) == []
    assert page.evaluate("window.llmcodecPage.message") is None
    page.close()


def mic_message(pw, url: str, kind: str, **launch) -> dict:
    """A fresh browser (``launch``: bl.launch options) opens ``url``, presses Start microphone, and
    shows a message of ``kind``; returns it."""
    b = bl.launch(pw, **launch)
    try:
        page = bl.open_page(b, url)
        page.click("#mic")
        return message(page, (kind,))
    finally:
        b.close()


def test_microphone_permission_denied_says_so(pw, mic_file, server):
    # no auto-accept: headless Chromium denies the permission prompt
    m = mic_message(pw, server.server.page_url, "permission", mic_file=mic_file, fake_ui=False)
    assert "permission was denied" in m["text"] and "stream a file" in m["text"]


def test_no_input_device_says_so(pw, server):
    b = bl.launch(pw, fake_device=False)  # the real devices: this machine has no sound card
    try:
        page = bl.open_page(b, server.server.page_url)
        devices = page.evaluate("navigator.mediaDevices.enumerateDevices().then("
                                "(d) => d.filter((x) => x.kind === 'audioinput').length)")
        if devices:
            pytest.skip(f"this machine has {devices} audio input device(s)")
        page.click("#mic")
        m = message(page, ("no_device",))
        assert "No microphone was found" in m["text"]
    finally:
        b.close()


def test_insecure_origin_explains_tls(browser, server):
    """A page opened at http://HOST (not localhost) gets no microphone; it says why and how to serve TLS."""
    page = bl.open_page(browser, f"http://{HOST}:{server.server.port}/")
    assert not page.evaluate("isSecureContext")
    m = message(page, ("insecure",))  # shown on load
    page.click("#mic")
    page.wait_for_function("window.llmcodecPage.message.text.startsWith('The microphone needs a secure origin')")
    m = page.evaluate("window.llmcodecPage.message")
    assert m["kind"] == "insecure" and "--tls-cert" in m["text"] and "localhost" in m["text"]
    page.close()


def test_full_server_says_503(pw, mic_file, default_backend):
    from websockets.sync.client import connect
    with ServerThread(default_backend, ServerConfig(port=0, max_connections=1)) as st:
        with connect(st.url + "/v1/stream") as held:  # the one allowed stream
            held.send(json.dumps({"type": "start", "sample_rate": 16000}))
            assert json.loads(held.recv())["type"] == "ready"
            m = mic_message(pw, st.server.page_url, "full", mic_file=mic_file)
            assert "HTTP 503" in m["text"] and "limit of 1 streams" in m["text"]


def test_token_travels_as_a_subprotocol(pw, mic_file, default_backend):
    """A server with a token: none -> 401 message, a wrong one -> 403 message, the right one streams.
    The page offers it as the subprotocol llmcodec.token.<base64url>, never in the URL."""
    from websockets.sync.client import connect
    token = "s3cret/+= é"  # not RFC 6455 token characters: the page encodes it
    # an Origin allow-list for other sites: the server's own page still passes (same origin)
    with ServerThread(default_backend, ServerConfig(port=0, token=token, origins=("https://elsewhere.example",))) as st:
        b = bl.launch(pw, mic_file=mic_file)
        try:
            page = bl.open_page(b, st.server.page_url)
            page.click("#mic")
            assert "HTTP 401" in message(page, ("unauthorized",))["text"]
            page.fill("#token", "wrong")
            page.click("#mic")
            assert "HTTP 403" in message(page, ("forbidden",))["text"]
            page.fill("#token", token)
            with page.expect_websocket() as ws_info:
                page.click("#mic")
            bl.wait_blocks(page, 3)
            assert "token" not in ws_info.value.url and ws_info.value.url.endswith("/v1/stream")
            assert page.evaluate("window.llmcodecPage.message") is None
        finally:
            b.close()
        with pytest.raises(InvalidStatus) as e:  # another site's page is refused
            connect(st.url + "/v1/stream", origin="http://127.0.0.2:1",
                    subprotocols=[SUBPROTOCOL, token_subprotocol(token)])
        assert e.value.response.status_code == 403 and b"origin" in e.value.response.body


def test_connection_drop_shows_reconnect_which_starts_a_new_stream(server, browser):
    page = bl.open_page(browser, server.server.page_url)
    page.click("#mic")
    bl.wait_blocks(page, 4)

    def drop_all():  # the network goes away: no close frame
        for c in list(server.server._ws.connections):
            c.transport.abort()
    server.call(drop_all)
    m = message(page, ("dropped",))
    assert "dropped mid-stream" in m["text"] and "1006" in m["text"]
    assert page.locator("#reconnect").is_visible()
    page.click("#reconnect")
    page.wait_for_function("window.llmcodecPage.streams === 2 && window.llmcodecPage.stream.blocks >= 3",
                           timeout=60000)
    assert page.evaluate("window.llmcodecPage.message") is None and not page.locator("#reconnect").is_visible()
    page.close()


# ---- TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for llmcodec.test and 127.0.0.1: (cert.pem, key.pem)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_serves_the_page_and_wss_to_another_host(pw, mic_file, default_backend, certificate, speech_30s):
    """--tls-cert/--tls-key: https:// page at a non-localhost name is a secure origin, so the microphone
    works; Python clients stream over wss:// trusting the certificate."""
    import asyncio
    import urllib.request
    from llmcodec.stream.client import stream_pcm
    cert, key = certificate
    with ServerThread(default_backend, ServerConfig(port=0, tls_cert=cert, tls_key=key)) as st:
        assert st.url.startswith("wss://") and st.server.page_url.startswith("https://")
        ctx = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"https://127.0.0.1:{st.server.port}/health", context=ctx) as r:
            assert json.loads(r.read())["status"] == "ok"
        with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
            result = pool.submit(asyncio.run, stream_pcm(st.url, speech_30s[:16000 * 2], 16000, ssl=ctx)).result()
        assert token_differences(result.codes(), encode_all(default_backend, speech_30s[:16000 * 2])) == []
        b = bl.launch(pw, mic_file=mic_file, extra=(f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                                                    "--ignore-certificate-errors"))
        try:
            page = bl.open_page(b, f"https://{HOST}:{st.server.port}/")
            assert page.evaluate("isSecureContext")
            page.click("#mic")
            bl.wait_blocks(page, 3)
            assert page.evaluate("window.llmcodecPage.stream.url").startswith(f"wss://{HOST}:")
            assert page.evaluate("window.llmcodecPage.message") is None
        finally:
            b.close()
