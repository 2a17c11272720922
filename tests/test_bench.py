"""The benchmark code on tiny settings: it runs end to end, its statistics are right on
known inputs, its report and plots are written. No test asserts a timing."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcodec.bench import peers, report, run_all, stats, step_latency

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- statistics on known inputs ------------------------------------------------------------
def test_summarize_known_percentiles():
    s = stats.summarize(list(range(1, 101)))  # 1..100
    assert s.n == 100 and s.min == 1 and s.max == 100 and s.mean == 50.5
    # numpy's linear interpolation: position q/100 * (n - 1) in the sorted samples
    assert s.p50 == pytest.approx(50.5) and s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert stats.summarize([0.004]).p99 == 0.004
    ms = stats.summarize([0.001, 0.003]).ms()
    assert ms["p50"] == pytest.approx(2.0) and "n" not in ms
    half = s.scaled(0.5)
    assert (half.n, half.p50, half.max) == (100, 25.25, 50.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_summarize_rejects_bad_samples(bad):
    with pytest.raises(ValueError, match="no samples|NaN"):
        stats.summarize(bad)


def test_rtf_ratios_and_cdf():
    assert stats.rtf(0.012, 0.12) == pytest.approx(0.1)
    assert stats.rtfx(0.012, 0.12) == pytest.approx(10.0)
    assert stats.rtfx(0.0, 1.0) == math.inf
    with pytest.raises(ValueError, match="audio_seconds"):
        stats.rtf(1.0, 0.0)
    # the median of per-round ratios (2, 2, 3, 5), not a ratio of medians (4.5 / 1.5 = 3)
    assert stats.paired_ratio([2, 4, 6, 5], [1, 2, 2, 1]) == pytest.approx(2.5)
    assert stats.paired_ratio([2, 4, 6], [1, 2, 2]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_ratio([1, 2], [1])
    x, y = stats.cdf([3.0, 1.0, 2.0, 2.0])
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0] and y.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_interleave_runs_every_task_once_per_round_in_varying_order():
    log: list[str] = []
    tasks = {n: (lambda n=n: log.append(n) or len(log)) for n in "abcd"}
    out = stats.interleave(tasks, rounds=6, warmup=2, seed=1)
    assert len(log) == 8 * 4
    rounds = [log[i:i + 4] for i in range(0, len(log), 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert all(len(v) == 6 for v in out.values())
    # measurements are kept in round order, warm-up rounds dropped
    for n, values in out.items():
        expected = [4 * r + rounds[r].index(n) + 1 for r in range(2, 8)]
        assert values == expected
    with pytest.raises(ValueError):
        stats.interleave(tasks, rounds=0)


def test_interleave_time_budget_keeps_min_rounds_and_pairs():
    import time
    tasks = {n: stats.timed(lambda: time.sleep(0.002)) for n in "ab"}
    out = stats.interleave(tasks, rounds=10_000, warmup=1, max_seconds=0.0, min_rounds=3)
    assert len(out["a"]) == len(out["b"]) == 3  # stopped at the first check after min_rounds
    out = stats.interleave(tasks, rounds=4, max_seconds=None)
    assert len(out["a"]) == 4


def test_timed_and_cpu_meter():
    assert stats.timed(lambda: None)() >= 0.0
    with stats.CpuMeter() as m:
        x = 0
        for i in range(300_000):
            x += i
    u = m.result
    assert u.wall_seconds > 0 and u.cpu_seconds > 0 and 0 < u.cores < 8
    assert len(u.load_before) == 3


# ---- step latency on a tiny model ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny causal model directory with its own random codebooks."""
    from safetensors.torch import save_file
    from llmcodec.checkpoint import save_model
    from llmcodec.config import preset
    from llmcodec.model import LLMCodec
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("tiny"), level_sizes=(64, 256, 256), llm_dim=32)
    model = LLMCodec(cfg)
    tables = [torch.randn(n, cfg.llm_dim) for n in cfg.level_sizes]
    model.set_codebooks(tables)
    d = tmp_path_factory.mktemp("tiny_model")
    save_model(model, d)
    save_file({f"level{i}": t for i, t in enumerate(tables)}, str(d / "codebooks.safetensors"))
    return d


