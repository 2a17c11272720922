"""Episode sources from real recordings, and seeded N-way K-shot sampling.

Three tasks, all from Debian packages (offline):

* ``digits``: spoken digits 0-9 (``digits/0.wav`` .. ``9.wav``) in the three
  asterisk voices (en_US Allison, es_MX Allison, fr_CA June). Each digit has
  three recordings, so every recording also appears in three deterministic
  views (speed 1.0 / 0.92 / 1.08, gain, onset delay). The query is always an
  unperturbed recording, and no view of the query's recording is ever in the
  support set.
* ``language``: English / Spanish / French from the asterisk prompts
  (en and es are the same speaker, Allison); 100 prompts of >= 1 s per voice.
* ``sound``: speech (asterisk prompts) / music (``asterisk-moh-opsound-wav``,
  segments at seeded offsets) / event (non-speech ``sound-theme-freedesktop``
  sounds and the non-instrument ``sound-icons``).

Clip pools are fixed (seeded with :data:`POOL_SEED`), so audio codes can be
cached per clip; episodes are sampled from them with the run's seed.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import load_audio, resample
from ..speech import SOUNDS, VOICES

POOL_SEED = 1234
DIGIT_LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LANG_LABELS = {"en": "English", "es": "Spanish", "fr": "French"}
MUSIC_DIR = Path("/usr/share/asterisk/moh")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
SOUND_ICONS_DIR = Path("/usr/share/sounds/sound-icons")
# sound-icons without the single instrument notes (cembalo, guitar, piano, ...): those are music-like.
SOUND_ICONS_EVENTS = ("canary-long", "cockchafer-gentleman-1", "glass-water-1", "gummy-cat-2", "pipe",
                      "pisk-down", "pisk-down-cink", "pisk-up", "pisk-up-cink", "prompt")
# freedesktop sounds that are speech ("front left", ...) or a test tone are not events.
FREEDESKTOP_EXCLUDE = ("audio-channel-", "audio-test-signal")
# (speed, gain, onset delay in s) views of each digit recording; view 0 is the recording itself.
DIGIT_VIEWS = ((1.0, 1.0, 0.0), (0.92, 0.6, 0.08), (1.08, 0.8, 0.15))
PROMPTS_PER_LANGUAGE = 100
SPEECH_PER_LANGUAGE = 20
MUSIC_SEGMENTS_PER_FILE = 12
TASK_NAMES = ("digits", "language", "sound")


@dataclass(frozen=True)
class Clip:
    """One fixed-duration view of a recording.

    ``start`` is the offset in seconds (None: the first onset), ``delay`` seconds of
    silence are put before it; ``group`` names the recording, so a query's
    recording can be kept out of its support set.
    """

    cls: str
    path: str
    group: str
    start: float | None = None
    speed: float = 1.0
    gain: float = 1.0
    delay: float = 0.0

    @property
    def audio_id(self) -> str:
        """Identity of the audio (not of the class): the key of the code cache."""
        return f"{self.path}|{self.start}|{self.speed}|{self.gain}|{self.delay}"

    @property
    def is_view(self) -> bool:
        return (self.speed, self.gain, self.delay) != (1.0, 1.0, 0.0)


@dataclass(frozen=True)
class Task:
    """Classes, their label words, and each class's clip pool."""

    name: str
    classes: tuple[str, ...]
    labels: dict[str, str] = field(hash=False)
    pools: dict[str, tuple[Clip, ...]] = field(hash=False)
    description: str = ""

    def clips(self) -> list[Clip]:
        return [c for cls in self.classes for c in self.pools[cls]]


@dataclass(frozen=True)
class Setting:
    """One cell of the grid: task, N ways, K shots, LLM input levels, variant."""

    task: str
    ways: int
    shots: int
    levels: int = 1  # 1: level-1 words only; 3: levels 1, 2 and 3
    induction: bool = True  # instruction naming the labels + constrained decoding
    repeats: int = 0  # the support set is shown 1 + repeats times

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; accepted: {', '.join(TASK_NAMES)}")
        if self.ways < 2:
            raise ValueError(f"ways must be >= 2, got {self.ways}")
        if self.shots < 1:
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        if self.levels not in (1, 3):
            raise ValueError(f"levels must be 1 (level-1 words) or 3 (all levels), got {self.levels}")
        if self.repeats < 0:
            raise ValueError(f"repeats must be >= 0, got {self.repeats}")

    @property
    def variant(self) -> str:
        parts = [] if self.induction else ["no induction"]
        if self.repeats:
            parts.append(f"repeats {self.repeats}")
        return ", ".join(parts) or "-"

    @property
    def mode(self) -> str:
        return "level 1" if self.levels == 1 else "levels 1+2+3"

    @property
    def episode_key(self) -> str:
        """Settings that differ only in levels or induction share their episodes (paired)."""
        return f"{self.task}/{self.ways}/{self.shots}/{self.repeats}"

    @property
    def name(self) -> str:
        v = "" if self.variant == "-" else f" ({self.variant})"
        return f"{self.task} {self.ways}-way {self.shots}-shot{v}, {self.mode}"


