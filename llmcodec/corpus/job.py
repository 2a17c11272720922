"""A tokenize job: list the inputs, skip what is done, encode the rest (here or on Ray), write parts."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .dataset import ERRORS_DIR, TOKENS_DIR, PartWriter, check_same_model, done_paths
from .encode import ModelId, error_row, token_row, weights_sha256
from .inputs import list_inputs


@dataclass(frozen=True)
class TokenizeResult:
    files: int  # listed
    skipped: int  # already in the dataset (resumed)
    tokenized: int
    errors: int
    audio_seconds: float  # of the files tokenized now
    seconds: float  # wall time of the encoding, model loading and (on Ray) worker start included
    first_row_seconds: float  # until the first file's row arrived: mostly start-up

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def load_worker_backend(backend: str, model: str | None):
    """The backend a worker encodes with: one intra-op thread (a worker per core)."""
    from llmcodec.export.cache import resolve_model
    from llmcodec.stream.backends import make_backend
    b = make_backend(backend, resolve_model(backend, model), threads=1)
    if b.vocab is None:
        raise ValueError("tokenize writes LLM token ids, so it needs a model with a vocabulary")
    return b


def encode_paths(backend, paths, model: ModelId, segment_seconds: float) -> Iterator[dict]:
    """Rows for ``paths``: a token row, or an error row (with ``error``) for a file that fails."""
    for p in paths:
        try:
            yield token_row(backend, p, model, segment_seconds)
        except Exception as e:  # noqa: BLE001 - any bad file is reported, never stops the job
            yield error_row(p, e, model)


def tokenize(spec: str, out: str | Path, *, backend: str = "onnx", model: str | None = None,
             ray_address: str | None = None, use_ray: bool = False, workers: int = 1,
             rows_per_part: int = 64, segment_seconds: float = 60.0,
             log: Callable[[str], None] | None = None) -> TokenizeResult:
    """Tokenize the files ``spec`` names into the dataset at ``out`` (resuming what is there).

    ``use_ray``: on a Ray cluster (``ray_address``, None: a new local one or ``$RAY_ADDRESS``)
    with an actor pool of ``workers``; else here, in this process."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if workers < 1 or rows_per_part < 1 or not segment_seconds > 0:
        raise ValueError(f"workers and rows_per_part must be >= 1 and segment_seconds > 0, got {workers}, "
                         f"{rows_per_part}, {segment_seconds}")
    files = list_inputs(spec)
    from llmcodec.checkpoint import default_model_dir
    name = _model_name(model)
    model_id = ModelId(name, backend, weights_sha256(model if model is not None else default_model_dir()))
    check_same_model(out, model_id)
    done = done_paths(out)
    todo = [f for f in files if f not in done]
    log(f"tokenize: {len(files)} files, {len(files) - len(todo)} already done, {len(todo)} to do "
        f"({'Ray, ' + str(workers) + ' worker(s)' if use_ray else 'here, 1 worker'}; backend {backend})")
    tokens, errors = PartWriter(out, TOKENS_DIR, rows_per_part), PartWriter(out, ERRORS_DIR, rows_per_part)
    progress = _Progress(len(todo), log)
    t0 = time.perf_counter()
    if use_ray:
        from .ray_job import ray_rows
        rows = ray_rows(todo, backend, model, model_id, workers, segment_seconds, ray_address)
    else:
        rows = encode_paths(load_worker_backend(backend, model), todo, model_id, segment_seconds) if todo else iter(())
    try:
        for row in rows:
            if row.get("error"):
                errors.add(row)
                progress.add(0.0, error=f"{row['path']}: {row['error']}")
            else:
                tokens.add(row)
                progress.add(row["duration_s"])
    finally:  # what was encoded before an interruption is kept
        tokens.flush()
        errors.flush()
    seconds = time.perf_counter() - t0
    result = TokenizeResult(len(files), len(files) - len(todo), tokens.written, errors.written,
                            progress.audio, seconds, (progress.first or time.perf_counter()) - t0)
    log(f"tokenize: {result.tokenized} tokenized, {result.errors} errors, {result.skipped} skipped; "
        f"{result.audio_seconds / 3600:.3f} h of audio in {seconds:.1f} s "
        f"({result.audio_hours_per_hour:.1f} audio-hours per hour) -> {out}")
    return result


def _model_name(model: str | None) -> str:
    """The model's name from its config.json (model and export directories both have one)."""
    import json
    from llmcodec.checkpoint import CONFIG_FILE, default_model_dir
    d = Path(model) if model is not None else default_model_dir()
    name = json.loads((d / CONFIG_FILE).read_text()).get("name") if (d / CONFIG_FILE).is_file() else None
    return name if isinstance(name, str) else d.name


class _Progress:
    def __init__(self, total: int, log: Callable[[str], None], every_s: float = 5.0):
        self.total, self.log, self.every_s = total, log, every_s
        self.n = self.errors = 0
        self.audio = 0.0
        self.t0 = self.last = time.perf_counter()
        self.first: float | None = None

    def add(self, audio_seconds: float, error: str | None = None) -> None:
        self.n += 1
        self.first = self.first or time.perf_counter()
        self.audio += audio_seconds
        if error is not None:
            self.errors += 1
            self.log(f"tokenize: error: {error}")
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.n == self.total:
            self.last = now
            rate = self.audio / max(now - self.t0, 1e-9)
            self.log(f"tokenize: {self.n}/{self.total} files, {self.audio / 3600:.3f} h of audio, "
                     f"{rate:.1f} audio-h/h, {self.errors} errors")
