"""``evaluate(model_dir, data_dir)``: a codec and Opus 6 kbps on the same files, side by side.

The data directory holds audio files (``.wav``, ``.flac``, ``.ogg``) with
optional ``NAME.txt`` transcripts beside them (``prepare-data`` writes
``heldout/{lang}/`` this way). Without a transcript, Whisper's transcript of the
original is the reference. Rows: the original (Whisper's own WER, DNSMOS), the
codec, Opus 6 kbps. PESQ-WB, STOI and DNSMOS are means over files; WER is the
total of word edits over the total of reference words.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio
from . import metrics
from .baselines import Transcriber, opus_roundtrip

AUDIO_EXT = (".wav", ".flac", ".ogg")


def _fmt(v: float | None, fmt: str) -> str:
    """A table cell: ``-`` for a missing (None or NaN) figure."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


@dataclass(frozen=True)
class SystemScores:
    system: str
    rate: str  # human-readable rate ("58.3 tokens/s (0.88 kbps)", "6 kbps")
    pesq_wb: float
    stoi: float
    wer: float
    dnsmos_ovrl: float
    dnsmos_sig: float
    dnsmos_bak: float
    codebook_usage: list[str] = field(default_factory=list)  # "used/size" per level
    # Independent judges (judges.py); NaN in reports made before them or with --no-judges.
    wer_base: float = math.nan  # faster-whisper base, every language with transcripts
    speaker_sim: float = math.nan  # Resemblyzer cosine to the original
    high_band_db: float = math.nan  # energy above 4 kHz relative to the original, dB


@dataclass(frozen=True)
class FileResult:
    """One held-out file: what Whisper heard in the original, the codec's and Opus's output."""
    name: str
    reference: str  # the transcript (or Whisper's transcript of the original when there is none)
    heard_original: str
    heard_codec: str
    heard_opus: str | None
    pesq_wb: float  # the codec's
    stoi: float
    speaker: str = ""  # the speaker group (speakers.json beside the files), "" if unknown
    lang: str = "en"
    seconds: float = math.nan
    base_words: int = 0  # words of the transcript Whisper base is scored against (0: none)
    base_edits: tuple[int, int, int] = (0, 0, 0)  # Whisper base's word edits: original, codec, Opus
    speaker_sim: float = math.nan  # the codec's
    high_band_db: float = math.nan
    opus_pesq_wb: float = math.nan
    opus_stoi: float = math.nan
    opus_speaker_sim: float = math.nan


