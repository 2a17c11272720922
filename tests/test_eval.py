"""Evaluation: metrics on real speech, the Opus 6 kbps baseline, and `llmcodec eval` end to end."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from llmcodec.data.corpus import ensure_corpus
from llmcodec.eval import metrics
from llmcodec.eval.baselines import opus_roundtrip


@pytest.fixture(scope="session")
def quick_corpus(tmp_path_factory):
    return ensure_corpus(tmp_path_factory.getbasetemp() / "quick_corpus")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A seeded, untrained tiny codec saved as a model directory (bundled vocabulary sizes)."""
    import torch
    from llmcodec.checkpoint import save_model
    from llmcodec.config import preset
    from llmcodec.model import LLMCodec
    torch.manual_seed(0)
    return save_model(LLMCodec(preset("tiny")), tmp_path_factory.mktemp("tiny_model"), half=True)


def test_text_normalisation_and_wer():
    assert metrics.normalize_text("Press 1, then #23 & it's 100%!") == \
        ["press", "one", "then", "twenty", "three", "and", "its", "one", "hundred", "percent"]
    assert metrics.number_words(1205) == "one thousand two hundred five"
    assert metrics.word_errors("press one to continue", "Press 1 to continue.") == (0, 4)
    assert metrics.word_errors("a b c d", "a x c") == (2, 4)
    assert metrics.edit_distance([], ["a", "b"]) == 2


def test_metrics_and_opus_on_real_speech(speech_30s):
    ref = speech_30s[: 16000 * 6]
    assert metrics.pesq_wb(ref, ref) > 4.4
    assert metrics.stoi(ref, ref) > 0.99
    noisy = ref + np.random.default_rng(0).normal(0, 0.05, ref.size).astype(np.float32)
    assert metrics.pesq_wb(ref, noisy) < 2.5 and metrics.stoi(ref, noisy) < 0.99
    out, kbps = opus_roundtrip(ref)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert 5.0 < kbps < 9.0  # 6 kbps plus Ogg overhead
    # Time-aligned (no codec delay left, within resampling): STOI needs that.
    lag = np.argmax(np.correlate(out[8000:40000], ref[8000 - 100:40000 + 100], "valid")) - 100
    assert abs(lag) <= 2
    assert 1.5 < metrics.pesq_wb(ref, out) < 4.0 and metrics.stoi(ref, out) > 0.8
    mos = metrics.dnsmos(ref)
    assert 2.0 < mos.ovrl < 4.5 and 1.0 < mos.bak <= 5.0


def test_evaluate_report(quick_corpus, tiny_model_dir):
    from llmcodec.eval.report import evaluate
    rep = evaluate(tiny_model_dir, quick_corpus / "heldout" / "en", dns=False, progress=False)
    assert rep.files == 3 and rep.seconds > 1
    orig, codec, opus = rep.rows
    assert codec.system == "llmcodec tiny" and opus.system == "Opus 6 kbps"
    assert math.isnan(orig.pesq_wb) and 0 <= orig.wer < 0.5  # Whisper reads the real prompts
    # An untrained codec is far below Opus 6 kbps on every measure.
    assert codec.pesq_wb < opus.pesq_wb and codec.stoi < opus.stoi and codec.wer > opus.wer
    assert len(codec.codebook_usage) == 3 and codec.codebook_usage[0].endswith("/4096")
    md = rep.to_markdown()
    assert "| Opus 6 kbps |" in md and "PESQ-WB" in md
    assert json.loads(rep.to_json())["rows"][1]["system"] == "llmcodec tiny"
    # Per file: what Whisper heard; the codec's per-file scores average to its row.
    assert [f.name for f in rep.per_file] == sorted(f.name for f in rep.per_file) and len(rep.per_file) == 3
    assert all(f.reference and f.heard_original and f.heard_opus is not None for f in rep.per_file)
    assert np.mean([f.stoi for f in rep.per_file]) == pytest.approx(codec.stoi)
    table = rep.transcripts_markdown(2)
    assert len(table.splitlines()) == 4 and rep.per_file[0].reference.replace("|", "/") in table
    assert "Whisper on Opus 6 kbps" in table


