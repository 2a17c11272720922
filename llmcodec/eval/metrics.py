"""Quality metrics at 16 kHz: PESQ-WB (``pesq``), STOI (``pystoi``), DNSMOS
(``speechmos``), and word error rate with a small English text normaliser.

Each metric takes float32 ``[T]`` arrays; PESQ and STOI compare a degraded
signal with its reference (trimmed to the shorter of the two).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000


def _pair(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(ref.size, deg.size)
    return np.asarray(ref[:n], np.float64), np.asarray(deg[:n], np.float64)


def pesq_wb(ref: np.ndarray, deg: np.ndarray) -> float:
    """Wide-band PESQ (P.862.2), MOS-LQO 1.0 .. 4.64; NaN when PESQ finds no speech."""
    from pesq import pesq
    from pesq.cypesq import PesqError
    r, d = _pair(ref, deg)
    try:
        return float(pesq(SAMPLE_RATE, r, d, "wb"))
    except PesqError:
        return math.nan


def stoi(ref: np.ndarray, deg: np.ndarray) -> float:
    from pystoi import stoi as _stoi
    r, d = _pair(ref, deg)
    return float(_stoi(r, d, SAMPLE_RATE, extended=False))


@dataclass(frozen=True)
class Dnsmos:
    ovrl: float
    sig: float
    bak: float


def dnsmos(audio: np.ndarray) -> Dnsmos:
    """DNSMOS P.835 (overall, signal, background) of one clip (short clips are repeated to 9 s)."""
    from speechmos import dnsmos as _dnsmos
    a = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    r = _dnsmos.run(a, SAMPLE_RATE)
    return Dnsmos(float(r["ovrl_mos"]), float(r["sig_mos"]), float(r["bak_mos"]))


# ---- word error rate ----------------------------------------------------------
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 10**9 in English words ("one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)


def normalize_text(text: str) -> list[str]:
    """Lower case, digits spelled out, punctuation dropped (apostrophes kept) -> words."""
    t = text.lower().replace("&", " and ").replace("%", " percent ")
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    t = re.sub(r"\d{1,9}", lambda m: " " + number_words(int(m.group())) + " ", t)
    t = re.sub(r"[^\w'\s]|_", " ", t)
    t = t.replace("'", "")
    return t.split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between word lists (substitutions, insertions, deletions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words) after normalisation; WER = sum(edits) / sum(words)."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    return edit_distance(ref, hyp), len(ref)
