"""TensorRT engines and the native TensorRT backend (skip visibly without tensorrt or a GPU)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from llmcodec.bench.onnx_parity import agreement, run_staggered, snr_db
from llmcodec.stream.buffer import decode_all, encode_all

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_model) -> Path:
    from llmcodec.export.onnx_export import export_model
    out = tmp_path_factory.mktemp("tiny_export_trt")
    export_model(tiny_model, out, graphs=("encoder", "decoder"))
    return out


@pytest.fixture(scope="module")
def gpu():
    if not HAVE_TRT:
        pytest.skip("the tensorrt wheel is not installed (it cannot be installed on these CPU-only machines)")
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: TensorRT engines need an NVIDIA GPU")
    import tensorrt
    return tensorrt


def test_missing_tensorrt_is_a_clear_error(tmp_path, capsys):
    if HAVE_TRT:
        pytest.skip("tensorrt is installed here; this checks the message on machines without it")
    from llmcodec.export.tensorrt_build import build_engines
    from llmcodec.stream.tensorrt_backend import TensorRTBackend
    with pytest.raises(ImportError, match="tensorrt"):
        build_engines(tmp_path)
    with pytest.raises(ImportError, match="tensorrt"):
        TensorRTBackend(tmp_path)
    from llmcodec.cli import main as cli
    assert cli(["export", "-o", str(tmp_path / "never"), "--tensorrt"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before the slow export


def test_engines_build_with_profile_and_caches(gpu, tiny_export):
    from llmcodec.export.tensorrt_build import build_engines
    builds = build_engines(tiny_export, max_batch=8, opt_batch=4)
    assert [b.graph for b in builds] == ["encoder", "decoder"]
    assert all(b.path.is_file() and b.profile == (1, 4, 8) and not b.cached for b in builds)
    assert (tiny_export / "tensorrt" / "timing.cache").stat().st_size > 0
    again = build_engines(tiny_export, max_batch=8, opt_batch=4)
    assert all(b.cached for b in again)  # the engine cache on disk


def test_tensorrt_backend_matches_onnxruntime(gpu, tiny_export):
    from llmcodec.export.tensorrt_build import build_engines
    from llmcodec.speech import speech_clip
    from llmcodec.stream.onnx_backend import OnnxBackend
    from llmcodec.stream.tensorrt_backend import TensorRTBackend
    build_engines(tiny_export, max_batch=8, opt_batch=4)
    trt_b, ort_b = TensorRTBackend(tiny_export), OnnxBackend(tiny_export, providers=["CPUExecutionProvider"])
    wav = speech_clip(4.0, start=11)
    ref = encode_all(ort_b, wav)
    codes = encode_all(trt_b, wav)
    assert agreement(ref, codes)[0] >= 0.999
    assert snr_db(decode_all(ort_b, ref), decode_all(trt_b, ref)) >= 40
    for batch in (1, 3, 8):
        wavs = [wav[i * 1500:i * 1500 + 8000] for i in range(batch)]
        c_ref, a_ref = run_staggered(ort_b, wavs, [i % 3 for i in range(batch)])
        c_trt, a_trt = run_staggered(trt_b, wavs, [i % 3 for i in range(batch)])
        for r, t, ra, ta in zip(c_ref, c_trt, a_ref, a_trt):
            assert agreement(r, t)[0] >= 0.999 and snr_db(ra, ta) >= 40
    with pytest.raises(ValueError, match="profile maximum"):
        trt_b.encode_step(np.zeros((9, 1920), np.float32), trt_b.init_encoder_state(9))


def test_fp16_engine_runs(gpu, tiny_export):
    from llmcodec.export.tensorrt_build import build_engines
    from llmcodec.speech import speech_clip
    from llmcodec.stream.onnx_backend import OnnxBackend
    from llmcodec.stream.tensorrt_backend import TensorRTBackend
    build_engines(tiny_export, max_batch=4, fp16=True)
    b = TensorRTBackend(tiny_export, fp16=True)
    wav = speech_clip(3.0, start=5)
    ref = encode_all(OnnxBackend(tiny_export, providers=["CPUExecutionProvider"]), wav)
    codes = encode_all(b, wav)
    assert all(c.dtype == np.int64 for c in codes)
    assert agreement(ref, codes)[0] > 0.5  # float16 flips near-ties; measured, not a parity claim
    assert np.isfinite(decode_all(b, codes)).all()
