"""The tokens dataset on disk: Parquet parts under ``OUT/tokens/`` and ``OUT/errors/``.

``tokens`` has one row per file: ``path``, ``duration_s``, ``source_sample_rate``,
``num_samples`` (at the model's rate), ``blocks``, ``level1_ids`` / ``level2_ids`` /
``level3_ids`` (the LLM's token ids; level 1: the ids of its words), ``codes1`` .. ``codes3``
(codebook indices, as in ``llmcodec encode``'s JSON), ``text1`` (level 1 as text),
``model``, ``backend``, ``weights_sha256``. ``errors`` has ``path``, ``error`` and the model
columns. Parts are written whole (to a hidden temporary name, then renamed), so a job killed
at any moment leaves only complete parts, and a re-run skips every path already in either
table. Read it with ``pyarrow.dataset.dataset(OUT / "tokens")`` or ``pandas.read_parquet``.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .encode import ModelId

TOKENS_DIR = "tokens"
ERRORS_DIR = "errors"
_ids = pa.list_(pa.int32())
MODEL_FIELDS = [("model", pa.string()), ("backend", pa.string()), ("weights_sha256", pa.string())]
TOKENS_SCHEMA = pa.schema([("path", pa.string()), ("duration_s", pa.float64()), ("source_sample_rate", pa.int32()),
                           ("num_samples", pa.int64()), ("blocks", pa.int64()),
                           ("level1_ids", _ids), ("level2_ids", _ids), ("level3_ids", _ids),
                           ("codes1", _ids), ("codes2", _ids), ("codes3", _ids), ("text1", pa.string()),
                           *MODEL_FIELDS])
ERRORS_SCHEMA = pa.schema([("path", pa.string()), ("error", pa.string()), *MODEL_FIELDS])


def _parts(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith((".", "_")))


def read_table(out: str | Path, which: str = TOKENS_DIR, columns: list[str] | None = None) -> pa.Table:
    """Every complete part of one table (``tokens`` or ``errors``); empty when there is none."""
    schema = TOKENS_SCHEMA if which == TOKENS_DIR else ERRORS_SCHEMA
    parts = _parts(Path(out) / which)
    if not parts:
        return schema.empty_table().select(columns or schema.names)
    return pa.concat_tables([pq.read_table(p, columns=columns, schema=schema) for p in parts])


def done_paths(out: str | Path) -> set[str]:
    """Paths already in the tokens or the errors table: a re-run skips them."""
    return {p for which in (TOKENS_DIR, ERRORS_DIR) for p in read_table(out, which, ["path"]).column("path").to_pylist()}


def check_same_model(out: str | Path, model: ModelId) -> None:
    """ValueError when ``out`` already holds tokens of another model, runtime or weights."""
    t = read_table(out, TOKENS_DIR, [f for f, _ in MODEL_FIELDS])
    if t.num_rows == 0:
        return
    have = {tuple(r.values()) for r in t.slice(0, 1).to_pylist()}.pop()
    if have != (model.name, model.backend, model.weights_sha256):
        raise ValueError(f"{out} holds tokens of model {have[0]!r} on {have[1]} (weights {have[2][:12]}), not of "
                         f"{model.name!r} on {model.backend} (weights {model.weights_sha256[:12]}); write to another "
                         "folder")


class PartWriter:
    """Buffers rows and writes them as whole Parquet parts of ``rows_per_part`` rows."""

    def __init__(self, out: str | Path, which: str, rows_per_part: int = 64):
        self.dir = Path(out) / which
        self.dir.mkdir(parents=True, exist_ok=True)
        self.schema = TOKENS_SCHEMA if which == TOKENS_DIR else ERRORS_SCHEMA
        self.rows_per_part = rows_per_part
        self.rows: list[dict] = []
        self.run = uuid.uuid4().hex[:8]
        self.parts = 0
        self.written = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        name = f"part-{self.run}-{self.parts:05d}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / name)  # a part appears whole or not at all
        self.parts += 1
        self.written += len(self.rows)
        self.rows = []