def test_cli_eval(quick_corpus, tiny_model_dir, tmp_path, capsys):
    from llmcodec.cli import main
    out = tmp_path / "eval.json"
    rc = main(["eval", "--model", str(tiny_model_dir), "--data", str(quick_corpus / "heldout" / "en"),
               "--limit", "1", "--json", str(out), "--markdown", str(tmp_path / "eval.md")])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["files"] == 1 and len(data["rows"]) == 3
    assert all(1.0 <= r["dnsmos_ovrl"] <= 5.0 for r in data["rows"])
    assert "| llmcodec tiny |" in capsys.readouterr().out
    assert "Whisper on llmcodec" in (tmp_path / "eval.md").read_text()
    assert main(["eval", "--data", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["eval", "--data", str(quick_corpus / "heldout" / "en"), "--model-card"]) == 2
    assert main(["eval", "--data", str(quick_corpus / "heldout" / "en"), "--per-speaker", "0"]) == 2
    assert "--per-speaker must be >= 1" in capsys.readouterr().err


def test_model_card(quick_corpus, tiny_model_dir):
    from llmcodec.eval.report import EvalReport, evaluate, model_card, status_line
    rep = evaluate(tiny_model_dir, quick_corpus / "heldout" / "en", limit=1, dns=False, opus=False,
                   progress=False)
    card = model_card(rep, {"steps": 1234, "hours": 5.5, "config": "small", "data": "524 tracks"})
    assert "Steps: 1234" in card and "hours of training: 5.5" in card and "| llmcodec tiny |" in card
    assert "below the project's minimum" in card and "STOI" in card.split("minimum")[1]
    assert "## What Whisper tiny.en hears" in card and "Whisper on Opus" not in card  # opus=False
    # Reports survive their JSON; earlier reports of the run become the card's table by step.
    again = EvalReport.from_json(rep.to_json())
    assert again.to_json() == rep.to_json() and again.codec.system == "llmcodec tiny"
    assert [f.name for f in again.per_file] == [f.name for f in rep.per_file]  # NaN != NaN: by JSON above
    old = json.loads(rep.to_json())
    del old["per_file"]  # reports written before per-file results still load
    assert EvalReport.from_json(json.dumps(old)).per_file == []
    earlier = dataclasses.replace(EvalReport.from_json(rep.to_json()), training={"steps": 10, "hours": 0.1})
    now = dataclasses.replace(rep, training={"steps": 20, "hours": 0.2})
    card = model_card(now, {"steps": 20, "anneal_steps": 5}, [earlier])
    assert "annealed linearly towards zero over the last 5 steps" in card
    lines = [ln for ln in card.splitlines() if ln.startswith(("| 10 |", "| 20 |"))]
    assert [ln.split(" | ")[0] for ln in lines] == ["| 10", "| 20"]
    assert f"{now.codec.stoi:.3f}" in lines[1]
    other = dataclasses.replace(earlier, files=99)
    with pytest.raises(ValueError, match="would not compare"):
        model_card(now, {}, [other])
    with pytest.raises(ValueError, match="not an llmcodec eval report"):
        EvalReport.from_json('{"model": "x"}')
    good = dataclasses.replace(now, rows=[dataclasses.replace(now.codec, stoi=0.8, pesq_wb=2.0, wer=0.2)])
    assert "meets the project's minimum" in status_line(good)


# ---- independent judges and the speaker-disjoint set --------------------------------------------
def test_independent_judges_on_real_speech(speech_30s):
    from llmcodec.audio import load_audio
    from llmcodec.eval.judges import SpeakerJudge, base_transcriber, high_band_db, whisper_base_dir
    from llmcodec.speech import prompt_files
    from llmcodec.data.sources import read_transcripts
    assert (whisper_base_dir() / "model.bin").stat().st_size == 145_217_532
    asr = base_transcriber(threads=2)
    texts = read_transcripts("en")
    edits = words = 0
    for name in ("agent-pass", "conf-onlyperson", "vm-goodbye"):
        wav, _ = load_audio(next(p for p in prompt_files("en") if p.stem == name), 16000)
        e, n = metrics.word_errors(texts[name], asr.transcribe(wav, "en"))
        edits, words = edits + e, words + n
    assert edits / words < 0.3  # base hears the real prompts
    nl, _ = load_audio("/usr/share/games/fillets-ng/sound/airplane/nl/let-v-oko.ogg", 16000)
    judge = SpeakerJudge()
    a, b = speech_30s[:16000 * 5], speech_30s[16000 * 10:16000 * 15]
    assert judge.similarity(a, a) > 0.999
    assert judge.similarity(a, b) > judge.similarity(a, nl) + 0.1  # same voice beats another voice
    import soxr
    low = soxr.resample(soxr.resample(nl, 16000, 8000), 8000, 16000)[: nl.size]
    assert high_band_db(nl, nl) == 0.0 and high_band_db(nl, low) < -15
    assert math.isnan(high_band_db(low, low))  # no high band to keep in an 8 kHz recording


def test_evaluate_speaker_disjoint_set_per_speaker(quick_corpus, tiny_model_dir):
    from llmcodec.eval.report import EvalReport, evaluate, read_speakers
    from llmcodec.eval.speakers import speaker_rows
    data = quick_corpus / "heldout" / "unseen"
    rep = evaluate(tiny_model_dir, data, limit=4, dns=False, progress=False)
    speakers = read_speakers(data)
    assert {f.speaker for f in rep.per_file} <= {v["speaker"] for v in speakers.values()}
    rows = speaker_rows(rep.per_file)
    assert len(rows) == len({f.speaker for f in rep.per_file}) >= 2
    orig, codec, opus = rep.rows
    assert -1 <= codec.speaker_sim <= 1 and -1 <= opus.speaker_sim <= 1
    assert codec.speaker_sim < opus.speaker_sim  # an untrained codec loses the voice
    assert not math.isnan(codec.wer_base) and codec.wer_base > orig.wer_base
    english = [f for f in rep.per_file if f.lang.startswith("en")]
    assert all(f.heard_original for f in english)  # tiny.en only hears the English files
    assert all(not f.heard_original for f in rep.per_file if not f.lang.startswith("en"))
    md = rep.to_markdown()
    assert "| speaker | lang |" in md and rows[0].speaker in md and "WER base" in md
    assert EvalReport.from_json(rep.to_json()).per_file[0].base_edits == rep.per_file[0].base_edits


def test_per_speaker_quick_check_and_paired_comparison(quick_corpus, tiny_model_dir, tmp_path, capsys):
    from llmcodec.eval.compare import compare, main as compare_main
    from llmcodec.eval.report import EvalReport, evaluate, list_files, read_speakers
    data = quick_corpus / "heldout" / "unseen"
    speakers = read_speakers(data)
    every = list_files(data)
    names = {speakers[p.stem]["speaker"] for p, _ in every}
    assert {speakers[p.stem]["speaker"] for p, _ in list_files(data, per_speaker=1)} == names
    # Two speakers of four and three files: the first N of each, in file order.
    grouped = tmp_path / "grouped"
    grouped.mkdir()
    for i, (p, _) in enumerate(every):
        (grouped / p.name).symlink_to(p)
    (grouped / "speakers.json").write_text(json.dumps({p.stem: {"speaker": "s1" if i < 4 else "s2", "lang": "en"}
                                                       for i, (p, _) in enumerate(every)}))
    one_each = list_files(grouped, per_speaker=1)
    assert [p.name for p, _ in one_each] == [every[0][0].name, every[4][0].name]
    assert len(list_files(grouped, per_speaker=2)) == 4 and len(list_files(grouped, per_speaker=9)) == len(every)
    rep = evaluate(tiny_model_dir, data, per_speaker=1, limit=3, opus=False, dns=False, judges=False,
                   progress=False)
    assert rep.files == 3 and len({f.speaker for f in rep.per_file}) == 3
    # The same report against itself: no difference, so no verdict either way.
    same = compare(rep, rep)
    stoi = next(m for m in same.metrics if m.metric == "stoi")
    assert stoi.diff == 0 and stoi.clear == "unclear" and stoi.files == 3
    # A copy scoring higher on every file is clearly better; one lower on a file only is not clear.
    up = dataclasses.replace(rep, model="b", per_file=[dataclasses.replace(f, stoi=f.stoi + 0.05)
                                                       for f in rep.per_file])
    better = next(m for m in compare(rep, up).metrics if m.metric == "stoi")
    assert better.diff == pytest.approx(0.05) and better.low > 0 and better.clear == "better"
    assert better.b_higher == 1.0 and set(better.per_speaker) == {f.speaker for f in rep.per_file}
    mixed = [dataclasses.replace(f, stoi=f.stoi + (0.3 if i == 0 else -0.01)) for i, f in enumerate(rep.per_file)]
    assert next(m for m in compare(rep, dataclasses.replace(rep, per_file=mixed)).metrics
                if m.metric == "stoi").clear == "unclear"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(rep.to_json())
    b.write_text(up.to_json())
    compare_main([str(a), str(b), "--json", str(tmp_path / "c.json")])
    assert "| stoi | 3 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["verdicts"]["stoi"] == "better"
    other = dataclasses.replace(rep, per_file=[dataclasses.replace(f, name="x" + f.name) for f in rep.per_file])
    with pytest.raises(ValueError, match="share no file"):
        compare(rep, other)
    with pytest.raises(SystemExit, match="not an llmcodec eval report|compare:"):
        (tmp_path / "bad.json").write_text("{}")
        compare_main([str(a), str(tmp_path / "bad.json")])
    assert EvalReport.from_json(a.read_text()).files == 3
