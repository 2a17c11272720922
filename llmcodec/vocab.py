"""Three-level vocabulary whose codebooks are a real LLM's token embeddings.

Levels are 0-based in code:

* level 0 ("words"): ``num_words`` common English words, each of which the LLM
  tokenizer turns into 1 or 2 tokens when preceded by a space.  Codebook row
  ``k`` is the mean of the embeddings of word ``k``'s tokens, shape ``[D]``.
* levels 1 and 2 ("tokens"): every token of the LLM; codebook is the full input
  embedding table, shape ``[V, D]``.

Text forms (all round trips are exact for every valid code sequence):

* level 0: ``"".join(" " + word)``, e.g. ``" the cat sat"`` (how the words
  appear mid-sentence; re-tokenizing it gives exactly the level-0 token ids).
* levels 1 and 2: the raw token pieces (``tokenizer.id_to_token``) joined by a
  single space, e.g. ``"Ġthe Ġcat <|im_end|>"``.  This is unambiguous because
  no piece is empty, no piece contains a space and pieces are unique; this is
  checked when a :class:`Vocabulary` is constructed.

The bundled vocabulary (``llmcodec/assets/smollm2``) consists of three files:
``embeddings.safetensors`` (key ``token_embd``, float16 ``[V, D]``),
``tokenizer.json`` (``tokenizers`` format) and ``vocab.json`` (metadata and the
level-0 word list).  They are produced by :mod:`llmcodec.build_vocab`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "EMBEDDINGS_FILE",
    "EMBEDDINGS_KEY",
    "NUM_LEVELS",
    "TOKENIZER_FILE",
    "VOCAB_FILE",
    "Vocabulary",
    "as_int_list",
    "default_directory",
]

EMBEDDINGS_FILE = "embeddings.safetensors"
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
EMBEDDINGS_KEY = "token_embd"
NUM_LEVELS = 3

_WORD_RE = re.compile(r"[a-z]+")


def default_directory() -> Path:
    """Directory of the bundled SmolLM2 vocabulary assets."""
    return Path(__file__).resolve().parent / "assets" / "smollm2"


def as_int_list(values: Any, what: str = "code") -> list[int]:
    """Convert a 1-D integer sequence to a list of Python ints.

    Args:
        values: list/tuple of ints (Python or numpy integers), or a 1-D integer
            ``torch.Tensor`` / ``np.ndarray``, shape ``[N]``.
        what: noun used in error messages ("code", "token id").

    Returns:
        ``list[int]`` of length ``N``.

    Raises:
        ValueError: if ``values`` is not 1-D or contains non-integers (bools
            and floats are rejected).
    """
    if isinstance(values, torch.Tensor):
        if values.dim() != 1:
            raise ValueError(f"{what}s must be 1-D, got a tensor of shape {tuple(values.shape)}")
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise ValueError(f"{what}s must have an integer dtype, got {values.dtype}")
        return [int(v) for v in values.tolist()]
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{what}s must be 1-D, got an array of shape {values.shape}")
        if values.dtype.kind not in "iu":
            raise ValueError(f"{what}s must have an integer dtype, got {values.dtype}")
        return [int(v) for v in values.tolist()]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(
            f"{what}s must be a sequence of ints or a 1-D integer tensor/array, got {type(values).__name__}"
        )
    out: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(int(v))
        elif isinstance(v, torch.Tensor) and v.dim() == 0 and not (
            v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool
        ):
            out.append(int(v.item()))
        else:
            raise ValueError(f"{what} at position {i} is {v!r} ({type(v).__name__}); expected an int")
    return out


def _check_range(values: list[int], size: int, what: str) -> None:
    """Raise ValueError naming the first value outside ``[0, size)``."""
    for i, v in enumerate(values):
        if not 0 <= v < size:
            raise ValueError(f"{what} {v} at position {i} is out of range; accepted range is [0, {size - 1}]")


def _check_level(level: int) -> int:
    """Validate a 0-based level index and return it as an int."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= int(level) < NUM_LEVELS:
        raise ValueError(f"level must be an int in [0, {NUM_LEVELS - 1}], got {level!r}")
    return int(level)


