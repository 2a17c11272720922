"""Markdown tables, the machine's description and PNG plots of a benchmark run.

``write(results, out_dir)`` writes ``results.md``, ``results.json`` and three
plots (matplotlib, Agg): ``latency_cdf.png`` (per-block encode+decode time at
batch 1 per backend), ``throughput_vs_batch.png`` (real-time streams per batch
size) and ``latency_vs_streams.png`` (server added latency per concurrent
clients).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .stats import cdf, load_average

CDF_PNG, BATCH_PNG, STREAMS_PNG = "latency_cdf.png", "throughput_vs_batch.png", "latency_vs_streams.png"


@dataclass(frozen=True)
class MachineInfo:
    cpu_model: str
    logical_cores: int
    usable_cores: int
    memory_gib: float
    gpu: str
    system: str
    python: str
    versions: dict[str, str]
    date: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def describe(self) -> str:
        v = ", ".join(f"{k} {x}" for k, x in self.versions.items())
        return (f"{self.cpu_model}, {self.usable_cores} usable of {self.logical_cores} logical cores, "
                f"{self.memory_gib:.0f} GiB, GPU: {self.gpu}; {self.system}; Python {self.python}; {v}; "
                f"{self.date}; load average (1/5/15 min) {_load(self.load_start)} at start, "
                f"{_load(self.load_end)} at end")


def _load(t: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in t)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def _versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for dist in ("llmcodec", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "transformers", "numpy",
                 "opuslib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        import opuslib
        out["libopus"] = opuslib.api.info.get_version_string().decode().removeprefix("libopus ")
    except Exception:  # noqa: BLE001 - no libopus: nothing to report
        pass
    return out


def _gpu() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return "none"


def machine_info() -> MachineInfo:
    """This machine now (call ``finished`` at the end to add the closing load average)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return MachineInfo(cpu_model(), os.cpu_count() or 1, usable, _memory_gib(), _gpu(), platform.platform(),
                       platform.python_version(), _versions(),
                       dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), load_average())


def finished(m: MachineInfo) -> MachineInfo:
    return dataclasses.replace(m, load_end=load_average())


@dataclass
class BenchResults:
    """Everything one run measured (``steps``/``server``/``peers`` may be empty)."""

    machine: MachineInfo
    command: str
    settings: dict[str, Any]
    steps: list = field(default_factory=list)  # step_latency.StepTiming
    server: list = field(default_factory=list)  # run_all.LoadPoint
    peers: list = field(default_factory=list)  # peers.PeerResult
    unavailable: list = field(default_factory=list)  # (kind, name, reason)
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0


# ---- tables ---------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def step_table(results: list, batches: Sequence[int] | None = None) -> str:
    """One row per (threads, batch, backend)."""
    rows = []
    for r in sorted(results, key=lambda r: (r.threads, r.batch)):
        if batches is not None and r.batch not in batches:
            continue
        rows.append([r.backend, str(r.batch), str(r.threads), _f(r.encode.p50 * 1e3, 2), _f(r.decode.p50 * 1e3, 2),
                     f"{_f(r.both.p50 * 1e3, 2)} / {_f(r.both.p90 * 1e3, 2)} / {_f(r.both.p99 * 1e3, 2)}",
                     _f(r.both.p50 * 1e3 / r.batch, 2), _f(r.rtf, 3), _f(r.streams, 1),
                     _f(r.algorithmic_latency * 1e3, 0),
                     "1" if r.vs_reference is None else _f(r.vs_reference, 2), str(r.both.n)])
    return _table(["backend", "B", "threads", "encode p50 ms", "decode p50 ms", "enc+dec p50 / p90 / p99 ms",
                   "per stream ms", "RTF", "real-time streams", "algorithmic latency ms", "x torch", "blocks"],
                  rows)


def best_streams_table(results: list) -> str:
    """Per backend and thread count: the batch with the most real-time streams."""
    best: dict[tuple[str, int], Any] = {}
    for r in results:
        k = (r.backend, r.threads)
        if k not in best or r.streams > best[k].streams:
            best[k] = r
    rows = [[b.backend, str(b.threads), str(b.batch), _f(b.streams, 1), _f(b.both.p50 * 1e3, 1),
             _f(b.both.p99 * 1e3, 1)] for b in sorted(best.values(), key=lambda r: (r.threads, -r.streams))]
    return _table(["backend", "threads", "best B", "real-time streams", "step p50 ms", "step p99 ms"], rows)


