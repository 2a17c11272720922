"""Shared fixtures: real recorded speech and the bundled default model."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from llmcodec.speech import speech_clip


def pytest_configure(config):
    # One intra-op thread: the suite runs on a shared 2-core machine, where
    # torch's spinning worker threads slow everything down under contention.
    import torch
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def speech_30s() -> np.ndarray:
    """30 s of real recorded speech (Debian asterisk-core-sounds-en-wav), 16 kHz float32."""
    return speech_clip(30.0)


@pytest.fixture(scope="session")
def speech_30s_file(tmp_path_factory, speech_30s) -> str:
    """The same 30 s, written as a 44.1 kHz stereo WAV (exercises resampling and down-mix)."""
    import soxr
    path = tmp_path_factory.mktemp("audio") / "speech30_44k_stereo.wav"
    a = soxr.resample(speech_30s, 16000, 44100).astype(np.float32)
    sf.write(str(path), np.stack([a, a * 0.5], axis=1), 44100, subtype="FLOAT")
    return str(path)


@pytest.fixture(scope="session")
def default_backend():
    """The bundled default model behind the torch backend (loaded once)."""
    from llmcodec.stream.backends import make_backend
    return make_backend("torch")


def make_tiny(seed: int = 0, **overrides):
    """A seeded tiny causal model (``tiny`` preset with ``overrides``) with small random
    codebooks, ready for inference."""
    import torch
    from llmcodec.config import preset
    from llmcodec.model import LLMCodec
    import dataclasses
    torch.manual_seed(seed)
    cfg = dataclasses.replace(preset("tiny"), **{"level_sizes": (64, 256, 256), "llm_dim": 32, **overrides})
    m = LLMCodec(cfg)
    m.set_codebooks([torch.randn(n, cfg.llm_dim) for n in cfg.level_sizes])
    return m.prepare_inference()


@pytest.fixture(scope="session")
def tiny_model():
    """A seeded tiny causal model with small random codebooks (fast tests)."""
    return make_tiny()


def token_differences(got, want) -> list[str]:
    """Where ``got`` and ``want`` (codes per level) differ; empty when they are exactly equal.
    Within one runtime tokens are exact at any batch size and chunking, so no tolerance."""
    got = [np.asarray(g).ravel() for g in got]
    want = [np.asarray(w).ravel() for w in want]
    if len(got) != len(want):
        return [f"{len(got)} levels, expected {len(want)}"]
    out = []
    for lvl, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            out.append(f"level {lvl + 1}: {g.size} tokens, expected {w.size}")
        else:
            out += [f"level {lvl + 1} token {i}: {g[i]} vs {w[i]}" for i in np.flatnonzero(g != w)[:5]]
    return out


NEAR_TIE = 1e-3  # cosine margin (best - runner-up) under which float rounding may pick the runner-up


def real_token_differences(backend, wav: np.ndarray, got, want, tie: float = NEAR_TIE,
                           max_fraction: float = 0.01) -> list[str]:
    """Token differences between ``got`` and ``want`` (the torch batch-1 reference of ``wav``)
    that are not near-ties; empty when the sequences agree. Only for comparing two runtimes.

    Another runtime (ONNX Runtime) sums in another order, so a trained
    codec's nearest code can flip where the runner-up is within float rounding of it. Such
    flips are allowed (at most ``max_fraction`` of the tokens); any other difference is listed.
    """
    got = [np.asarray(g).ravel() for g in got]
    want = [np.asarray(w).ravel() for w in want]
    if len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want)):
        return []
    from llmcodec.bench.onnx_parity import torch_margins
    margins = torch_margins(backend.model, wav)
    out, flips, total = [], 0, sum(w.size for w in want)
    for lvl, (g, w, m) in enumerate(zip(got, want, margins)):
        if g.shape != w.shape:
            out.append(f"level {lvl + 1}: {g.size} tokens, reference {w.size}")
            continue
        for i in np.flatnonzero(g != w):
            flips += 1
            if m[i] >= tie:
                out.append(f"level {lvl + 1} token {i}: {g[i]} vs {w[i]} (reference margin {m[i]:.1e})")
    if flips > max_fraction * total:
        out.append(f"{flips} of {total} tokens differ (more than {max_fraction:.0%})")
    return out


def shut_down_mid_stream(st, frames: list[bytes], sent) -> tuple[list[int], dict | None, int | None]:
    """Open /v1/stream on the ``ServerThread`` ``st``, send ``frames``, wait until ``sent(session)``
    holds on the server, shut the server down, and collect what comes back:
    (token seqs, the error message, the close code)."""
    import asyncio
    import json
    import time
    from llmcodec.stream.client import open_connection
    from llmcodec.stream.protocol import Start

    async def run():
        ws = await open_connection(st.url)
        await ws.send(Start().to_json())
        await ws.recv()
        for f in frames:
            await ws.send(f)
        end = time.monotonic() + 15
        while not st.call(lambda: sent(next(iter(st.server.sessions.values())))) and time.monotonic() < end:
            await asyncio.sleep(0.001)
        st.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(st.server.shutdown()))
        seqs, error = [], None
        async for msg in ws:
            d = json.loads(msg)
            if d["type"] == "tokens":
                seqs.append(d["seq"])
            else:
                error = d
        return seqs, error, ws.close_code
    return asyncio.run(run())


@pytest.fixture(scope="session")
def llm():
    """The frozen SmolLM2-135M of the in-context tests (loaded once per process)."""
    from llmcodec.icl.llm import load_llm
    try:
        return load_llm()
    except FileNotFoundError as e:
        pytest.skip(str(e))
