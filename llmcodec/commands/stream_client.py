"""stream / mic: clients of a running ``llmcodec serve``.

``stream FILE`` sends a file paced in real time (or ``--fast``), prints tokens
or text live and a latency summary at the end; ``mic`` does the same for the
microphone until Ctrl-C, reconnecting when the connection drops.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter

DEFAULT_URL = "ws://127.0.0.1:8765"


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "stream":
        p.add_argument("input", help="audio file (any rate and channels soundfile reads)")
        p.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
        p.add_argument("--speed", type=float, default=1.0, help="pacing speed-up over real time (default 1)")
        p.add_argument("--format", default="auto", choices=["auto", "pcm_s16le", "pcm_f32le"],
                       help="wire format (auto: s16 for 16-bit files, else f32; both lossless)")
        p.add_argument("--audio-out", help="write the server's decoded audio (16 kHz) to this file")
        p.add_argument("--tokens-out", help="write the tokens as a token file (like 'llmcodec encode')")
    else:
        p.add_argument("--device", help="input device index or name (default: the system's default input)")
        p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
        p.add_argument("--rate", type=int, default=None, help="capture rate (default: the device's own)")
        p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="audio per message in ms (default 20)")
    p.add_argument("--show", default="text", choices=["text", "tokens", "json", "none"],
                   help="live output: level-1 words, token ids per block, JSON lines, or nothing")
    p.add_argument("--token", default=None, help="bearer token, if the server needs one")
    p.add_argument("--retries", type=int, default=3, help="connection retries on refusal / HTTP 503")
    p.add_argument("--cafile", default=None,
                   help="for wss://: trust this PEM certificate (e.g. the server's self-signed one)")


class Printer:
    """Live output of blocks as they arrive."""

    def __init__(self, show: str):
        self.show = show
        self.words = 0

    def __call__(self, b) -> None:
        if self.show == "text" and b.text is not None:
            print(b.text[0], end="", flush=True)
            self.words += 1
            if self.words % 16 == 0:
                print(flush=True)
        elif self.show == "tokens" and b.levels is not None:
            print(f"#{b.seq:<5d} " + "  ".join(" ".join(map(str, lv)) for lv in b.levels)
                  + f"   ({b.timing.server_ms:.0f} ms)", flush=True)
        elif self.show == "json":
            print(json.dumps({"seq": b.seq, "codes": b.codes, "levels": b.levels, "text": b.text,
                              "timing": b.timing.to_dict(), "client_ms": b.client_ms}), flush=True)

    def finish(self) -> None:
        if self.show == "text" and self.words % 16:
            print(flush=True)


def summary(results, out=None) -> None:
    """Latency summary over one or more StreamResults (to ``out``, default the current stdout)."""
    out = out if out is not None else sys.stdout  # not bound at import: stdout may be replaced
    from llmcodec.stream.client import LatencySummary
    blocks = [b for r in results for b in r.blocks]
    if not blocks:
        print("no blocks received", file=out)
        return
    ready = results[0].ready
    audio_s = len(blocks) * ready.block_seconds
    wall = sum(r.seconds for r in results)
    print(f"blocks: {len(blocks)} ({audio_s:.2f} s of audio in {wall:.2f} s)", file=out)
    lat = lambda attr: LatencySummary.of([getattr(b.timing, attr) for b in blocks])  # noqa: E731
    client = LatencySummary.of([b.client_ms for b in blocks if b.client_ms is not None])
    print(f"latency on the wire (last sample sent -> tokens received): {client.format()}", file=out)
    print(f"latency at the server (last sample in -> tokens out):      {lat('server_ms').format()}", file=out)
    print(f"  queue:   {lat('queue_ms').format()}", file=out)
    print(f"  compute: {lat('compute_ms').format()}", file=out)
    batches = Counter(b.timing.batch for b in blocks)
    print("batch sizes: " + ", ".join(f"{k}x{v}" for k, v in sorted(batches.items())), file=out)


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """First Ctrl-C (or SIGTERM): end the stream cleanly; a second one aborts."""
    def first() -> None:
        print("\n(stopping: sending end; Ctrl-C again to abort)", file=sys.stderr, flush=True)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)
    loop.add_signal_handler(signal.SIGINT, first)
    loop.add_signal_handler(signal.SIGTERM, stop.set)


def _ssl_context(args: argparse.Namespace):
    """The TLS context for wss:// (--cafile: trust that certificate too); None: the default."""
    if args.cafile is None:
        return None
    import ssl
    try:
        return ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--cafile {args.cafile!r}: cannot load a PEM certificate ({e})") from None


