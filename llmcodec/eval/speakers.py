"""Per-speaker rows of an eval report (files grouped by their ``speakers.json`` speaker)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeakerRow:
    """The codec (and Opus 6 kbps) on one speaker's files."""

    speaker: str
    lang: str
    files: int
    seconds: float
    pesq_wb: float
    stoi: float
    opus_pesq_wb: float
    opus_stoi: float
    speaker_sim: float
    opus_speaker_sim: float
    high_band_db: float
    wer_base: tuple[float, float, float]  # original, codec, Opus (NaN without transcripts)


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def speaker_rows(per_file: list) -> list[SpeakerRow]:
    """One row per speaker of ``per_file`` (``FileResult``s with a ``speaker``), sorted."""
    groups: dict[str, list] = {}
    for r in per_file:
        if r.speaker:
            groups.setdefault(r.speaker, []).append(r)
    rows = []
    for speaker, rs in sorted(groups.items()):
        words = sum(r.base_words for r in rs)
        wer = tuple(sum(r.base_edits[i] for r in rs) / words if words else math.nan for i in range(3))
        rows.append(SpeakerRow(speaker, rs[0].lang, len(rs), sum(r.seconds for r in rs),
                               _mean(r.pesq_wb for r in rs), _mean(r.stoi for r in rs),
                               _mean(r.opus_pesq_wb for r in rs), _mean(r.opus_stoi for r in rs),
                               _mean(r.speaker_sim for r in rs), _mean(r.opus_speaker_sim for r in rs),
                               _mean(r.high_band_db for r in rs), wer))
    return rows


def speaker_table(per_file: list) -> str:
    """Markdown: per speaker, the codec's figures with Opus 6 kbps's after the slash."""
    def f(v: float, fmt: str) -> str:
        return "-" if math.isnan(v) else format(v, fmt)
    lines = ["| speaker | lang | files | s | PESQ-WB codec / Opus | STOI codec / Opus | "
             "speaker sim codec / Opus | >4 kHz dB | WER base original / codec / Opus |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in speaker_rows(per_file):
        wer = " / ".join(f(100 * w, ".0f") + ("%" if not math.isnan(w) else "") for w in r.wer_base)
        lines.append(f"| {r.speaker} | {r.lang} | {r.files} | {r.seconds:.0f} | {f(r.pesq_wb, '.2f')} / "
                     f"{f(r.opus_pesq_wb, '.2f')} | {f(r.stoi, '.3f')} / {f(r.opus_stoi, '.3f')} | "
                     f"{f(r.speaker_sim, '.3f')} / {f(r.opus_speaker_sim, '.3f')} | "
                     f"{f(r.high_band_db, '+.1f')} | {wer} |")
    return "\n".join(lines) + "\n"


__all__ = ["SpeakerRow", "speaker_rows", "speaker_table"]
