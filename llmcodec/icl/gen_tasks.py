"""The generation tasks' data, from real recordings only, and their seeded episodes.

* ``tts``: text-to-speech of spoken digits (UniAudio 1.5's Table 4 task, on FSDD there).
  Each example is ``Input: four`` / ``Output: <tokens of a recording of "four">``; the query is a
  digit word whose recordings are among the examples (N digits, K recordings each). The
  recordings are the digits 0-9 of the six asterisk voices (en_US Allison, es_MX Allison,
  fr_CA June, it_IT Menardi and Carlo, ru_RU; 8 kHz), each in the three views of the classification task
  (speed, gain, onset delay): an episode keeps to one voice, so K <= 3.
* ``denoise``: speech denoising (its Table 5, VCTK + NoiseX-92 there). Each example is ``Input:
  <tokens of noisy speech>`` / ``Output: <tokens of the same speech, clean>``; the query is
  another utterance in another noise. Clean speech: the wideband recordings of the
  speaker-disjoint held-out set (``llmcodec.data.voices``: children's-software voices in en, nl,
  da, de and the Dutch fillets-ng actors; never trained on), from their first onset. Noise:
  the offline game and ambience packages (``voices.non_speech_files``), split once into two
  disjoint halves by file name, the examples' noise from one, the query's from the other;
  mixed at the setting's SNR over the whole clip.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile as sf

from ..audio import load_audio
from ..data import voices
from ..data.sources import SOUNDS
from .tasks import DIGIT_LABELS, DIGIT_VIEWS, Clip, load_clip, onset

GEN_TASKS = ("tts", "denoise")
# The asterisk voices with digits/0..9.wav, and the language Whisper hears them in.
DIGIT_VOICES = {"en_US_f_Allison": "en", "es_MX_f_Allison": "es", "fr_CA_f_June": "fr",
                "it_IT_f_Menardi": "it", "it_IT_m_Carlo": "it", "ru_RU_f_IvrvoiceRU": "ru"}
MIN_SPEECH_SECONDS = 0.8
DEFAULT_DURATION = {"tts": 1.0, "denoise": 1.5}


@dataclass(frozen=True)
class GenSetting:
    """One cell: task, K examples (TTS: K recordings of each of ``ways`` digits), levels
    written (1 or 3), SNR in dB (denoising)."""

    task: str
    shots: int
    levels: int = 1
    ways: int = 3
    snr_db: float | None = None

    def __post_init__(self) -> None:
        if self.task not in GEN_TASKS:
            raise ValueError(f"unknown generation task {self.task!r}; accepted: {', '.join(GEN_TASKS)}")
        if self.levels not in (1, 3):
            raise ValueError(f"levels must be 1 (level-1 words) or 3 (all levels), got {self.levels}")
        if self.shots < 1:
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        if self.task == "tts":
            if not 1 <= self.ways <= 10:
                raise ValueError(f"tts ways must be in [1, 10] digits, got {self.ways}")
            if self.shots > len(DIGIT_VIEWS):
                raise ValueError(f"tts has {len(DIGIT_VIEWS)} recordings per digit and voice, "
                                 f"so shots <= {len(DIGIT_VIEWS)}, got {self.shots}")
            if self.snr_db is not None:
                raise ValueError("snr_db is for the denoise task")
        elif self.snr_db is None or not -20.0 <= self.snr_db <= 40.0:
            raise ValueError(f"denoise needs snr_db in [-20, 40] dB, got {self.snr_db}")

    @property
    def mode(self) -> str:
        return "level 1" if self.levels == 1 else "levels 1+2+3"

    @property
    def name(self) -> str:
        what = f"{self.ways} digits x {self.shots}" if self.task == "tts" else f"{self.snr_db:g} dB, {self.shots}-shot"
        return f"{self.task} {what}, {self.mode}"

    @property
    def episode_key(self) -> str:
        """Settings that differ only in levels share their episodes (paired)."""
        return f"{self.task}/{self.ways}/{self.shots}/{self.snr_db}"


@dataclass(frozen=True)
class Noisy:
    """Clean speech from ``clip`` plus the segment of ``noise`` at ``noise_start`` s, at ``snr_db``."""

    clip: Clip
    noise: str
    noise_start: float
    snr_db: float


@dataclass(frozen=True)
class GenEpisode:
    """Examples (input, output) in prompt order, then the query's input and what it should be.

    TTS: inputs are digit words and outputs :class:`Clip` s; ``lang`` is the voice's.
    Denoising: inputs are :class:`Noisy`, outputs their clean :class:`Clip` s.
    """

    examples: tuple[tuple[str | Noisy, Clip], ...]
    query: str | Noisy
    target: str | Clip  # TTS: the digit ("4"); denoising: the clean clip
    lang: str


# ---- pools -----------------------------------------------------------------------------------
def digit_pools() -> dict[str, dict[str, list[Clip]]]:
    """voice -> digit ("0".."9") -> its recording in the three views."""
    out: dict[str, dict[str, list[Clip]]] = {}
    for voice in DIGIT_VOICES:
        if not (SOUNDS / voice / "digits" / "0.wav").is_file():
            continue
        out[voice] = {str(d): [Clip(str(d), str(SOUNDS / voice / "digits" / f"{d}.wav"), f"{voice}/{d}",
                                    None, *view) for view in DIGIT_VIEWS] for d in range(10)}
    if not out:
        raise FileNotFoundError(f"no asterisk digits under {SOUNDS}: install Debian's asterisk-core-sounds-en-wav")
    return out


@lru_cache(maxsize=None)
def clean_speech(min_seconds: float = MIN_SPEECH_SECONDS) -> tuple[Clip, ...]:
    """The held-out wideband recordings of at least ``min_seconds``, as clips from their onset."""
    out = []
    for c in voices.recorded_clips():
        if voices.heldout(c) and c.path is not None and sf.info(str(c.path)).duration >= min_seconds:
            out.append(Clip("speech", str(c.path), c.speaker))
    if not out:
        raise FileNotFoundError("no held-out wideband speech: `make data-deps` installs its Debian packages "
                                "(tuxpaint-stamps-default, klettres-data, ktuberling-data, fillets-ng-data-nl)")
    return tuple(sorted(out, key=lambda c: c.path))


@lru_cache(maxsize=None)
def noise_halves() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the examples' noise files, the queries' noise files): disjoint, fixed by file path; files
    shorter than 1 s or silent (a few effects are) left out."""
    files = [str(p) for p in voices.non_speech_files()
             if sf.info(str(p)).duration >= 1.0 and np.abs(sf.read(str(p), dtype="float32")[0]).max() > 1e-3]
    halves = ([f for f in files if zlib.crc32(f.encode()) % 2 == 0], [f for f in files if zlib.crc32(f.encode()) % 2])
    if not halves[0] or not halves[1]:
        raise FileNotFoundError("too few noise files: `make data-deps` installs hedgewars-data, "
                                "colobot-common-sounds and sonic-pi-samples")
    return halves


