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
               "--piper-minutes", "0.1", "--music-seconds", "5", "--no-events", "--track-seconds", "6",
               "--max-speakers", "2", "--max-clips-per-speaker", "1", "--flite-minutes", "0.05",
               "--kokoro-minutes", "0", "--ambience-minutes", "0.05", "--unseen-seconds", "3"])
    assert rc == 0
    c = Corpus(out)
    kinds = {t["kind"] for t in c.tracks}  # 2 speaker groups: telephone or wideband ones
    assert {"real_en", "piper_en", "music", "synth_wide", "ambience"} <= kinds
    assert kinds - {"real_en", "piper_en", "music", "synth_wide", "ambience"} <= {"wide_speech", "tel_speech"}
    assert len(json.loads((out / "heldout" / "unseen" / "speakers.json").read_text())) >= 1
    assert len(list((out / "heldout" / "en").glob("*.wav"))) == 2
    # Refuses to overwrite; unknown language is a clear error.
    assert main(["prepare-data", "--out", str(out), "--langs", "en"]) == 2
    assert main(["prepare-data", "--out", str(tmp_path / "d"), "--langs", "de"]) == 2


def test_corpus_contents(quick_corpus):
    c = Corpus(quick_corpus)
    kinds = c.seconds_by_kind()
    assert set(kinds) == {"real_en", "real_es", "real_fr", "piper_en", "music", "events",
                          "wide_speech", "tel_speech", "synth_wide", "ambience"}
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


# ---- the multi-speaker sources and the speaker-disjoint held-out set ------------------------------
def test_voice_sources_name_speakers_and_transcripts():
    from llmcodec.data import voices
    nl = [c for c in voices.fillets() if c.lang == "nl" and c.path.stem == "let-m-divna"][0]
    assert nl.speaker == "fillets/nl/m" and nl.text == "Wat is dit voor raar schip?"
    assert [c for c in voices.fillets() if c.lang == "cs" and c.path.stem == "let-v-oko"][0].speaker == "fillets/cs/v"
    tux = [c for c in voices.tuxpaint() if c.path.name == "025quarter_desc_es.ogg"][0]
    assert tux.speaker == "tuxpaint/es" and "25" in tux.text and tux.lang == "es"
    kt = [c for c in voices.ktuberling() if c.path.name == "ball.ogg" and c.lang == "en"][0]
    assert kt.text == "ball" and kt.speaker == "ktuberling/en"
    assert {c.speaker for c in voices.asterisk_voices()} == {
        "asterisk/it_IT_f_Menardi", "asterisk/it_IT_m_Carlo", "asterisk/ru_RU_f_IvrvoiceRU"}
    # Fixed by speaker: whole groups, never single files.
    assert voices.heldout(nl) and voices.heldout(kt) and not voices.heldout(tux)
    assert voices.is_heldout_speaker("klettres", "klettres/en_GB", "en_GB")
    assert voices.is_heldout_speaker("flite", "flite/slt", "en")
    assert not voices.is_heldout_speaker("flite", "flite/awb", "en")
    assert not voices.is_heldout_speaker("fillets", "fillets/cs/m", "cs")
    assert not voices.is_heldout_speaker("hedgewars", "hedgewars/British", "en")
    # alsa-utils' sounds are reserved for independent evaluation: no source reads them.
    every = [c.path for c in voices.recorded_clips()] + voices.non_speech_files()
    assert not [p for p in every if "alsa" in p.parts]


def test_unseen_heldout_set_is_large_enough_and_disjoint():
    """The whole speaker-disjoint set (before the per-speaker cap): at least 8 speakers with
    20 s or more, 4 languages including English, 10 minutes; no speaker is on both sides."""
    import soundfile as sf
    from llmcodec.data import voices
    clips = voices.recorded_clips()
    held = [c for c in clips if voices.heldout(c)]
    train_speakers = {c.speaker for c in clips if not voices.heldout(c)}
    secs: dict[str, float] = {}
    for c in held:
        secs[c.speaker] = secs.get(c.speaker, 0.0) + sf.info(str(c.path)).duration
    big = {s for s, v in secs.items() if v >= 20}
    assert len(big) >= 8 and sum(min(v, 150) for v in secs.values() if v >= 20) >= 600
    langs = {c.base_lang for c in held if c.speaker in big}
    assert "en" in langs and len(langs) >= 4
    assert not train_speakers & set(secs)
    assert sum(sf.info(str(c.path)).samplerate > 8000 for c in held) > 0.9 * len(held)  # wideband


