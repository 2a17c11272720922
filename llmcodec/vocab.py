"""Three-level vocabulary whose codebooks are a real LLM's token embeddings.

Levels are 0-based in code:

* level 0 ("words"): ``num_words`` common English words, each of which the LLM
  tokenizer turns into 1 or 2 tokens when preceded by a space.  Codebook row
  ``k`` is the mean of the embeddings of word ``k``'s tokens, shape ``[D]``.
* levels 1 and 2 ("tokens"): every token of the LLM; codebook is the full input
  embedding table, shape ``[V, D]``.

The token and text forms of codes live in :mod:`llmcodec.token_forms` (torch-free);
:class:`Vocabulary` is those forms plus the embedding tables.

The bundled vocabulary (``llmcodec/assets/smollm2``) consists of three files:
``embeddings.safetensors`` (key ``token_embd``, float16 ``[V, D]``),
``tokenizer.json`` (``tokenizers`` format) and ``vocab.json`` (metadata and the
level-0 word list).  They are produced by :mod:`llmcodec.build_vocab`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .token_forms import NUM_LEVELS, TOKENIZER_FILE, VOCAB_FILE, TokenForms, as_int_list, check_level

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
EMBEDDINGS_KEY = "token_embd"


def default_directory() -> Path:
    """Directory of the bundled SmolLM2 vocabulary assets."""
    return Path(__file__).resolve().parent / "assets" / "smollm2"


@dataclass(frozen=True)
class Vocabulary(TokenForms):
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
    tokenizer: Any = field(compare=False, repr=False)  # tokenizers.Tokenizer
    embeddings: torch.Tensor = field(compare=False, repr=False)
    source: str = ""
    _pieces: tuple[str, ...] = field(init=False, compare=False, repr=False)
    _piece_to_id: dict[str, int] = field(init=False, compare=False, repr=False)
    _word_to_code: dict[str, int] = field(init=False, compare=False, repr=False)
    _level0: torch.Tensor = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Normalise fields, validate consistency and precompute lookups."""
        self._index()  # TokenForms: words, token pieces, lookups
        setattr_ = object.__setattr__
        V, D = self.vocab_size, int(self.embedding_dim)
        setattr_(self, "embedding_dim", D)
        emb = self.embeddings
        if not isinstance(emb, torch.Tensor) or tuple(emb.shape) != (V, D):
            shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"embeddings must be a tensor of shape ({V}, {D}), got {shape}")
        emb = emb.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if not bool(torch.isfinite(emb).all()):
            raise ValueError("embeddings contain non-finite values")
        setattr_(self, "embeddings", emb)

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
        meta = cls.read_meta(directory, ("llm_name", "vocab_size", "embedding_dim", "words", "word_token_ids"))
        tok = cls.read_tokenizer(directory)
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
    def codebook(self, level: int) -> torch.Tensor:
        """Codebook of ``level``, float32 ``[level_size(level), D]`` (shared, read-only)."""
        return self._level0 if check_level(level) == 0 else self.embeddings