@dataclass(frozen=True)
class EvalReport:
    model: str
    data: str
    files: int
    seconds: float
    tokens_per_second: float
    rows: list[SystemScores]
    wall_seconds: float
    training: dict = field(default_factory=dict)  # the model's training.json (steps, hours, ...)
    per_file: list[FileResult] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "EvalReport":
        """The inverse of ``to_json`` (reports written by ``llmcodec eval --json``)."""
        data = json.loads(text)
        try:
            rows = [SystemScores(**r) for r in data.pop("rows")]
            per_file = [FileResult(**{**r, "base_edits": tuple(r.get("base_edits", (0, 0, 0)))})
                        for r in data.pop("per_file", [])]
            return cls(rows=rows, per_file=per_file, **data)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an llmcodec eval report ({e})") from None

    @property
    def codec(self) -> SystemScores:
        """The codec's row (the one named ``llmcodec ...``)."""
        for r in self.rows:
            if r.system.startswith("llmcodec"):
                return r
        raise ValueError(f"report of {self.model} has no llmcodec row")

    def to_markdown(self) -> str:
        f = _fmt
        lines = [f"Held-out set `{self.data}`: {self.files} files, {self.seconds:.0f} s. Model `{self.model}`.",
                 "",
                 "| system | rate | PESQ-WB | STOI | WER tiny.en | WER base | speaker sim | >4 kHz dB "
                 "| DNSMOS OVRL | SIG | BAK | codebook usage |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.system} | {r.rate} | {f(r.pesq_wb, '.2f')} | {f(r.stoi, '.3f')} | "
                         f"{f(100 * r.wer, '.1f')}% | {f(100 * r.wer_base, '.1f')}% | {f(r.speaker_sim, '.3f')} | "
                         f"{f(r.high_band_db, '+.1f')} | {f(r.dnsmos_ovrl, '.2f')} | {f(r.dnsmos_sig, '.2f')} | "
                         f"{f(r.dnsmos_bak, '.2f')} | {', '.join(r.codebook_usage) or '-'} |")
        lines += ["", "WER tiny.en: English files only, Whisper tiny.en (its encoder is a training loss: "
                  "not independent). WER base: faster-whisper base on every file with a transcript, in "
                  "its language. Speaker sim: Resemblyzer cosine to the original. >4 kHz dB: energy "
                  "above 4 kHz relative to the original (wideband files)."]
        if any(r.speaker for r in self.per_file):
            from .speakers import speaker_table
            lines += ["", speaker_table(self.per_file)]
        return "\n".join(lines) + "\n"

    def transcripts_markdown(self, n: int = 8) -> str:
        """The first ``n`` files: the reference and what Whisper tiny.en heard in each system."""
        if not self.per_file:
            return ""
        opus = any(r.heard_opus is not None for r in self.per_file)

        def cell(text: str | None) -> str:
            return (text or "(nothing)").replace("|", "/")

        head = "| file | reference | Whisper on llmcodec | PESQ-WB / STOI |"
        lines = [head + (" Whisper on Opus 6 kbps |" if opus else ""), "|---|---|---|---|" + ("---|" if opus else "")]
        for r in self.per_file[:n]:
            lines.append(f"| {r.name} | {cell(r.reference)} | {cell(r.heard_codec)} | "
                         f"{_fmt(r.pesq_wb, '.2f')} / {_fmt(r.stoi, '.2f')} |"
                         + (f" {cell(r.heard_opus)} |" if opus else ""))
        return "\n".join(lines) + "\n"


def list_files(data_dir: str | Path, limit: int | None = None,
               per_speaker: int | None = None) -> list[tuple[Path, str | None]]:
    """Audio files of ``data_dir`` (sorted) with their transcripts (None if absent);
    ``per_speaker``: only the first N files of each speaker of ``speakers.json`` (files it does
    not name count as one speaker each), a quick check that still covers every speaker."""
    d = Path(data_dir)
    if not d.is_dir():
        raise ValueError(f"{d}: not a directory; --data takes a directory of audio files "
                         f"(with optional NAME.txt transcripts), e.g. data_cache/heldout/en")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_EXT)
    if not files:
        raise ValueError(f"{d}: no audio files ({', '.join(AUDIO_EXT)})")
    if per_speaker is not None:
        speakers, seen = read_speakers(d), {}
        kept = []
        for p in files:
            key = speakers.get(p.stem, {}).get("speaker") or p.stem
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= per_speaker:
                kept.append(p)
        files = kept
    if limit is not None:
        files = files[:limit]
    out = []
    for p in files:
        t = p.with_suffix(".txt")
        out.append((p, t.read_text().strip() if t.is_file() else None))
    return out