def test_quick_corpus_keeps_unseen_speakers_out_of_training(quick_corpus):
    from llmcodec.data import voices
    c = Corpus(quick_corpus)
    groups = c.seconds_by("group")
    assert c.seconds_by("band").keys() == {"narrow", "wide"}
    assert any(g.startswith(("tuxpaint/", "fillets/", "klettres/", "ktuberling/", "hedgewars/"))
               for g in groups) and any(g.startswith("flite/") for g in groups)
    assert any(g.startswith("kokoro/") for g in groups)
    index = json.loads((c.heldout_dir("unseen") / "speakers.json").read_text())
    assert index and set(groups).isdisjoint({v["speaker"] for v in index.values()})
    for stem, v in index.items():
        assert (c.heldout_dir("unseen") / f"{stem}.wav").is_file()
        assert voices.is_heldout_speaker(v["source"], v["speaker"], v["lang"])
    names = {u[3] for t in c.tracks for u in t["utterances"]}
    assert not [n for n in names if n.startswith(("fillets/nl/", "klettres/en/", "ktuberling/da/"))]


def test_sampler_balances_speaker_groups_by_the_root_of_their_audio(quick_corpus):
    c = Corpus(quick_corpus)
    s = SegmentSampler(c, 1920, 2, {"wide_speech": 1})
    idx, p = s.by_kind["wide_speech"]
    share: dict[str, float] = {}
    for i, q in zip(idx, p):
        share[c.tracks[i]["group"]] = share.get(c.tracks[i]["group"], 0.0) + q
    secs = {g: v for g, v in c.seconds_by("group").items() if g in share}
    assert len(share) >= 2 and abs(sum(share.values()) - 1) < 1e-9
    root = {g: np.sqrt(v) / sum(np.sqrt(list(secs.values()))) for g, v in secs.items()}
    assert all(abs(share[g] - root[g]) < 1e-9 for g in share)


