"""The LLM token forms of codes, without torch: token ids and text, both ways.

Level 0 codes index whole words (each 1 or 2 LLM tokens after a space); levels 1
and 2 codes are the LLM's token ids. Text forms (every round trip is exact):

* level 0: ``"".join(" " + word)``, e.g. ``" the cat sat"``;
* levels 1 and 2: token pieces joined by single spaces, e.g. ``"Ġthe Ġcat"``
  (unambiguous: pieces are unique, non-empty and have no space, checked on load).

``TokenForms`` reads ``vocab.json`` + ``tokenizer.json`` with ``tokenizers`` only,
so the ONNX and TensorRT backends name tokens without importing torch;
``llmcodec.vocab.Vocabulary`` adds the embedding tables on top of it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
NUM_LEVELS = 3

_WORD_RE = re.compile(r"[a-z]+")


def as_int_list(values: Any, what: str = "code") -> list[int]:
    """A 1-D integer sequence ``[N]`` (ints, numpy integers, a 1-D integer array or CPU tensor)
    -> ``list[int]``; ValueError for anything else (bools and floats are refused)."""
    if hasattr(values, "detach"):  # a torch tensor, read without importing torch
        values = np.asarray(values.detach().cpu())
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{what}s must be 1-D, got an array of shape {values.shape}")
        if values.dtype.kind not in "iu":
            raise ValueError(f"{what}s must have an integer dtype, got {values.dtype}")
        return [int(v) for v in values.tolist()]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(
            f"{what}s must be a sequence of ints or a 1-D integer tensor/array, got {type(values).__name__}")
    out: list[int] = []
    for i, v in enumerate(values):
        if hasattr(v, "detach") and tuple(v.shape) == ():
            v = np.asarray(v.detach().cpu())[()]
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(int(v))
        else:
            raise ValueError(f"{what} at position {i} is {v!r} ({type(v).__name__}); expected an int")
    return out


def check_level(level: int) -> int:
    """A 0-based level index as an int, or a ValueError."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= int(level) < NUM_LEVELS:
        raise ValueError(f"level must be an int in [0, {NUM_LEVELS - 1}], got {level!r}")
    return int(level)


def check_range(values: list[int], size: int, what: str) -> None:
    """Raise ValueError naming the first value outside ``[0, size)``."""
    for i, v in enumerate(values):
        if not 0 <= v < size:
            raise ValueError(f"{what} {v} at position {i} is out of range; accepted range is [0, {size - 1}]")


