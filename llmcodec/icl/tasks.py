"""Episode sources from real recordings, and seeded N-way K-shot sampling.

Three tasks, all from Debian packages (offline), found through the training
corpus' source list (:mod:`llmcodec.data.sources`):

* ``digits``: spoken digits 0-9 (``digits/0.wav`` .. ``9.wav``) in the three
  asterisk voices (en_US Allison, es_MX Allison, fr_CA June). Each digit has
  three recordings, so every recording also appears in two more deterministic
  views (speed 0.92 / 1.08, lower gain, onset delay). The query is always an
  unperturbed recording, and no view of the query's recording is ever in the
  support set.
* ``language``: English / Spanish / French: the asterisk prompts of the fixed
  held-out split (never trained on by the codec) that have a transcript (so are
  speech, not tones) and last at least 1 s; en and es are the same speaker.
* ``sound``: speech (those held-out prompts, all three languages) / music
  (``asterisk-moh-opsound-wav``, segments at seeded offsets) / event
  (``sound-theme-freedesktop`` and ``sound-icons``, without the spoken channel
  names, the test tone and the single instrument notes).

Clip pools are fixed (seeded with :data:`POOL_SEED`), so audio codes can be
cached per clip; episodes are sampled from them with the run's seed.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import soundfile as sf

from ..audio import load_audio, resample
from ..data import sources

POOL_SEED = 1234
DIGIT_LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LANG_LABELS = {"en": "English", "es": "Spanish", "fr": "French"}
# Event sounds that are not events: spoken channel names, a test tone, single instrument notes.
EVENT_EXCLUDE = ("audio-channel-", "audio-test-signal", "cembalo-", "chord-", "cymbaly-", "electric-piano-",
                 "guitar-", "klavichord-", "percussion-", "piano-", "trumpet-", "violoncello-", "xylofon")
# (speed, gain, onset delay in s) views of each digit recording; view 0 is the recording itself.
DIGIT_VIEWS = ((1.0, 1.0, 0.0), (0.92, 0.6, 0.08), (1.08, 0.8, 0.15))
MIN_PROMPT_SECONDS = 1.0
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
def digits_task() -> Task:
    pools: dict[str, list[Clip]] = {}
    for d in range(10):
        clips = []
        for lang, voice in sources.VOICES.items():
            path = sources.SOUNDS / voice / "digits" / f"{d}.wav"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: install Debian's asterisk-core-sounds-{lang}-wav")
            for speed, gain, delay in DIGIT_VIEWS:
                clips.append(Clip(str(d), str(path), f"{lang}/{d}", None, speed, gain, delay))
        pools[str(d)] = clips
    return Task("digits", tuple(pools), {str(d): w for d, w in enumerate(DIGIT_LABELS)},
                {k: tuple(v) for k, v in pools.items()},
                "spoken digits 0-9 in the en/es/fr asterisk voices: 3 recordings per digit, each also in "
                "2 perturbed views (speed, gain, delay); the query is an unperturbed recording whose "
                "recording is never in the support set")


@lru_cache(maxsize=None)
def heldout_speech(lang: str, min_seconds: float = MIN_PROMPT_SECONDS) -> tuple[str, ...]:
    """Held-out prompts of ``lang`` with a transcript, lasting >= ``min_seconds``, sorted."""
    out = tuple(str(p.path) for p in sources.prompts(lang)
                if sources.is_heldout(lang, p.name) and p.text and sf.info(str(p.path)).duration >= min_seconds)
    if not out:
        raise FileNotFoundError(f"no held-out {lang} prompts: install Debian's asterisk-core-sounds-{lang}-wav "
                                f"and asterisk-core-sounds-{lang} (transcripts)")
    return out


def language_task() -> Task:
    pools = {lang: tuple(Clip(lang, p, p) for p in heldout_speech(lang)) for lang in sources.VOICES}
    n = "/".join(str(len(v)) for v in pools.values())
    return Task("language", tuple(pools), dict(LANG_LABELS), pools,
                f"spoken language en/es/fr: {n} held-out asterisk prompts (transcribed, >= 1 s)")


def music_clips(duration: float = 1.0) -> list[Clip]:
    out = []
    for f in sources.music_files():
        dur = sf.info(str(f)).duration
        rng = np.random.default_rng([POOL_SEED, zlib.crc32(f.name.encode())])
        grid = np.arange(5.0, max(5.1, dur - duration - 1.0), 0.1)  # a 0.1 s grid, 5 s in
        for s in np.sort(rng.choice(grid, size=min(MUSIC_SEGMENTS_PER_FILE, grid.size), replace=False)):
            out.append(Clip("music", str(f), f.name, round(float(s), 1)))
    return out


def event_clips() -> list[Clip]:
    files = [p for p in sources.event_files() if not p.name.startswith(EVENT_EXCLUDE)]
    if not files:
        raise FileNotFoundError("no event sounds: install Debian's sound-theme-freedesktop and sound-icons")
    return [Clip("event", str(p), p.name) for p in files]


def sound_task(duration: float = 1.0) -> Task:
    speech = [Clip("speech", p, p) for lang in sources.VOICES for p in heldout_speech(lang)]
    pools = {"speech": tuple(speech), "music": tuple(music_clips(duration)), "event": tuple(event_clips())}
    n = "/".join(str(len(v)) for v in pools.values())
    return Task("sound", tuple(pools), {"speech": "speech", "music": "music", "event": "event"}, pools,
                f"speech / music / event: {n} clips (held-out prompts of the three voices / segments of the "
                "5 asterisk music-on-hold tracks, the query's track never in the support set / "
                "freedesktop and sound-icons event sounds)")


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
