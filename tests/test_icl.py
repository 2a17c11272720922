"""Few-shot in-context harness: real recordings, the bundled codec, the real frozen LLM."""
from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch

from llmcodec.icl import prompts as P
from llmcodec.icl.report import SettingResult, markdown_report, text_table, wilson
from llmcodec.icl.tasks import Setting, build_task, load_clip, sample_episodes

SR = 16000


@pytest.fixture(scope="module")
def coder():
    from llmcodec.icl.run import ClipCoder
    return ClipCoder(None, 1.0, cache_dir=None)


@pytest.fixture(scope="module")
def builders(llm, coder):
    from llmcodec.icl.run import make_builders
    return make_builders(llm, coder)


def _task(name: str):
    try:
        return build_task(name)
    except FileNotFoundError as e:  # a Debian sound package is missing
        pytest.skip(str(e))


# ------------------------------------------------------------------ report
def test_wilson_interval_known_values() -> None:
    for (k, n), (lo, hi) in {(5, 10): (0.2366, 0.7634), (0, 10): (0.0, 0.2775), (10, 10): (0.7225, 1.0),
                             (50, 100): (0.4038, 0.5962), (1, 20): (0.0089, 0.2361)}.items():
        got = wilson(k, n)
        assert got == pytest.approx((lo, hi), abs=1e-4), (k, n, got)
    with pytest.raises(ValueError):
        wilson(1, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_report_table_and_markdown() -> None:
    a = SettingResult(Setting("digits", 2, 1, 1), 200, 120, 90, 200, 79.0, 1.0)
    b = SettingResult(Setting("digits", 2, 1, 3), 200, 100, 101, 200, 241.0, 1.0)
    table = text_table([a, b])
    assert "60.0 [53.1, 66.5]+" in table  # 120/200, interval above chance 50%
    assert "45.0 [38.3, 51.9] " in table  # includes 50%: no mark
    free = SettingResult(Setting("digits", 2, 1, 1, induction=False), 200, 0, 100, 0, 58.0, 1.0)
    assert "pooled L1 (with induction): greedy 60.0%, log-lik 45.0% over 200 episodes" in text_table([a, b, free])
    md = markdown_report([a, b], {"seed": "0"}, "llmcodec icl run --episodes 200")
    assert "| digits | 2 | 1 | - | 50.0 | 60.0 [53.1, 66.5]+ |" in md
    assert "llmcodec icl run --episodes 200" in md and "ESC50 2-way 1-shot" in md


# ---------------------------------------------------------------- episodes
def test_episodes_are_seeded_distinct_and_keep_the_query_recording_out() -> None:
    task = _task("digits")
    s = Setting("digits", 3, 5, 1)
    eps = sample_episodes(task, s, 40, seed=7)
    assert eps == sample_episodes(task, s, 40, seed=7)
    assert eps != sample_episodes(task, s, 40, seed=8)
    assert eps == sample_episodes(task, Setting("digits", 3, 5, 3, induction=False), 40, seed=7)  # paired
    for e in eps:
        assert len(e.support) == 15 and len(e.labels) == 3 and e.target in e.labels
        assert list(e.labels) == sorted(e.labels)
        clips = [c for c, _ in e.support]
        assert len(set(clips)) == 15 and e.query not in clips
        assert not e.query.is_view
        assert all(c.group != e.query.group for c in clips)  # no view of the query's recording
        assert all(task.labels[c.cls] == lab for c, lab in e.support)
        assert sorted({lab for _, lab in e.support}) == list(e.labels)
    rep = sample_episodes(task, Setting("digits", 2, 1, 1, repeats=3), 5, seed=0)
    for e in rep:
        passes = [e.support[i:i + 2] for i in range(0, 8, 2)]
        assert len(e.support) == 8 and all(sorted(map(str, p)) == sorted(map(str, passes[0])) for p in passes)
    with pytest.raises(ValueError, match="3 classes"):
        sample_episodes(_task("language"), Setting("language", 4, 1), 1, 0)
    with pytest.raises(ValueError, match="unknown task"):
        Setting("birds", 2, 1)
    with pytest.raises(ValueError):
        Setting("digits", 1, 1)
    with pytest.raises(ValueError):
        Setting("digits", 2, 1, levels=2)


def test_clips_have_the_fixed_duration() -> None:
    for name in ("digits", "sound"):
        task = _task(name)
        for clip in [task.pools[c][i] for c in task.classes for i in (0, -1)]:
            wav = load_clip(clip, SR, 1.0)
            assert wav.shape == (SR,) and wav.dtype == np.float32 and np.abs(wav).max() > 1e-3, clip
    view = next(c for c in _task("digits").pools["3"] if c.delay > 0)
    wav = load_clip(view, SR, 0.5)
    assert wav.shape == (SR // 2,) and not wav[: int(view.delay * SR)].any()


def test_fast_encoding_equals_the_streaming_steps(coder) -> None:
    task = _task("sound")
    wav = torch.from_numpy(np.stack([coder.audio(task.pools[c][0]) for c in task.classes]))
    fast = coder.encode_audio(wav)
    steps = coder.model.encode(wav).codes
    assert [tuple(c.shape) for c in fast] == [(3, 9), (3, 18), (3, 36)]
    assert all(torch.equal(a, b) for a, b in zip(fast, steps))


# ----------------------------------------------------------------- prompts
def test_prompt_layout(llm, coder, builders) -> None:
    from llmcodec.icl.run import prompt_for
    assert llm.same_vocab(coder.vocab)
    task = _task("digits")
    s = Setting("digits", 2, 1, 1)
    e = sample_episodes(task, s, 1, seed=3)[0]
    p = prompt_for(e, s, coder, builders[1])
    assert p == prompt_for(e, s, coder, builders[1])  # building is repeatable
    a, b = e.labels
    words = r"(?: [a-z]+)+"
    layout = (rf"For each of the following input output pairs, output is one of \['{a}' or '{b}'\]\n"
              rf"###\nInput: <({words}) >\nOutput: (\w+)\n"
              rf"###\nInput: <({words}) >\nOutput: (\w+)\n"
              rf"###\nInput: <({words}) >\nOutput:")
    m = re.fullmatch(layout, p.text)
    assert m, p.text
    clips = [c for c, _ in e.support] + [e.query]
    for i, clip in enumerate(clips):  # each AUDIO is the clip's level-1 words, as text and as ids
        codes = coder.codes(clip)
        assert m.group(1 + 2 * i) == coder.vocab.codes_to_text(0, codes[0])
        lo, hi = p.audio_spans[i]
        assert list(p.ids[lo:hi]) == coder.vocab.codes_to_token_ids(0, codes[0])
        assert llm.tokenize(coder.vocab.codes_to_text(0, codes[0])) == list(p.ids[lo:hi])  # re-tokenises exactly
    assert [m.group(2), m.group(4)] == [lab for _, lab in e.support]
    assert p.candidates == tuple(tuple(llm.tokenize(" " + lab) + llm.tokenize("\n")) for lab in e.labels)
    assert p.text == llm.decode(p.ids)

    full = prompt_for(e, Setting("digits", 2, 1, 3), coder, builders[3])  # levels 2 and 3: ids as such
    for i, clip in enumerate(clips):
        codes = coder.codes(clip)
        lo, hi = full.audio_spans[i]
        assert list(full.ids[lo:hi]) == (coder.vocab.codes_to_token_ids(0, codes[0])
                                         + codes[1].tolist() + codes[2].tolist())
    assert full.text.startswith(P.instruction(e.labels) + P.EXAMPLE_OPEN) and full.text.endswith(" >\nOutput:")
    free = prompt_for(e, Setting("digits", 2, 1, 1, induction=False), coder, builders[1])
    assert free.text.startswith("###\nInput: <") and free.ids == p.ids[len(llm.tokenize(P.instruction(e.labels))):]

    with pytest.raises(ValueError, match="another vocabulary"):
        P.PromptBuilder(llm.tokenize, llm.decode, coder.vocab, levels=3, same_vocab=False)
    with pytest.raises(ValueError, match="newlines"):
        builders[1].build([], coder.codes(e.query), ["a\nb", "c"])
    with pytest.raises(ValueError, match="not one of the labels"):
        builders[1].build([(coder.codes(e.query), "x")], coder.codes(e.query), ["a", "b"])


# -------------------------------------------------------------- the LLM
def _reference_greedy(llm, ids, cands) -> int:
    """Step-by-step constrained greedy decoding with full forwards (no cache tricks)."""
    alive, prefix = list(range(len(cands))), []
    while True:
        done = [i for i in alive if len(cands[i]) == len(prefix)]
        if done:
            return done[0]
        with torch.inference_mode():
            logits = llm.model(input_ids=torch.tensor([list(ids) + prefix])).logits[0, -1]
        allowed = sorted({cands[i][len(prefix)] for i in alive})
        tok = allowed[int(logits[allowed].argmax())]
        prefix.append(tok)
        alive = [i for i in alive if cands[i][len(prefix) - 1] == tok]


def _reference_scores(llm, ids, cands) -> list[float]:
    out = []
    for c in cands:
        with torch.inference_mode():
            lp = llm.model(input_ids=torch.tensor([list(ids) + list(c)])).logits[0].float().log_softmax(-1)
        out.append(float(sum(lp[len(ids) - 1 + j, t] for j, t in enumerate(c))))
    return out


def test_constrained_decoding_only_yields_candidate_labels(llm, coder, builders) -> None:
    from llmcodec.icl.run import prompt_for, run_episode
    for name, ways in (("digits", 3), ("language", 2), ("sound", 3)):
        task = _task(name)
        s = Setting(name, ways, 1, 1)
        for i, e in enumerate(sample_episodes(task, s, 2, seed=11)):
            out = run_episode(s, i, e, coder, llm, builders[1])
            assert out.greedy_label in e.labels and out.scored_label in e.labels
            assert out.decision.generated == " " + out.greedy_label + "\n"
            assert len(out.decision.scores) == ways and all(v < 0 for v in out.decision.scores)
    # multi-token labels sharing prefixes, and labels the LLM would never pick on its own
    e = sample_episodes(_task("digits"), Setting("digits", 2, 1), 1, seed=5)[0]
    p = prompt_for(e, Setting("digits", 2, 1), coder, builders[1])
    for labels in (["spoken digit", "spoken word", "speech"], ["zqx", "qwvj"], ["one", "one hundred"]):
        cands = builders[1].candidates(labels)
        d = llm.classify(p.ids, cands)
        assert 0 <= d.greedy < len(labels) and d.generated == " " + labels[d.greedy] + "\n"
        assert d.greedy == _reference_greedy(llm, p.ids, cands)
        assert d.scores == pytest.approx(_reference_scores(llm, p.ids, cands), abs=2e-3)
        assert d.best == int(np.argmax(d.scores))
    with pytest.raises(ValueError, match="at least 2 distinct"):
        llm.classify(p.ids, [cands[0]])
    with pytest.raises(ValueError, match="token ids"):
        llm.classify(p.ids, [(1,), (10 ** 6,)])


def test_without_induction_the_llm_generates_freely(llm, coder, builders) -> None:
    from llmcodec.icl.run import run_episode
    s = Setting("sound", 2, 1, 1, induction=False)
    for i, e in enumerate(sample_episodes(_task("sound"), s, 2, seed=2)):
        out = run_episode(s, i, e, coder, llm, builders[1])
        assert out.prompt.text.startswith("###\nInput: <")
        assert isinstance(out.decision.generated, str) and "\n" not in out.decision.generated
        if out.greedy_label is not None:
            assert out.decision.generated.startswith(out.greedy_label)
        else:
            assert not any(out.decision.generated.startswith(lab) for lab in e.labels)


def test_llm_path_errors(tmp_path) -> None:
    from llmcodec.icl.llm import _resolve
    with pytest.raises(ValueError, match="no such LLM"):
        _resolve(tmp_path / "missing")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .gguf"):
        _resolve(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="0 .gguf files"):
        _resolve(tmp_path)


# ------------------------------------------------------------ end to end
def test_cli_runs_end_to_end(llm, tmp_path, capsys) -> None:
    from llmcodec.commands import icl
    _task("digits")
    parser = argparse.ArgumentParser()
    icl.add_arguments("icl", parser)
    md, log = tmp_path / "icl.md", tmp_path / "icl.jsonl"
    args = parser.parse_args(["run", "--tasks", "digits", "--ways", "2", "--shots", "1", "--levels", "1", "all",
                              "--variants", "1", "--episodes", "2", "--markdown", str(md), "--log", str(log),
                              "--cache-dir", str(tmp_path / "cache")])
    assert icl.run(args) == 0
    out = capsys.readouterr().out
    assert "L1 greedy" in out and "L1+2+3 log-lik" in out and "pooled L1" in out
    text = md.read_text()
    assert "llmcodec icl run --tasks digits --ways 2 --shots 1 --levels 1 all" in text
    assert re.search(r"\| digits \| 2 \| 1 \| - \| 50\.0 \| \d", text)
    assert "| digits | 2 | 1 | no induction |" in text and "| digits | 2 | 1 | repeats 3 |" in text
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) == 2 * 5  # 2 episodes x (L1, L1+2+3, no induction, repeats 1, repeats 3)
    for r in recs:
        assert r["loglik_best"] in r["labels"] and r["target"] in r["labels"]
        if "no induction" not in r["setting"]:
            assert r["greedy"] in r["labels"]
    assert list((tmp_path / "cache").glob("*.npz"))  # clip codes cached on disk

    args = parser.parse_args(["show", "--task", "digits", "--levels", "all", "--cache-dir", str(tmp_path / "cache")])
    assert icl.run(args) == 0
    shown = capsys.readouterr().out
    assert "For each of the following input output pairs" in shown and "# greedy:" in shown


def test_results_file_resumes_and_merges(llm, tmp_path, capsys) -> None:
    """`--results`: settings already in the file are skipped; `icl report` merges files of one identity."""
    from llmcodec.commands import icl
    from llmcodec.icl.store import merge, read
    parser = argparse.ArgumentParser()
    icl.add_arguments("icl", parser)
    common = ["--ways", "2", "--shots", "1", "--variants", "none", "--episodes", "2",
              "--cache-dir", str(tmp_path / "cache")]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert icl.run(parser.parse_args(["run", "--tasks", "digits", "--levels", "1", "--results", str(a), *common])) == 0
    doc = read(a)
    assert [(r["task"], r["levels"], r["episodes"]) for r in doc["results"]] == [("digits", 1, 2)]
    first = doc["results"][0]
    # Again with one more level mode: the level-1 setting is not run twice.
    capsys.readouterr()
    assert icl.run(parser.parse_args(["run", "--tasks", "digits", "--levels", "1", "all", "--results", str(a),
                                      *common])) == 0
    assert "1 of 2 settings already done, 1 to run" in capsys.readouterr().err
    doc = read(a)
    assert len(doc["results"]) == 2 and doc["results"][0] == first and len(doc["commands"]) == 2
    assert icl.run(parser.parse_args(["run", "--tasks", "sound", "--levels", "1", "--results", str(b), *common])) == 0
    md = tmp_path / "all.md"
    assert icl.run(parser.parse_args(["report", str(a), str(b), "--markdown", str(md)])) == 0
    text = md.read_text()
    assert "| digits | 2 | 1 | - | 50.0 |" in text and "| sound | 2 | 1 | - | 50.0 |" in text
    assert text.count("llmcodec icl run") == 3
    # Files of another identity (here: another seed) are refused, naming the difference.
    c = tmp_path / "c.json"
    assert icl.run(parser.parse_args(["run", "--tasks", "sound", "--levels", "1", "--results", str(c),
                                      "--seed", "1", *common])) == 0
    with pytest.raises(ValueError, match="seed"):
        merge([a, c])
    with pytest.raises(ValueError, match="seed"):
        icl.run(parser.parse_args(["run", "--tasks", "digits", "--levels", "1", "--results", str(a),
                                   "--seed", "1", *common]))
    with pytest.raises(ValueError, match="also in another file"):
        merge([a, a])
