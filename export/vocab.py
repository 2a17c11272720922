"""Token names of an export directory without torch: ``vocab.json`` + ``tokenizer.json``.

The same forms as ``llmcodec.vocab.Vocabulary`` (level 0 codes index whole words of 1 or 2
LLM tokens, levels 1 and 2 are token ids), read with ``tokenizers`` only, so the ONNX and
TensorRT backends name tokens without importing torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .metadata import TOKENIZER_FILE, VOCAB_FILE


def load_export_vocab(directory: str | Path) -> "ExportVocab | None":
    """The export directory's vocabulary, or None when it has none (a model without one)."""
    d = Path(directory)
    if (d / VOCAB_FILE).is_file() and (d / TOKENIZER_FILE).is_file():
        return ExportVocab.load(d)
    return None


class ExportVocab:
    """Torch-free token names of an export directory (same forms as ``llmcodec.vocab.Vocabulary``):
    level 0 codes index whole words (1 or 2 LLM tokens each), levels 1 and 2 are token ids."""

    def __init__(self, meta: dict, tokenizer: Any):
        self.llm_name: str = meta["llm_name"]
        self.vocab_size: int = int(meta["vocab_size"])
        self.words: tuple[str, ...] = tuple(meta["words"])
        self.word_token_ids = tuple(tuple(int(i) for i in ids) for ids in meta["word_token_ids"])
        self.tokenizer = tokenizer
        pieces = tokenizer.get_vocab(with_added_tokens=True)
        self._pieces = [""] * self.vocab_size
        for piece, idx in pieces.items():
            if 0 <= idx < self.vocab_size:
                self._pieces[idx] = piece
        self._piece_to_id = dict(pieces)
        self._word_to_code = {w: k for k, w in enumerate(self.words)}

    @classmethod
    def load(cls, directory: str | Path) -> "ExportVocab":
        import tokenizers
        d = Path(directory)
        meta = json.loads((d / VOCAB_FILE).read_text(encoding="utf-8"))
        return cls(meta, tokenizers.Tokenizer.from_file(str(d / TOKENIZER_FILE)))

    @property
    def num_words(self) -> int:
        return len(self.words)

    def level_size(self, level: int) -> int:
        return self.num_words if self._level(level) == 0 else self.vocab_size

    @staticmethod
    def _level(level: int) -> int:
        if not isinstance(level, (int, np.integer)) or isinstance(level, bool) or not 0 <= level < 3:
            raise ValueError(f"level must be an int in [0, 2], got {level!r}")
        return int(level)

    def _ints(self, values: Any, size: int, what: str) -> list[int]:
        arr = np.asarray(values)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{what}s must be a 1-D sequence of ints, got {arr.dtype} {arr.shape}")
        if arr.min() < 0 or arr.max() >= size:
            raise ValueError(f"{what}s must be in [0, {size - 1}], got {arr.min()}..{arr.max()}")
        return [int(v) for v in arr]

    def codes_to_token_ids(self, level: int, codes: Any) -> list[int]:
        values = self._ints(codes, self.level_size(level), f"level-{level} code")
        if level == 0:
            return [i for c in values for i in self.word_token_ids[c]]
        return values

    def token_ids_to_codes(self, level: int, ids: Any) -> list[int]:
        values = self._ints(ids, self.vocab_size, "token id")
        if self._level(level) != 0:
            return values
        codes = self.text_to_codes(0, self.tokenizer.decode(values, skip_special_tokens=False))
        if self.codes_to_token_ids(0, codes) != values:
            raise ValueError("level-0 token ids are not the word-wise tokenization of their text")
        return codes

    def codes_to_text(self, level: int, codes: Any) -> str:
        values = self._ints(codes, self.level_size(level), f"level-{level} code")
        if level == 0:
            return "".join(" " + self.words[c] for c in values)
        return " ".join(self._pieces[c] for c in values)

    def text_to_codes(self, level: int, text: str) -> list[int]:
        level = self._level(level)
        if text == "":
            return []
        if level == 0:
            if not text.startswith(" "):
                raise ValueError(f"level-0 text must start with a space, got {text[:40]!r}")
            table, items, what = self._word_to_code, text[1:].split(" "), "level-0 word"
        else:
            table, items, what = self._piece_to_id, text.split(" "), f"{self.llm_name} token piece"
        out = []
        for pos, item in enumerate(items):
            if item not in table:
                raise ValueError(f"{item!r} at position {pos} is not a {what}")
            out.append(table[item])
        return out

