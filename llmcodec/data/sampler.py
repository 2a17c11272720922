"""Deterministic batches of training segments with their teacher targets.

``SegmentSampler.batch(step)`` draws from a generator seeded by ``(seed, step)``,
so a resumed run sees exactly the batches an uninterrupted run would have seen
and the sampler carries no state to checkpoint.

Each segment starts on a block boundary of its track, so the cached Whisper
frames (hop 320) line up with the codec's frames. The semantic target of a
segment is the overlap-weighted mean of the embeddings of the transcribed
utterances it covers (re-normalised); segments where transcribed speech covers
less than ``min_text_cover`` of the samples get no semantic target (mask 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .augment import AugmentConfig, augment
from .corpus import KINDS, SAMPLE_RATE, Corpus
from .teachers import WHISPER_HOP


@dataclass(frozen=True)
class SegmentBatch:
    audio: Tensor  # [B, 1, T] float32
    whisper: Tensor | None  # [B, T / 320, 384] float32, Whisper encoder frames (50 Hz)
    text_emb: Tensor | None  # [B, 384] unit-length sentence embeddings (zeros where masked)
    text_mask: Tensor  # [B] 1.0 where the segment has a semantic target
    kinds: tuple[str, ...]


class SegmentSampler:
    def __init__(self, corpus: Corpus, segment_samples: int, batch_size: int,
                 mix: dict[str, float], seed: int = 0, align: int = 1920,
                 gain_db: tuple[float, float] = (-6.0, 3.0), min_text_cover: float = 0.25,
                 augment: AugmentConfig = AugmentConfig()):
        if segment_samples % align or segment_samples % WHISPER_HOP:
            raise ValueError(f"segment of {segment_samples} samples must be a multiple of the block "
                             f"({align}) and of Whisper's hop ({WHISPER_HOP})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.corpus, self.seg, self.batch_size = corpus, segment_samples, batch_size
        self.seed, self.align, self.gain_db, self.min_text_cover = seed, align, gain_db, min_text_cover
        self.augment = augment
        present = {t["kind"] for t in corpus.tracks}
        unknown = sorted(set(mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds in mix: {unknown}; accepted: {list(KINDS)}")
        weights = {k: float(w) for k, w in mix.items() if k in present and w > 0}
        if not weights:
            raise ValueError(f"the mix {mix} names no kind present in the corpus ({sorted(present)})")
        self.kinds = sorted(weights)
        total = sum(weights.values())
        self.kind_p = np.array([weights[k] / total for k in self.kinds])
        # Within a kind, speaker groups are balanced: a group's share grows with the square
        # root of its audio (not with its file count or length), then tracks by length.
        self.by_kind: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for k in self.kinds:
            idx = np.array([i for i, t in enumerate(corpus.tracks) if t["kind"] == k])
            lens = np.array([corpus.tracks[i]["length"] for i in idx], dtype=np.float64)
            groups = [corpus.tracks[i].get("group", k) for i in idx]
            total = {g: 0.0 for g in groups}
            for g, n in zip(groups, lens):
                total[g] += n
            share = {g: np.sqrt(v) for g, v in total.items()}
            norm = sum(share.values())
            p = np.array([share[g] / norm * n / total[g] for g, n in zip(groups, lens)])
            self.by_kind[k] = (idx, p / p.sum())
        self._noise_tracks = np.array([i for i, t in enumerate(corpus.tracks) if t["kind"] == augment.noise_kind
                                       and t["length"] >= segment_samples])
        if augment.p_noise > 0 and not len(self._noise_tracks):
            raise ValueError(f"augmentation noise kind {augment.noise_kind!r} has no track of "
                             f"{segment_samples} samples in the corpus")

    def _noise(self, rng: np.random.Generator) -> np.ndarray:
        """A random segment of a random track of the augmentation's noise kind."""
        ti = int(self._noise_tracks[rng.integers(len(self._noise_tracks))])
        start = int(rng.integers(self.corpus.tracks[ti]["length"] - self.seg + 1))
        return self.corpus.track_audio(ti, start, self.seg)

    def _segment(self, rng: np.random.Generator, kind: str):
        idx, p = self.by_kind[kind]
        ti = int(idx[rng.choice(len(idx), p=p)])
        track = self.corpus.tracks[ti]
        positions = max(1, (track["length"] - self.seg) // self.align + 1)
        start = int(rng.integers(positions)) * self.align
        audio = self.corpus.track_audio(ti, start, self.seg)
        gain = 10 ** (rng.uniform(*self.gain_db) / 20)
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak * gain > 0.99:
            gain = 0.99 / peak
        audio = audio * np.float32(gain)
        audio = augment(audio, rng, self.augment, SAMPLE_RATE, self._noise)
        whisper = emb = None
        cover = 0.0
        if self.corpus.has_teachers:
            n = self.seg // WHISPER_HOP
            w = np.zeros((n, self.corpus.whisper.shape[1]), np.float32)
            f0 = start // WHISPER_HOP
            have = max(0, min(n, track["whisper_frames"] - f0))
            o = track["whisper_offset"] + f0
            w[:have] = self.corpus.whisper[o:o + have]
            whisper = w
            acc = np.zeros(self.corpus.text_emb.shape[1], np.float64)
            for s, e, k, _name in track["utterances"]:
                overlap = min(e, start + self.seg) - max(s, start)
                if k >= 0 and overlap > 0:
                    acc += overlap * self.corpus.text_emb[k]
                    cover += overlap / self.seg
            norm = np.linalg.norm(acc)
            emb = (acc / norm if norm > 0 else acc).astype(np.float32)
        return audio, whisper, emb, cover >= self.min_text_cover

    def batch(self, step: int) -> SegmentBatch:
        rng = np.random.default_rng([self.seed, step])
        kinds = rng.choice(len(self.kinds), size=self.batch_size, p=self.kind_p)
        items = [self._segment(rng, self.kinds[k]) for k in kinds]
        audio = torch.from_numpy(np.stack([a for a, _, _, _ in items]))[:, None]
        mask = torch.tensor([float(m) for _, _, _, m in items])
        if not self.corpus.has_teachers:
            return SegmentBatch(audio, None, None, torch.zeros_like(mask), tuple(self.kinds[k] for k in kinds))
        whisper = torch.from_numpy(np.stack([w for _, w, _, _ in items]))
        emb = torch.from_numpy(np.stack([e for _, _, e, _ in items])) * mask[:, None]
        return SegmentBatch(audio, whisper, emb, mask, tuple(self.kinds[k] for k in kinds))
