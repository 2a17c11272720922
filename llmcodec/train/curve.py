"""The training curve of a run: its losses (``log.csv``) and held-out figures along the way.

``plot_run(run_dir, out_png, reports)`` draws two panels: the running mean of every
logged loss against the step, and the codec's held-out STOI and PESQ-WB from
``llmcodec eval --json`` reports of the run's exports (their ``training.steps``),
with the project's minimum and Opus 6 kbps as reference lines.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval.report import MINIMUM, EvalReport

CURVES = ("stft", "subband", "semantic", "consistency", "asr", "adv", "disc", "fm", "commit")


@dataclass(frozen=True)
class LossLog:
    """``log.csv`` as columns: ``steps`` [N] and one array [N] per loss (NaN where not logged)."""

    steps: np.ndarray
    losses: dict[str, np.ndarray]

    def running_mean(self, name: str, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(steps [M], mean of the last ``window`` logged values [M]) over the steps that logged ``name``."""
        v = self.losses[name]
        ok = ~np.isnan(v)
        steps, v = self.steps[ok], v[ok]
        if v.size == 0:
            return steps, v
        w = max(1, min(window, v.size))
        c = np.cumsum(np.insert(v, 0, 0.0))
        return steps[w - 1:], (c[w:] - c[:-w]) / w


def read_log(path: str | Path) -> LossLog:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no training log (log.csv is written by `llmcodec train`)")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: the log has no steps yet")

    def col(k: str) -> np.ndarray:
        return np.array([float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows])
    return LossLog(col("step"), {k: col(k) for k in CURVES if k in rows[0]})


def plot_run(run_dir: str | Path, out_png: str | Path, reports: list[EvalReport] = (),
             window: int = 200) -> Path:
    """Write the three-panel training curve of ``run_dir`` to ``out_png``; returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(Path(run_dir) / "log.csv")
    fig, (ax_l, ax_e, ax_w) = plt.subplots(1, 3, figsize=(17, 4.5))
    for name in CURVES:
        if name in log.losses:
            x, y = log.running_mean(name, window)
            if y.size:
                ax_l.plot(x, y, label=name, lw=1.2)
    ax_l.set_yscale("log")
    ax_l.set_xlabel("step")
    ax_l.set_title(f"training losses (running mean of {window} steps)")
    ax_l.legend(fontsize=8, ncol=2)
    ax_l.grid(alpha=0.3)

    pts = sorted((int(r.training["steps"]), r) for r in reports if "steps" in r.training)
    if pts:
        steps = [s for s, _ in pts]
        stoi = [r.codec.stoi for _, r in pts]
        pesq = [r.codec.pesq_wb for _, r in pts]
        ax_e.plot(steps, stoi, "o-", color="C0", label="STOI")
        ax_e.axhline(MINIMUM["stoi"], color="C0", ls=":", label=f"STOI minimum {MINIMUM['stoi']}")
        ax_p = ax_e.twinx()
        ax_p.plot(steps, pesq, "s-", color="C3", label="PESQ-WB")
        ax_p.axhline(MINIMUM["pesq_wb"], color="C3", ls=":", label=f"PESQ-WB minimum {MINIMUM['pesq_wb']}")
        opus = [row for _, r in pts for row in r.rows if row.system.startswith("Opus")]
        if opus:
            ax_e.axhline(opus[-1].stoi, color="C0", ls="--", alpha=0.5, label=f"Opus 6 kbps STOI {opus[-1].stoi:.2f}")
            ax_p.axhline(opus[-1].pesq_wb, color="C3", ls="--", alpha=0.5,
                         label=f"Opus 6 kbps PESQ-WB {opus[-1].pesq_wb:.2f}")
        ax_p.set_ylabel("PESQ-WB")
        h1, l1 = ax_e.get_legend_handles_labels()
        h2, l2 = ax_p.get_legend_handles_labels()
        ax_e.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
        ax_e.set_title(f"held-out real speech ({pts[-1][1].files} files, `llmcodec eval`)")
        ax_w.plot(steps, [100 * r.codec.wer for _, r in pts], "o-", color="C2", label="WER (Whisper tiny.en)")
        ax_w.axhline(100 * MINIMUM["wer"], color="C2", ls=":", label=f"WER maximum {100 * MINIMUM['wer']:.0f}%")
        if opus:
            ax_w.axhline(100 * opus[-1].wer, color="C2", ls="--", alpha=0.5,
                         label=f"Opus 6 kbps WER {100 * opus[-1].wer:.1f}%")
        ax_w.set_ylim(0, min(150, max(100, 105 * max(r.codec.wer for _, r in pts))))
        ax_w.legend(fontsize=8, loc="upper right")
    else:
        ax_e.set_title("held-out figures: none given (llmcodec eval --json)")
    ax_e.set_xlabel("step")
    ax_e.set_ylabel("STOI")
    ax_e.grid(alpha=0.3)
    ax_w.set_xlabel("step")
    ax_w.set_ylabel("WER %")
    ax_w.set_title("intelligibility: word error rate of Whisper tiny.en")
    ax_w.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