class _Acc:
    """One system's figures over the files."""

    def __init__(self):
        self.pesq, self.stoi, self.mos, self.edits, self.words = [], [], [], 0, 0
        self.base_edits, self.base_words, self.sim, self.hf = 0, 0, [], []

    def add(self, ref: np.ndarray, deg: np.ndarray | None, reference: str | None, hyp: str | None,
            dns: bool) -> tuple[float, float]:
        """Score one file (``hyp`` None: no tiny.en transcript for this file's language);
        returns its PESQ-WB and STOI (NaN for the original)."""
        pesq = stoi = math.nan
        if deg is not None:
            pesq, stoi = metrics.pesq_wb(ref, deg), metrics.stoi(ref, deg)
            self.pesq.append(pesq)
            self.stoi.append(stoi)
        if hyp is not None:
            e, n = metrics.word_errors(reference, hyp)
            self.edits, self.words = self.edits + e, self.words + n
        if dns:
            self.mos.append(metrics.dnsmos(ref if deg is None else deg))
        return pesq, stoi

    def add_judges(self, reference: str | None, heard: str | None, sim: float, hf: float) -> int:
        """Whisper base's word edits against ``reference`` (0 without one), the speaker
        similarity and the high-band level; returns the edits."""
        edits = 0
        if reference and heard is not None:
            edits, n = metrics.word_errors(reference, heard)
            self.base_edits, self.base_words = self.base_edits + edits, self.base_words + n
        self.sim.append(sim)
        self.hf.append(hf)
        return edits

    def scores(self, system: str, rate: str, usage: list[str] | None = None) -> SystemScores:
        def mean(xs):
            xs = [x for x in xs if not math.isnan(x)]
            return float(np.mean(xs)) if xs else math.nan
        mos = self.mos
        return SystemScores(system, rate, mean(self.pesq), mean(self.stoi),
                            self.edits / self.words if self.words else math.nan,
                            mean([m.ovrl for m in mos]), mean([m.sig for m in mos]), mean([m.bak for m in mos]),
                            usage or [], self.base_edits / self.base_words if self.base_words else math.nan,
                            mean(self.sim), mean(self.hf))


