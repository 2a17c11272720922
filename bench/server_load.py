"""Server load: how many real-time streams one machine holds, their latency, and fairness.

Starts ``llmcodec serve`` as a subprocess on loopback (or uses ``--url``), then
runs N = 1, 2, 4, 8, ... concurrent clients, each streaming a different real
speech clip (``llmcodec.speech.speech_clip``) paced in real time in 20 ms
chunks, with random start phases. For every N it reports per-block latency
p50/p90/p99 at the server (block's last sample in -> tokens out: queue +
compute) and on the wire (frame with the last sample sent -> tokens received),
late blocks (wire latency over one block, 120 ms), batch sizes, the server's
CPU use and how many streams got exactly their offline tokens (the same backend
at batch 1, in this process). A level holds with p99 added latency under
``--p99-ms`` (60), no block dropped, no client error and every stream's tokens
equal to offline. It stops at the first N that does not hold, then tries once
between the last N that held and that one.

``--greedy G`` adds G clients that send their audio as fast as the server takes
it (corpus tokenizing) beside the real-time ones, at every level: the real-time
streams' p99 is then reported with and without them (``--fairness``).

    .venv/bin/python -m llmcodec.bench.server_load            # full: 10 s clips
    .venv/bin/python -m llmcodec.bench.server_load --quick    # 3 s clips, N <= 8

The clients run in this process, on the same cores as the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from llmcodec.stream.backends import BACKENDS
from llmcodec.stream.client import LatencySummary

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LevelResult:
    """N concurrent real-time streams."""

    streams: int
    blocks: int
    server_ms: LatencySummary  # block complete at the server -> tokens sent
    wire_ms: LatencySummary  # last sample's frame sent -> tokens received (client clock)
    queue_ms: LatencySummary
    compute_ms: LatencySummary
    late_blocks: int  # wire latency over one block duration
    dropped: int  # blocks expected and never received
    exact_streams: int  # streams whose tokens equal the offline tokens (-1: not checked)
    greedy: int  # clients sending as fast as the server takes it, beside the real-time ones
    greedy_blocks_per_s: float  # what they got
    batch_sizes: dict[int, int]  # batch size -> blocks computed in such steps
    server_cpu_percent: float | None  # of one core, over the level
    load_avg: float  # the machine's 1-minute load average after the level (other work competes)
    errors: tuple[str, ...]
    seconds: float
    holds: bool
    client_cpu_percent: float | None = None  # this process (every client), of one core: on one
    # machine the load generator takes cores the server would otherwise have

    @property
    def late_fraction(self) -> float:
        return self.late_blocks / self.blocks if self.blocks else 1.0


@dataclass
class LoadResult:
    levels: list[LevelResult] = field(default_factory=list)
    backend: str = "torch"
    model: str = "bundled"
    clip_seconds: float = 10.0
    block_ms: float = 120.0
    p99_ms: float = 60.0
    greedy: int = 0
    command: str = ""
    cores: int = os.cpu_count() or 1

    @property
    def max_realtime_streams(self) -> int:
        held = [lv.streams for lv in self.levels if lv.holds and not lv.greedy]
        return max(held) if held else 0

    def table(self) -> str:
        rows = [f"{'N':>3} {'G':>2} {'blocks':>6}  {'server p50    p90    p99':>24}  {'wire p50    p90    p99':>22}  "
                f"{'queue50':>7} {'comp50':>6}  {'late':>5} {'drop':>4} {'exact':>5}  {'batch mean/max':>14}  "
                f"{'CPU%':>5} {'cli%':>5} {'load':>5}  holds"]
        for lv in self.levels:
            n = sum(lv.batch_sizes.values())
            mean_b = sum(k * v for k, v in lv.batch_sizes.items()) / n if n else float("nan")
            cpu = f"{lv.server_cpu_percent:5.0f}" if lv.server_cpu_percent is not None else "    -"
            exact = f"{lv.exact_streams}/{lv.streams}" if lv.exact_streams >= 0 else "-"
            cli = f"{lv.client_cpu_percent:5.0f}" if lv.client_cpu_percent is not None else "    -"
            rows.append(f"{lv.streams:3d} {lv.greedy:2d} {lv.blocks:6d}  {lv.server_ms.short():>24}  "
                        f"{lv.wire_ms.short():>22}  {lv.queue_ms.p50:7.1f} {lv.compute_ms.p50:6.1f}  "
                        f"{lv.late_fraction:5.1%} {lv.dropped:4d} {exact:>5}  "
                        f"{mean_b:7.2f}/{max(lv.batch_sizes, default=0):<6d}  {cpu} {cli} {lv.load_avg:5.1f}  "
                        f"{'yes' if lv.holds else 'NO'}"
                        + (f"  errors: {lv.errors[:2]}" if lv.errors else ""))
        return "\n".join(rows)


# ---- the server ------------------------------------------------------------------------
class ServerProcess:
    """``llmcodec serve --port 0`` in a subprocess; its URL and CPU time."""

    def __init__(self, backend: str, model: str | None, max_batch: int, max_wait_ms: float,
                 workers: int | None = None, threads: int = 1):
        cmd = [sys.executable, "-m", "llmcodec.commands.serve", "--port", "0", "--backend", backend,
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-connections", "1024",
               "--threads", str(threads), "--log-level", "WARNING"] + (["--model", model] if model else []) \
            + (["--workers", str(workers)] if workers else [])
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0]

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---- one level ---------------------------------------------------------------------------
async def _level(url: str, clips: list[np.ndarray], block_s: float, chunk_ms: float,
                 token: str | None, greedy: list[np.ndarray] = ()) -> tuple[list, list[str], list]:
    """Real-time clients for ``clips`` (random start phases) and, beside them, ``greedy``
    clients sending as fast as the server takes it until the real-time ones are done."""
    from llmcodec.stream.client import stream_pcm
    stop = asyncio.Event()

    async def one(i: int, clip: np.ndarray):
        await asyncio.sleep(random.Random(i).uniform(0, block_s))  # streams start at random phases
        return await stream_pcm(url, clip, 16000, chunk=int(16000 * chunk_ms / 1000), realtime=True,
                                token=token, retries=3)

    async def fast(clip: np.ndarray):
        return await stream_pcm(url, clip, 16000, chunk=16384, realtime=False, token=token, stop=stop, retries=3)
    hogs = [asyncio.create_task(fast(c)) for c in greedy]
    out = await asyncio.gather(*(one(i, c) for i, c in enumerate(clips)), return_exceptions=True)
    stop.set()
    hog_out = await asyncio.gather(*hogs, return_exceptions=True)
    results = [None if isinstance(r, BaseException) else r for r in out]  # in the clips' order
    errors = [f"{type(e).__name__}: {e}" for e in list(out) + list(hog_out) if isinstance(e, BaseException)]
    return results, errors, [r for r in hog_out if not isinstance(r, BaseException)]


class OfflineTokens:
    """Offline tokens of the clips (the served backend at batch 1 in this process), cached."""

    def __init__(self, backend: str, model: str | None):
        from llmcodec.stream.backends import make_backend
        self.backend = make_backend(backend, model, threads=1)
        self._cache: dict[tuple[int, int], list[np.ndarray]] = {}

    def equal(self, key: tuple[int, int], clip: np.ndarray, got: list[np.ndarray]) -> bool:
        from llmcodec.stream.buffer import encode_all
        if key not in self._cache:
            self._cache[key] = encode_all(self.backend, clip)
        want = self._cache[key]
        return len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))


def run_level(url: str, n: int, seconds: float, *, chunk_ms: float = 20.0, token: str | None = None,
              server: ServerProcess | None = None, p99_ms: float = 60.0, greedy: int = 0,
              offline: OfflineTokens | None = None) -> LevelResult:
    """N concurrent real-time streams of ``seconds`` of different real speech each (+ ``greedy``
    fast clients of 60 s each)."""
    from llmcodec.speech import speech_clip
    clips = [speech_clip(seconds, start=17 * i) for i in range(n)]
    hog_clips = [speech_clip(60.0, start=7 + 29 * i) for i in range(greedy)]
    block_s = 0.12
    cpu0, t0 = (server.cpu_seconds() if server else None), time.monotonic()
    own0 = time.process_time()
    per_clip, errors, hogs = asyncio.run(_level(url, clips, block_s, chunk_ms, token, hog_clips))
    wall = time.monotonic() - t0
    own = 100.0 * (time.process_time() - own0) / wall
    results = [r for r in per_clip if r is not None]
    cpu1 = server.cpu_seconds() if server else None
    if results:
        block_s = results[0].ready.block_seconds
    blocks = [b for r in results for b in r.blocks]
    wire = [b.client_ms for b in blocks if b.client_ms is not None]
    late = sum(1 for w in wire if w > block_s * 1000)
    batches = Counter(b.timing.batch for b in blocks)
    expected = n * int(np.ceil(seconds / block_s))
    exact = -1
    if offline is not None:
        exact = sum(r is not None and offline.equal((17 * i, int(seconds * 1000)), clips[i], r.codes())
                    for i, r in enumerate(per_clip))
    wire_summary = LatencySummary.of(wire)
    holds = (not errors and len(blocks) == expected and wire_summary.p99 < p99_ms
             and (exact < 0 or exact == n))
    hog_blocks = sum(len(h.blocks) for h in hogs)
    return LevelResult(
        n, len(blocks), LatencySummary.of([b.timing.server_ms for b in blocks]), wire_summary,
        LatencySummary.of([b.timing.queue_ms for b in blocks]), LatencySummary.of([b.timing.compute_ms for b in blocks]),
        late, max(0, expected - len(blocks)), exact, greedy, hog_blocks / wall if greedy else 0.0,
        dict(sorted(batches.items())),
        None if cpu0 is None or cpu1 is None else 100.0 * (cpu1 - cpu0) / wall,
        os.getloadavg()[0], tuple(errors), wall, holds, own)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.server_load", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s clips, at most 8 streams, 120 s budget")
    p.add_argument("--url", help="use a running server instead of starting one (CPU use is then not measured)")
    p.add_argument("--token", default=None, help="bearer token for --url")
    p.add_argument("--check-exact", action="store_true", help="with --url: check every stream's tokens against "
                   "offline encoding with --backend/--model (which must be the server's)")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--model", default=None, help="model or export directory (default: bundled)")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=None, help="server step workers (default: its own, one per core)")
    p.add_argument("--threads", type=int, default=1, help="server intra-op threads per step (default 1)")
    p.add_argument("--seconds", type=float, default=None, help="speech per stream (default 10; quick 3)")
    p.add_argument("--max-streams", type=int, default=None, help="largest N (default 128; quick 8)")
    p.add_argument("--streams", type=int, nargs="*", default=None, help="exact N values instead of doubling")
    p.add_argument("--budget", type=float, default=None, help="stop starting levels after this many s "
                   "(default 900; quick 120)")
    p.add_argument("--p99-ms", type=float, default=60.0, help="a level holds with p99 added latency under "
                   "this (default 60), no block dropped and exact tokens")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="audio per client message, ms (default 20)")
    p.add_argument("--greedy", type=int, default=0, help="fast clients beside the real-time ones at every level")
    p.add_argument("--fairness", action="store_true", help="run each level without and then with --greedy "
                   "clients (default 4)")
    p.add_argument("--no-exact", action="store_true", help="skip the offline-token check (it encodes every "
                   "clip once in this process)")
    p.add_argument("--json", help="also write the result as JSON here")
    return p


def main(argv: list[str] | None = None) -> LoadResult:
    args = get_parser().parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    max_streams = args.max_streams or (8 if args.quick else 128)
    budget = args.budget or (120.0 if args.quick else 900.0)
    greedy = args.greedy or (4 if args.fairness else 0)
    command = ".venv/bin/python -m llmcodec.bench.server_load " + " ".join(sys.argv[1:] if argv is None else argv)
    result = LoadResult(backend=args.backend, model=args.model or "bundled", clip_seconds=seconds,
                        p99_ms=args.p99_ms, greedy=greedy, command=command.strip())
    server = None if args.url else ServerProcess(args.backend, args.model, args.max_batch, args.max_wait_ms,
                                                 args.workers, args.threads)
    url = args.url or server.url
    check = not args.no_exact and (not args.url or args.check_exact)
    offline = OfflineTokens(args.backend, args.model) if check else None
    print(f"server {url} (backend {args.backend}, max batch {args.max_batch}, max wait {args.max_wait_ms} ms); "
          f"{seconds:g} s of real speech per stream, paced in real time; {result.cores} cores", flush=True)
    t_start = time.monotonic()
    try:
        plan = list(args.streams) if args.streams else [n for n in (2 ** k for k in range(12)) if n <= max_streams]
        held, refined = 0, bool(args.streams)
        while plan:
            n = plan.pop(0)
            if time.monotonic() - t_start + seconds + 5 > budget:
                print(f"(time budget of {budget:g} s reached)", flush=True)
                break
            for g in ((0, greedy) if args.fairness else (greedy,)):
                lv = run_level(url, n, seconds, chunk_ms=args.chunk_ms, token=args.token, server=server,
                               p99_ms=args.p99_ms, greedy=g, offline=offline)
                result.levels.append(lv)
                print(result.table().splitlines()[-1] if len(result.levels) > 1 else result.table(), flush=True)
            if lv.holds:
                held = max(held, n)
            elif not args.streams:
                mid = (held + n) // 2
                plan = [mid] if not refined and held < mid < n else []
                refined = True
    finally:
        if server is not None:
            server.stop()
    print(f"\nmax real-time streams held: {result.max_realtime_streams} (a level holds with p99 added latency "
          f"< {args.p99_ms:g} ms, nothing dropped, {'exact tokens, ' if offline else ''}no client error)")
    if args.fairness:
        for a, b in zip(result.levels[::2], result.levels[1::2]):
            print(f"fairness at N={a.streams}: real-time p99 {a.wire_ms.p99:.1f} ms alone, {b.wire_ms.p99:.1f} ms "
                  f"beside {b.greedy} greedy clients (+{b.wire_ms.p99 - a.wire_ms.p99:.1f} ms); the greedy "
                  f"clients got {b.greedy_blocks_per_s:.0f} blocks/s")
    print(f"reproduce: {result.command}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