TINY_STEP = step_latency.StepSettings(batches=(1, 3), threads=(1,), base_blocks=6, min_blocks=3, warmup=1)


def test_step_latency_measures_interleaved_backends(tiny_dir):
    a = step_latency.load_backend("torch", tiny_dir, None, threads=1)
    b = step_latency.load_backend("torch", tiny_dir, None, threads=1)
    f = a.facts
    blocks = step_latency.speech_blocks(f.block_size, f.sample_rate, seconds=2.0)
    assert blocks.shape == (16, 1920) and blocks.dtype == np.float32
    res = step_latency.measure_config({"torch": a, "copy": b}, 3, 1, TINY_STEP, blocks)
    assert {r.backend for r in res} == {"torch", "copy"}
    for r in res:
        assert r.batch == 3 and r.threads == 1 and r.block_seconds == pytest.approx(0.12)
        assert r.both.n == r.encode.n == r.decode.n == TINY_STEP.blocks(3) == 3
        assert len(r.samples) == 3 and stats.summarize(r.samples) == r.both
        assert r.both.max <= r.encode.max + r.decode.max + 1e-12
        assert r.rtf == pytest.approx(r.both.p50 / 0.12)
        assert r.streams == pytest.approx(3 * 0.12 / r.both.p50)
        assert r.algorithmic_latency == pytest.approx(0.12)
    ref = {r.backend: r for r in res}
    assert ref["torch"].vs_reference is None and ref["copy"].vs_reference > 0


def test_missing_backends_are_reported_not_raised(tiny_dir, tmp_path):
    u = step_latency.load_backend("onnx-int8", tiny_dir, None, 1, export_reason="no export here")
    assert u == step_latency.Unavailable("onnx-int8", "no export here")
    u = step_latency.load_backend("onnx-fp32", tiny_dir, tmp_path, 1)  # an empty directory
    assert isinstance(u, step_latency.Unavailable) and u.reason
    if not torch.cuda.is_available():
        u = step_latency.load_backend("torch-cuda", tiny_dir, None, 1)
        assert u.reason == "torch sees no CUDA device"
    path, reason = step_latency.ensure_export(tiny_dir, tmp_path)
    assert path is None and "not an export directory" in reason
    results, missing = step_latency.run(TINY_STEP, tiny_dir, None, backends=("torch", "onnx-fp32", "tensorrt"),
                                        log=lambda s: None, export_reason="no export here")
    assert sorted((r.backend, r.batch) for r in results) == [("torch", 1), ("torch", 3)]
    assert {m.backend: m.reason for m in missing} == {"onnx-fp32": "no export here", "tensorrt": "no export here"}


# ---- peers -------------------------------------------------------------------------------------
def test_opus_bitrate_and_ours_nominal_bitrate(tiny_dir):
    pytest.importorskip("opuslib", reason="opuslib (and Debian libopus0) not installed")
    from llmcodec.speech import speech_clip
    wav = speech_clip(2.0)
    o = peers.Opus(6000)
    o.offline(wav)
    assert 3000 < o.bitrate_bps < 9000  # VBR around the 6 kbps target on real speech
    assert o.algorithmic_latency > 0.02 and o.frame_size == 320
    ours = peers.Ours("tiny", step_latency.load_backend("torch", tiny_dir, None, 1))
    # tokens per block (1, 2, 4) of sizes (64, 256, 256): 6 + 16 + 32 bits per 0.12 s
    assert ours.bitrate_bps == pytest.approx(54 / 0.12)


def test_peers_measure_interleaved_ratios(tiny_dir):
    pytest.importorskip("opuslib", reason="opuslib (and Debian libopus0) not installed")
    from llmcodec.speech import speech_clip
    s = peers.PeerSettings(seconds=0.72, offline_rounds=2, warmup_chunks=1)
    cs = [peers.Ours("ours-small", step_latency.load_backend("torch", tiny_dir, None, 1)), peers.Opus()]
    res = peers.measure(cs, speech_clip(s.seconds), s, log=lambda m: None)
    by = {r.name: r for r in res}
    assert by["ours-small"].offline_vs_ours is None and by["opus"].offline_vs_ours > 0
    assert by["opus"].streaming.n == 2 and by["opus"].offline.n == 2  # 3 chunks of 240 ms, 1 warm-up
    assert by["opus"].frame_seconds == pytest.approx(0.02)
    with pytest.raises(ValueError, match="chunks"):
        peers.measure(cs, speech_clip(0.3), s, log=lambda m: None)