def server_table(points: list) -> str:
    def exact(p) -> str:
        return "-" if getattr(p, "exact_streams", -1) < 0 else f"{p.exact_streams}/{p.clients}"
    rows = [[str(p.clients), str(getattr(p, "greedy", 0)), p.backend, _f(p.latency_p50 * 1e3),
             _f(p.latency_p90 * 1e3), _f(p.latency_p99 * 1e3), _f(p.server_p50 * 1e3), _f(p.rtfx, 1),
             f"{p.late} / {p.dropped} / {p.blocks}", exact(p), p.batch_sizes, _f(p.cpu_cores, 2),
             _f(p.load_avg, 2), "yes" if p.realtime else "no"] for p in points]
    return _table(["clients N", "greedy", "backend", "added p50 ms", "added p90 ms", "added p99 ms",
                   "server p50 ms", "RTFX (audio s / server CPU s)", "late / dropped / blocks", "exact tokens",
                   "batch sizes", "server CPU cores", "load avg", "holds (p99 < 60 ms, 0 dropped, exact)"], rows)


def largest_realtime(points: list) -> str:
    """Per backend, the largest N (without greedy clients) that held."""
    out = []
    for backend in dict.fromkeys(p.backend for p in points):
        ok = [p.clients for p in points if p.backend == backend and p.realtime and not getattr(p, "greedy", 0)]
        out.append(f"{backend} **{max(ok) if ok else 'none'}**")
    return ", ".join(out)


def peers_table(results: list) -> str:
    rows = [[r.name, _f(r.frame_seconds * 1e3, 0), _f(r.bitrate_bps / 1e3, 2), _f(r.algorithmic_latency * 1e3, 1),
             _f(r.offline.p50, 4), f"{_f(r.streaming.p50, 4)} / {_f(r.streaming.p90, 4)}",
             "1" if r.offline_vs_ours is None else _f(r.offline_vs_ours, 2),
             "1" if r.streaming_vs_ours is None else _f(r.streaming_vs_ours, 2), r.note] for r in results]
    return _table(["codec", "frame ms", "kbps", "algorithmic latency ms", "offline RTF p50",
                   "streaming RTF p50 / p90", "offline x ours-small", "streaming x ours-small", "note"], rows)


def unavailable_lines(missing: list) -> list[str]:
    out = []
    for m in missing:
        if isinstance(m, tuple):
            kind, name, reason = m
        else:
            kind, name, reason = type(m).__name__, getattr(m, "backend", getattr(m, "name", "?")), m.reason
        out.append(f"- {name}: not available: {reason}")
    return out


def markdown(res: BenchResults, plots: dict[str, Path] | None = None) -> str:
    parts = [f"# llmcodec benchmark\n", f"Command: `{res.command}`\n",
             f"Machine: {res.machine.describe()}.\n",
             f"Run time {res.wall_seconds:.0f} s. Every timing is the median (p50) of interleaved measurements "
             "unless named otherwise; ratios are medians of per-round ratios measured in the same run.\n"]
    if res.steps:
        parts += ["## Step latency (one batched encode_step + decode_step, 120 ms blocks)\n",
                  "RTF = median step time / block duration (< 1: the batch keeps up); real-time streams = "
                  "B x block / median step; algorithmic latency = one buffered block (the causal model has "
                  "no lookahead), compute comes on top.\n",
                  step_table(res.steps), "", "Most real-time streams per backend:\n", best_streams_table(res.steps), ""]
    if res.server:
        parts += ["## Server load (real server on loopback, clients paced in real time)\n",
                  "Added latency = tokens received minus the moment the block's last sample was sent.\n",
                  server_table(res.server), ""]
        parts.append(f"Largest N that held (p99 added latency under 60 ms, nothing dropped, every stream's "
                     f"tokens equal offline): {largest_realtime(res.server)}.\n")
        for p in res.server:
            base = [q for q in res.server if q.backend == p.backend and q.clients == p.clients
                    and not getattr(q, "greedy", 0)]
            if getattr(p, "greedy", 0) and base:
                parts.append(f"Fairness ({p.backend}): {p.clients} real-time clients' p99 "
                             f"{base[-1].latency_p99 * 1e3:.1f} ms alone, {p.latency_p99 * 1e3:.1f} ms beside "
                             f"{p.greedy} clients sending as fast as the server takes it.\n")
    if res.peers:
        parts += ["## Peers (one thread, interleaved in one process)\n",
                  "RTF = compute seconds per second of audio (encode + decode); x ours-small = paired median "
                  "ratio of compute time against the shipped model (> 1: slower than ours).\n",
                  peers_table(res.peers), ""]
    lines = unavailable_lines(res.unavailable)
    if lines:
        parts += ["## Not measured here\n", "\n".join(lines), ""]
    if res.notes:
        parts += ["## Notes\n", "\n".join(f"- {n}" for n in res.notes), ""]
    if plots:
        parts += ["## Plots\n"] + [f"![{k}]({p.name})" for k, p in plots.items()] + [""]
    return "\n".join(parts)


