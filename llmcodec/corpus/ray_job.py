"""The tokenize job on a Ray cluster: Ray Data over the file list, an actor pool of encoders.

Each actor loads the model once (``TokenizeWorker.__init__``) and encodes one file per call
(``batch_size=1``), so a long file is one task and its tokens stay exact; results stream back
to the driver, which writes the Parquet parts (and so resumes at file granularity).

On a real cluster, every node needs llmcodec installed (the same version) and, for ``--model``,
the model directory at the same path; the input paths must be readable on every node (a
shared filesystem). The bundled model is exported to ONNX once per node, into its cache.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa

from .encode import ModelId



def _result_schema() -> pa.Schema:
    from .dataset import TOKENS_SCHEMA
    return TOKENS_SCHEMA.append(pa.field("error", pa.string()))


class TokenizeWorker:
    """A Ray Data actor: ``{"path": [p]}`` -> the file's row (tokens, or the error)."""

    def __init__(self, backend: str, model: str | None, model_id: ModelId, segment_seconds: float):
        import torch
        torch.set_num_threads(1)
        from .job import load_worker_backend
        self.backend = load_worker_backend(backend, model)
        self.model_id, self.segment_seconds = model_id, segment_seconds
        self.schema = _result_schema()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from .job import encode_paths
        rows = []
        for row in encode_paths(self.backend, [str(p) for p in batch["path"]], self.model_id, self.segment_seconds):
            full = {name: None for name in self.schema.names}
            full.update(row)
            full["error"] = row.get("error", "")
            rows.append(full)
        return pa.Table.from_pylist(rows, schema=self.schema)


def ray_rows(paths: list[str], backend: str, model: str | None, model_id: ModelId, workers: int,
             segment_seconds: float, address: str | None) -> Iterator[dict]:
    """Rows for ``paths`` from an actor pool of ``workers`` on the Ray cluster at ``address``."""
    if not paths:
        return
    import ray
    import ray.data
    if not ray.is_initialized():
        if address is None:  # a new local cluster (or $RAY_ADDRESS)
            ray.init(log_to_driver=False, include_dashboard=False)
        else:
            ray.init(address=address, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
    ds = ds.map_batches(TokenizeWorker, batch_size=1, batch_format="numpy", num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=workers),
                        fn_constructor_kwargs={"backend": backend, "model": model, "model_id": model_id,
                                               "segment_seconds": segment_seconds})
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in table.to_pylist():
            if not row["error"]:
                row.pop("error")
            else:
                row = {k: row[k] for k in ("path", "error", "model", "backend", "weights_sha256")}
            yield row
