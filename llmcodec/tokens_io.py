"""The token file written by ``llmcodec encode`` and read by ``llmcodec decode``.

JSON with at least: ``sample_rate``, ``num_samples``, ``tokens_per_second``,
``levels`` (3 lists of the LLM's token ids: level 1 is the concatenated token
ids of its words, levels 2 and 3 one id per code) and ``text`` (the 3 levels as
LLM text). ``codes`` holds the per-level codebook indices (level 1 indexes the
word list), which ``decode`` uses; without it, codes are recovered from
``levels``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import Vocabulary

FORMAT = "llmcodec-tokens"
VERSION = 1


@dataclass(frozen=True)
class TokenFile:
    model: str
    llm_name: str
    sample_rate: int
    num_samples: int
    block_size: int
    tokens_per_second: float
    codes: tuple[tuple[int, ...], ...]
    source_sample_rate: int | None = None

    def to_json(self, vocab: Vocabulary | None) -> dict:
        d = {
            "format": FORMAT, "version": VERSION, "model": self.model, "llm_name": self.llm_name,
            "sample_rate": self.sample_rate, "num_samples": self.num_samples,
            "source_sample_rate": self.source_sample_rate, "block_size": self.block_size,
            "tokens_per_second": round(self.tokens_per_second, 4),
            "codes": [list(c) for c in self.codes],
        }
        if vocab is not None:
            d["levels"] = [vocab.codes_to_token_ids(l, c) for l, c in enumerate(self.codes)]
            d["text"] = [vocab.codes_to_text(l, c) for l, c in enumerate(self.codes)]
        return d

    def save(self, path: str | Path, vocab: Vocabulary | None) -> None:
        Path(path).write_text(json.dumps(self.to_json(vocab)) + "\n")

    @classmethod
    def from_json(cls, d: object, vocab: Vocabulary | None, where: str = "token file") -> "TokenFile":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        for key in ("sample_rate", "num_samples"):
            if not isinstance(d.get(key), int) or d[key] < 0:
                raise ValueError(f"{where}: {key!r} must be a non-negative integer")
        if "codes" in d:
            codes = d["codes"]
        elif "levels" in d:
            if vocab is None:
                raise ValueError(f"{where}: has 'levels' but no 'codes', and the model has no vocabulary")
            if not isinstance(d["levels"], list):
                raise ValueError(f"{where}: 'levels' must be a list of 3 lists of token ids")
            codes = [vocab.token_ids_to_codes(l, ids) for l, ids in enumerate(d["levels"])]
        else:
            raise ValueError(f"{where}: needs 'codes' or 'levels' (a list of 3 lists of integers)")
        if not isinstance(codes, list) or not all(
                isinstance(c, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in c)
                for c in codes):
            raise ValueError(f"{where}: codes must be a list of lists of integers")
        return cls(model=str(d.get("model", "")), llm_name=str(d.get("llm_name", "")),
                   sample_rate=d["sample_rate"], num_samples=d["num_samples"],
                   block_size=int(d.get("block_size", 0)),
                   tokens_per_second=float(d.get("tokens_per_second", 0.0)),
                   codes=tuple(tuple(c) for c in codes),
                   source_sample_rate=d.get("source_sample_rate"))

    @classmethod
    def load(cls, path: str | Path, vocab: Vocabulary | None) -> "TokenFile":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(d, vocab, str(path))

    def arrays(self) -> list[np.ndarray]:
        return [np.asarray(c, dtype=np.int64) for c in self.codes]
