"""Few-shot generation in context: the grammar of generated audio tokens, the data of both
tasks, and each task end to end with the bundled codec, the real frozen LLM and the judges."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmcodec.icl.gen_prompts import AudioGrammar, GenPromptBuilder
from llmcodec.icl.gen_tasks import GenSetting, clean_audio, noise_halves, noisy_audio, sample_gen_episodes
from llmcodec.vocab import Vocabulary

SR = 16000


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default()


def random_codes(rng, blocks: int) -> list[np.ndarray]:
    return [rng.integers(0, 4096, blocks), rng.integers(0, 49152, 2 * blocks), rng.integers(0, 49152, 4 * blocks)]


@pytest.mark.parametrize("levels", [1, 3])
def test_grammar_walks_yield_valid_ids_per_level_and_whole_blocks(vocab, levels):
    """Any path the grammar allows (random choices, many walks) reads back as codes of whole
    blocks whose token ids are exactly what was written; and the prompt form round-trips."""
    g = AudioGrammar(vocab, levels, [198])
    rng = np.random.default_rng(levels)
    prefixes = {ids[0] for ids in vocab.word_token_ids if len(ids) == 2} & {
        ids[0] for ids in vocab.word_token_ids if len(ids) == 1}
    walked_prefix = 0
    for walk in range(300):
        st, ids, max_blocks = g.start(), [], int(rng.integers(1, 6))
        while True:
            allowed = g.allowed(st, max_blocks)
            if allowed is None:
                assert st.pos > 0 or (levels == 3 and st.pending >= 0)
                t = int(rng.integers(0, vocab.vocab_size))
            else:
                assert allowed.size and np.all((allowed >= 0) & (allowed < vocab.vocab_size))
                # every other walk steers into one-token words that begin two-token words
                pick = [a for a in allowed if int(a) in prefixes] if walk % 2 and st.pending < 0 else []
                t = int(pick[int(rng.integers(len(pick)))] if pick else allowed[int(rng.integers(allowed.size))])
            walked_prefix += t in prefixes
            st = g.advance(st, t)
            if st.done:
                break
            ids.append(t)
            if allowed is not None and allowed.size == 1 and int(allowed[0]) == g.newline:
                break
        codes, whole = g.parse(ids)
        assert whole and 1 <= st.blocks <= max_blocks and len(codes[0]) == st.blocks
        assert np.all(codes[0] < 4096) and all(np.all(c < vocab.vocab_size) for c in codes[1:])
        assert g.audio_ids(codes) == ids
    assert walked_prefix > 50
    c = random_codes(rng, 7)
    back, whole = g.parse(g.audio_ids(c))
    assert whole and all(np.array_equal(b, x) for b, x in zip(back, c[:levels]))


def test_grammar_refuses_what_is_not_a_block(vocab):
    g = AudioGrammar(vocab, 3, [198])
    ids = g.audio_ids(random_codes(np.random.default_rng(0), 2))
    assert g.parse(ids[:-1])[1] is False  # a block cut short
    with pytest.raises(ValueError, match="level-1 word"):
        g.parse([198])
    with pytest.raises(ValueError, match="levels"):
        AudioGrammar(vocab, 2, [198])
    with pytest.raises(ValueError, match="level 2 has"):
        g.audio_ids([np.zeros(2, np.int64), np.zeros(3, np.int64), np.zeros(8, np.int64)])


def test_prompt_layout(vocab, llm):
    g = AudioGrammar(vocab, 1, llm.newline)
    b = GenPromptBuilder(llm.tokenize, llm.decode, g)
    codes = [np.array([vocab.words.index("cat"), vocab.words.index("sat")])]
    p = b.build([("four", codes), (codes, codes)], "two")
    assert p.text == ("###\nInput: four\nOutput: cat sat\n###\nInput: < cat sat >\nOutput: cat sat\n"
                      "###\nInput: two\nOutput:")
    with pytest.raises(ValueError, match="at least one example"):
        b.build([], "two")


def test_settings_and_episodes_are_checked_and_seeded():
    with pytest.raises(ValueError, match="shots <= 3"):
        GenSetting("tts", 4)
    with pytest.raises(ValueError, match="snr_db"):
        GenSetting("denoise", 1)
    with pytest.raises(ValueError, match="unknown generation task"):
        GenSetting("asr", 1)
    s = GenSetting("tts", 2, ways=3)
    a, b = sample_gen_episodes(s, 5, 0, 1.0), sample_gen_episodes(s, 5, 0, 1.0)
    assert a == b and a != sample_gen_episodes(s, 5, 1, 1.0)
    for ep in a:
        assert len(ep.examples) == 6 and ep.query in {x for x, _ in ep.examples}
        assert len({y.path for _, y in ep.examples}) == 3  # one voice: 3 digits
    d = GenSetting("denoise", 3, snr_db=5.0)
    ex_half, q_half = noise_halves()
    assert not set(ex_half) & set(q_half)
    for ep in sample_gen_episodes(d, 10, 0, 1.5):
        assert ep.query.noise in q_half and all(x.noise in ex_half for x, _ in ep.examples)
        assert ep.target not in [y for _, y in ep.examples] and ep.query.clip == ep.target
        wav = noisy_audio(ep.query, SR, 1.5)
        assert wav.shape == (24000,) and np.abs(wav).max() <= 1.0
        for x in [ep.query] + [x for x, _ in ep.examples]:  # noise everywhere, never a silent stretch
            n = noisy_audio(x, SR, 1.5) - clean_audio(x.clip, SR, 1.5)
            quiet = np.sqrt((n.reshape(-1, 1200).astype(np.float64) ** 2).mean(axis=1))  # 75 ms frames
            assert quiet.min() > 1e-4, (x.noise, x.noise_start)


def test_noise_is_mixed_at_the_snr():
    from llmcodec.icl.gen_tasks import Noisy, clean_audio, clean_speech
    clip, noise = clean_speech()[3], noise_halves()[0][0]
    clean = clean_audio(clip, SR, 1.5)
    for snr in (0.0, 10.0):
        mix = noisy_audio(Noisy(clip, noise, 0.0, snr), SR, 1.5)
        scale = 1.0 if np.abs(mix).max() < 0.99 else None
        if scale:  # not rescaled against clipping: the SNR is exact
            n = mix - clean
            got = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(n.astype(np.float64) ** 2))
            assert got == pytest.approx(snr, abs=0.05)


def test_heard_digit_reads_numerals_and_words():
    from llmcodec.icl.gen_run import heard_digit
    assert heard_digit("Four.", "en") == 4 and heard_digit("I said 7", "en") == 7
    assert heard_digit("Cuatro", "es") == 4 and heard_digit("zéro", "fr") == 0
    assert heard_digit("четыре", "ru") == 4 and heard_digit("hello", "en") is None


def test_generate_cli_runs_both_tasks_end_to_end(tmp_path, llm):
    """The LLM really writes tokens for a few episodes of each task; the results file and the
    report have every column, and a rerun on the results file skips what is done."""
    from llmcodec.commands.icl import main
    res, md = tmp_path / "gen.json", tmp_path / "gen.md"
    argv = ["generate", "--episodes", "2", "--shots", "1", "--snr", "5", "--no-dnsmos", "--threads", "1",
            "--results", str(res), "--markdown", str(md)]
    assert main(argv + ["--levels", "all", "--tasks", "tts"]) == 0
    assert main(argv + ["--levels", "1", "--tasks", "denoise"]) == 0  # appended to the same results file
    doc = json.loads(res.read_text())
    names = [r["name"] for r in doc["results"]]
    assert names == ["tts 3 digits x 1, levels 1+2+3", "denoise 5 dB, 1-shot, level 1"]
    for r in doc["results"]:
        assert r["episodes"] == 2 and 1 <= r["mean_blocks"] <= 13
        for name, (m, lo, hi, n) in r["columns"].items():
            if not name.startswith("DNSMOS"):
                assert n >= 1 and np.isfinite(m), (r["name"], name)
    tts, den = doc["results"]
    assert 0 <= tts["columns"]["LLM output: digit heard"][0] <= 1
    assert 1.0 <= den["columns"]["PESQ-WB noisy input"][0] <= 4.64
    text = md.read_text()
    assert "Text-to-speech" in text and "Speech denoising" in text and "PARTIAL" not in text
    before = res.read_text()
    assert main(argv + ["--levels", "1", "--tasks", "denoise"]) == 0  # done already: nothing rerun
    assert json.loads(res.read_text())["results"] == json.loads(before)["results"]


@pytest.mark.parametrize("levels", [1, 3])
def test_the_llm_writes_only_valid_ids_and_whole_blocks(llm, levels):
    """The real LLM on a real episode's prompt: whatever it writes parses as whole blocks of
    valid codes, at most the longest example's blocks, and reads back to the same ids."""
    from llmcodec.icl.gen_run import GenCoder, GenRunner, Judges
    runner = GenRunner(GenCoder(), llm, Judges(use_dnsmos=False), 1.0)
    s = GenSetting("tts", 1, levels, ways=2)
    for ep in sample_gen_episodes(s, 2, 3, 1.0):
        prompt, grammar, max_blocks = runner.prompt(s, ep)
        ids, closed = llm.generate_audio(prompt.ids, grammar, max_blocks)
        codes, whole = grammar.parse(ids)
        assert whole and 1 <= len(codes[0]) <= max_blocks and (closed or len(codes[0]) == max_blocks)
        assert grammar.audio_ids(codes) == ids
        assert np.all(codes[0] < runner.coder.vocab.num_words)
        assert all(np.all((c >= 0) & (c < runner.coder.vocab.vocab_size)) for c in codes[1:])
        wav = runner.coder.decode_levels(codes)
        assert wav.shape == (len(codes[0]) * 1920,) and np.isfinite(wav).all()