# ---- plots ----------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plain_ticks(ax, x: bool = True, y: bool = True) -> None:
    """Log axes labelled 1, 2, 4, ... instead of 2^k."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for on, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if on:
            f = ScalarFormatter()
            f.set_scientific(False)
            axis.set_major_formatter(f)
            axis.set_minor_formatter(NullFormatter())


def _finish(plt, fig, ax, path: Path, xlabel: str, ylabel: str, title: str, **legend) -> Path:
    """Label, grid, legend, save and close one figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, **legend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency_cdf(steps: list, path: Path, batch: int = 1) -> Path | None:
    rows = [r for r in steps if r.batch == batch]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in sorted(rows, key=lambda r: (r.threads, r.backend)):
        x, y = cdf(r.samples)
        ax.plot(x * 1e3, y, label=f"{r.backend}, {r.threads} thr (p50 {r.both.p50 * 1e3:.1f} ms)")
    block = rows[0].block_seconds * 1e3
    ax.axvline(block, color="k", ls="--", lw=1, label=f"one block ({block:.0f} ms)")
    ax.set_xscale("log")
    _plain_ticks(ax, y=False)
    return _finish(plt, fig, ax, path, "encode + decode time of one block, ms (log)", "fraction of blocks",
                   f"Per-block latency CDF, batch {batch}", loc="lower right")


def plot_throughput_vs_batch(steps: list, path: Path) -> Path | None:
    if not steps:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key in sorted({(r.backend, r.threads) for r in steps}, key=lambda k: (k[1], k[0])):
        rows = sorted((r for r in steps if (r.backend, r.threads) == key), key=lambda r: r.batch)
        ax.plot([r.batch for r in rows], [r.streams for r in rows], marker="o", label=f"{key[0]}, {key[1]} thr")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    _plain_ticks(ax, y=False)
    ax.set_xticks(sorted({r.batch for r in steps}))
    return _finish(plt, fig, ax, path, "batch size B (streams per step)",
                   "real-time streams (B x block / median step)", "Throughput vs batch size")


def plot_latency_vs_streams(points: list, path: Path) -> Path | None:
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ys = []
    for backend in sorted({p.backend for p in points}):
        rows = sorted((p for p in points if p.backend == backend), key=lambda p: p.clients)
        n = [p.clients for p in rows]
        for q, style in (("latency_p50", "-o"), ("latency_p90", "--s"), ("latency_p99", ":^")):
            y = [getattr(p, q) * 1e3 for p in rows]
            ys += y
            ax.plot(n, y, style, label=f"{backend} {q[-3:]}")
    block = points[0].block_seconds * 1e3
    ax.axhline(block, color="k", ls="--", lw=1, label=f"one block ({block:.0f} ms)")
    clients = sorted({p.clients for p in points})
    if len(clients) > 1:
        ax.set_xscale("log", base=2)
    else:  # one point: a log axis would have no range
        ax.set_xlim(clients[0] - 0.5, clients[0] + 0.5)
    if any(math.isfinite(y) and y > 0 for y in ys):  # a run with no blocks has only NaN
        ax.set_yscale("log")
    _plain_ticks(ax)
    ax.set_xticks(sorted({p.clients for p in points}))
    return _finish(plt, fig, ax, path, "concurrent real-time clients N",
                   "added latency, ms (last sample sent -> tokens)", "Server latency vs concurrent streams (loopback)")


# ---- files ----------------------------------------------------------------------------------
def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        d = {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
        for prop in ("rtf", "streams", "algorithmic_latency"):
            if hasattr(type(x), prop) and isinstance(getattr(type(x), prop), property):
                d[prop] = getattr(x, prop)
        return d
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write(res: BenchResults, out_dir: str | Path) -> dict[str, Path]:
    """Write the plots, ``results.md`` and ``results.json`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    for key, fn, arg in (("latency CDF per backend", plot_latency_cdf, res.steps),
                         ("latency vs concurrent streams", plot_latency_vs_streams, res.server),
                         ("throughput vs batch size", plot_throughput_vs_batch, res.steps)):
        name = {plot_latency_cdf: CDF_PNG, plot_latency_vs_streams: STREAMS_PNG,
                plot_throughput_vs_batch: BATCH_PNG}[fn]
        p = fn(arg, out / name)
        if p is not None:
            plots[key] = p
    md = out / "results.md"
    md.write_text(markdown(res, plots))
    js = out / "results.json"
    js.write_text(json.dumps(_jsonable(res), indent=1) + "\n")
    return {"markdown": md, "json": js, **plots}
