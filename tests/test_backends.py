"""The backend interface: one registry, the same facts, vocabulary and state shapes from every runtime."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llmcodec.stream import backends
from llmcodec.stream.backend import check_pcm, check_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    from llmcodec.export.onnx_export import export_model
    out = tmp_path_factory.mktemp("export")
    export_model(None, out, graphs=("encoder", "decoder"))
    return out


def test_every_backend_answers_the_interface(small_export):
    torch_b = backends.make_backend("torch")
    onnx_b = backends.make_backend("onnx", str(small_export), threads=1)
    assert set(backends.BACKENDS) == {"torch", "onnx", "tensorrt"} == set(backends.NEEDS_EXPORT)
    assert torch_b.facts == onnx_b.facts
    for part in ("encoder", "decoder"):
        assert torch_b.state_shapes(part) == onnx_b.state_shapes(part)
        zero = getattr(onnx_b, f"init_{part}_state")(2)
        assert {k: v.shape[1:] for k, v in zero.items()} == onnx_b.state_shapes(part)
    ids = [5, 17, 300]
    for level in range(3):  # the same token forms with or without torch
        assert torch_b.vocab.codes_to_text(level, ids) == onnx_b.vocab.codes_to_text(level, ids)
        assert torch_b.vocab.codes_to_token_ids(level, ids) == onnx_b.vocab.codes_to_token_ids(level, ids)
    assert torch_b.vocab.llm_name == onnx_b.vocab.llm_name == torch_b.facts.llm_name
    with pytest.raises(ValueError, match="accepted: torch, onnx, tensorrt"):
        backends.make_backend("jax")


def test_shared_step_checks_name_the_problem():
    from llmcodec.stream.backend import ModelFacts
    facts = ModelFacts("m", 16000, 1920, 480, (4, 2, 1), (1, 2, 4), (10, 20, 20), "llm")
    assert check_pcm(facts, np.zeros((2, 1920), np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match=r"pcm \[B, 1920\]"):
        check_pcm(facts, np.zeros(1920))
    shapes = {"a": (3, 4)}
    assert check_state("encoder", shapes, {"a": np.zeros((2, 3, 4))}, 2)["a"].dtype == np.float32
    with pytest.raises(ValueError, match="missing \\['a'\\], unexpected \\['b'\\]"):
        check_state("encoder", shapes, {"b": np.zeros((2, 3, 4))}, 2)
    with pytest.raises(ValueError, match=r"expected \(1, 3, 4\)"):
        check_state("decoder", shapes, {"a": np.zeros((2, 3, 4))}, 1)


def test_tensorrt_backend_imports_without_torch_or_onnxruntime():
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        sys.modules["onnxruntime"] = None
        import llmcodec.stream.tensorrt_backend as t
        print("OK", t.TensorRTBackend.name)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK tensorrt" in r.stdout, r.stderr[-1500:]
