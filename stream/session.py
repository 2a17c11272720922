"""One connection's state: PCM decoding, streaming resampling, block buffering,
and the encoder/decoder state rows that the batcher steps.

A session never runs the model itself: it turns frames into ``Block`` jobs and
receives results in order through ``deliver``; its ``out`` queue feeds the
connection's sender task.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from .backend import ModelFacts, State
from .protocol import DECODE_PATH, STREAM_PATH, Start, decode_pcm

_ids = itertools.count(1)


@dataclass
class Block:
    """One complete block of model-rate audio waiting to be encoded."""

    seq: int
    pcm: np.ndarray  # float32 [block_size]
    input_samples: int  # input samples received when the block was complete
    t_ready: float  # time.monotonic() then


@dataclass
class CodesJob:
    """One block of codes waiting to be decoded (/v1/decode)."""

    seq: int
    codes: list[np.ndarray]  # int64 [1, tokens_per_block[l]] per level
    t_ready: float


@dataclass
class StepResult:
    """What one batched step produced for one session's block."""

    seq: int
    codes: list[np.ndarray] | None  # int64 [tokens_per_block[l]] per level (encode)
    audio: np.ndarray | None  # float32 [block_size] (decode, or encode with "audio")
    input_samples: int
    t_ready: float
    t_start: float
    t_done: float
    batch: int


@dataclass
class Outgoing:
    """An item for the connection's sender: a result, the end, or an error."""

    kind: str  # "result" | "end" | "error"
    result: StepResult | None = None
    blocks: int = 0
    error: Any = None  # ProtocolError


class Session:
    """Per-connection state for /v1/stream (``kind == "encode"``) or /v1/decode."""

    def __init__(self, endpoint: str, start: Start, facts: ModelFacts,
                 enc_state: State | None, dec_state: State | None):
        self.id = f"s{next(_ids)}"
        self.endpoint = endpoint
        self.start = start
        self.facts = facts
        self.block = facts.block_size
        self.wants_audio = "audio" in start.returns
        self.enc_state = enc_state if endpoint == STREAM_PATH else None
        self.dec_state = dec_state if (self.wants_audio or endpoint == DECODE_PATH) else None
        self.resampler = None
        if endpoint == STREAM_PATH and start.sample_rate != facts.sample_rate:
            self.resampler = soxr.ResampleStream(start.sample_rate, facts.sample_rate, 1,
                                                 dtype="float32", quality="HQ")
        self._buf = np.zeros(0, np.float32)
        self.samples_in = 0  # input samples (per channel, client rate)
        self.next_seq = 0  # blocks created
        self.delivered = 0  # results handed to the sender
        self.ended = False  # the client sent end
        self.accepting = True  # False once the server drains or the session failed
        self.removed = False  # the connection is gone: drop results
        self.failed = False  # an error was queued: drop results
        # batcher bookkeeping
        self.pending: deque[Block | CodesJob] = deque()
        self.in_flight = False
        self.queued = False
        self.out: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- audio in --------------------------------------------------------
    def push_pcm(self, data: bytes, now: float | None = None) -> list[Block]:
        """A binary frame -> the blocks it completed (validated; raises ProtocolError)."""
        x = decode_pcm(data, self.start)
        self.samples_in += x.size
        if self.resampler is not None and x.size:
            x = self.resampler.resample_chunk(x)
        return self._append(x, now)

    def finish(self, now: float | None = None) -> list[Block]:
        """The client ended: flush the resampler and zero-pad the last partial block."""
        self.ended = True
        x = np.zeros(0, np.float32)
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=True)
        blocks = self._append(x, now)
        if self._buf.size:
            pad = np.zeros(self.block, np.float32)
            pad[:self._buf.size] = self._buf
            self._buf = np.zeros(0, np.float32)
            blocks.append(self._new_block(pad, now))
        return blocks

    def _append(self, x: np.ndarray, now: float | None) -> list[Block]:
        if x.size:
            self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        out = []
        while self._buf.size >= self.block:
            out.append(self._new_block(self._buf[:self.block].copy(), now))
            self._buf = self._buf[self.block:]
        return out

    def _new_block(self, pcm: np.ndarray, now: float | None) -> Block:
        b = Block(self.next_seq, pcm, self.samples_in, time.monotonic() if now is None else now)
        self.next_seq += 1
        return b

    # ---- codes in (/v1/decode) ---------------------------------------------
    def push_codes(self, codes: list[np.ndarray], now: float | None = None) -> list[CodesJob]:
        """Validated codes per level [k * tokens_per_block[l]] -> k decode jobs."""
        now = time.monotonic() if now is None else now
        tpb = self.facts.tokens_per_block
        k = codes[0].size // tpb[0]
        jobs = []
        for i in range(k):
            jobs.append(CodesJob(self.next_seq, [c[i * n:(i + 1) * n][None, :] for c, n in zip(codes, tpb)], now))
            self.next_seq += 1
        return jobs

    # ---- results out -------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Blocks created but not yet handed to the sender."""
        return self.next_seq - self.delivered

    def deliver(self, result: StepResult) -> None:
        """Called by the batcher, on the event loop, in seq order."""
        if self.removed or self.failed:
            return
        self.delivered += 1
        self.out.put_nowait(Outgoing("result", result))
        if self.outstanding == 0:
            self._idle.set()

    def fail(self, error: Any) -> None:
        """Stop taking input and queue an error for the sender (closes after it)."""
        self.accepting = False
        self.failed = True
        self.pending.clear()
        self._idle.set()
        self.out.put_nowait(Outgoing("error", error=error))

    async def wait_idle(self) -> None:
        """Until every block created so far has been delivered."""
        while self.outstanding > 0 and not self.removed and not self.failed:
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        """The connection is gone: drop pending work and wake waiters."""
        self.removed = True
        self.accepting = False
        self.pending.clear()
        self._idle.set()

    def __repr__(self) -> str:
        return (f"Session({self.id}, {self.endpoint}, in={self.samples_in}, blocks={self.next_seq}, "
                f"delivered={self.delivered}, pending={len(self.pending)})")
