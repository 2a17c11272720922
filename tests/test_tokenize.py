"""llmcodec tokenize: real speech in, a Parquet dataset of exact tokens out, here and on a real
local multi-node Ray cluster (bad files reported, a killed job resumed)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from llmcodec.commands.codec import encode_file
from llmcodec.corpus.dataset import ERRORS_DIR, TOKENS_DIR, read_table
from llmcodec.corpus.inputs import list_inputs
from llmcodec.corpus.job import tokenize
from llmcodec.speech import speech_clip

BACKEND = "torch"  # the bundled model as a model directory: no export needed in the workers
BAD = ("corrupt.wav", "empty.wav", "nan.wav")


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmcodec.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Real speech at 8, 16, 22.05 and 44.1 kHz (mono and stereo, WAV and FLAC), one long file, 3 bad files."""
    d = tmp_path_factory.mktemp("corpus")
    (d / "sub").mkdir()
    speech = {lang: speech_clip(40.0, lang=lang) for lang in ("en", "fr", "es")}
    rates = (8000, 16000, 22050, 44100)
    for i in range(8):
        clip = speech["en fr es".split()[i % 3]][16000 * (4 * i % 32): 16000 * (4 * i % 32 + 3 + i % 3)]
        rate = rates[i % 4]
        x = soxr.resample(clip, 16000, rate).astype(np.float32) if rate != 16000 else clip
        if i % 2:
            sf.write(str(d / "sub" / f"clip{i}_{rate}.flac"), np.stack([x, 0.5 * x], 1), rate)
        else:
            sf.write(str(d / f"clip{i}_{rate}.wav"), x, rate, subtype="PCM_16")
    sf.write(str(d / "long_44k.wav"), soxr.resample(speech["en"], 16000, 44100).astype(np.float32), 44100)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    sf.write(str(d / "empty.wav"), np.zeros(0, np.float32), 16000)
    nan = speech["fr"][:16000].copy()
    nan[100] = np.nan
    sf.write(str(d / "nan.wav"), nan, 16000, subtype="FLOAT")
    (d / "notes.txt").write_text("not audio: skipped by the folder listing\n")
    return d


@pytest.fixture(scope="module")
def offline(corpus, default_backend) -> dict[str, list[list[int]]]:
    """`llmcodec encode`'s codes of every good file (whole file in memory, one step per block)."""
    out = {}
    for p in list_inputs(str(corpus)):
        if Path(p).name not in BAD:
            _, _, codes = encode_file(default_backend, p, None)
            out[p] = [[int(i) for i in c] for c in codes]
    return out


def check_dataset(out: Path, corpus: Path, offline: dict) -> None:
    tokens = read_table(out, TOKENS_DIR).to_pylist()
    errors = read_table(out, ERRORS_DIR).to_pylist()
    paths = [r["path"] for r in tokens] + [r["path"] for r in errors]
    assert sorted(paths) == list_inputs(str(corpus)), "every file exactly once, in one of the two tables"
    assert sorted(Path(r["path"]).name for r in errors) == sorted(BAD)
    for r in errors:
        assert r["error"] and r["model"] == "small"
    assert {Path(r["path"]).name: r["error"].split(":")[0] for r in errors}["nan.wav"] == "AudioError"
    for r in tokens:
        assert [r["codes1"], r["codes2"], r["codes3"]] == offline[r["path"]], f"{r['path']}: tokens differ"
        info = sf.info(r["path"])
        assert r["source_sample_rate"] == info.samplerate and abs(r["duration_s"] - info.duration) < 1e-6
        assert r["blocks"] == len(r["codes1"]) == len(r["codes3"]) // 4
        assert len(r["level2_ids"]) == len(r["codes2"]) and len(r["level1_ids"]) >= len(r["codes1"])
        assert r["text1"].startswith(" ") and len(r["text1"].split()) == r["blocks"]
        assert r["backend"] == BACKEND and len(r["weights_sha256"]) == 64


def test_inputs_folder_glob_manifest(corpus, tmp_path):
    files = list_inputs(str(corpus))
    assert len(files) == 12 and not any(f.endswith(".txt") for f in files)
    assert list_inputs(str(corpus / "**" / "*.flac")) == [f for f in files if f.endswith(".flac")]
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# two files\n{corpus / 'clip0_8000.wav'}\n\n{Path('missing.wav')}\n")
    assert list_inputs(str(manifest)) == sorted([str(corpus / "clip0_8000.wav"), str(tmp_path / "missing.wav")])
    with pytest.raises(ValueError, match="no such folder, file or manifest"):
        list_inputs(str(tmp_path / "nothing"))


def test_local_tokenize_is_exact_reports_bad_files_and_resumes(corpus, offline, tmp_path, default_backend):
    """No Ray: the long file is read 7 s at a time and still gives `llmcodec encode`'s tokens."""
    out = tmp_path / "ds"
    half = tmp_path / "half.txt"
    half.write_text("\n".join(list_inputs(str(corpus))[:5]))
    r1 = tokenize(str(half), out, backend=BACKEND, rows_per_part=2, segment_seconds=7.0, log=lambda m: None)
    assert r1.files == 5 and r1.skipped == 0 and r1.tokenized + r1.errors == 5
    r2 = tokenize(str(corpus), out, backend=BACKEND, rows_per_part=2, segment_seconds=7.0, log=lambda m: None)
    assert r2.skipped == 5 and r2.tokenized + r2.errors == 7 and r2.audio_seconds > 0
    check_dataset(out, corpus, offline)
    r3 = tokenize(str(corpus), out, backend=BACKEND, log=lambda m: None)  # nothing left to do
    assert (r3.skipped, r3.tokenized, r3.errors) == (12, 0, 0)
    with pytest.raises(ValueError, match="holds tokens of model"):  # another runtime's tokens never mix in
        tokenize(str(corpus), out, backend="onnx", log=lambda m: None)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster of two nodes (one CPU each) on this machine."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'llmcodec[ray]'; make test installs it)")
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def test_ray_tokenize_on_two_nodes_is_exact_and_resumes_after_a_kill(ray_cluster, corpus, offline, tmp_path):
    """`llmcodec tokenize --ray ADDRESS --workers 2`: killed half-way, then re-run: every file once,
    exactly the offline tokens, the bad files in the errors table."""
    out = tmp_path / "ds"
    args = ("tokenize", str(corpus), "-o", str(out), "--ray", ray_cluster.address, "--workers", "2",
            "--rows-per-part", "1", "--segment-seconds", "5", "--backend", BACKEND)
    job = cli(*args)
    deadline = time.monotonic() + 240
    parts = lambda: [p for d in (TOKENS_DIR, ERRORS_DIR) for p in (out / d).glob("part-*.parquet")]  # noqa: E731
    while len(parts()) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None, f"the job ended before it could be killed: {job.stdout.read()}"
    job.send_signal(signal.SIGKILL)
    job.wait(30)
    first = len(read_table(out, TOKENS_DIR)) + len(read_table(out, ERRORS_DIR))
    assert 3 <= first < 12, first
    job = cli(*args)
    log, _ = job.communicate(timeout=300)
    assert job.returncode == 0, log
    assert f"{first} already done" in log and "2 worker(s)" in log
    check_dataset(out, corpus, offline)
