"""The browser page's end-to-end latency per block, in headless Chromium (Debian's) on loopback.

``python -m llmcodec.bench.browser_latency [--seconds 20] [--backend onnx]`` starts the
server, opens its page in headless Chromium with the fake microphone fed from real speech,
streams for ``--seconds`` and prints the page's own latency readout: per block, the time from
sending the frame that completed the block to the tokens' arrival in the page (end to end,
through the AudioWorklet capture, the WebSocket and the server), and the server's share.

The helpers (``launch``, ``sent_audio``, ``page_codes``) are shared with tests/test_browser.py.
Needs Debian's ``chromium`` and the ``playwright`` package; never downloads a browser.
"""
from __future__ import annotations

import argparse
import base64
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
# the page's state, as tests read it (stream/page/app.js)
STREAM = "window.llmcodecPage.stream"


def chromium_path() -> str | None:
    """Debian's Chromium executable, or None when it is not installed."""
    if Path(DEBIAN_CHROMIUM).is_file():
        return DEBIAN_CHROMIUM  # the binary itself, without the launcher script
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch(pw, *, mic_file: str | None = None, fake_ui: bool = True, fake_device: bool = True,
           extra: tuple[str, ...] = ()):
    """Headless system Chromium; ``mic_file``: the WAV its fake microphone plays (looped)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    args = ["--autoplay-policy=no-user-gesture-required", *extra]
    if fake_ui:
        args.append("--use-fake-ui-for-media-stream")  # grant the microphone without a prompt
    if fake_device:
        args.append("--use-fake-device-for-media-stream")
    if mic_file is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic_file}")
    return pw.chromium.launch(executable_path=path, headless=True, args=args)


def write_mic_file(path: str | Path, seconds: float = 12.0, rate: int = 48000) -> str:
    """Real recorded speech (llmcodec.speech) as the 16-bit WAV Chromium's fake microphone reads."""
    import soundfile as sf
    import soxr

    from llmcodec.speech import speech_clip
    wav = soxr.resample(speech_clip(seconds), 16000, rate).astype(np.float32)
    sf.write(str(path), wav, rate, subtype="PCM_16")
    return str(path)


def open_page(browser, url: str):
    """A new page at ``url`` (the server's page), once its script is ready."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.wait_for_function("window.llmcodecPage && window.llmcodecPage.status !== 'loading'")
    return page


def wait_blocks(page, n: int, timeout_s: float = 60.0) -> None:
    page.wait_for_function(f"{STREAM} && {STREAM}.blocks >= {n}", timeout=timeout_s * 1000)


def wait_ended(page, timeout_s: float = 60.0) -> None:
    page.wait_for_function(f"{STREAM} && {STREAM}.ended", timeout=timeout_s * 1000)


def sent_audio(page) -> tuple[np.ndarray, int]:
    """Every sample the page sent in its current stream (it records them with ?record): float32 [T], rate."""
    b64 = page.evaluate("""() => {
      const s = window.llmcodecPage.stream;
      const n = s.sent.reduce((a, c) => a + c.length, 0);
      const all = new Float32Array(n);
      let o = 0;
      for (const c of s.sent) { all.set(c, o); o += c.length; }
      const u8 = new Uint8Array(all.buffer);
      let bin = "";
      for (let i = 0; i < u8.length; i += 0x8000) bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
      return btoa(bin);
    }""")
    rate = page.evaluate(f"{STREAM}.rate")
    return np.frombuffer(base64.b64decode(b64), "<f4").copy(), int(rate)


def decoded_audio(page) -> np.ndarray:
    """The decoded audio blocks the page received (with ?record and playback on): float32 [T]."""
    blocks = page.evaluate(f"{STREAM}.decoded.map((b) => Array.from(b))")
    return np.concatenate([np.asarray(b, np.float32) for b in blocks]) if blocks else np.zeros(0, np.float32)


def page_codes(page) -> list[np.ndarray]:
    """The codes per level the page received: [blocks * tokens_per_block[l]]."""
    return [np.asarray(c, np.int64) for c in page.evaluate(f"{STREAM}.codes")]


def page_latency(page) -> dict:
    """The page's own latency samples (ms): end to end (``wire``) and at the server."""
    return page.evaluate(f"({{wire: {STREAM}.wireMs, server: {STREAM}.serverMs, blocks: {STREAM}.blocks}})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmcodec.bench.browser_latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the page streams (default 20)")
    ap.add_argument("--backend", default="onnx", help="server backend (default onnx, as llmcodec serve)")
    ap.add_argument("--model", default=None, help="model or export directory (default: the bundled model)")
    ap.add_argument("--screenshot", default=None, help="save the page mid-stream as this PNG (e.g. docs/browser.png)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from llmcodec.stream.backends import make_backend
    from llmcodec.stream.client import LatencySummary
    from llmcodec.stream.server_config import ServerConfig
    from llmcodec.stream.server_thread import ServerThread
    model = args.model
    if args.backend == "onnx" and model is None:
        from llmcodec.export.cache import cached_export
        model = str(cached_export(None))
    backend = make_backend(args.backend, model)
    with tempfile.TemporaryDirectory() as tmp, ServerThread(backend, ServerConfig(port=0)) as st, \
            sync_playwright() as pw:
        mic = write_mic_file(Path(tmp) / "mic.wav", seconds=max(12.0, args.seconds + 2))
        browser = launch(pw, mic_file=mic)
        page = open_page(browser, st.server.page_url)
        page.click("#mic")
        wait_blocks(page, max(1, int(args.seconds / backend.facts.block_seconds)), timeout_s=args.seconds * 3 + 30)
        lat = page_latency(page)
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=True)
            print(f"screenshot: {args.screenshot}")
        browser.close()
    wire, server = LatencySummary.of(lat["wire"]), LatencySummary.of(lat["server"])
    print(f"browser page, headless Chromium, {backend.name} backend, {lat['blocks']} blocks "
          f"({lat['blocks'] * backend.facts.block_seconds:.1f} s of microphone audio)")
    print(f"  end to end per block (frame sent -> tokens in the page): {wire.format()}")
    print(f"  at the server (block complete -> tokens sent):         {server.format()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
