"""Every benchmark in one run: step latency, server load, peers; then the report.

    llmcodec bench [--quick] [--out DIR]
    .venv/bin/python -m llmcodec.bench.run_all [--quick] [--out DIR]

Writes ``results.md``, ``results.json``, ``README_SECTION.md`` and the PNG
plots into ``--out`` (default ``bench/results``; ``bench/results/quick`` with
``--quick``) and prints the Markdown at the end. ``--quick`` finishes in under
two minutes; the first run also exports the model to ONNX (~40 s, then cached).
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import peers as peers_mod
from . import step_latency
from .report import BenchResults, finished, machine_info, markdown, write

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTS = ("step", "server", "peers")


@dataclass(frozen=True)
class ServerSettings:
    clients: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)  # in order until blocks fall behind
    seconds: float = 10.0  # real speech per client
    backends: tuple[str, ...] = ("torch", "onnx")  # `llmcodec serve --backend`; onnx serves the export
    max_batch: int = 16  # the server's defaults
    max_wait_ms: float = 5.0
    p99_ms: float = 60.0  # a level holds with p99 added latency under this, nothing dropped, exact tokens
    greedy: int = 4  # fairness: fast clients beside the largest N that held (0: no fairness run)


QUICK_SERVER = ServerSettings(clients=(1, 4, 16, 64), seconds=3.0, backends=("onnx",), greedy=0)


@dataclass(frozen=True)
class RunSettings:
    step: step_latency.StepSettings = step_latency.StepSettings()
    server: ServerSettings = ServerSettings()
    peers: peers_mod.PeerSettings = peers_mod.PeerSettings()
    parts: tuple[str, ...] = PARTS
    peers_include: tuple[str, ...] | None = None  # None: every peer


QUICK = RunSettings(step_latency.QUICK_STEP, QUICK_SERVER, peers_mod.QUICK_PEERS)


@dataclass(frozen=True)
class LoadPoint:
    """The real server with ``clients`` concurrent real-time clients (durations in seconds)."""

    clients: int
    backend: str
    latency_p50: float  # added latency on the wire: frame with the block's last sample sent -> tokens in
    latency_p90: float
    latency_p99: float
    server_p50: float  # block complete at the server -> tokens sent (queue + compute)
    rtfx: float  # seconds of audio coded per second of server CPU time
    late: int  # blocks whose tokens came more than one block after their last sample
    dropped: int  # blocks expected and never received
    blocks: int
    batch_sizes: str  # "mean M, max K" over blocks
    cpu_cores: float  # server CPU seconds / wall seconds
    block_seconds: float
    errors: tuple[str, ...] = ()
    load_avg: float = float("nan")  # the machine's 1-minute load average after the level
    exact_streams: int = -1  # streams whose tokens equal offline (-1: not checked)
    greedy: int = 0  # fast clients beside the real-time ones (a fairness run)
    p99_limit: float = 0.060

    @property
    def realtime(self) -> bool:
        """Every block arrived, no client failed, p99 added latency under the limit (60 ms) and
        every stream's tokens equal offline."""
        return (not self.errors and self.dropped == 0 and self.latency_p99 < self.p99_limit
                and self.exact_streams in (-1, self.clients))


# ---- server sweep ---------------------------------------------------------------------------
def server_sweep(settings: ServerSettings, model_dir: str | Path | None, export_dir: Path | None,
                 export_reason: str, log: Callable[[str], None] = print
                 ) -> tuple[list[LoadPoint], list[tuple[str, str, str]]]:
    """Per backend, start ``llmcodec serve`` on loopback (llmcodec.bench.server_load.ServerProcess) and run
    N = settings.clients real-time clients, stopping after the first N that is not real-time."""
    try:
        from . import server_load  # the server work's load generator
    except ImportError as e:
        return [], [("server", "server load", f"llmcodec.bench.server_load is not importable ({e})")]
    from llmcodec.checkpoint import CONFIG_FILE, default_model_dir
    from llmcodec.config import CodecConfig
    cfg = CodecConfig.load(Path(model_dir or default_model_dir()) / CONFIG_FILE)
    points, missing = [], []
    for name in settings.backends:
        model = export_dir if name in ("onnx", "tensorrt") else model_dir
        if name in ("onnx", "tensorrt") and export_dir is None:
            missing.append(("server", f"server load {name}", export_reason))
            continue
        try:
            server = server_load.ServerProcess(name, None if model is None else str(model),
                                               settings.max_batch, settings.max_wait_ms)
        except Exception as e:  # noqa: BLE001 - a server that cannot start is reported
            missing.append(("server", f"server load {name}", f"{type(e).__name__}: {e}".splitlines()[0][:200]))
            continue
        try:
            offline = server_load.OfflineTokens(name, None if model is None else str(model))
            held = 0
            for n in settings.clients:
                log(f"server load: {name}, {n} client(s) x {settings.seconds:g} s of speech, paced in real time")
                lv = server_load.run_level(server.url, n, settings.seconds, server=server,
                                           p99_ms=settings.p99_ms, offline=offline)
                p = load_point(lv, name, settings.seconds, cfg.block_size, cfg.sample_rate, settings.p99_ms)
                points.append(p)
                if not p.realtime:
                    break
                held = n
            if settings.greedy and held:
                log(f"server load: {name}, fairness: {held} real-time clients beside {settings.greedy} greedy ones")
                lv = server_load.run_level(server.url, held, settings.seconds, server=server,
                                           p99_ms=settings.p99_ms, offline=offline, greedy=settings.greedy)
                points.append(load_point(lv, name, settings.seconds, cfg.block_size, cfg.sample_rate,
                                         settings.p99_ms))
        except Exception as e:  # noqa: BLE001 - report and go on with the next backend
            missing.append(("server", f"server load {name}", f"{type(e).__name__}: {e}".splitlines()[0][:200]))
        finally:
            server.stop()
    return points, missing


