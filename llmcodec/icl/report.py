"""Accuracy with Wilson 95% intervals, as a text table and as Markdown."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .tasks import Setting

Z95 = 1.959963984540054

# The reference, for orientation only (different LLM, codec and data): DESIGN.md section 1.
PAPER_NOTE = ("UniAudio 1.5 (LLaMA-2 7B with the trained LLM-Codec): ESC50 2-way 1-shot sound event "
              "classification 60% accuracy, against 45% reported for random guessing.")


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (95% for the default z)."""
    if n <= 0:
        raise ValueError(f"need at least one trial, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must be in [0, {n}], got {k}")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class SettingResult:
    """Counts over the episodes of one setting.

    ``greedy``: correct (constrained, or free without induction) greedy decodings;
    ``scored``: correct log-likelihood rankings; ``valid``: greedy outputs that
    are a candidate label (all of them when decoding is constrained).
    """

    setting: Setting
    episodes: int
    greedy: int
    scored: int
    valid: int
    mean_prompt_tokens: float
    seconds: float

    @property
    def chance(self) -> float:
        return 1.0 / self.setting.ways

    @property
    def greedy_acc(self) -> float:
        return self.greedy / self.episodes

    @property
    def scored_acc(self) -> float:
        return self.scored / self.episodes

    def interval(self, which: str = "greedy") -> tuple[float, float]:
        return wilson(self.greedy if which == "greedy" else self.scored, self.episodes)


def sort_results(results: Sequence[SettingResult]) -> list[SettingResult]:
    """The grid's order: task, N, then K = 1, 3, 5, then the variants; level 1 before all levels."""
    from .tasks import TASK_NAMES
    def key(r: SettingResult):
        s = r.setting
        return (TASK_NAMES.index(s.task), s.ways, (not s.induction) or s.repeats > 0, s.induction, s.repeats,
                s.shots, s.levels)
    return sorted(results, key=key)


def cell(k: int, n: int, chance: float) -> str:
    """``"55.0 [48.1, 61.7]"`` in percent; ``+``/``-`` when the interval excludes chance."""
    lo, hi = wilson(k, n)
    mark = "+" if lo > chance else "-" if hi < chance else " "
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{mark}"


def _rows(results: Sequence[SettingResult]) -> tuple[list[str], list[list[str]]]:
    modes = sorted({r.setting.levels for r in results})
    keyed: dict[tuple, dict[int, SettingResult]] = {}
    for r in results:
        s = r.setting
        keyed.setdefault((s.task, s.ways, s.shots, s.variant), {})[s.levels] = r
    head = ["task", "N", "K", "variant", "chance"]
    for m in modes:
        name = "L1" if m == 1 else "L1+2+3"
        head += [f"{name} greedy % [95% CI]", f"{name} log-lik % [95% CI]"]
    head += ["episodes", "prompt tokens"]
    rows = []
    for (task, ways, shots, variant), by_mode in keyed.items():
        row = [task, str(ways), str(shots), variant, f"{100 / ways:.1f}"]
        for m in modes:
            r = by_mode.get(m)
            if r is None:
                row += ["not run", "not run"]
                continue
            row += [cell(r.greedy, r.episodes, r.chance), cell(r.scored, r.episodes, r.chance)]
        any_r = next(iter(by_mode.values()))
        row += [str(any_r.episodes), "/".join(f"{by_mode[m].mean_prompt_tokens:.0f}" for m in modes if m in by_mode)]
        rows.append(row)
    return head, rows


def pooled(results: Sequence[SettingResult], levels: int) -> tuple[int, int, int, float] | None:
    """(greedy correct, log-lik correct, episodes, expected correct by chance) over the
    settings of one level mode with task induction (constrained greedy decoding)."""
    rs = [r for r in results if r.setting.levels == levels and r.setting.induction]
    if not rs:
        return None
    return (sum(r.greedy for r in rs), sum(r.scored for r in rs), sum(r.episodes for r in rs),
            sum(r.episodes * r.chance for r in rs))


def text_table(results: Sequence[SettingResult]) -> str:
    head, rows = _rows(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    for lv in (1, 3):
        p = pooled(results, lv)
        if p:
            g, s, n, exp = p
            name = "L1" if lv == 1 else "L1+2+3"
            out.append(f"pooled {name} (with induction): greedy {100 * g / n:.1f}%, "
                       f"log-lik {100 * s / n:.1f}% over {n} episodes; chance {100 * exp / n:.1f}%")
    return "\n".join(out)


def markdown_table(results: Sequence[SettingResult]) -> str:
    head, rows = _rows(results)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.strip() for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown_report(results: Sequence[SettingResult], meta: dict[str, str], command: str,
                    tasks: dict[str, str] | None = None) -> str:
    """The whole report: how it was made, the table, pooled figures, the paper's number."""
    lines = ["# Few-shot audio task learning: in-context results", "",
             "Reproduce with:", "", "```", command, "```", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", markdown_table(results), ""]
    for lv in (1, 3):
        p = pooled(results, lv)
        if p:
            g, s, n, exp = p
            lg, hg = wilson(g, n)
            ls, hs = wilson(s, n)
            name = "level 1" if lv == 1 else "levels 1+2+3"
            lines.append(f"- pooled over the settings with induction, {name}: greedy {100 * g / n:.1f}% "
                         f"[{100 * lg:.1f}, {100 * hg:.1f}], log-likelihood {100 * s / n:.1f}% "
                         f"[{100 * ls:.1f}, {100 * hs:.1f}] over {n} episodes; chance {100 * exp / n:.1f}%")
    lines += ["",
              "Accuracy in percent with the Wilson 95% interval; chance is 1/N (random guessing). A `+` marks "
              "an interval entirely above chance, `-` entirely below. *greedy*: greedy decoding constrained "
              "to the candidate labels' tokens (with the instruction naming them, as the reference), or "
              "free greedy generation over the whole vocabulary in the *no induction* variant, scored by "
              "the reference's prefix match; *log-lik*: the candidate with the highest summed log-probability. "
              "Settings that differ only in levels or induction use the same episodes. "
              "Prompt tokens: mean prompt length (L1 / L1+2+3).", "",
              f"For orientation only: {PAPER_NOTE}"]
    if tasks:
        lines += ["", "Tasks:", ""] + [f"- {k}: {v}" for k, v in tasks.items()]
    return "\n".join(lines) + "\n"
