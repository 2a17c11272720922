"""Timing statistics that stay honest on a noisy shared machine.

* ``summarize``: percentiles (numpy's linear interpolation) of a list of
  durations, as a frozen ``Summary``; the median is the headline number.
* ``interleave``: run several measurements round-robin, in a fresh random
  order each round, so that a burst of load from another process hits every
  contender alike instead of whichever happened to run then.
* ``paired_ratio``: the median of per-round ratios of two interleaved series,
  which cancels load that drifts between rounds.
* ``rtf``/``rtfx``: compute seconds per audio second, and its inverse.
* ``CpuMeter``: process CPU seconds over wall seconds (cores used) and the
  machine's load average around a measurement.

Durations are seconds throughout; the report turns them into milliseconds.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Summary:
    """Distribution of ``n`` durations in seconds."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    def ms(self) -> dict[str, float]:
        """The percentiles in milliseconds (for tables)."""
        return {k: v * 1e3 for k, v in asdict(self).items() if k != "n"}

    def scaled(self, factor: float) -> "Summary":
        """Every duration multiplied by ``factor`` (e.g. per stream from per batch)."""
        return Summary(self.n, *(getattr(self, k) * factor for k in ("mean", "p50", "p90", "p99", "min", "max")))


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics."""
    a = _array(samples)
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(a, q))


def summarize(samples: Sequence[float]) -> Summary:
    """Percentiles of durations [n] -> ``Summary``; raises ValueError on no samples or NaN."""
    a = _array(samples)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Summary(int(a.size), float(a.mean()), float(p50), float(p90), float(p99),
                   float(a.min()), float(a.max()))


def _array(samples: Sequence[float]) -> np.ndarray:
    a = np.asarray(samples, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("no samples to summarize")
    if not np.all(np.isfinite(a)):
        raise ValueError("samples contain NaN or infinity")
    return a


def rtf(compute_seconds: float, audio_seconds: float) -> float:
    """Real-time factor: compute seconds per second of audio (< 1 keeps up with real time)."""
    if audio_seconds <= 0:
        raise ValueError(f"audio_seconds must be > 0, got {audio_seconds}")
    return compute_seconds / audio_seconds


def rtfx(compute_seconds: float, audio_seconds: float) -> float:
    """Seconds of audio per compute second (1 / rtf; inf when compute is 0)."""
    r = rtf(compute_seconds, audio_seconds)
    return float("inf") if r == 0 else 1.0 / r


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]`` (two interleaved series)."""
    a, b = _array(numerator), _array(denominator)
    if a.shape != b.shape:
        raise ValueError(f"paired series need equal lengths, got {a.size} and {b.size}")
    if np.any(b <= 0):
        raise ValueError("denominator durations must be > 0")
    return float(np.median(a / b))


def interleave(tasks: Mapping[str, Callable[[], T]], rounds: int, warmup: int = 0,
               seed: int = 0, max_seconds: float | None = None, min_rounds: int = 1) -> dict[str, list[T]]:
    """Run every task once per round, in a new seeded random order each round.

    Each task measures itself and returns its measurement (see ``timed``). The
    first ``warmup`` rounds run the same way and are discarded. Returns, per
    task, its measurements in round order (so series pair up by index): ``rounds``
    of them, or fewer when ``max_seconds`` of measuring have passed after at
    least ``min_rounds`` rounds (a bound on the run time of a loaded machine).
    """
    if rounds < 1 or warmup < 0 or min_rounds < 1:
        raise ValueError(f"rounds and min_rounds must be >= 1 and warmup >= 0, got {rounds}, {min_rounds}, {warmup}")
    rng = random.Random(seed)
    names = list(tasks)
    out: dict[str, list[T]] = {n: [] for n in names}
    t0 = None
    for r in range(warmup + rounds):
        if r == warmup:
            t0 = time.perf_counter()
        order = names[:]
        rng.shuffle(order)
        for n in order:
            value = tasks[n]()
            if r >= warmup:
                out[n].append(value)
        done = r + 1 - warmup
        if (max_seconds is not None and t0 is not None and done >= min_rounds
                and time.perf_counter() - t0 > max_seconds):
            break
    return out


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` wrapped to return its wall-clock duration in seconds."""
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


def cdf(samples: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted samples [n] and the fraction at or below each [n]."""
    a = np.sort(_array(samples))
    return a, np.arange(1, a.size + 1) / a.size


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS has none)."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class CpuUse:
    wall_seconds: float
    cpu_seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def cores(self) -> float:
        """Average cores this process kept busy."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class CpuMeter:
    """``with CpuMeter() as m: ...`` then ``m.result`` (this process, all its threads)."""

    def __enter__(self) -> "CpuMeter":
        self._load = load_average()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.result = CpuUse(time.perf_counter() - self._wall, time.process_time() - self._cpu,
                             self._load, load_average())