def test_mimi_streams_frame_by_frame():
    pytest.importorskip("transformers")
    m = peers.Mimi()
    assert m.sample_rate == 24000 and m.frame_size == 1920 and m.bitrate_bps == pytest.approx(4400)
    m.stream(np.zeros(2 * 1920, np.float32))
    assert m._dec_kv is not None  # decoder KV cache carried between frames
    if m.streaming_api:
        assert m._pad is not None


# ---- the whole run, the report, the plots, the command line ---------------------------------------
def test_run_all_writes_tables_and_plots(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = run_all.RunSettings(
        step=TINY_STEP,
        server=run_all.ServerSettings(clients=(1,), seconds=0.5, backends=("torch",)),
        peers=peers.PeerSettings(seconds=0.72, offline_rounds=1, warmup_chunks=1),
        peers_include=("ours-small", "opus"))
    empty = tmp_path / "not_an_export"
    empty.mkdir()
    out = tmp_path / "results"
    res, paths = run_all.run(settings, out, tiny_dir, empty, command="llmcodec bench --test", log=lambda s: None)
    assert [(r.backend, r.batch) for r in res.steps] == [("torch", 1), ("torch", 3)]
    missing = {n: r for _, n, r in res.unavailable}
    assert {"onnx-fp32", "onnx-int8", "tensorrt"} <= set(missing)
    assert "not an export directory" in missing["onnx-int8"]
    md = paths["markdown"].read_text()
    assert "llmcodec bench --test" in md and "| torch | 1 | 1 |" in md and "| torch | 3 | 1 |" in md
    assert "- onnx-int8: not available:" in md and report.cpu_model() in md
    for key in ("latency CDF per backend", "throughput vs batch size"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC and paths[key].stat().st_size > 5000
    data = json.loads(paths["json"].read_text())
    assert [(s["batch"], s["both"]["n"]) for s in data["steps"]] == [(1, 6), (3, 3)]
    assert data["machine"]["usable_cores"] >= 1
    section = paths["readme section"].read_text()
    assert section.startswith("## Benchmarks") and "latency_cdf.png" in section
    try:
        import llmcodec.bench.server_load  # noqa: F401 - the server work's load generator
    except ImportError:
        assert "server load" in missing
    else:
        assert res.server, missing  # the real server on loopback, one real-time client
        p = res.server[0]
        assert p.clients == 1 and p.blocks + p.dropped == 5 and p.backend == "torch"
        assert paths["latency vs concurrent streams"].read_bytes()[:8] == PNG_MAGIC
    assert {p.name for p in res.peers} | set(missing) >= {"ours-small", "opus"}
    assert "ours-small" in {p.name for p in res.peers}


def test_load_point_from_level_result():
    server_load = pytest.importorskip("llmcodec.bench.server_load", reason="the server work's llmcodec.bench.server_load is absent")
    P = server_load.LatencySummary  # (n, p50, p90, p99, mean, max)
    known = dict(streams=2, blocks=48, server_ms=P(48, 10.0, 20.0, 130.0, 30.0, 140.0),
                 wire_ms=P(48, 12.0, 30.0, 50.0, 25.0, 59.0),
                 queue_ms=P(48, 1.0, 2.0, 3.0, 2.0, 4.0), compute_ms=P(48, 5.0, 6.0, 7.0, 6.0, 8.0), late_blocks=0,
                 dropped=2, exact_streams=2, greedy=0, greedy_blocks_per_s=0.0,
                 batch_sizes={1: 8, 2: 40}, server_cpu_percent=50.0, load_avg=1.5, errors=(), seconds=3.0,
                 holds=True)
    lv = server_load.LevelResult(**{f.name: known.get(f.name) for f in dataclasses.fields(server_load.LevelResult)})
    p = run_all.load_point(lv, "torch", seconds=3.0)  # 25 blocks per client expected, 48 received
    assert (p.dropped, p.blocks, p.late) == (2, 48, 0)
    assert p.latency_p50 == pytest.approx(0.012) and p.latency_p99 == pytest.approx(0.050)
    assert p.cpu_cores == pytest.approx(0.5)
    assert p.rtfx == pytest.approx(48 * 0.12 / 1.5)  # audio seconds per server CPU second
    assert p.batch_sizes == "mean 1.8, max 2" and p.load_avg == 1.5
    assert not p.realtime  # two blocks never came
    assert p.exact_streams == 2 and p.greedy == 0
    assert dataclasses.replace(p, dropped=0).realtime
    assert not dataclasses.replace(p, dropped=0, latency_p99=0.07).realtime  # p99 must stay under 60 ms
    assert not dataclasses.replace(p, dropped=0, exact_streams=1).realtime  # a stream's tokens differ


def test_report_tables_handle_missing_and_nan():
    lines = report.unavailable_lines([("step", "tensorrt", "no GPU"), step_latency.Unavailable("onnx-cuda", "x")])
    assert lines == ["- tensorrt: not available: no GPU", "- onnx-cuda: not available: x"]
    assert report._f(float("nan")) == "-" and report._f(None) == "-" and report._f(1.234, 2) == "1.23"
    m = report.machine_info()
    assert m.logical_cores >= 1 and "torch" in m.versions and m.cpu_model


def test_cli_bench_rejects_bad_parts(capsys):
    from llmcodec.cli import main
    assert main(["bench", "--only", "step,nonsense"]) == 2
    assert "--only takes a comma-separated subset" in capsys.readouterr().err


def test_gpu_check_runs_in_cpu_mode(tmp_path):
    """The prepared GPU check (bench/gpu_check.sh) runs here on the CPU, so it cannot rot."""
    from llmcodec.bench import gpu_check
    res = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    d = json.loads((tmp_path / "results.json").read_text())
    assert d["device"] == "cpu" and len(d["staggered_exact"]) == 4 and all(d["staggered_exact"])
    assert d["cpu_agreement"] == 1.0  # the CPU against itself
    assert [p["batch"] for p in d["sweep"]] == [1, 4] and all(p["backend_ms"] > 0 for p in d["sweep"])
    assert res.sweep[1].per_stream_ms == pytest.approx(res.sweep[1].backend_ms / 4)
    assert "| 4 |" in (tmp_path / "results.md").read_text()


def test_gpu_check_on_cuda(tmp_path):
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: bench/gpu_check.sh runs the CUDA check where one is")
    from llmcodec.bench import gpu_check
    res = gpu_check.main(["--quick", "--out", str(tmp_path)])
    assert res.device.startswith("cuda") and all(res.staggered_exact)


def test_token_agreement_per_level(tiny_dir, tmp_path):
    """A model agrees with itself everywhere; with its encoder perturbed, less; files are spread."""
    from safetensors.torch import load_file, save_file
    from llmcodec.audio import save_audio
    from llmcodec.bench import token_agreement
    from llmcodec.speech import speech_clip
    data = tmp_path / "wavs"
    data.mkdir()
    for i in range(3):
        save_audio(data / f"{i}.wav", speech_clip(1.5, start=5 * i), 16000)
    same = token_agreement.run(str(tiny_dir), str(tiny_dir), str(data), limit=None)
    assert same.files == 3 and same.equal == (1.0, 1.0, 1.0) and same.positions[2] == 4 * same.positions[0]
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_dir.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    w = load_file(str(tiny_dir / "model.safetensors"))
    torch.manual_seed(1)
    w = {k: v + 0.3 * v.std() * torch.randn_like(v) if k.startswith("encoder.") and v.dim() > 1 else v
         for k, v in w.items()}
    save_file(w, str(other / "model.safetensors"))
    diff = token_agreement.run(str(other), str(tiny_dir), str(data), limit=2, swap=True)
    assert diff.files == 2 and min(diff.equal) < 1.0
    swaps = {lv: (st, pq) for lv, st, pq in diff.swaps}
    assert len(swaps) == 8 and swaps[()] != swaps[(1, 2, 3)]  # A's own codes decode differently from B's
    assert "levels from B" in diff.table("A", "B") and not same.swaps
    assert [p.name for p in token_agreement.spread(sorted(data.glob("*.wav")), 2)] == ["0.wav", "1.wav"]