class TokenForms:
    """Codes <-> LLM token ids <-> text for one LLM and level-0 word list.

    Attributes: ``llm_name``, ``vocab_size`` (V), ``words`` (level-0 words, lowercase
    a-z, unique), ``word_token_ids`` (the 1 or 2 token ids of ``" " + word``) and
    ``tokenizer`` (``tokenizers.Tokenizer``).
    """

    llm_name: str
    vocab_size: int
    words: tuple[str, ...]
    word_token_ids: tuple[tuple[int, ...], ...]
    tokenizer: Any

    def __init__(self, llm_name: str, vocab_size: int, words: Sequence[str],
                 word_token_ids: Sequence[Sequence[int]], tokenizer: Any):
        self.llm_name, self.vocab_size, self.tokenizer = llm_name, vocab_size, tokenizer
        self.words, self.word_token_ids = words, word_token_ids
        self._index()

    def _index(self) -> None:
        """Normalise and validate the fields, and build the lookups (also for frozen subclasses)."""
        set_ = object.__setattr__
        set_(self, "words", tuple(str(w) for w in self.words))
        set_(self, "word_token_ids", tuple(tuple(int(i) for i in ids) for ids in self.word_token_ids))
        V = int(self.vocab_size)
        set_(self, "vocab_size", V)
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        pieces: list[str | None] = [None] * V
        for piece, idx in vocab.items():
            if not 0 <= idx < V:
                raise ValueError(f"tokenizer has token {piece!r} with id {idx} outside [0, {V - 1}]")
            if piece == "" or " " in piece:
                raise ValueError(f"token piece {piece!r} (id {idx}) is empty or contains a space")
            pieces[idx] = piece
        missing = [i for i, p in enumerate(pieces) if p is None]
        if missing:
            raise ValueError(f"{len(missing)} token ids have no unique piece in the tokenizer, e.g. id {missing[0]}")
        set_(self, "_pieces", tuple(pieces))
        set_(self, "_piece_to_id", dict(vocab))
        if len(self.words) != len(self.word_token_ids):
            raise ValueError(f"{len(self.words)} words but {len(self.word_token_ids)} word_token_ids entries")
        if not self.words:
            raise ValueError("the level-0 word list is empty")
        word_to_code: dict[str, int] = {}
        for k, (w, ids) in enumerate(zip(self.words, self.word_token_ids)):
            if not _WORD_RE.fullmatch(w):
                raise ValueError(f"word {w!r} (code {k}) is not lowercase a-z")
            if w in word_to_code:
                raise ValueError(f"word {w!r} appears twice (codes {word_to_code[w]} and {k})")
            if not 1 <= len(ids) <= 2:
                raise ValueError(f"word {w!r} has {len(ids)} token ids; accepted: 1 or 2")
            check_range(list(ids), V, f"token id of word {w!r}")
            word_to_code[w] = k
        set_(self, "_word_to_code", word_to_code)

    @staticmethod
    def read_meta(directory: str | Path, required: tuple[str, ...] = ("llm_name", "vocab_size", "words",
                                                                        "word_token_ids")) -> dict:
        """``vocab.json`` of ``directory``, checked for the ``required`` keys."""
        path = Path(directory) / VOCAB_FILE
        meta = json.loads(path.read_text(encoding="utf-8"))
        for key in required:
            if key not in meta:
                raise ValueError(f"{path} lacks the key {key!r}")
        return meta

    @staticmethod
    def read_tokenizer(directory: str | Path) -> Any:
        import tokenizers
        return tokenizers.Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE))

    @classmethod
    def load(cls, directory: str | Path) -> "TokenForms":
        """``vocab.json`` + ``tokenizer.json`` of ``directory`` (a vocabulary or an export)."""
        meta = cls.read_meta(directory)
        return TokenForms(meta["llm_name"], meta["vocab_size"], meta["words"], meta["word_token_ids"],
                          cls.read_tokenizer(directory))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(llm_name={self.llm_name!r}, vocab_size={self.vocab_size}, " \
               f"num_words={self.num_words})"

    # ---- sizes ------------------------------------------------------------------
    @property
    def num_words(self) -> int:
        """Number of level-0 words."""
        return len(self.words)

    def level_size(self, level: int) -> int:
        """Number of codes of ``level``: ``num_words`` for 0, ``V`` for 1 and 2."""
        return self.num_words if check_level(level) == 0 else self.vocab_size

    def _codes(self, level: int, codes: Any) -> list[int]:
        values = as_int_list(codes, "code")
        check_range(values, self.level_size(level), f"level-{level} code")
        return values

    # ---- codes <-> token ids ----------------------------------------------------
    def codes_to_token_ids(self, level: int, codes: Any) -> list[int]:
        """LLM token ids for ``codes`` ``[N]``: level 0 concatenates each word's 1-2 ids
        (length N..2N); levels 1 and 2 are the identity (validated)."""
        level = check_level(level)
        values = self._codes(level, codes)
        if level == 0:
            return [i for c in values for i in self.word_token_ids[c]]
        return values

    def token_ids_to_codes(self, level: int, ids: Any) -> list[int]:
        """Exact inverse of :meth:`codes_to_token_ids`; level-0 ids must be the word-wise
        tokenization of their text."""
        level = check_level(level)
        values = as_int_list(ids, "token id")
        check_range(values, self.vocab_size, "token id")
        if level != 0:
            return values
        text = self.tokenizer.decode(values, skip_special_tokens=False)
        codes = self.text_to_codes(0, text)
        if self.codes_to_token_ids(0, codes) != values:
            raise ValueError(f"token ids decode to {text[:80]!r} but are not the word-wise tokenization of it "
                             f"(level-0 ids must be the concatenation of each word's token ids)")
        return codes

    # ---- codes <-> text -----------------------------------------------------------
    def codes_to_text(self, level: int, codes: Any) -> str:
        """Level 0: ``" the cat sat"``; levels 1 and 2: ``"Ġthe Ġcat"``."""
        level = check_level(level)
        values = self._codes(level, codes)
        if level == 0:
            return "".join(" " + self.words[c] for c in values)
        return " ".join(self._pieces[c] for c in values)

    def text_to_codes(self, level: int, text: str) -> list[int]:
        """Exact inverse of :meth:`codes_to_text`; ValueError on other text."""
        level = check_level(level)
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if text == "":
            return []
        if level == 0:
            if not text.startswith(" "):
                raise ValueError(
                    f"level-0 text must be empty or start with a space (' word' items), got {text[:40]!r}")
            return _lookup(text[1:].split(" "), self._word_to_code, lambda item, pos: (
                f"{item!r} at word position {pos} is not one of the {self.num_words} level-0 words "
                f"(text must be ' word' items, single spaces, lowercase a-z)"))
        return _lookup(text.split(" "), self._piece_to_id, lambda item, pos: (
            f"{item!r} at position {pos} is not a token piece of {self.llm_name} "
            f"(level-{level} text is pieces joined by single spaces; ids [0, {self.vocab_size - 1}])"))


def _lookup(items: list[str], table: dict[str, int], error: Any) -> list[int]:
    """``table[item]`` for each item; ``error(item, position)`` names the first unknown one."""
    out = []
    for pos, item in enumerate(items):
        code = table.get(item)
        if code is None:
            raise ValueError(error(item, pos))
        out.append(code)
    return out