def load_point(lv: Any, backend: str, seconds: float, block_size: int = 1920,
               sample_rate: int = 16000, p99_ms: float = 60.0) -> LoadPoint:
    """A ``llmcodec.bench.server_load.LevelResult`` (milliseconds) -> ``LoadPoint`` (seconds)."""
    block_seconds = block_size / sample_rate
    expected = lv.streams * -(-int(round(seconds * sample_rate)) // block_size)  # whole blocks, ceil
    n = sum(lv.batch_sizes.values())
    mean_b = sum(k * v for k, v in lv.batch_sizes.items()) / n if n else float("nan")
    cpu = None if lv.server_cpu_percent is None else lv.server_cpu_percent / 100.0
    cpu_s = None if cpu is None else cpu * lv.seconds
    return LoadPoint(
        lv.streams, backend, lv.wire_ms.p50 / 1e3, lv.wire_ms.p90 / 1e3, lv.wire_ms.p99 / 1e3,
        lv.server_ms.p50 / 1e3,
        lv.blocks * block_seconds / cpu_s if cpu_s else float("nan"),
        lv.late_blocks, max(0, expected - lv.blocks), lv.blocks,
        f"mean {mean_b:.1f}, max {max(lv.batch_sizes, default=0)}",
        float("nan") if cpu is None else cpu, block_seconds, tuple(lv.errors),
        float(getattr(lv, "load_avg", None) or float("nan")), int(getattr(lv, "exact_streams", -1)),
        int(getattr(lv, "greedy", 0) or 0), p99_ms / 1e3)


# ---- the whole run --------------------------------------------------------------------------
def run(settings: RunSettings, out_dir: str | Path, model_dir: str | Path | None = None,
        export_dir: str | Path | None = None, command: str = "llmcodec bench",
        log: Callable[[str], None] = print) -> tuple[BenchResults, dict[str, Path]]:
    t0 = time.perf_counter()
    res = BenchResults(machine_info(), command, _settings_dict(settings))
    exp, reason = None, "ONNX backends not requested"
    phases: dict[str, float] = {}
    if settings.parts:
        t = time.perf_counter()
        exp, reason = step_latency.ensure_export(model_dir, export_dir, log)
        phases["export"] = time.perf_counter() - t
    if "step" in settings.parts:
        t = time.perf_counter()
        steps, missing = step_latency.run(settings.step, model_dir, exp, log=log,
                                          export_reason=None if exp else reason)
        res.steps = steps
        res.unavailable += [("step", m.backend, m.reason) for m in missing]
        phases["step latency"] = time.perf_counter() - t
    if "server" in settings.parts:
        t = time.perf_counter()
        points, missing = server_sweep(settings.server, model_dir, exp, reason, log)
        res.server = points
        res.unavailable += missing
        phases["server load"] = time.perf_counter() - t
    if "peers" in settings.parts:
        t = time.perf_counter()
        results, missing = peers_mod.run(settings.peers, model_dir, exp, settings.peers_include, log)
        res.peers = results
        res.unavailable += [("peers", m.name, m.reason if exp or "onnx" not in m.name else reason)
                            for m in missing]
        phases["peers"] = time.perf_counter() - t
    res.machine = finished(res.machine)
    res.notes.append("Time per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ".")
    res.notes += _notes(res)
    res.wall_seconds = time.perf_counter() - t0
    paths = write(res, out_dir)
    section = Path(out_dir) / "README_SECTION.md"
    section.write_text(readme_section(res, paths))
    paths["readme section"] = section
    return res, paths


def _settings_dict(s: RunSettings) -> dict[str, Any]:
    return dataclasses.asdict(s)


def _notes(res: BenchResults) -> list[str]:
    notes = []
    la, lb = res.machine.load_start, res.machine.load_end
    if max(la[0], lb[0]) > 0.5 * res.machine.usable_cores:
        notes.append(f"The machine was shared while measuring (1-minute load average {la[0]:.2f} at start, "
                     f"{lb[0]:.2f} at end, on {res.machine.usable_cores} cores): absolute times are pessimistic; "
                     "ratios, measured interleaved, are the robust numbers.")
    if any(p.latency_p50 < p.server_p50 for p in res.server):
        notes.append("Some wire latencies (client-stamped) are below the server's own block-complete -> "
                     "tokens-sent time: the clients share the loaded cores and the event loop stamps a frame "
                     "as sent only after ws.send returns, so the server column is the safer figure there.")
    one = {(r.backend, r.batch): r.both.p50 for r in res.steps if r.threads == 1}
    slower = sorted({r.backend for r in res.steps if r.threads > 1 and (r.backend, r.batch) in one
                     and r.both.p50 > one[(r.backend, r.batch)]})
    if slower:
        notes.append(f"More threads were slower than one for {', '.join(slower)}: with other work on every core, "
                     "a parallel step waits for its descheduled sibling threads; on a shared machine one thread "
                     "per process (and one process per core) is the configuration to deploy.")
    if any(r.both.n < 100 for r in res.steps):
        notes.append("p99 over fewer than 100 blocks is close to the maximum; read it as such.")
    return notes


def readme_section(res: BenchResults, paths: dict[str, Path]) -> str:
    """The README's benchmark section: headline tables and the plots (paths relative to the repo)."""
    from .report import (best_streams_table, largest_realtime, peers_table, server_table, step_table,
                         unavailable_lines)

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(RESULTS_DIR.parent.parent))
        except ValueError:
            return str(p)
    lines = ["## Benchmarks\n",
             f"Reproduce with `{res.command}` (`--quick` for a two-minute run); full results, the machine "
             f"and every configuration: [{rel(paths['markdown'])}]({rel(paths['markdown'])}).\n",
             f"Measured on: {res.machine.describe()}.\n"]
    if res.steps:
        lines += ["Per-block step latency at batch 1 (encode + decode of one 120 ms block; "
                  "algorithmic latency 120 ms, compute on top):\n", step_table(res.steps, batches=(1,)), "",
                  "Throughput (the batch size with the most real-time streams):\n",
                  best_streams_table(res.steps), ""]
    if res.server:
        lines += ["Server on loopback, clients paced in real time:\n", server_table(res.server), "",
                  f"Largest real-time N with p99 under one block: {largest_realtime(res.server)}.\n"]
    if res.peers:
        lines += ["Peers, one thread, measured interleaved (x ours-small > 1: slower than ours):\n",
                  peers_table(res.peers), ""]
    miss = unavailable_lines(res.unavailable)
    if miss:
        lines += ["Not measured on this machine:\n", "\n".join(miss), ""]
    for n in res.notes:
        lines.append(f"Note: {n}\n")
    plots = [(k, p) for k, p in paths.items() if str(p).endswith(".png")]
    lines += [f"![{k}]({rel(p)})" for k, p in plots]
    return "\n".join(lines) + "\n"


# ---- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer batch sizes, blocks and clients: under two minutes")
    p.add_argument("--out", metavar="DIR", help="results directory (default bench/results, or bench/results/quick)")
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--export", help="export directory with int8 graphs (default: a cached export of --model)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(PARTS)}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcodec.bench.run_all", description=__doc__.split("\n")[0])
    add_arguments(p)
    return p


def command_line(prefix: str, args: argparse.Namespace) -> str:
    """The command that reproduces this run, from its parsed options."""
    parts = ["--quick"] if args.quick else []
    for opt in ("out", "model", "export", "only"):
        if getattr(args, opt):
            parts += [f"--{opt}", str(getattr(args, opt))]
    return " ".join([prefix, shlex.join(parts)]).strip()


def run_args(args: argparse.Namespace, command: str) -> int:
    settings = QUICK if args.quick else RunSettings()
    if args.only:
        parts = tuple(x.strip() for x in args.only.split(","))
        bad = [x for x in parts if x not in PARTS]
        if bad:
            raise ValueError(f"--only takes a comma-separated subset of {list(PARTS)}, got {bad}")
        settings = dataclasses.replace(settings, parts=parts)
    out = Path(args.out) if args.out else (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    res, paths = run(settings, out, args.model, args.export, command)
    print()
    print(markdown(res, {k: v for k, v in paths.items() if str(v).endswith(".png")}))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = get_parser().parse_args(argv)
    try:
        return run_args(args, command_line("python -m llmcodec.bench.run_all", args))
    except ValueError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