def read_speakers(data_dir: str | Path) -> dict[str, dict]:
    """``speakers.json`` beside the files (file stem -> speaker, lang, ...); {} if absent."""
    path = Path(data_dir) / "speakers.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def evaluate(model_dir: str | Path | None, data_dir: str | Path, *, limit: int | None = None,
             per_speaker: int | None = None, opus: bool = True, dns: bool = True, judges: bool = True, threads: int = 2,
             progress: bool = True) -> EvalReport:
    """Run the codec (offline = streaming path) and Opus 6 kbps on every file of ``data_dir``;
    ``judges``: also Whisper base, speaker similarity and the high band (judges.py)."""
    from tqdm import tqdm
    from ..checkpoint import load_model
    from .judges import SpeakerJudge, base_transcriber, high_band_db
    t0 = time.time()
    files = list_files(data_dir, limit, per_speaker)
    speakers = read_speakers(data_dir)
    loaded = load_model(model_dir)
    model, cfg = loaded.model, loaded.model.cfg
    langs = {p: speakers.get(p.stem, {}).get("lang", "en") for p, _ in files}
    asr = Transcriber(threads) if any(v.split("_")[0] == "en" for v in langs.values()) else None
    base = base_transcriber(threads) if judges else None
    spk = SpeakerJudge() if judges else None
    used = [set() for _ in range(cfg.num_levels)]
    orig, codec, op = _Acc(), _Acc(), _Acc()
    seconds, opus_bytes_kbps, per_file = 0.0, [], []
    for path, text in tqdm(files, desc="eval", unit="file", disable=not progress):
        lang = langs[path]
        english = asr is not None and lang.split("_")[0] == "en"
        ref, _ = load_audio(path, cfg.sample_rate)
        seconds += ref.size / cfg.sample_rate
        hear = (lambda a: asr.transcribe(a)) if english else (lambda a: None)
        hyp_orig = hear(ref)
        reference = text if text is not None else hyp_orig
        orig.add(ref, None, reference, hyp_orig, dns)
        with torch.no_grad():
            enc = model.encode(torch.from_numpy(ref)[None])
            rec = model.decode(enc.codes, enc.num_samples)[0].numpy()
        for s, c in zip(used, enc.codes):
            s.update(c.flatten().tolist())
        heard_codec, heard_opus, o = hear(rec), None, None
        pesq, stoi = codec.add(ref, rec, reference, heard_codec, dns)
        opus_scores = (math.nan, math.nan)
        if opus:
            o, kbps = opus_roundtrip(ref, cfg.sample_rate)
            opus_bytes_kbps.append((kbps, ref.size))
            heard_opus = hear(o)
            opus_scores = op.add(ref, o, reference, heard_opus, dns)
        judged = {}
        if judges:
            words = len(metrics.normalize_text(text)) if text else 0
            outs = [("original", orig, ref), ("codec", codec, rec)] + ([("opus", op, o)] if opus else [])
            edits, sims = [], {}
            for name, acc, out in outs:
                sims[name] = 1.0 if name == "original" else spk.similarity(ref, out)
                heard = base.transcribe(out, lang) if text else None
                edits.append(acc.add_judges(text, heard, sims[name] if name != "original" else math.nan,
                                            math.nan if name == "original" else high_band_db(ref, out)))
            judged = dict(base_words=words, base_edits=tuple(edits + [0] * (3 - len(edits))),
                          speaker_sim=sims["codec"], high_band_db=high_band_db(ref, rec),
                          opus_speaker_sim=sims.get("opus", math.nan))
        info = speakers.get(path.stem, {})
        per_file.append(FileResult(path.name, reference or "", hyp_orig or "", heard_codec or "",
                                   heard_opus, pesq, stoi, speaker=info.get("speaker", ""), lang=lang,
                                   seconds=round(ref.size / cfg.sample_rate, 3),
                                   opus_pesq_wb=opus_scores[0], opus_stoi=opus_scores[1], **judged))
    bits = sum(math.log2(k) * (cfg.sample_rate / (cfg.hop * s)) for k, s in zip(cfg.level_sizes, cfg.vq_strides))
    rows = [orig.scores("original (16 kHz PCM)", "256 kbps"),
            codec.scores(f"llmcodec {cfg.name}", f"{cfg.tokens_per_second:.1f} tokens/s ({bits / 1000:.2f} kbps)",
                         [f"{len(s)}/{k}" for s, k in zip(used, cfg.level_sizes)])]
    if opus:
        total = sum(n for _, n in opus_bytes_kbps)
        kbps = sum(k * n for k, n in opus_bytes_kbps) / total
        rows.append(op.scores("Opus 6 kbps", f"6 kbps ({kbps:.1f} kbps with Ogg headers)"))
    from ..checkpoint import read_training_json
    training = read_training_json(loaded.directory)
    return EvalReport(str(loaded.directory), str(data_dir), len(files), round(seconds, 1),
                      cfg.tokens_per_second, rows, round(time.time() - t0, 1),
                      {k: training[k] for k in ("steps", "hours") if k in training}, per_file)


# The project's bar for a bundled default on held-out real speech (issue 6), and the paper's figures.
MINIMUM = {"stoi": 0.72, "pesq_wb": 1.5, "wer": 0.35}
PAPER = {"stoi": 0.82, "pesq_wb": 2.55}


def meets_minimum(row: SystemScores) -> dict[str, bool]:
    """Per measure: does ``row`` reach ``MINIMUM`` (WER: below it)?"""
    return {"stoi": row.stoi >= MINIMUM["stoi"], "pesq_wb": row.pesq_wb >= MINIMUM["pesq_wb"],
            "wer": row.wer < MINIMUM["wer"]}


def status_line(report: EvalReport) -> str:
    """One paragraph: the codec against the minimum, in numbers."""
    c, ok = report.codec, meets_minimum(report.codec)
    got = (f"STOI {c.stoi:.3f} (minimum {MINIMUM['stoi']}), PESQ-WB {c.pesq_wb:.2f} "
           f"(minimum {MINIMUM['pesq_wb']}), WER {100 * c.wer:.1f}% (minimum: under {100 * MINIMUM['wer']:.0f}%)")
    if all(ok.values()):
        return f"**Status: meets the project's minimum** on held-out real speech: {got}."
    missing = ", ".join(k.replace("_wb", "-WB").upper() for k, v in ok.items() if not v)
    return (f"**Status: partially trained, below the project's minimum** ({missing}) on held-out real "
            f"speech: {got}. WER above 100% means Whisper inserts words into speech it cannot understand.")


