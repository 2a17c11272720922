"""Buffering of arbitrary chunk lengths around a backend's whole-block steps.

``StreamingEncoder.push`` takes any number of samples and returns the codes of
every block it completed; ``flush`` zero-pads the last partial block, exactly
as offline encoding pads the end of a file. ``StreamingDecoder`` does the same
for codes arriving in any grouping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import Backend, check_codes


@dataclass(frozen=True)
class BlockCodes:
    """The codes of one block: ``codes[l]`` int64 [tokens_per_block[l]]."""

    seq: int
    codes: tuple[np.ndarray, ...]


class SampleBlocks:
    """Samples in any lengths -> whole blocks of ``block`` samples; ``flush`` zero-pads the
    last partial block, exactly as offline encoding pads the end of a file."""

    def __init__(self, block: int):
        self.block = block
        self._buf = np.zeros(0, dtype=np.float32)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        """float32 [T] (any T >= 0) -> the blocks it completed, each float32 [block]."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if pcm.size:
            self._buf = np.concatenate([self._buf, pcm]) if self._buf.size else pcm.copy()
        out = []
        while self._buf.size >= self.block:
            out.append(self._buf[:self.block].copy())
            self._buf = self._buf[self.block:]
        return out

    def flush(self) -> list[np.ndarray]:
        """The pending partial block, zero-padded (none when nothing is pending)."""
        if not self._buf.size:
            return []
        block = np.zeros(self.block, dtype=np.float32)
        block[:self._buf.size] = self._buf
        self._buf = np.zeros(0, dtype=np.float32)
        return [block]

    @property
    def pending(self) -> int:
        """Samples waiting for a whole block."""
        return int(self._buf.size)


class StreamingEncoder:
    """One stream's encoder: samples in (any length), block codes out."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.block = backend.facts.block_size
        self.state = backend.init_encoder_state(1)
        self._blocks = SampleBlocks(self.block)
        self._seq = 0
        self.samples_in = 0

    def push(self, pcm: np.ndarray) -> list[BlockCodes]:
        """pcm float32 [T] (any T >= 0) -> codes of the blocks it completed."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self.samples_in += pcm.size
        return [self._step(b) for b in self._blocks.push(pcm)]

    def flush(self) -> list[BlockCodes]:
        """Zero-pad and encode the pending partial block, if any."""
        return [self._step(b) for b in self._blocks.flush()]

    @property
    def pending(self) -> int:
        return self._blocks.pending

    def _step(self, block: np.ndarray) -> BlockCodes:
        codes, self.state = self.backend.encode_step(block[None, :], self.state)
        bc = BlockCodes(self._seq, tuple(c[0] for c in codes))
        self._seq += 1
        return bc


class StreamingDecoder:
    """One stream's decoder: codes in (any grouping per level), audio blocks out."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.facts = backend.facts
        self.state = backend.init_decoder_state(1)
        self._buf = [np.zeros(0, dtype=np.int64) for _ in self.facts.tokens_per_block]

    def push(self, codes: list[np.ndarray]) -> list[np.ndarray]:
        """codes[l] int [n] (any n) -> float32 [block_size] per block completed."""
        if len(codes) != len(self._buf):
            raise ValueError(f"expected {len(self._buf)} levels of codes, got {len(codes)}")
        self._buf = [np.concatenate([b, np.asarray(c, dtype=np.int64).reshape(-1)])
                     for b, c in zip(self._buf, codes)]
        out = []
        tpb = self.facts.tokens_per_block
        while all(b.size >= n for b, n in zip(self._buf, tpb)):
            block = [b[:n][None, :] for b, n in zip(self._buf, tpb)]
            check_codes(self.facts, block, blocks=1)
            pcm, self.state = self.backend.decode_step(block, self.state)
            out.append(pcm[0])
            self._buf = [b[n:] for b, n in zip(self._buf, tpb)]
        return out

    @property
    def pending(self) -> bool:
        return any(b.size for b in self._buf)


def encode_all(backend: Backend, wav: np.ndarray) -> list[np.ndarray]:
    """Offline: float32 [T] -> codes per level [blocks * n_l], blocks = ceil(T / block)."""
    enc = StreamingEncoder(backend)
    blocks = enc.push(wav) + enc.flush()
    return [np.concatenate([b.codes[l] for b in blocks]) if blocks else np.zeros(0, np.int64)
            for l in range(len(backend.facts.tokens_per_block))]


def decode_all(backend: Backend, codes: list[np.ndarray]) -> np.ndarray:
    """Offline: codes per level [blocks * n_l] -> float32 [blocks * block_size]."""
    check_codes(backend.facts, [np.asarray(c)[None, :] for c in codes], blocks=None)
    dec = StreamingDecoder(backend)
    out = dec.push(codes)
    return np.concatenate(out) if out else np.zeros(0, np.float32)
