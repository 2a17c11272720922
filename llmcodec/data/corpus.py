"""The local corpus cache: build it once from offline sources, then read it memory-mapped.

Layout of a corpus directory (never committed; ``/work/main/data_cache`` by default):

* ``manifest.json``: options, sources and one entry per *track*. A track packs
  utterances of one kind (:data:`KINDS`) and one speaker group (``group``: a
  speaker, see ``voices.py``; the kind itself for the single-voice kinds) into at
  most ``track_seconds`` with short silences between them; each utterance keeps
  ``[start, end)`` (samples in the track), its source name and the index of its
  transcript's embedding (-1: none). ``band`` is ``narrow`` for 8 kHz sources.
* ``audio.npy``: every track's 16 kHz samples, int16, concatenated.
* ``whisper.npy``: Whisper tiny.en encoder frames of every track, float16
  ``[frames, 384]`` at 50 Hz, concatenated (one encoder call per track).
* ``text_emb.npy``: MiniLM embeddings of the transcripts ``[U, 384]`` float32.
* ``heldout/{lang}/``: the fixed held-out prompts as 16 kHz WAVs with
  ``.txt`` transcripts, the input of ``llmcodec eval``. Never trained on.
* ``heldout/unseen/``: the speaker-disjoint held-out set (``voices.heldout``:
  whole speakers never trained on), WAVs with ``.txt`` transcripts where the
  source has them, and ``speakers.json`` (file stem -> speaker, language, source).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio import load_audio, save_audio
from . import sources
from .gather import Utterance
from .teachers import WHISPER_DIM, WHISPER_HOP, WHISPER_WINDOW

SAMPLE_RATE = 16000
MANIFEST = "manifest.json"
CORPUS_VERSION = 1  # v1 readers ignore the added "group"/"band" keys; old corpora read as one group per kind
# real_*: the asterisk prompts (8 kHz, one voice each); piper_en: synthetic; wide_speech: the
# wideband multi-speaker recordings of voices.py; tel_speech: more 8 kHz telephone voices;
# synth_wide: flite's and Kokoro's voices; ambience: wideband music, effects and ambience of game packages.
KINDS = ("real_en", "piper_en", "real_es", "real_fr", "music", "events",
         "wide_speech", "tel_speech", "synth_wide", "ambience")
UNSEEN = "unseen"  # heldout/unseen: the speaker-disjoint held-out set
SPEAKERS_FILE = "speakers.json"


@dataclass(frozen=True)
class PrepareOptions:
    """What ``build_corpus`` puts in the cache. Limits are for quick corpora (tests)."""

    langs: tuple[str, ...] = ("en", "es", "fr")
    max_prompts: int | None = None  # per language (training prompts); None: all
    max_heldout: int | None = None  # per language; None: all
    piper_minutes: float = 120.0
    music_seconds: float | None = None  # None: all of the music
    events: bool = True
    track_seconds: float = 28.0
    gap_seconds: float = 0.15
    teachers: bool = True
    seed: int = 0
    threads: int = 1
    # The multi-speaker sources of voices.py (recorded speech, flite voices, ambience).
    voices: bool = True
    max_speakers: int | None = None  # speaker groups, training and held-out each; None: all
    max_clips_per_speaker: int | None = None  # training clips per speaker group; None: all
    flite_minutes: float = 40.0  # synthesised by flite, spread over its training voices
    kokoro_minutes: float = 20.0  # synthesised by Kokoro-82M, spread over its 8 voices (synth.py)
    ambience_minutes: float | None = 40.0  # of game music/effects; None: all
    unseen_seconds_per_speaker: float = 150.0  # speaker-disjoint held-out audio per group
    unseen_min_seconds: float = 20.0  # smaller held-out groups are left out of the eval set

    def __post_init__(self) -> None:
        bad = sorted(set(self.langs) - set(sources.VOICES))
        if bad:
            raise ValueError(f"unknown languages {bad}; accepted: {sorted(sources.VOICES)}")
        if not 1.0 <= self.track_seconds <= WHISPER_WINDOW / SAMPLE_RATE:
            raise ValueError(f"track_seconds must be in [1, 30], got {self.track_seconds}")
        for name in ("piper_minutes", "flite_minutes", "kokoro_minutes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


# A corpus of a few minutes for tests and smoke runs (about 15 s to build).
QUICK = PrepareOptions(max_prompts=10, max_heldout=3, piper_minutes=0.2, music_seconds=15.0, track_seconds=8.0,
                       max_speakers=6, max_clips_per_speaker=2, flite_minutes=0.2, kokoro_minutes=0.1,
                       ambience_minutes=0.2,
                       unseen_seconds_per_speaker=4.0, unseen_min_seconds=1.0)


def _heldout_file(name: str) -> str:
    return name.replace("/", "__")


def _spread(items: list, n: int | None) -> list:
    """``n`` items evenly spread over the list (all when ``n`` is None)."""
    if n is None or n >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _real_prompts(opts: PrepareOptions, out: Path, log: Callable[[str], None]) -> list[Utterance]:
    utts = []
    for lang in opts.langs:
        train, held = [], []
        for p in sources.prompts(lang):
            (held if sources.is_heldout(lang, p.name) else train).append(p)
        held = _spread([p for p in held if p.text], opts.max_heldout)
        hdir = out / "heldout" / lang
        hdir.mkdir(parents=True, exist_ok=True)
        for p in held:
            wav, _ = load_audio(p.path, SAMPLE_RATE)
            save_audio(hdir / f"{_heldout_file(p.name)}.wav", wav, SAMPLE_RATE)
            (hdir / f"{_heldout_file(p.name)}.txt").write_text(p.text + "\n")
        for p in _spread(train, opts.max_prompts):
            wav, _ = load_audio(p.path, SAMPLE_RATE)
            utts.append(Utterance(f"real_{lang}", f"{lang}/{p.name}", wav, p.text, narrow=True))
        log(f"real_{lang}: {sum(u.kind == f'real_{lang}' for u in utts)} prompts for training, "
            f"{len(held)} held out")
    return utts


def _piper(opts: PrepareOptions, rng: np.random.Generator, log: Callable[[str], None]) -> list[Utterance]:
    if opts.piper_minutes <= 0:
        return []
    from .synth import PiperSynth
    from tqdm import tqdm
    synth = PiperSynth(SAMPLE_RATE)
    texts = sources.fortune_texts() + sources.wordnet_sentences()
    order = rng.permutation(len(texts))
    need, have, utts = opts.piper_minutes * 60 * SAMPLE_RATE, 0, []
    limit = int(0.9 * opts.track_seconds * SAMPLE_RATE)
    with tqdm(total=int(opts.piper_minutes * 60), unit="s", desc="piper", leave=False) as bar:
        for i in order:
            if have >= need:
                break
            wav = synth.synthesize(texts[i], rng)
            if wav.size < SAMPLE_RATE // 2 or wav.size > limit:
                continue
            wav = wav * np.float32(rng.uniform(0.5, 1.0) / max(1e-3, float(np.abs(wav).max())))
            utts.append(Utterance("piper_en", f"piper/{i}", wav, texts[i]))
            have += wav.size
            bar.update(wav.size / SAMPLE_RATE)
    log(f"piper_en: {len(utts)} utterances, {have / SAMPLE_RATE / 60:.1f} min")
    return utts


def _non_speech(opts: PrepareOptions, log: Callable[[str], None]) -> list[Utterance]:
    utts, seg = [], int(opts.track_seconds * SAMPLE_RATE)
    budget = None if opts.music_seconds is None else int(opts.music_seconds * SAMPLE_RATE)
    for path in sources.music_files():
        wav, _ = load_audio(path, SAMPLE_RATE)
        for j in range(0, wav.size, seg):
            piece = wav[j:j + seg]
            if budget is not None:
                piece = piece[:budget]
                budget -= piece.size
            if piece.size >= SAMPLE_RATE:
                utts.append(Utterance("music", f"music/{path.stem}/{j // seg}", piece, None, narrow=True))
            if budget is not None and budget <= 0:
                break
        if budget is not None and budget <= 0:
            break
    if opts.events:
        for path in sources.event_files():
            wav, _ = load_audio(path, SAMPLE_RATE)
            utts.append(Utterance("events", f"events/{path.stem}", wav[: seg], None))
    log(f"non-speech: {sum(u.kind == 'music' for u in utts)} music pieces, "
        f"{sum(u.kind == 'events' for u in utts)} event sounds")
    return utts


def _pack(utts: list[Utterance], opts: PrepareOptions, rng: np.random.Generator) -> list[list[Utterance]]:
    """Group utterances of one kind (shuffled) into tracks of at most ``track_seconds``."""
    limit, gap = int(opts.track_seconds * SAMPLE_RATE), int(opts.gap_seconds * SAMPLE_RATE)
    tracks: list[list[Utterance]] = []
    keys = sorted({(u.kind, u.group) for u in utts}, key=lambda k: (KINDS.index(k[0]), k[1]))
    for kind, name in keys:
        group = [u for u in utts if (u.kind, u.group) == (kind, name)]
        cur, size = [], 0
        for k in rng.permutation(len(group)):
            u = group[k]
            u.audio = u.audio[:limit]
            if cur and size + gap + u.audio.size > limit:
                tracks.append(cur)
                cur, size = [], 0
            size += (gap if cur else 0) + u.audio.size
            cur.append(u)
        if cur:
            tracks.append(cur)
    return tracks


def build_corpus(out: str | Path, opts: PrepareOptions = PrepareOptions(), *,
                 log: Callable[[str], None] = print) -> Path:
    """Build the cache in ``out`` (written to ``out.partial`` first, then renamed)."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise ValueError(f"{out} already holds a corpus; remove it or choose another --out")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    rng = np.random.default_rng(opts.seed)
    utts = _real_prompts(opts, tmp, log) + _piper(opts, rng, log) + _non_speech(opts, log)
    if opts.voices:
        from .gather import gather_voices
        utts += gather_voices(opts, tmp / "heldout" / UNSEEN, rng, log)
    tracks = _pack(utts, opts, rng)
    gap = np.zeros(int(opts.gap_seconds * SAMPLE_RATE), np.float32)

    texts: list[str] = []
    text_index: dict[str, int] = {}
    entries, audio_parts, offset = [], [], 0
    for i, track in enumerate(tracks):
        pieces, utt_meta, pos = [], [], 0
        for j, u in enumerate(track):
            if j:
                pieces.append(gap)
                pos += gap.size
            emb = -1
            if u.text:
                emb = text_index.setdefault(u.text, len(texts))
                if emb == len(texts):
                    texts.append(u.text)
            utt_meta.append([pos, pos + u.audio.size, emb, u.name])
            pieces.append(u.audio)
            pos += u.audio.size
        wav = np.concatenate(pieces)
        audio_parts.append(np.clip(np.round(wav * 32767), -32768, 32767).astype(np.int16))
        narrow = sum(u.audio.size for u in track if u.narrow) * 2 > sum(u.audio.size for u in track)
        entries.append({"id": i, "kind": track[0].kind, "group": track[0].group or track[0].kind,
                        "band": "narrow" if narrow else "wide", "offset": offset,
                        "length": int(wav.size), "utterances": utt_meta})
        offset += wav.size
    np.save(tmp / "audio.npy", np.concatenate(audio_parts))

    if opts.teachers:
        _teacher_features(tmp, entries, audio_parts, texts, opts, log)
    manifest = {"version": CORPUS_VERSION, "sample_rate": SAMPLE_RATE, "options": dataclasses.asdict(opts),
                "teachers": opts.teachers, "whisper_hop": WHISPER_HOP, "texts": texts, "tracks": entries,
                "build_seconds": round(time.time() - t0, 1)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    corpus = Corpus(out)
    log(f"corpus {out}: {corpus.summary()}  ({time.time() - t0:.0f} s)")
    return out


def ensure_corpus(directory: str | Path, opts: PrepareOptions = QUICK) -> Path:
    """``directory`` as a corpus: built with ``opts`` unless it already holds one."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        build_corpus(directory, opts, log=lambda s: None)
    return directory


def _teacher_features(tmp: Path, entries: list[dict], audio_parts: list[np.ndarray], texts: list[str],
                      opts: PrepareOptions, log: Callable[[str], None]) -> None:
    from tqdm import tqdm
    from .teachers import TextEncoder, WhisperEncoder
    whisper = WhisperEncoder(threads=opts.threads)
    frames, woff = [], 0
    for e, a in tqdm(list(zip(entries, audio_parts)), desc="whisper frames", unit="track", leave=False):
        f = whisper.frames(a.astype(np.float32) / 32767)
        e["whisper_offset"], e["whisper_frames"] = woff, int(f.shape[0])
        frames.append(f.astype(np.float16))
        woff += f.shape[0]
    np.save(tmp / "whisper.npy", np.concatenate(frames) if frames else np.zeros((0, WHISPER_DIM), np.float16))
    np.save(tmp / "text_emb.npy", TextEncoder().embed(texts))
    log(f"teachers: {woff} Whisper frames, {len(texts)} transcript embeddings")


class Corpus:
    """A built corpus, memory-mapped. ``tracks`` are the manifest entries."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise ValueError(f"{self.directory} is not a corpus: no {MANIFEST} (run `llmcodec prepare-data`)")
        meta = json.loads(path.read_text())
        if meta.get("version") != CORPUS_VERSION:
            raise ValueError(f"{path}: corpus version {meta.get('version')}, expected {CORPUS_VERSION}; rebuild it")
        self.meta = meta
        self.sample_rate: int = meta["sample_rate"]
        self.tracks: list[dict] = meta["tracks"]
        self.texts: list[str] = meta["texts"]
        self.has_teachers: bool = bool(meta["teachers"])
        self.audio = np.load(self.directory / "audio.npy", mmap_mode="r")
        if self.has_teachers:
            self.whisper = np.load(self.directory / "whisper.npy", mmap_mode="r")
            self.text_emb = np.load(self.directory / "text_emb.npy")
        else:
            self.whisper = self.text_emb = None

    def track_audio(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """float32 samples of track ``i`` from ``start`` (zero-padded past its end)."""
        t = self.tracks[i]
        length = t["length"] - start if length is None else length
        a = np.zeros(length, np.float32)
        n = max(0, min(length, t["length"] - start))
        a[:n] = self.audio[t["offset"] + start: t["offset"] + start + n] / np.float32(32767)
        return a

    def seconds_by_kind(self) -> dict[str, float]:
        return self.seconds_by("kind")

    def heldout_dir(self, lang: str = "en") -> Path:
        """``heldout/LANG`` (same speakers, held-out prompts) or ``heldout/unseen``."""
        return self.directory / "heldout" / lang

    def seconds_by(self, key: str) -> dict[str, float]:
        """Seconds per track ``key`` (``kind``, ``group`` or ``band``)."""
        out: dict[str, float] = {}
        for t in self.tracks:
            k = t.get(key, t["kind"] if key == "group" else "?")
            out[k] = out.get(k, 0.0) + t["length"] / self.sample_rate
        return out

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(self.seconds_by_kind().items()))
        return f"{len(self.tracks)} tracks ({kinds}); {len(self.texts)} transcripts"
