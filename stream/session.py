"""One connection's state: PCM decoding, streaming resampling, block buffering,
and the encoder/decoder state rows that the batcher steps.

A session never runs the model itself: it turns frames into ``Block`` jobs and
receives results in order through ``deliver``; its ``out`` queue feeds the
connection's sender task. Its state rows live in the batcher's slot pools
(``enc_slot``/``dec_slot``, stream/slots.py); ``vclock`` is the batcher's fair-share
clock (stream/batcher.py).
"""
from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from .backend import ModelFacts
from .buffer import SampleBlocks
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


class Phase(enum.Enum):
    """A session's lifecycle; changed only by the methods named in :data:`TRANSITIONS`."""

    OPEN = "open"  # taking input
    ENDING = "ending"  # the client sent end: no more input; queued blocks still finish
    DRAINING = "draining"  # the server is shutting down: no more input
    FAILED = "failed"  # an error was queued for the sender: further results are dropped
    CLOSED = "closed"  # the connection is gone: pending work and results are dropped


# phase -> the phases it may move to (Session._to enforces it)
TRANSITIONS = {
    Phase.OPEN: {Phase.ENDING, Phase.DRAINING, Phase.FAILED, Phase.CLOSED},
    Phase.ENDING: {Phase.FAILED, Phase.CLOSED},
    Phase.DRAINING: {Phase.FAILED, Phase.CLOSED},
    Phase.FAILED: {Phase.CLOSED},
    Phase.CLOSED: set(),
}


class Sched(enum.Enum):
    """Where a session stands with the batcher (written by the batcher, on the event loop only)."""

    IDLE = "idle"  # nothing queued for a step
    QUEUED = "queued"  # in the batcher's ready queue
    IN_FLIGHT = "in_flight"  # one of its jobs is in the running step


class Session:
    """Per-connection state for /v1/stream (``kind == "encode"``) or /v1/decode.

    Everything here is read and written on the event loop; the batcher's worker thread
    only reads the states it is handed and returns the new ones (``Batcher._step``).
    """

    def __init__(self, endpoint: str, start: Start, facts: ModelFacts):
        self.id = f"s{next(_ids)}"
        self.endpoint = endpoint
        self.start = start
        self.facts = facts
        self.block = facts.block_size
        self.wants_audio = "audio" in start.returns
        self.encodes = endpoint == STREAM_PATH
        self.decodes = self.wants_audio or endpoint == DECODE_PATH
        self.enc_slot: int | None = None  # rows in the batcher's state pools (Batcher.attach)
        self.dec_slot: int | None = None
        self.vclock = 0.0  # the batcher's fair-share clock: when this stream's next block is due
        self.resampler = None
        if endpoint == STREAM_PATH and start.sample_rate != facts.sample_rate:
            self.resampler = soxr.ResampleStream(start.sample_rate, facts.sample_rate, 1,
                                                 dtype="float32", quality="HQ")
        self._blocks = SampleBlocks(self.block)
        self.samples_in = 0  # input samples (per channel, client rate)
        self.next_seq = 0  # blocks created
        self.delivered = 0  # results handed to the sender
        self.sent = 0  # results the sender has written to the connection
        self.phase = Phase.OPEN
        # batcher bookkeeping
        self.pending: deque[Block | CodesJob] = deque()
        self.sched = Sched.IDLE
        self.out: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._progress = asyncio.Event()  # set whenever delivered, sent or the phase changes

    # ---- the lifecycle (the only writers of ``phase``) ---------------------------
    def _to(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise RuntimeError(f"session {self.id}: no transition {self.phase.value} -> {phase.value}")
        self.phase = phase

    @property
    def accepting(self) -> bool:
        """Input is still taken (not ended, draining, failed or closed)."""
        return self.phase is Phase.OPEN

    @property
    def dropped(self) -> bool:
        """Results are no longer delivered (failed or closed)."""
        return self.phase in (Phase.FAILED, Phase.CLOSED)

    def end(self) -> None:
        """The client sent end (OPEN -> ENDING)."""
        self._to(Phase.ENDING)

    def drain(self) -> None:
        """The server is shutting down (OPEN -> DRAINING)."""
        self._to(Phase.DRAINING)

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
        x = np.zeros(0, np.float32)
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=True)
        return self._append(x, now) + [self._new_block(b, now) for b in self._blocks.flush()]

    def _append(self, x: np.ndarray, now: float | None) -> list[Block]:
        return [self._new_block(b, now) for b in self._blocks.push(x)]

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
        if self.dropped:
            return
        self.delivered += 1
        self.out.put_nowait(Outgoing("result", result))
        self._progress.set()

    def was_sent(self) -> None:
        """The sender wrote one result to the connection."""
        self.sent += 1
        self._progress.set()

    @property
    def unsent(self) -> int:
        """Blocks created but not yet written to the connection (queued, in a step or in ``out``)."""
        return self.next_seq - self.sent

    def fail(self, error: Any) -> None:
        """Stop taking input and queue an error for the sender (closes after it); nothing
        once the session already failed or closed."""
        if self.dropped:
            return
        self._to(Phase.FAILED)
        self.pending.clear()
        self._progress.set()
        self.out.put_nowait(Outgoing("error", error=error))

    async def wait_idle(self) -> None:
        """Until every block created so far has been delivered (or the session is dropped)."""
        while self.outstanding > 0 and not self.dropped:
            self._progress.clear()
            await self._progress.wait()

    async def wait_unsent_below(self, blocks: int) -> None:
        """Backpressure: until at most ``blocks`` blocks are unsent (or the session is dropped)."""
        while self.unsent > blocks and not self.dropped:
            self._progress.clear()
            await self._progress.wait()

    def close(self) -> None:
        """The connection is gone: drop pending work and wake waiters."""
        if self.phase is not Phase.CLOSED:
            self._to(Phase.CLOSED)
        self.pending.clear()
        self._progress.set()

    def __repr__(self) -> str:
        return (f"Session({self.id}, {self.endpoint}, {self.phase.value}, in={self.samples_in}, blocks={self.next_seq}, "
                f"delivered={self.delivered}, pending={len(self.pending)})")