def test_augmentations_do_what_they_say():
    from llmcodec.data.augment import AugmentConfig, augment
    sr, n = 16000, 16000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 0.1).astype(np.float32)
    off = AugmentConfig()
    assert augment(x, np.random.default_rng(1), off, sr) is x  # nothing drawn, nothing changed

    def band_energy(y, lo, hi):
        spec = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(len(y), 1 / sr)
        return spec[(f >= lo) & (f < hi)].sum()

    band = augment(x, np.random.default_rng(2), AugmentConfig(p_band=1.0, band_hz=(4000.0, 4000.0)), sr)
    assert band_energy(band, 4000, 8000) < 1e-6 * band_energy(x, 4000, 8000)
    assert abs(band_energy(band, 0, 3500) / band_energy(x, 0, 3500) - 1) < 1e-3
    tilt = augment(x, np.random.default_rng(3), AugmentConfig(p_tilt=1.0, tilt_db=6.0), sr)
    ratio = [band_energy(tilt, lo, hi) / band_energy(x, lo, hi) for lo, hi in ((250, 500), (4000, 8000))]
    assert abs(np.log10(ratio[1] / ratio[0])) > 1.0  # 4 octaves at up to 6 dB each: > 10 dB apart
    noise = (rng.standard_normal(n) * 0.3).astype(np.float32)
    noisy = augment(x, np.random.default_rng(4), AugmentConfig(p_noise=1.0, snr_db=(20.0, 20.0)), sr,
                    noise=lambda r: noise)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((noisy - x).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.1
    loud = augment(x * 9, np.random.default_rng(5), AugmentConfig(p_tilt=1.0), sr)
    assert float(np.abs(loud).max()) <= 0.99 + 1e-6 and loud.dtype == np.float32
    # Reverb: a click becomes the direct path plus a tail that decays 60 dB per RT60, with the
    # drawn direct-to-reverberant ratio, and the segment's level is kept.
    from llmcodec.data.augment import room_response
    h = room_response(np.random.default_rng(6), sr, rt60=0.4, drr_db=6.0, predelay_ms=2.5)
    assert h[0] == 1.0 and not h[1:40].any() and len(h) == 40 + int(0.4 * sr)
    assert abs(10 * np.log10(1.0 / np.sum(h[1:] ** 2)) - 6.0) < 1e-6
    e = np.array([np.sum(h[40 + i * 1600:40 + (i + 1) * 1600] ** 2) for i in range(4)])  # 0.1 s windows
    slope = np.polyfit(np.arange(4) * 0.1, 10 * np.log10(e), 1)[0]  # dB per second
    assert abs(slope + 60.0 / 0.4) < 15.0, slope
    click = np.zeros(n, np.float32)
    click[100] = 0.5
    rev_cfg = AugmentConfig(p_reverb=1.0, rt60_s=(0.4, 0.4), drr_db=(0.0, 0.0))
    wet = augment(click, np.random.default_rng(7), rev_cfg, sr)
    assert np.abs(wet[:100]).max() < 1e-9 and np.abs(wet[200:]).max() > 1e-4  # causal, with a tail
    assert abs(np.mean(wet.astype(np.float64) ** 2) / np.mean(click.astype(np.float64) ** 2) - 1) < 1e-3
    assert abs(wet[100] ** 2 / np.sum(wet[101:].astype(np.float64) ** 2) - 1) < 1e-3  # DRR 0 dB
    speech_like = augment(x, np.random.default_rng(8), rev_cfg, sr)
    assert speech_like.shape == x.shape and not np.allclose(speech_like, x, atol=1e-3)
    with pytest.raises(ValueError, match="rt60_s"):
        AugmentConfig(rt60_s=(0.0, 0.5))
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p_band=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig(snr_db=(30.0, 10.0))


def test_sampler_augments_reproducibly(quick_corpus):
    from llmcodec.data.augment import AugmentConfig
    c = Corpus(quick_corpus)
    mix = {"real_en": 1, "piper_en": 1}
    plain = SegmentSampler(c, 1920 * 2, 4, mix, seed=3)
    same = SegmentSampler(c, 1920 * 2, 4, mix, seed=3, augment=AugmentConfig())
    assert np.array_equal(plain.batch(2).audio.numpy(), same.batch(2).audio.numpy())  # p = 0: unchanged
    aug = SegmentSampler(c, 1920 * 2, 4, mix, seed=3,
                         augment=AugmentConfig(p_tilt=1.0, p_band=1.0, p_noise=1.0, p_reverb=1.0))
    a, b = aug.batch(2), aug.batch(2)
    assert np.array_equal(a.audio.numpy(), b.audio.numpy()) and a.kinds == plain.batch(2).kinds
    assert not np.array_equal(a.audio.numpy(), plain.batch(2).audio.numpy())
    assert float(a.audio.abs().max()) <= 0.99 + 1e-6
    with pytest.raises(ValueError, match="noise kind 'real_en' has no track of 1920000 samples"):
        SegmentSampler(c, 1920 * 1000, 4, mix, augment=AugmentConfig(p_noise=0.5, noise_kind="real_en"))


def test_kokoro_voices_speak_english_wideband():
    """Kokoro-82M's voices (five and their mixes) read English from espeak-ng's IPA: Whisper base
    hears the sentence, the speech reaches above 4 kHz, the voices differ, and a wrong voice
    name is a clear error."""
    from llmcodec.data.synth import KOKORO_VOICES, KokoroSynth
    from llmcodec.eval.judges import base_transcriber
    synth = KokoroSynth(16000)
    text = "The children walked to the river after school."
    rng = np.random.default_rng(0)
    a = synth.synthesize(text, "jf_alpha+jm_kumo", rng)
    b = synth.synthesize(text, "jm_kumo", np.random.default_rng(0))
    assert 1.5 < a.size / 16000 < 6 and np.abs(a).max() <= 1.5
    heard = base_transcriber(threads=1).transcribe(a).lower()
    assert "children" in heard and "river" in heard, heard
    spec = np.abs(np.fft.rfft(a)) ** 2
    assert spec[int(4000 * a.size / 16000):].sum() / spec.sum() > 1e-3  # wideband, not telephone speech
    n = min(a.size, b.size)
    assert not np.allclose(a[:n], b[:n], atol=1e-2) and len(set(KOKORO_VOICES)) == 8
    with pytest.raises(ValueError, match="unknown Kokoro voice 'nobody'"):
        synth.synthesize(text, "nobody", rng)
