"""The batching consumer: ready blocks from many sessions -> one batched step.

Sessions queue jobs (``Block`` to encode, ``CodesJob`` to decode). A session's
blocks depend on each other through its state, so at most one of its blocks is
in a step at a time; across sessions the consumer gathers up to ``max_batch``
ready sessions, waiting at most ``max_wait_ms`` after the oldest job became
ready, stacks their state rows (``stack_states``), runs ``encode_step`` and
then ``decode_step`` (for sessions that want audio and for /v1/decode) as one
call in a worker thread, splits the states back and delivers each result to
its session in order.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import Backend, State, split_states, stack_states
from .metrics import ServerMetrics
from .protocol import ProtocolError
from .session import Block, CodesJob, Sched, Session, StepResult

log = logging.getLogger("llmcodec.batcher")


class Batcher:
    """One consumer per server; the model runs in one worker thread, off the event loop."""

    def __init__(self, backend: Backend, max_batch: int = 16, max_wait_ms: float = 5.0,
                 metrics: ServerMetrics | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics or ServerMetrics()
        self._ready: deque[Session] = deque()
        self._sessions: set[Session] = set()  # every session that submitted and is not removed
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmcodec-step")
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.steps = 0

    # ---- called by connection handlers (event loop) --------------------------
    def submit(self, session: Session, jobs: list[Block | CodesJob]) -> None:
        if not jobs or session.dropped:
            return
        session.pending.extend(jobs)
        self._sessions.add(session)
        self._mark_ready(session)
        self._update_depth()

    def remove(self, session: Session) -> None:
        """Forget a session (its connection is gone); an in-flight result is dropped."""
        session.close()
        self._sessions.discard(session)
        if session.sched is Sched.QUEUED:
            try:
                self._ready.remove(session)
            except ValueError:
                pass
            session.sched = Sched.IDLE
        self._update_depth()

    @property
    def queue_depth(self) -> int:
        return sum(len(s.pending) for s in self._ready)

    def _mark_ready(self, s: Session) -> None:
        if s.pending and s.sched is Sched.IDLE and not s.dropped:
            s.sched = Sched.QUEUED
            self._ready.append(s)
            self._wake.set()

    def _update_depth(self) -> None:
        self.metrics.queue_depth.set(self.queue_depth)

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="llmcodec-batcher")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    # ---- the consumer ------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._ready:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
            # Gather: until max_batch sessions (or every known session) are ready,
            # or the oldest job waited max_wait.
            oldest = min((s.pending[0].t_ready for s in self._ready if s.pending), default=time.monotonic())
            while len(self._ready) < min(self.max_batch, len(self._sessions)) and not self._stopping:
                left = oldest + self.max_wait - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            batch: list[Session] = []
            while self._ready and len(batch) < self.max_batch:
                s = self._ready.popleft()
                s.sched = Sched.IDLE
                if s.pending and not s.dropped:
                    batch.append(s)
            if not batch:
                continue
            jobs = [s.pending.popleft() for s in batch]
            for s in batch:
                s.sched = Sched.IN_FLIGHT
            self._update_depth()
            states = [(s.enc_state, s.dec_state) for s in batch]  # handed to the worker, returned new
            try:
                results, new_states = await loop.run_in_executor(self._executor, self._step, states, jobs,
                                                                 [s.wants_audio for s in batch])
            except Exception as e:  # a model failure ends the sessions in the step, not the server
                log.exception("batched step failed")
                results = new_states = None
                for s in batch:
                    s.fail(ProtocolError("internal", f"the model step failed: {type(e).__name__}: {e}"))
            finally:
                self.steps += 1
            for i, s in enumerate(batch):
                s.sched = Sched.IDLE
                if results is not None:
                    s.enc_state, s.dec_state = new_states[i]
                    s.deliver(results[i])
                self._mark_ready(s)
            self._update_depth()

    def _step(self, states: list[tuple[State | None, State | None]], jobs: list[Block | CodesJob],
              wants_audio: list[bool]) -> tuple[list[StepResult], list[tuple[State | None, State | None]]]:
        """Worker thread: one encode step and/or one decode step over the gathered rows. Reads
        only its arguments (each row's encoder and decoder state) and returns the results and
        the new states; the event loop stores them (no session field is written here)."""
        new_states = [list(st) for st in states]
        t0 = time.monotonic()
        n = len(jobs)
        codes_out: list[list[np.ndarray] | None] = [None] * n
        audio_out: list[np.ndarray | None] = [None] * n
        enc = [i for i, j in enumerate(jobs) if isinstance(j, Block)]
        if enc:
            pcm = np.stack([jobs[i].pcm for i in enc])
            state = stack_states([states[i][0] for i in enc])
            t = time.monotonic()
            codes, new = self.backend.encode_step(pcm, state)
            self.metrics.step_seconds.labels("encode").observe(time.monotonic() - t)
            self.metrics.batch_size.labels("encode").observe(len(enc))
            for r, (i, st) in enumerate(zip(enc, split_states(new))):
                new_states[i][0] = st
                codes_out[i] = [np.asarray(c[r]) for c in codes]
        dec = [i for i, j in enumerate(jobs)
               if isinstance(j, CodesJob) or (wants_audio[i] and codes_out[i] is not None)]
        if dec:
            rows = [jobs[i].codes if isinstance(jobs[i], CodesJob) else [c[None, :] for c in codes_out[i]]
                    for i in dec]
            codes_in = [np.concatenate([r[l] for r in rows]) for l in range(len(rows[0]))]
            state = stack_states([states[i][1] for i in dec])
            t = time.monotonic()
            pcm, new = self.backend.decode_step(codes_in, state)
            self.metrics.step_seconds.labels("decode").observe(time.monotonic() - t)
            self.metrics.batch_size.labels("decode").observe(len(dec))
            for r, (i, st) in enumerate(zip(dec, split_states(new))):
                new_states[i][1] = st
                audio_out[i] = np.asarray(pcm[r], dtype=np.float32)
        t1 = time.monotonic()
        return ([StepResult(j.seq, codes_out[i], audio_out[i], getattr(j, "input_samples", 0),
                            j.t_ready, t0, t1, n) for i, j in enumerate(jobs)],
                [(e, d) for e, d in new_states])