def history_table(reports: list[EvalReport]) -> str:
    """Markdown table of the codec's held-out figures along a training run, one row per step."""
    f = _fmt
    by_step: dict[int, EvalReport] = {}
    for r in reports:
        if (r.data, r.files) != (reports[-1].data, reports[-1].files):
            raise ValueError(f"report of {r.model} is on {r.files} files of {r.data}, not "
                             f"{reports[-1].files} files of {reports[-1].data}: figures would not compare")
        by_step[int(r.training.get("steps", 0))] = r
    lines = ["| step | hours | PESQ-WB | STOI | WER | DNSMOS OVRL | codebook usage (L1, L2, L3) |",
             "|---|---|---|---|---|---|---|"]
    for step in sorted(by_step):
        r = by_step[step]
        c = r.codec
        usage = ", ".join(u.split("/")[0] for u in c.codebook_usage) or "-"
        lines.append(f"| {step} | {float(r.training.get('hours', 0)):.1f} | {f(c.pesq_wb, '.2f')} | "
                     f"{f(c.stoi, '.3f')} | {f(100 * c.wer, '.1f')}% | {f(c.dnsmos_ovrl, '.2f')} | {usage} |")
    return "\n".join(lines) + "\n"


def model_card(report: EvalReport, training: dict, history: list[EvalReport] = ()) -> str:
    """``MODEL_CARD.md`` for a model directory: status against the minimum, training facts
    (``training.json``), the eval table, and (with ``history``: earlier reports of the same
    run on the same data) the held-out figures along the run."""
    steps, hours = training.get("steps", "unknown"), training.get("hours", "unknown")
    along = []
    if history:
        along = ["Held-out figures along the run (same files, `llmcodec eval`):", "",
                 history_table([*history, report])]
    return "\n".join([
        "# llmcodec model card",
        "",
        "A causal, streaming LLM-Codec (UniAudio 1.5 recipe): 16 kHz audio <-> SmolLM2-135M token ids,",
        "3 levels (whole words, then the full vocabulary twice) at 8.3 / 16.7 / 33.3 tokens/s.",
        "",
        status_line(report) + f" The paper's model: STOI {PAPER['stoi']}, PESQ {PAPER['pesq_wb']}.",
        "",
        *along,
        "## Training",
        f"- Steps: {steps}; hours of training: {hours} (CPU unless stated)",
        f"- Recipe: `{training.get('config', '?')}` (configs/train_{training.get('config', 'small')}.json), "
        f"segments {training.get('segment_seconds', '?')} s, batch {training.get('batch_size', '?')}",
        *([f"- Learning rate annealed linearly towards zero over the last {training['anneal_steps']} steps "
           "(a shipping branch of the run; docs/TRAINING.md)"] if training.get("anneal_steps") else []),
        f"- Data: {training.get('data', 'unknown')}",
        "  (Debian asterisk-core-sounds en/es/fr prompts, Piper joe-us speech of fortunes and WordNet",
        "  sentences, asterisk-moh-opsound music, freedesktop/sound-icons event sounds; the fixed",
        "  held-out prompts are never trained on)",
        f"- Continue training: `llmcodec train --config configs/train_{training.get('config', 'small')}.json "
        "--resume` (docs/TRAINING.md)",
        "",
        "## Held-out evaluation (`llmcodec eval`)",
        "",
        report.to_markdown(),
        *(["## What Whisper tiny.en hears", "",
           "The first held-out files: their transcript and Whisper's transcript of each system's output.", "",
           report.transcripts_markdown()] if report.per_file else []),
    ])