# ---- audio -----------------------------------------------------------------------------------
def clean_audio(clip: Clip, sample_rate: int, duration: float) -> np.ndarray:
    return load_clip(clip, sample_rate, duration)


def noisy_audio(x: Noisy, sample_rate: int, duration: float) -> np.ndarray:
    """The clean clip plus the noise segment (looped when short) at the SNR; scaled down
    together when the sum would clip."""
    clean = clean_audio(x.clip, sample_rate, duration)
    wav = active_noise(x.noise, sample_rate)
    start = int(round(x.noise_start * sample_rate)) % max(1, wav.size)
    noise = np.resize(np.roll(wav, -start), clean.size).astype(np.float64)
    ps, pn = float(np.mean(clean.astype(np.float64) ** 2)), float(np.mean(noise ** 2))
    if pn > 0 and ps > 0:
        noise *= np.sqrt(ps / (pn * 10 ** (x.snr_db / 10)))
    mix = clean + noise
    peak = float(np.abs(mix).max())
    return (mix / peak * 0.99 if peak > 0.99 else mix).astype(np.float32)


@lru_cache(maxsize=64)
def active_noise(path: str, sample_rate: int, rel_db: float = -40.0) -> np.ndarray:
    """The noise file without its near-silent 10 ms frames (below ``rel_db`` of the loudest),
    so that every segment of it is noise at the SNR asked for."""
    wav, _ = load_audio(path, sample_rate)
    hop = sample_rate // 100
    frames = wav[: wav.size // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    keep = frames[rms >= max(rms.max() * 10 ** (rel_db / 20), 1e-5)] if frames.size else frames
    if not keep.size:
        raise ValueError(f"{path}: silent, cannot be used as noise")
    return keep.reshape(-1)


# ---- episodes --------------------------------------------------------------------------------
def episode_rng(seed: int, setting: GenSetting) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(setting.episode_key.encode())])


def sample_tts(setting: GenSetting, rng: np.random.Generator, pools) -> GenEpisode:
    voice = sorted(pools)[int(rng.integers(len(pools)))]
    digits = [str(d) for d in rng.choice(10, setting.ways, replace=False)]
    target = digits[int(rng.integers(setting.ways))]
    examples = [(DIGIT_LABELS[int(d)], pools[voice][d][int(i)])
                for d in digits for i in rng.choice(len(DIGIT_VIEWS), setting.shots, replace=False)]
    order = rng.permutation(len(examples))
    return GenEpisode(tuple(examples[int(i)] for i in order), DIGIT_LABELS[int(target)], target,
                      DIGIT_VOICES[voice])


def sample_denoise(setting: GenSetting, rng: np.random.Generator, speech, halves, duration: float) -> GenEpisode:
    picks = rng.choice(len(speech), setting.shots + 1, replace=False)
    ex_noise = rng.choice(len(halves[0]), setting.shots, replace=len(halves[0]) < setting.shots)

    def noisy(clip: Clip, path: str) -> Noisy:
        n = sf.info(path).duration
        start = float(rng.uniform(0.0, max(0.0, n - duration)))
        return Noisy(clip, path, round(start, 2), float(setting.snr_db))

    examples = tuple((noisy(speech[int(p)], halves[0][int(k)]), speech[int(p)]) for p, k in zip(picks[1:], ex_noise))
    q = speech[int(picks[0])]
    query = noisy(q, halves[1][int(rng.integers(len(halves[1])))])
    return GenEpisode(examples, query, q, "")


def sample_gen_episodes(setting: GenSetting, count: int, seed: int, duration: float) -> list[GenEpisode]:
    rng = episode_rng(seed, setting)
    if setting.task == "tts":
        pools = digit_pools()
        return [sample_tts(setting, rng, pools) for _ in range(count)]
    speech, halves = clean_speech(), noise_halves()
    return [sample_denoise(setting, rng, speech, halves, duration) for _ in range(count)]


__all__ = ["DEFAULT_DURATION", "DIGIT_VOICES", "GEN_TASKS", "GenEpisode", "GenSetting", "Noisy", "clean_audio",
           "clean_speech", "digit_pools", "noise_halves", "noisy_audio", "onset", "sample_gen_episodes"]
