"""The generation tasks' tables: means with 95% intervals, side by side with the baselines,
and the results file (one JSON document per run, the episodes' scores kept)."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .gen_run import GenOutcome
from .gen_tasks import GenSetting
from .report import Z95, wilson

FORMAT = 1
# (column, score key, kind): "p" a proportion (Wilson interval), "m" a mean (normal interval).
COLUMNS = {
    "tts": (("LLM output: digit heard", "correct", "p"), ("ceiling: codec round trip", "correct_ceiling", "p"),
            ("DNSMOS output", "dnsmos", "m"), ("DNSMOS ceiling", "dnsmos_ceiling", "m")),
    "denoise": (("PESQ-WB output", "pesq", "m"), ("PESQ-WB noisy input", "pesq_noisy", "m"),
                ("PESQ-WB ceiling", "pesq_ceiling", "m"), ("STOI output", "stoi", "m"),
                ("STOI noisy input", "stoi_noisy", "m"), ("STOI ceiling", "stoi_ceiling", "m")),
}


def mean_interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) over the finite values, normal 95% interval."""
    v = np.asarray([x for x in values if math.isfinite(x)], np.float64)
    if not v.size:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else math.nan
    return m, m - half, m + half, int(v.size)


def summarize(setting: GenSetting, outs: Sequence[GenOutcome], seconds: float) -> dict:
    """One setting's row: every column's value and interval, episodes, blocks, seconds."""
    row = {**asdict(setting), "name": setting.name, "episodes": len(outs), "seconds": round(seconds, 1),
           "mean_prompt_tokens": round(float(np.mean([o.prompt_tokens for o in outs])), 1),
           "mean_blocks": round(float(np.mean([o.blocks for o in outs])), 2),
           "closed": sum(o.closed for o in outs), "columns": {},
           "scores": {k: [round(o.scores.get(k, math.nan), 4) for o in outs]
                      for _, k, _ in COLUMNS[setting.task]}}
    for name, key, kind in COLUMNS[setting.task]:
        vals = row["scores"][key]
        if kind == "p":
            ok = [v for v in vals if math.isfinite(v)]
            lo, hi = wilson(int(sum(ok)), len(ok)) if ok else (math.nan, math.nan)
            row["columns"][name] = [sum(ok) / len(ok) if ok else math.nan, lo, hi, len(ok)]
        else:
            row["columns"][name] = list(mean_interval(vals))
    return row


def _cell(v: list, kind: str, episodes: int | None = None) -> str:
    """``mean [low, high]``, and ``(n of N)`` when only n of the N episodes could be scored."""
    m, lo, hi, n = v
    if not math.isfinite(m):
        return "-"
    some = f" ({n} of {episodes})" if episodes is not None and n < episodes else ""
    if kind == "p":
        return f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" + some
    return (f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else f"{m:.3f}") + some


def markdown(rows: Sequence[dict], meta: dict[str, str], partial: bool = False) -> str:
    out = ["# Few-shot audio generation in context (frozen LLM)" + (" (PARTIAL)" if partial else ""), ""]
    out += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    for task, title in (("tts", "Text-to-speech of spoken digits (chance of the digit heard: 10%)"),
                        ("denoise", "Speech denoising (against the clean recording)")):
        rs = [r for r in rows if r["task"] == task]
        if not rs:
            continue
        cols = COLUMNS[task]
        note = ("Means with 95% intervals over the episodes. An output shorter than a quarter of the "
                "clean recording is not scored: `(n of N)` counts the episodes a mean is over.")
        out += [f"## {title}", "", note if task == "denoise" else "Means with 95% intervals over the episodes.", "",
                "| setting | episodes | " + " | ".join(c for c, _, _ in cols) + " | closed by the LLM | prompt tokens |",
                "|---" * (len(cols) + 4) + "|"]
        for r in rs:
            cells = [_cell(r["columns"][c], kind, r["episodes"]) for c, _, kind in cols]
            out.append(f"| {r['name']} | {r['episodes']} | " + " | ".join(cells) +
                       f" | {r['closed']}/{r['episodes']} | {r['mean_prompt_tokens']:.0f} |")
        out.append("")
    return "\n".join(out) + "\n"


def table(rows: Sequence[dict]) -> str:
    """A plain-text table for the terminal."""
    lines = []
    for r in rows:
        cells = ", ".join(f"{c} {_cell(v, next(k for n, _, k in COLUMNS[r['task']] if n == c))}"
                          for c, v in r["columns"].items())
        lines.append(f"{r['name']} ({r['episodes']} episodes, {r['seconds']:.0f} s): {cells}")
    return "\n".join(lines)


def save_results(path: str | Path, identity: dict, commands: list[str], rows: Sequence[dict]) -> None:
    doc = {"format": FORMAT, "kind": "icl-generate", "identity": identity, "commands": commands,
           "results": list(rows)}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def load_results(path: str | Path, identity: dict) -> tuple[list[str], list[dict]]:
    """(commands, rows) of an earlier run of the same identity; ([], []) when there is none."""
    p = Path(path)
    if not p.is_file():
        return [], []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable generation results file ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != "icl-generate" or doc.get("format") != FORMAT:
        raise ValueError(f"{p}: not a results file of `llmcodec icl generate` (format {FORMAT})")
    if doc.get("identity") != identity:
        raise ValueError(f"{p} was made with {doc.get('identity')}, this run is {identity}: "
                         "use another results file")
    return list(doc.get("commands", [])), list(doc.get("results", []))
