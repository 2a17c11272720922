"""Two eval reports of the same files, compared pair by pair: is model B better than model A?

``compare(a, b)`` matches the reports' files by name and, per metric, gives the
mean of B minus A with a 95% interval from a bootstrap that resamples whole
speakers (files of one speaker are not independent draws; without speaker
groups it resamples files), the share of files where B is higher, and the
difference per speaker. A difference is *clear* when its interval excludes 0.

Both reports must have per-file results (``llmcodec eval --json`` writes them).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .report import EvalReport, FileResult

METRICS = ("pesq_wb", "stoi", "speaker_sim", "high_band_db")
RESAMPLES = 2000


@dataclass(frozen=True)
class MetricDiff:
    """B minus A for one metric over the files both reports scored."""

    metric: str
    files: int
    mean_a: float
    mean_b: float
    diff: float
    low: float  # 95% bootstrap interval of ``diff``
    high: float
    b_higher: float  # share of files where B scores higher
    per_speaker: dict[str, float] = field(default_factory=dict)  # speaker -> mean of B - A

    @property
    def clear(self) -> str:
        """``better`` / ``worse`` when the interval excludes 0, else ``unclear``."""
        return "better" if self.low > 0 else "worse" if self.high < 0 else "unclear"


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    files: int  # files in both reports
    metrics: list[MetricDiff]

    def to_markdown(self) -> str:
        lines = [f"B `{self.b}` against A `{self.a}`: {self.files} files in both reports. "
                 "Interval: 95% bootstrap over speakers.", "",
                 "| metric | files | A | B | B - A [95%] | B higher | verdict |", "|---|---|---|---|---|---|---|"]
        for m in self.metrics:
            lines.append(f"| {m.metric} | {m.files} | {m.mean_a:.3f} | {m.mean_b:.3f} | {m.diff:+.3f} "
                         f"[{m.low:+.3f}, {m.high:+.3f}] | {100 * m.b_higher:.0f}% | {m.clear} |")
        speakers = sorted({s for m in self.metrics for s in m.per_speaker})
        if speakers:
            shown = [m for m in self.metrics if m.per_speaker]
            lines += ["", "| speaker | " + " | ".join(f"{m.metric} B - A" for m in shown) + " |",
                      "|---|" + "---|" * len(shown)]
            for s in speakers:
                cells = [format(m.per_speaker[s], "+.3f") if s in m.per_speaker else "-" for m in shown]
                lines.append(f"| {s} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _value(r: FileResult, metric: str) -> float:
    v = getattr(r, metric)
    return math.nan if v is None else float(v)


def _diff(metric: str, pairs: list[tuple[FileResult, FileResult]], rng: np.random.Generator) -> MetricDiff | None:
    rows = [(ra.speaker or ra.name, _value(ra, metric), _value(rb, metric)) for ra, rb in pairs]
    rows = [r for r in rows if not (math.isnan(r[1]) or math.isnan(r[2]))]
    if not rows:
        return None
    groups: dict[str, list[float]] = {}
    for g, va, vb in rows:
        groups.setdefault(g, []).append(vb - va)
    keys = sorted(groups)
    sums = np.array([sum(groups[k]) for k in keys])
    counts = np.array([len(groups[k]) for k in keys])
    pick = rng.integers(0, len(keys), size=(RESAMPLES, len(keys)))
    boots = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    d = np.array([vb - va for _, va, vb in rows])
    speakers = {k: float(np.mean(groups[k])) for k in keys} if any(ra.speaker for ra, _ in pairs) else {}
    return MetricDiff(metric, len(rows), float(np.mean([r[1] for r in rows])), float(np.mean([r[2] for r in rows])),
                      float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)),
                      float(np.mean(d > 0)), speakers)


def compare(a: EvalReport, b: EvalReport, seed: int = 0) -> Comparison:
    """B against A on the files both scored (matched by name)."""
    if not a.per_file or not b.per_file:
        raise ValueError("both reports need per-file results (written by `llmcodec eval --json`)")
    by_name = {r.name: r for r in a.per_file}
    pairs = [(by_name[r.name], r) for r in b.per_file if r.name in by_name]
    if not pairs:
        raise ValueError(f"the reports share no file: {a.data} ({len(a.per_file)} files) and "
                         f"{b.data} ({len(b.per_file)} files)")
    rng = np.random.default_rng(seed)
    diffs = [m for m in (_diff(k, pairs, rng) for k in METRICS) if m is not None]
    return Comparison(a.model, b.model, len(pairs), diffs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m llmcodec.eval.compare", description=__doc__.split("\n")[0])
    p.add_argument("a", help="the reference report (JSON of `llmcodec eval --json`)")
    p.add_argument("b", help="the candidate's report on the same files")
    p.add_argument("--json", help="also write the comparison as JSON here")
    args = p.parse_args(argv)
    try:
        reports = [EvalReport.from_json(Path(f).read_text()) for f in (args.a, args.b)]
        result = compare(*reports)
    except (OSError, ValueError) as e:
        raise SystemExit(f"compare: {e}") from None
    print(result.to_markdown(), end="")
    if args.json:
        import json
        Path(args.json).write_text(json.dumps({**asdict(result), "verdicts": {m.metric: m.clear for m in result.metrics}},
                                              indent=1))


if __name__ == "__main__":
    main()
