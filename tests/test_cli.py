"""The CLI contract: encode / decode / roundtrip, JSON fields, and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from llmcodec.cli import main
from llmcodec.vocab import Vocabulary


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmcodec.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def short_file(tmp_path_factory, speech_30s):
    path = tmp_path_factory.mktemp("cli") / "speech8k.wav"
    import soxr
    sf.write(str(path), soxr.resample(speech_30s[:16000 * 6], 16000, 8000), 8000)  # like the source
    return path


def test_encode_json_contract_and_text_round_trip(tmp_path, short_file):
    out = tmp_path / "t.json"
    assert main(["encode", str(short_file), "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("sample_rate", "num_samples", "tokens_per_second", "levels", "text", "codes"):
        assert key in d
    assert d["sample_rate"] == 16000 and d["source_sample_rate"] == 8000
    assert abs(d["num_samples"] - 6 * 16000) <= 2
    assert abs(d["tokens_per_second"] - 58.3333) < 1e-3
    blocks = -(-d["num_samples"] // 1920)
    assert [len(c) for c in d["codes"]] == [blocks, 2 * blocks, 4 * blocks]
    assert len(d["levels"]) == 3 and len(d["text"]) == 3
    vocab = Vocabulary.default()
    for level in range(3):
        assert all(0 <= i < 49152 for i in d["levels"][level])                     # valid LLM ids
        assert vocab.text_to_codes(level, d["text"][level]) == d["codes"][level]   # exact text round trip
        assert vocab.token_ids_to_codes(level, d["levels"][level]) == d["codes"][level]
    # level 1 is words the LLM reads as text
    assert vocab.tokenizer.encode(d["text"][0], add_special_tokens=False).ids == d["levels"][0]


def test_chunked_encode_equals_offline_and_decode(tmp_path, short_file):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["encode", str(short_file), "-o", str(a)]) == 0
    assert main(["encode", str(short_file), "-o", str(b), "--chunk", "4801"]) == 0
    assert json.loads(a.read_text())["codes"] == json.loads(b.read_text())["codes"]
    w1, w2 = tmp_path / "1.wav", tmp_path / "2.wav"
    assert main(["decode", str(a), "-o", str(w1)]) == 0
    assert main(["decode", str(a), "-o", str(w2), "--chunk", "5"]) == 0
    x1, sr = sf.read(str(w1))
    x2, _ = sf.read(str(w2))
    assert sr == 16000 and x1.size == json.loads(a.read_text())["num_samples"]
    assert np.abs(x1 - x2).max() <= 2 / 32768  # same audio up to 16-bit rounding
    # decoding from the LLM token ids alone (no 'codes') gives the same audio
    d = json.loads(a.read_text())
    del d["codes"]
    c = tmp_path / "c.json"
    c.write_text(json.dumps(d))
    w3 = tmp_path / "3.wav"
    assert main(["decode", str(c), "-o", str(w3)]) == 0
    assert np.array_equal(sf.read(str(w3))[0], x1)


def test_roundtrip_writes_audio(tmp_path, short_file):
    out = tmp_path / "r.wav"
    assert main(["roundtrip", str(short_file), "-o", str(out), "--chunk", "1000"]) == 0
    info = sf.info(str(out))
    assert info.samplerate == 16000 and abs(info.frames - 6 * 16000) <= 2


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    """The first case as a real process; the rest through the same ``main`` in this process
    (an exception that escaped it would fail the test as a traceback would)."""
    from llmcodec.cli import main

    def run_cli(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        return subprocess.CompletedProcess(args, code, "", capsys.readouterr().err)

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.float32), 16000)
    one_line_error(globals()["run_cli"]("encode", str(empty), "-o", str(tmp_path / "x.json")), "no samples")
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.1, np.nan, np.inf, 0.2], np.float32), 16000, subtype="FLOAT")
    one_line_error(run_cli("encode", str(nan), "-o", str(tmp_path / "x.json")), "NaN or Inf")
    txt = tmp_path / "notaudio.wav"
    txt.write_text("hello, I am not audio")
    one_line_error(run_cli("encode", str(txt), "-o", str(tmp_path / "x.json")), "unsupported", "accepted formats")
    one_line_error(run_cli("encode", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "x.json")), "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line_error(run_cli("decode", str(bad), "-o", str(tmp_path / "x.wav")), "not valid JSON")
    bad.write_text(json.dumps({"sample_rate": 16000, "num_samples": 10}))
    one_line_error(run_cli("decode", str(bad), "-o", str(tmp_path / "x.wav")), "'codes' or 'levels'")
    bad.write_text(json.dumps({"sample_rate": 16000, "num_samples": 10, "codes": [[1], [1, 2], [1, 2, 3, 99999]]}))
    one_line_error(run_cli("decode", str(bad), "-o", str(tmp_path / "x.wav")), "level 3", "[0, 49152)")
    bad.write_text(json.dumps({"sample_rate": 16000, "num_samples": 10, "codes": [[1], [1], [1, 2, 3, 4]]}))
    one_line_error(run_cli("decode", str(bad), "-o", str(tmp_path / "x.wav")), "level 2")
    one_line_error(run_cli("encode", str(txt), "-o", "x.json", "--chunk", "0"), "")
    one_line_error(run_cli("encode", str(empty), "-o", "x.json", "--model", str(tmp_path)), "not a model directory")


def test_build_default_refuses_to_overwrite_a_trained_model(tmp_path, capsys):
    from llmcodec.build_default import main
    from llmcodec.checkpoint import load_model
    (tmp_path / "training.json").write_text('{"steps": 5}')
    assert main(["-o", str(tmp_path), "--preset", "tiny"]) == 2
    assert "trained model" in capsys.readouterr().err and not (tmp_path / "model.safetensors").exists()
    assert main(["-o", str(tmp_path), "--preset", "tiny", "--force"]) == 0
    assert load_model(str(tmp_path)).model.cfg.name == "tiny"


@pytest.mark.parametrize("flag, value, words", [
    ("--port", "-5", ("port", "0..65535")),
    ("--port", "70000", ("port", "0..65535")),
    ("--idle-timeout", "nan", ("idle_timeout", "finite")),
    ("--max-message-bytes", "0", ("max_message_bytes", ">= 1")),
    ("--max-queued-seconds", "0", ("max_queued_seconds", "> 0")),
    ("--drain-timeout", "-1", ("drain_timeout", ">= 0")),
    ("--workers", "0", ("workers", ">= 1")),
    ("--max-wait-ms", "inf", ("max_wait_ms", "finite")),
    ("--tls-cert", __file__, ("tls_cert and tls_key go together", "--tls-key")),
    ("--tls-key", "no/such.pem", ("tls_key", "is not a file")),
])
def test_serve_refuses_bad_options_in_one_line(flag, value, words):
    """Bad server options fail before anything starts, each with one line naming it."""
    one_line_error(run_cli("serve", flag, value), *words)


@pytest.mark.parametrize("args, words", [
    (("serve", "--ray", "--replicas", "0"), ("replicas must be an integer >= 1",)),
    (("serve", "--ray", "--tls-cert", __file__, "--tls-key", __file__), ("do not apply with --ray",)),
    (("tokenize", "no/such/folder", "-o", "out"), ("no such folder, file or manifest",)),
    (("tokenize", __file__, "-o", "out", "--workers", "2"), ("--workers needs --ray",)),
])
def test_ray_commands_refuse_bad_options_before_starting_ray(args, words):
    one_line_error(run_cli(*args), *words)


def test_serve_refuses_a_certificate_that_does_not_load():
    one_line_error(run_cli("serve", "--tls-cert", __file__, "--tls-key", __file__),
                   "tls_cert", "cannot load a PEM certificate")