def test_report_counts_the_episodes_each_mean_is_over():
    """Denoising outputs too short to score are left out of the output's mean, and the table says
    over how many episodes each mean is; 95% intervals surround the means."""
    import math

    from llmcodec.icl.gen_report import markdown, summarize
    from llmcodec.icl.gen_run import GenOutcome
    s = GenSetting("denoise", 2, levels=3, snr_db=5.0)
    outs = [GenOutcome(s, i, 100, 8, True, {"pesq": math.nan if i < 3 else 1.1 + 0.01 * i,
                                            "stoi": math.nan if i < 3 else 0.5 + 0.01 * i,
                                            "pesq_noisy": 1.3, "stoi_noisy": 0.7 + 0.001 * i,
                                            "pesq_ceiling": 1.2, "stoi_ceiling": 0.6})
            for i in range(10)]
    row = summarize(s, outs, 1.0)
    m, lo, hi, n = row["columns"]["STOI output"]
    assert n == 7 and lo < m < hi and m == pytest.approx(np.mean([0.5 + 0.01 * i for i in range(3, 10)]))
    assert row["columns"]["STOI noisy input"][3] == 10
    md = markdown([row], {"codec": "x"})
    assert "(7 of 10)" in md and "not scored" in md
    assert md.count("of 10)") == 2  # the two output columns; inputs and ceilings are whole