async def _stream_file(args: argparse.Namespace) -> int:
    from llmcodec.stream.client import read_audio_file, stream_pcm
    pcm, rate, fmt = read_audio_file(args.input)
    fmt = fmt if args.format == "auto" else args.format
    returns = ["tokens", "text"] + (["audio"] if args.audio_out else [])
    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop)
    printer = Printer(args.show)
    result = await stream_pcm(args.url, pcm, rate, chunk=max(1, int(rate * args.chunk_ms / 1000)),
                              realtime=not args.fast, speed=args.speed, fmt=fmt, returns=tuple(returns),
                              token=args.token, retries=args.retries, on_block=printer, stop=stop,
                              ssl=_ssl_context(args))
    printer.finish()
    if args.audio_out:
        from llmcodec.audio import save_audio
        ready = result.ready
        n = min(result.audio().size, round(result.samples_sent * ready.sample_rate / rate))
        save_audio(args.audio_out, result.audio()[:n], ready.sample_rate)
        print(f"decoded audio: {n / ready.sample_rate:.2f} s -> {args.audio_out}")
    if args.tokens_out:
        from llmcodec.tokens_io import TokenFile
        r = result.ready
        codes = result.codes()
        tf = TokenFile(r.model, r.vocabulary or "", r.sample_rate, round(result.samples_sent * r.sample_rate / rate),
                       r.block_size, sum(r.tokens_per_block) / r.block_seconds,
                       tuple(tuple(int(i) for i in c) for c in codes), rate)
        tf.save(args.tokens_out, None)
        print(f"tokens: {sum(c.size for c in codes)} -> {args.tokens_out}")
    summary([result])
    return 0 if result.end_blocks is not None else 1


async def _mic(args: argparse.Namespace) -> int:
    from llmcodec.stream.client import ConnectError, ServerError, stream_chunks
    from llmcodec.stream.mic import MicCapture
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    _install_stop(loop, stop)
    if args.seconds:
        loop.call_later(args.seconds, stop.set)
    printer = Printer(args.show)
    results = []
    async with MicCapture(device, args.rate, args.chunk_ms) as mic:
        print(f"listening on input device {mic.device if mic.device is not None else '(default)'} at "
              f"{mic.sample_rate} Hz -> {args.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        delay = 0.5
        while not stop.is_set():
            try:
                results.append(await stream_chunks(
                    args.url, mic._chunks(), mic.sample_rate, returns=("tokens", "text"), token=args.token,
                    retries=args.retries, on_block=printer, stop=stop, ssl=_ssl_context(args)))
                delay = 0.5
            except ConnectError as e:
                if e.status in (401, 403, 404):
                    raise ValueError(str(e)) from None
                print(f"\n(connection failed: {e}; retrying in {delay:.1f} s)", file=sys.stderr, flush=True)
            except ServerError as e:
                if e.code not in ("going_away", "closed", "idle_timeout"):
                    raise ValueError(f"server error {e}") from None
                print(f"\n(disconnected: {e}; reconnecting in {delay:.1f} s, a new stream starts at block 0)",
                      file=sys.stderr, flush=True)
            if not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)
    printer.finish()
    if mic.overflows:
        print(f"warning: {mic.overflows} capture overflow(s): audio was dropped", file=sys.stderr)
    summary(results)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "mic" and args.list_devices:
        from llmcodec.stream.mic import input_devices
        devices = input_devices()
        for d in devices:
            print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['sample_rate']} Hz)")
        if not devices:
            print("no input devices")
        return 0
    if args.command == "mic":
        from llmcodec.stream.mic import resolve_device
        resolve_device(int(args.device) if args.device and args.device.isdigit() else args.device)
    from llmcodec.stream.client import ConnectError, ServerError
    try:
        return asyncio.run(_stream_file(args) if args.command == "stream" else _mic(args))
    except (ConnectError, ServerError) as e:
        raise ValueError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.stream_client stream|mic ...``, as ``llmcodec stream|mic``."""
    from llmcodec.cli import subcommand_main
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in ("stream", "mic") else "stream"
    return subcommand_main(name, argv[1:] if argv and argv[0] == name else argv)


if __name__ == "__main__":
    sys.exit(main())
