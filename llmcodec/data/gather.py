"""Utterances for the corpus from the multi-speaker sources, and the speaker-disjoint held-out set.

``gather_voices`` reads every clip of ``voices.py``, sends held-out speakers to
``heldout/unseen/`` (never to training) and returns the rest as training
utterances labelled with their speaker group, plus flite's and Kokoro's synthetic voices and
wideband ambience. ``corpus.build_corpus`` packs them into tracks.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ..audio import AudioError, load_audio, save_audio
from . import sources, voices

SAMPLE_RATE = 16000
NARROW_RATE = 8000  # sources at this rate or below carry no energy above 4 kHz
MIN_CLIP_SECONDS = 0.25


@dataclass
class Utterance:
    """One utterance of the corpus, before packing."""

    kind: str
    name: str
    audio: np.ndarray  # float32 [T] at 16 kHz
    text: str | None
    group: str = ""  # the speaker group ("": the kind itself)
    narrow: bool = False  # from an 8 kHz source


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _spread(items: list, n: int | None) -> list:
    if n is None or n >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _load(path: Path) -> tuple[np.ndarray, bool] | None:
    """16 kHz samples and whether the file is narrowband; None for unreadable or tiny files."""
    try:
        rate = sf.info(str(path)).samplerate
        wav, _ = load_audio(path, SAMPLE_RATE)
    except (AudioError, RuntimeError, OSError):
        return None
    if wav.size < MIN_CLIP_SECONDS * SAMPLE_RATE or not np.abs(wav).max() > 1e-4:
        return None
    return wav, rate <= NARROW_RATE


def _by_speaker(clips: list[voices.Clip]) -> dict[str, list[voices.Clip]]:
    out: dict[str, list[voices.Clip]] = {}
    for c in clips:
        out.setdefault(c.speaker, []).append(c)
    return out


def _some_speakers(clips: list[voices.Clip], n: int | None) -> list[voices.Clip]:
    """The clips of ``n`` speaker groups spread over the sorted groups (all when None)."""
    keep = set(_spread(sorted(_by_speaker(clips)), n))
    return [c for c in clips if c.speaker in keep]


def write_unseen(clips: list[voices.Clip], out: Path, *, seconds_per_speaker: float,
                 min_seconds: float, synth: dict[str, list[tuple[str, np.ndarray]]],
                 log: Callable[[str], None], max_file_seconds: float = 15.0) -> dict[str, dict]:
    """Write the speaker-disjoint held-out set: up to ``seconds_per_speaker`` of each held-out
    group (clips drawn at random with a seed fixed by the speaker's name), groups under
    ``min_seconds`` left out; a speaker's clips are joined (0.3 s apart) into files of up to
    ``max_file_seconds``, so each judge's 30-s window is well used. ``synth``: synthetic
    held-out speakers (name -> [(text, audio)]). Returns ``speakers.json``'s index."""
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict] = {}
    groups = {k: [(c.text, c, None) for c in v] for k, v in _by_speaker(clips).items()}
    for name, items in synth.items():
        groups[name] = [(t, None, a) for t, a in items]
    for speaker, items in sorted(groups.items()):
        picked, have = [], 0.0
        order = np.random.default_rng(sum(speaker.encode())).permutation(len(items))
        for k in order:
            if have >= seconds_per_speaker:
                break
            text, clip, audio = items[k]
            narrow = False
            if audio is None:
                got = _load(clip.path)
                if got is None:
                    continue
                audio, narrow = got
            picked.append((text, clip, audio, narrow))
            have += audio.size / SAMPLE_RATE
        if have < min_seconds:
            continue
        for j, part in enumerate(_pack_files(picked, max_file_seconds)):
            first = part[0][1]
            stem = f"{_slug(speaker)}__{j:03d}_{_slug(first.path.stem if first else 'synth')[:40]}"
            gap = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
            audio = np.concatenate([x for _, _, a, _ in part for x in (a, gap)][:-1])
            save_audio(out / f"{stem}.wav", audio, SAMPLE_RATE)
            texts = [t for t, _, _, _ in part if t]
            if len(texts) == len(part):  # a transcript only where every clip has one
                (out / f"{stem}.txt").write_text(" ".join(texts) + "\n", encoding="utf-8")
            index[stem] = {"speaker": speaker, "lang": first.lang if first else "en",
                           "source": first.source if first else "flite",
                           "band": "narrow" if any(n for _, _, _, n in part) else "wide",
                           "synthetic": first is None, "clips": len(part)}
    (out / "speakers.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    secs = sum(sf.info(str(out / f"{s}.wav")).duration for s in index)
    log(f"unseen held-out: {len(index)} files, {secs / 60:.1f} min, "
        f"{len({v['speaker'] for v in index.values()})} speakers, "
        f"{len({v['lang'].split('_')[0] for v in index.values()})} languages")
    return index


def _pack_files(picked: list, max_seconds: float) -> list[list]:
    """Consecutive runs of ``picked`` (``(text, clip, audio, narrow)``) of at most ``max_seconds``."""
    out, cur, have = [], [], 0.0
    for item in picked:
        secs = item[2].size / SAMPLE_RATE
        if cur and have + secs > max_seconds:
            out.append(cur)
            cur, have = [], 0.0
        cur.append(item)
        have += secs + 0.3
    return out + ([cur] if cur else [])


def _flite(minutes: float, unseen_seconds: float, rng: np.random.Generator,
           log: Callable[[str], None]) -> tuple[list[Utterance], dict[str, list[tuple[str, np.ndarray]]]]:
    if minutes <= 0 and unseen_seconds <= 0:
        return [], {}
    from .synth import FliteSynth
    synth = FliteSynth(SAMPLE_RATE)
    texts = sources.wordnet_sentences()
    order = list(rng.permutation(len(texts)))
    train_voices = [v for v in voices.FLITE_VOICES if v not in voices.HELDOUT_FLITE]
    utts, have = [], 0.0
    while have < minutes * 60 and order:
        i = int(order.pop())
        voice = train_voices[len(utts) % len(train_voices)]
        wav = synth.synthesize(texts[i], voice, rng)
        utts.append(Utterance("synth_wide", f"flite/{voice}/{i}", wav, texts[i], group=f"flite/{voice}"))
        have += wav.size / SAMPLE_RATE
    held: dict[str, list[tuple[str, np.ndarray]]] = {}
    for voice in sorted(voices.HELDOUT_FLITE):
        got, secs = [], 0.0
        while secs < unseen_seconds and order:
            i = int(order.pop())  # texts never synthesised for training
            wav = synth.synthesize(texts[i], voice, rng)
            got.append((texts[i], wav))
            secs += wav.size / SAMPLE_RATE
        held[f"flite/{voice}"] = got
    log(f"synth_wide: {len(utts)} flite utterances, {have / 60:.1f} min ({', '.join(train_voices)})")
    return utts, held


def _kokoro(minutes: float, rng: np.random.Generator, log: Callable[[str], None]) -> list[Utterance]:
    """Kokoro-82M's voices reading wordnet's sentences in turn (kind ``synth_wide``, a group per
    voice); none of them is in the held-out set."""
    if minutes <= 0:
        return []
    from tqdm import tqdm

    from .synth import KOKORO_VOICES, KokoroSynth
    synth = KokoroSynth(SAMPLE_RATE)
    texts = sources.wordnet_sentences()
    order = list(rng.permutation(len(texts)))
    utts, have = [], 0.0
    with tqdm(total=int(minutes * 60), unit="s", desc="kokoro", leave=False) as bar:
        while have < minutes * 60 and order:
            i = int(order.pop())
            voice = KOKORO_VOICES[len(utts) % len(KOKORO_VOICES)]
            wav = synth.synthesize(texts[i], voice, rng)
            if wav.size < SAMPLE_RATE // 2:
                continue
            utts.append(Utterance("synth_wide", f"kokoro/{voice}/{i}", wav, texts[i], group=f"kokoro/{voice}"))
            have += wav.size / SAMPLE_RATE
            bar.update(wav.size / SAMPLE_RATE)
    log(f"synth_wide: {len(utts)} Kokoro utterances, {have / 60:.1f} min ({len(KOKORO_VOICES)} voices)")
    return utts


def _package(path: Path) -> str:
    """``/usr/share/games/hedgewars/...`` -> ``hedgewars`` (the group of an ambience piece)."""
    parts = [p for p in path.parts[3:] if p != "games"]
    return parts[0] if parts else "ambience"


def _ambience(minutes: float | None, track_seconds: float, log: Callable[[str], None]) -> list[Utterance]:
    files = voices.non_speech_files()
    seg, budget = int(track_seconds * SAMPLE_RATE), None if minutes is None else minutes * 60 * SAMPLE_RATE
    utts, have = [], 0
    for k in np.random.default_rng(0).permutation(len(files)):  # every source within the budget
        path = files[int(k)]
        if budget is not None and have >= budget:
            break
        got = _load(path)
        if got is None:
            continue
        wav, narrow = got
        for j in range(0, min(wav.size, 4 * seg), seg):  # at most 4 pieces of one long file
            piece = wav[j:j + seg]
            if piece.size >= SAMPLE_RATE // 2:
                utts.append(Utterance("ambience", f"ambience/{path.parent.name}/{path.stem}/{j // seg}",
                                      piece, None, group=_package(path),
                                      narrow=narrow))
                have += piece.size
    log(f"ambience: {len(utts)} pieces, {have / SAMPLE_RATE / 60:.1f} min from {len(files)} files")
    return utts


def gather_voices(opts, unseen_dir: Path, rng: np.random.Generator,
                  log: Callable[[str], None]) -> list[Utterance]:
    """Training utterances of the multi-speaker sources (``opts``: a ``PrepareOptions``); writes
    the speaker-disjoint held-out set into ``unseen_dir``."""
    clips = voices.recorded_clips()
    held = _some_speakers([c for c in clips if voices.heldout(c)], opts.max_speakers)
    train = _some_speakers([c for c in clips if not voices.heldout(c)], opts.max_speakers)
    flite_utts, flite_held = _flite(opts.flite_minutes, opts.unseen_seconds_per_speaker, rng, log)
    write_unseen(held, unseen_dir, seconds_per_speaker=opts.unseen_seconds_per_speaker,
                 min_seconds=opts.unseen_min_seconds, synth=flite_held, log=log)
    utts: list[Utterance] = []
    limit = int(0.95 * opts.track_seconds * SAMPLE_RATE)
    for speaker, group in sorted(_by_speaker(train).items()):
        for c in _spread(group, opts.max_clips_per_speaker):
            got = _load(c.path)
            if got is None:
                continue
            wav, narrow = got
            kind = "tel_speech" if c.source == "asterisk" else "wide_speech"
            utts.append(Utterance(kind, f"{c.source}/{c.lang}/{c.path.stem}", wav[:limit], c.text,
                                  group=speaker, narrow=narrow))
    for kind in ("wide_speech", "tel_speech"):
        secs = sum(u.audio.size for u in utts if u.kind == kind) / SAMPLE_RATE
        log(f"{kind}: {sum(u.kind == kind for u in utts)} clips, {secs / 60:.1f} min, "
            f"{len({u.group for u in utts if u.kind == kind})} speaker groups")
    kokoro_utts = _kokoro(opts.kokoro_minutes, rng, log)
    return utts + flite_utts + kokoro_utts + _ambience(opts.ambience_minutes, opts.track_seconds, log)


__all__ = ["Utterance", "gather_voices", "write_unseen"]
