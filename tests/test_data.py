"""Corpus building from the real offline sources, the fixed held-out split, segment sampling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmcodec.data import sources
from llmcodec.data.corpus import Corpus, PrepareOptions, ensure_corpus
from llmcodec.data.sampler import SegmentSampler


@pytest.fixture(scope="session")
def quick_corpus(tmp_path_factory):
    """A quick corpus of every source, built once per session (the train/eval tests reuse it)."""
    return ensure_corpus(tmp_path_factory.getbasetemp() / "quick_corpus")


def test_heldout_split_is_fixed_and_about_ten_percent():
    en = sources.prompts("en")
    held = [p.name for p in en if sources.is_heldout("en", p.name)]
    assert 0.06 * len(en) < len(held) < 0.14 * len(en)
    # A pure function of (language, name): pinned examples never move.
    assert sources.is_heldout("en", "call-fwd-unconditional")
    assert sources.is_heldout("en", "digits/tomorrow")
    assert not sources.is_heldout("en", "digits/5")
    assert held == [p.name for p in sources.prompts("en") if sources.is_heldout("en", p.name)]


def test_transcripts_parse_and_fix_the_spanish_slip():
    es = sources.read_transcripts("es")
    assert es["digits/10"] and es["digits/0"] and es["digits/0"] != es["digits/10"]
    en = sources.read_transcripts("en")
    assert en["ascending-2tone"] is None  # "[ascending tones]" is a sound, not speech
    assert "pound" in en["agent-pass"].lower()


def test_cli_prepare_data_builds_a_corpus(tmp_path):
    from llmcodec.cli import main
    out = tmp_path / "c"
    rc = main(["prepare-data", "--out", str(out), "--langs", "en", "--max-prompts", "6", "--max-heldout", "2",
               "--piper-minutes", "0.1", "--music-seconds", "5", "--no-events", "--track-seconds", "6"])
    assert rc == 0
    c = Corpus(out)
    assert {t["kind"] for t in c.tracks} == {"real_en", "piper_en", "music"}
    assert len(list((out / "heldout" / "en").glob("*.wav"))) == 2
    # Refuses to overwrite; unknown language is a clear error.
    assert main(["prepare-data", "--out", str(out), "--langs", "en"]) == 2
    assert main(["prepare-data", "--out", str(tmp_path / "d"), "--langs", "de"]) == 2


def test_corpus_contents(quick_corpus):
    c = Corpus(quick_corpus)
    kinds = c.seconds_by_kind()
    assert set(kinds) == {"real_en", "real_es", "real_fr", "piper_en", "music", "events"}
    assert kinds["piper_en"] >= 10
    names = [u[3] for t in c.tracks for u in t["utterances"]]
    # Never trained on: no held-out prompt is in any training track.
    for lang in ("en", "es", "fr"):
        assert not [n for n in names if n.startswith(f"{lang}/") and sources.is_heldout(lang, n[3:])]
        held = sorted(c.heldout_dir(lang).glob("*.wav"))
        assert len(held) == 3
        for w in held:
            assert w.with_suffix(".txt").read_text().strip()
            assert sources.is_heldout(lang, w.stem.replace("__", "/"))
    # Teacher features: one Whisper frame per 320 samples of each track, unit text embeddings.
    for t in c.tracks:
        assert t["whisper_frames"] == -(-t["length"] // 320)
        assert t["length"] <= 8 * 16000
    assert c.whisper.shape == (sum(t["whisper_frames"] for t in c.tracks), 384)
    assert np.isfinite(np.asarray(c.whisper[:1000], np.float32)).all()
    np.testing.assert_allclose(np.linalg.norm(c.text_emb, axis=1), 1.0, atol=1e-4)
    assert len(c.texts) == c.text_emb.shape[0] > 10
    meta = json.loads((quick_corpus / "manifest.json").read_text())
    assert meta["options"]["max_prompts"] == 10


def test_sampler_is_deterministic_and_aligned(quick_corpus):
    c = Corpus(quick_corpus)
    s = SegmentSampler(c, 1920 * 2, 6, {"real_en": 1, "piper_en": 1, "music": 1}, seed=3)
    a, b = s.batch(5), s.batch(5)
    assert a.audio.shape == (6, 1, 3840) and a.whisper.shape == (6, 12, 384)
    assert a.text_emb.shape == (6, 384) and a.kinds == b.kinds
    assert np.array_equal(a.audio.numpy(), b.audio.numpy()) and np.array_equal(a.whisper.numpy(), b.whisper.numpy())
    assert not np.array_equal(a.audio.numpy(), s.batch(6).audio.numpy())
    assert float(a.audio.abs().max()) <= 0.99
    # Music has no transcript: never a semantic target; masked rows are zero.
    for i, k in enumerate(a.kinds):
        if k == "music":
            assert a.text_mask[i] == 0
        if a.text_mask[i] == 0:
            assert float(a.text_emb[i].abs().sum()) == 0
    masked = [i for i in range(6) if a.text_mask[i] == 1]
    for i in masked:
        assert abs(float(a.text_emb[i].norm()) - 1) < 1e-4


def test_sampler_rejects_bad_settings(quick_corpus):
    c = Corpus(quick_corpus)
    with pytest.raises(ValueError, match="multiple of the block"):
        SegmentSampler(c, 1000, 2, {"real_en": 1})
    with pytest.raises(ValueError, match="unknown kinds"):
        SegmentSampler(c, 1920, 2, {"speech": 1})
    with pytest.raises(ValueError, match="languages"):
        PrepareOptions(langs=("de",))
    with pytest.raises(ValueError, match="not a corpus"):
        Corpus(quick_corpus / "heldout")