@dataclass(frozen=True)
class Vocabulary:
    """An LLM's tokenizer + input embeddings and a level-0 word list.

    Attributes:
        llm_name: e.g. ``"SmolLM2-135M-Instruct"``.
        vocab_size: ``V``, number of tokens (49152 for SmolLM2).
        embedding_dim: ``D`` (576 for SmolLM2).
        words: level-0 words, lowercase ``a-z``, unique, frequency order.
        word_token_ids: for each word, the 1 or 2 token ids of ``" " + word``.
        tokenizer: the LLM tokenizer (``tokenizers.Tokenizer``).
        embeddings: float32 input embedding table, shape ``[V, D]``.  Shared,
            do not modify in place.
        source: free-text provenance description (stored in ``vocab.json``).
    """

    llm_name: str
    vocab_size: int
    embedding_dim: int
    words: tuple[str, ...]
    word_token_ids: tuple[tuple[int, ...], ...]
    tokenizer: tokenizers.Tokenizer = field(compare=False, repr=False)
    embeddings: torch.Tensor = field(compare=False, repr=False)
    source: str = ""
    _pieces: tuple[str, ...] = field(init=False, compare=False, repr=False)
    _piece_to_id: dict[str, int] = field(init=False, compare=False, repr=False)
    _word_to_code: dict[str, int] = field(init=False, compare=False, repr=False)
    _level0: torch.Tensor = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Normalise fields, validate consistency and precompute lookups."""
        setattr_ = object.__setattr__
        setattr_(self, "words", tuple(str(w) for w in self.words))
        setattr_(self, "word_token_ids", tuple(tuple(int(i) for i in ids) for ids in self.word_token_ids))
        V, D = int(self.vocab_size), int(self.embedding_dim)
        setattr_(self, "vocab_size", V)
        setattr_(self, "embedding_dim", D)

        emb = self.embeddings
        if not isinstance(emb, torch.Tensor) or tuple(emb.shape) != (V, D):
            shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"embeddings must be a tensor of shape ({V}, {D}), got {shape}")
        emb = emb.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if not bool(torch.isfinite(emb).all()):
            raise ValueError("embeddings contain non-finite values")
        setattr_(self, "embeddings", emb)

        # Token pieces: every id in [0, V) must have a unique, non-empty piece
        # without spaces so that " ".join(pieces) is an exact encoding.
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
        setattr_(self, "_pieces", tuple(pieces))  # type: ignore[arg-type]
        setattr_(self, "_piece_to_id", dict(vocab))

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
            _check_range(list(ids), V, f"token id of word {w!r}")
            word_to_code[w] = k
        setattr_(self, "_word_to_code", word_to_code)

        # Level-0 codebook: mean of each word's 1 or 2 token embeddings, [W, D].
        first = torch.tensor([ids[0] for ids in self.word_token_ids])
        second = torch.tensor([ids[-1] for ids in self.word_token_ids])
        count = torch.tensor([len(ids) for ids in self.word_token_ids], dtype=torch.float32)
        two = (count == 2).unsqueeze(1)
        level0 = torch.where(two, (emb[first] + emb[second]) / 2, emb[first])
        setattr_(self, "_level0", level0.contiguous())

    def __repr__(self) -> str:
        """Short summary (the word list and tables are omitted)."""
        return (
            f"Vocabulary(llm_name={self.llm_name!r}, vocab_size={self.vocab_size}, "
            f"embedding_dim={self.embedding_dim}, num_words={self.num_words})"
        )

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, directory: str | Path) -> Vocabulary:
        """Load a vocabulary from ``directory`` (the three asset files)."""
        directory = Path(directory)
        meta = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        required = ("llm_name", "vocab_size", "embedding_dim", "words", "word_token_ids")
        for key in required:
            if key not in meta:
                raise ValueError(f"{directory / VOCAB_FILE} lacks the key {key!r}")
        tok = tokenizers.Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        tensors = load_file(str(directory / EMBEDDINGS_FILE))
        if EMBEDDINGS_KEY not in tensors:
            raise ValueError(f"{directory / EMBEDDINGS_FILE} lacks the tensor {EMBEDDINGS_KEY!r}")
        return cls(
            llm_name=meta["llm_name"],
            vocab_size=meta["vocab_size"],
            embedding_dim=meta["embedding_dim"],
            words=tuple(meta["words"]),
            word_token_ids=tuple(tuple(ids) for ids in meta["word_token_ids"]),
            tokenizer=tok,
            embeddings=tensors[EMBEDDINGS_KEY].float(),
            source=meta.get("source", ""),
        )

    @classmethod
    def default(cls) -> Vocabulary:
        """Load the bundled SmolLM2-135M-Instruct vocabulary."""
        return cls.load(default_directory())

    def save(self, directory: str | Path) -> None:
        """Write the three asset files to ``directory`` (created if needed).

        The output is deterministic.  Embeddings are stored as float16, so a
        table that is not exactly representable in float16 is rounded.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {EMBEDDINGS_KEY: self.embeddings.to(torch.float16).contiguous()},
            str(directory / EMBEDDINGS_FILE),
            metadata={"llm_name": self.llm_name},
        )
        (directory / TOKENIZER_FILE).write_text(self.tokenizer.to_str(pretty=False), encoding="utf-8")
        (directory / VOCAB_FILE).write_text(self._vocab_json(), encoding="utf-8")

    def _vocab_json(self) -> str:
        """Render ``vocab.json``: metadata, then one word / id list per line."""
        dumps = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
        head = [
            f'  "llm_name": {dumps(self.llm_name)},',
            f'  "vocab_size": {self.vocab_size},',
            f'  "embedding_dim": {self.embedding_dim},',
            f'  "source": {dumps(self.source)},',
        ]
        words = ",\n".join(f"    {dumps(w)}" for w in self.words)
        ids = ",\n".join(f"    {json.dumps(list(t))}" for t in self.word_token_ids)
        return "{\n" + "\n".join(head) + f'\n  "words": [\n{words}\n  ],\n  "word_token_ids": [\n{ids}\n  ]\n}}\n'

    # ------------------------------------------------------------- codebooks
    @property
    def num_words(self) -> int:
        """Number of level-0 words."""
        return len(self.words)

    def level_size(self, level: int) -> int:
        """Number of codes of ``level``: ``num_words`` for 0, ``V`` for 1 and 2."""
        return self.num_words if _check_level(level) == 0 else self.vocab_size

    def codebook(self, level: int) -> torch.Tensor:
        """Codebook of ``level``, float32 ``[level_size(level), D]`` (shared, read-only)."""
        return self._level0 if _check_level(level) == 0 else self.embeddings

    def _codes(self, level: int, codes: Any) -> list[int]:
        """Validate codes of ``level``; returns ``list[int]`` of length ``N``."""
        values = as_int_list(codes, "code")
        _check_range(values, self.level_size(level), f"level-{level} code")
        return values

    # ------------------------------------------------------ codes <-> tokens
    def codes_to_token_ids(self, level: int, codes: Sequence[int] | torch.Tensor | np.ndarray) -> list[int]:
        """LLM token ids for ``codes`` ``[N]``.

        Level 0: concatenation of each word's 1-2 token ids (length N..2N).
        Levels 1, 2: identity (validated), length N.
        """
        level = _check_level(level)
        values = self._codes(level, codes)
        if level == 0:
            return [i for c in values for i in self.word_token_ids[c]]
        return values

    def token_ids_to_codes(self, level: int, ids: Sequence[int] | torch.Tensor | np.ndarray) -> list[int]:
        """Exact inverse of :meth:`codes_to_token_ids`.

        Level 0: ids are decoded to text, split into words and mapped to codes;
        raises ValueError unless ``ids`` is exactly the word-wise tokenization.
        """
        level = _check_level(level)
        values = as_int_list(ids, "token id")
        _check_range(values, self.vocab_size, "token id")
        if level != 0:
            return values
        text = self.tokenizer.decode(values, skip_special_tokens=False)
        codes = self.text_to_codes(0, text)
        if self.codes_to_token_ids(0, codes) != values:
            raise ValueError(
                f"token ids decode to {text[:80]!r} but are not the word-wise tokenization of it "
                f"(level-0 ids must be the concatenation of each word's token ids)"
            )
        return codes

    # -------------------------------------------------------- codes <-> text
    def codes_to_text(self, level: int, codes: Sequence[int] | torch.Tensor | np.ndarray) -> str:
        """Text for ``codes`` ``[N]``.

        Level 0: ``"".join(" " + word)``, e.g. ``" the cat sat"``.
        Levels 1, 2: token pieces joined by single spaces, e.g. ``"Ġthe Ġcat"``.
        """
        level = _check_level(level)
        values = self._codes(level, codes)
        if level == 0:
            return "".join(" " + self.words[c] for c in values)
        return " ".join(self._pieces[c] for c in values)

    def text_to_codes(self, level: int, text: str) -> list[int]:
        """Exact inverse of :meth:`codes_to_text`; raises ValueError on other text."""
        level = _check_level(level)
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if text == "":
            return []
        if level == 0:
            if not text.startswith(" "):
                raise ValueError(
                    f"level-0 text must be empty or start with a space (' word' items), got {text[:40]!r}"
                )
            codes = []
            for pos, word in enumerate(text[1:].split(" ")):
                code = self._word_to_code.get(word)
                if code is None:
                    raise ValueError(
                        f"{word!r} at word position {pos} is not one of the {self.num_words} level-0 words "
                        f"(text must be ' word' items, single spaces, lowercase a-z)"
                    )
                codes.append(code)
            return codes
        codes = []
        for pos, piece in enumerate(text.split(" ")):
            idx = self._piece_to_id.get(piece)
            if idx is None:
                raise ValueError(
                    f"{piece!r} at position {pos} is not a token piece of {self.llm_name} "
                    f"(level-{level} text is pieces joined by single spaces; ids [0, {self.vocab_size - 1}])"
                )
            codes.append(idx)
        return codes