@dataclass(frozen=True)
class Episode:
    """Support examples in prompt order (with repeats), then the query."""

    labels: tuple[str, ...]  # candidate labels, sorted (the instruction's order)
    support: tuple[tuple[Clip, str], ...]
    query: Clip
    target: str


# ------------------------------------------------------------------ audio
def load_clip(clip: Clip, sample_rate: int, duration: float) -> np.ndarray:
    """The clip as float32 [round(duration * sample_rate)]: truncated or zero-padded."""
    wav, _ = load_audio(clip.path, sample_rate)
    if clip.speed != 1.0:  # play faster/slower (tempo and pitch), like sox `speed`
        wav = resample(wav, sample_rate, int(round(sample_rate / clip.speed)))
    start = onset(wav, sample_rate) if clip.start is None else int(round(clip.start * sample_rate))
    n = int(round(duration * sample_rate))
    d = int(round(clip.delay * sample_rate))
    out = np.zeros(n, np.float32)
    seg = wav[start:start + max(0, n - d)]
    out[d:d + seg.size] = seg * clip.gain
    return np.clip(out, -1.0, 1.0)


def onset(wav: np.ndarray, sample_rate: int, rel_db: float = -30.0, pre: float = 0.02) -> int:
    """First sample of the first 10 ms frame within ``rel_db`` of the loudest, minus ``pre`` s."""
    hop = max(1, sample_rate // 100)
    frames = wav[: wav.size // hop * hop].reshape(-1, hop)
    if not frames.size:
        return 0
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    thr = max(rms.max() * 10 ** (rel_db / 20), 1e-4)
    above = np.flatnonzero(rms >= thr)
    return 0 if not above.size else max(0, int(above[0]) * hop - int(pre * sample_rate))


# ------------------------------------------------------------------ pools
def _require(paths: list[Path], what: str, package: str) -> list[Path]:
    if not paths:
        raise FileNotFoundError(f"no {what} found: install Debian's {package}")
    return paths


def _voice_dir(lang: str) -> Path:
    root = SOUNDS / VOICES[lang]
    if not root.is_dir():
        raise FileNotFoundError(f"no recorded speech under {root}: install Debian's asterisk-core-sounds-{lang}-wav")
    return root


@lru_cache(maxsize=None)
def _long_prompts(lang: str, min_seconds: float = 1.0) -> tuple[str, ...]:
    """Prompt WAVs of ``lang`` lasting at least ``min_seconds``, sorted, digits excluded."""
    root = _voice_dir(lang)
    files = sorted(p for p in root.rglob("*.wav") if p.parent.name != "digits")
    out = tuple(str(p) for p in files if sf.info(str(p)).duration >= min_seconds)
    return tuple(_require(list(out), f"{lang} prompts", f"asterisk-core-sounds-{lang}-wav"))


def _pick(items: tuple[str, ...], n: int, salt: str) -> list[str]:
    rng = np.random.default_rng([POOL_SEED, zlib.crc32(salt.encode())])
    idx = np.sort(rng.choice(len(items), size=min(n, len(items)), replace=False))
    return [items[i] for i in idx]


def digits_task() -> Task:
    pools: dict[str, list[Clip]] = {}
    for d, word in enumerate(DIGIT_LABELS):
        clips = []
        for lang in VOICES:
            path = _voice_dir(lang) / "digits" / f"{d}.wav"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: install Debian's asterisk-core-sounds-{lang}-wav")
            for speed, gain, delay in DIGIT_VIEWS:
                clips.append(Clip(str(d), str(path), f"{lang}/{d}", None, speed, gain, delay))
        pools[str(d)] = clips
    return Task("digits", tuple(pools), {str(d): w for d, w in enumerate(DIGIT_LABELS)},
                {k: tuple(v) for k, v in pools.items()},
                "spoken digit 0-9, en/es/fr voices (3 recordings per digit, each in 3 views)")


def language_task() -> Task:
    pools = {lang: tuple(Clip(lang, p, p) for p in _pick(_long_prompts(lang), PROMPTS_PER_LANGUAGE, lang))
             for lang in VOICES}
    return Task("language", tuple(pools), dict(LANG_LABELS), pools,
                f"spoken language en/es/fr, {PROMPTS_PER_LANGUAGE} asterisk prompts per voice")


def music_clips(duration: float = 1.0) -> list[Clip]:
    files = _require(sorted(MUSIC_DIR.glob("*.wav")), "music", "asterisk-moh-opsound-wav")
    out = []
    for f in files:
        dur = sf.info(str(f)).duration
        rng = np.random.default_rng([POOL_SEED, zlib.crc32(f.name.encode())])
        # offsets on a 0.1 s grid, at least 5 s in, distinct
        grid = np.arange(5.0, max(5.1, dur - duration - 1.0), 0.1)
        for s in np.sort(rng.choice(grid, size=min(MUSIC_SEGMENTS_PER_FILE, grid.size), replace=False)):
            out.append(Clip("music", str(f), f.name, round(float(s), 1)))
    return out


def event_clips() -> list[Clip]:
    files = [p for p in sorted(FREEDESKTOP_DIR.glob("*.oga")) if not p.name.startswith(FREEDESKTOP_EXCLUDE)]
    files += [SOUND_ICONS_DIR / f"{n}.wav" for n in SOUND_ICONS_EVENTS if (SOUND_ICONS_DIR / f"{n}.wav").is_file()]
    _require(files, "event sounds", "sound-theme-freedesktop and sound-icons")
    return [Clip("event", str(p), p.name) for p in files]


def sound_task(duration: float = 1.0) -> Task:
    speech = [Clip("speech", p, p) for lang in VOICES
              for p in _pick(_long_prompts(lang), PROMPTS_PER_LANGUAGE, lang)[:SPEECH_PER_LANGUAGE]]
    pools = {"speech": tuple(speech), "music": tuple(music_clips(duration)), "event": tuple(event_clips())}
    return Task("sound", tuple(pools), {"speech": "speech", "music": "music", "event": "event"}, pools,
                "speech (asterisk prompts) / music (asterisk MOH) / event (freedesktop + sound-icons)")


def build_task(name: str, duration: float = 1.0) -> Task:
    if name == "digits":
        return digits_task()
    if name == "language":
        return language_task()
    if name == "sound":
        return sound_task(duration)
    raise ValueError(f"unknown task {name!r}; accepted: {', '.join(TASK_NAMES)}")


# --------------------------------------------------------------- sampling
def episode_rng(seed: int, setting: Setting) -> np.random.Generator:
    """The generator of one setting's episode stream (stable across runs and Python versions)."""
    return np.random.default_rng([seed, zlib.crc32(setting.episode_key.encode())])


def sample_episode(task: Task, setting: Setting, rng: np.random.Generator) -> Episode:
    """N classes, a query from one of them, K support clips per class, shuffled.

    The query is never a perturbed view and never shares its recording (group)
    with a support clip of its class when the pool allows it; all clips of an
    episode are distinct. With ``repeats`` the support set is shown again, each
    pass in a fresh order.
    """
    if setting.ways > len(task.classes):
        raise ValueError(f"task {task.name!r} has {len(task.classes)} classes; cannot sample "
                         f"{setting.ways}-way episodes")
    classes = [task.classes[i] for i in rng.choice(len(task.classes), setting.ways, replace=False)]
    qcls = classes[int(rng.integers(setting.ways))]
    plain = [c for c in task.pools[qcls] if not c.is_view]
    query = plain[int(rng.integers(len(plain)))]
    support: list[tuple[Clip, str]] = []
    for cls in classes:
        pool = [c for c in task.pools[cls] if c != query]
        if cls == qcls:
            other = [c for c in pool if c.group != query.group]
            pool = other if len(other) >= setting.shots else pool
        if len(pool) < setting.shots:
            raise ValueError(f"class {cls!r} of task {task.name!r} has {len(pool)} clips, "
                             f"fewer than {setting.shots} shots")
        for i in rng.choice(len(pool), setting.shots, replace=False):
            support.append((pool[int(i)], task.labels[cls]))
    passes = []
    for _ in range(1 + setting.repeats):
        order = rng.permutation(len(support))
        passes += [support[int(i)] for i in order]
    labels = tuple(sorted(task.labels[c] for c in classes))
    return Episode(labels, tuple(passes), query, task.labels[qcls])


def sample_episodes(task: Task, setting: Setting, count: int, seed: int) -> list[Episode]:
    rng = episode_rng(seed, setting)
    return [sample_episode(task, setting, rng) for _ in range(count)]
