"""The batching consumer: ready blocks from many sessions -> batched steps on worker threads.

Sessions queue jobs (``Block`` to encode, ``CodesJob`` to decode). A session's
blocks depend on each other through its state, so at most one of its blocks is
in a step at a time. Each session's state is a row of the batcher's slot pools
(``StatePool``): a step gathers its rows, runs ``encode_step`` and then
``decode_step`` (for sessions that want audio and for /v1/decode) as one call
on a worker thread, and scatters the new rows back.

Scheduling: up to ``workers`` steps run at once (one per core by default, each
runtime single-threaded). Every session has a fair-share clock
(``Session.vclock``) that advances one block duration per block served: a
stream at real-time pace is always *on time*, while a client that sends faster
than real time runs *ahead* of its clock (by more than one block).

* A step of on-time sessions takes up to ``max_batch`` of them, most overdue
  first, waiting at most ``max_wait_ms`` after the oldest on-time job became
  ready.
* Sessions ahead of their clock never share a step with on-time ones; they get
  steps of at most ``AHEAD_BATCH`` rows when no on-time job is waiting, and,
  with several workers, only while another worker stays free for the next
  on-time block. While real-time streams are present (an on-time step in the
  last second), ahead steps also draw on a budget of ``AHEAD_SHARE`` of one
  worker's time, so fast clients cannot fill the machine under the real-time
  ones; on a server with no real-time stream they run at full speed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import Backend
from .metrics import ServerMetrics
from .protocol import ProtocolError
from .session import Block, CodesJob, Sched, Session, StepResult
from .slots import StatePool

log = logging.getLogger("llmcodec.batcher")

AHEAD_BATCH = 4  # most rows in a step of sessions ahead of their fair share
AHEAD_SHARE = 0.25  # of one worker's time for ahead steps while real-time streams are present
AHEAD_BURST = 0.05  # seconds of ahead work that may be saved up
LIVE_MEMORY = 1.0  # seconds after an on-time step during which real-time streams count as present


def default_workers() -> int:
    """One step worker per core, at most 2 beyond which one batch's rows are better spent."""
    return max(1, min(2, os.cpu_count() or 1))


class Batcher:
    """One consumer per server; the model runs on ``workers`` threads, off the event loop."""

    def __init__(self, backend: Backend, max_batch: int = 16, max_wait_ms: float = 5.0,
                 metrics: ServerMetrics | None = None, workers: int = 1):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.workers = workers
        self.block_seconds = backend.facts.block_seconds
        self.metrics = metrics or ServerMetrics()
        self.enc_pool = StatePool(backend.init_encoder_state(1))
        self.dec_pool = StatePool(backend.init_decoder_state(1))
        self._ready: set[Session] = set()
        self._sessions: set[Session] = set()  # attached and not removed
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmcodec-step")
        self._busy = 0  # steps running
        self._steps: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._live_until = 0.0  # real-time streams are present until then
        self._ahead_budget = AHEAD_BURST  # seconds of ahead work allowed now
        self._ahead_at = time.monotonic()  # when the budget was last refilled
        self.steps = 0

    # ---- called by connection handlers (event loop) --------------------------
    def attach(self, session: Session) -> None:
        """Give a new session its state rows."""
        if session.encodes:
            session.enc_slot = self.enc_pool.acquire()
        if session.decodes:
            session.dec_slot = self.dec_pool.acquire()
        self._sessions.add(session)

    def submit(self, session: Session, jobs: list[Block | CodesJob]) -> None:
        if not jobs or session.dropped or session not in self._sessions:
            return
        session.pending.extend(jobs)
        self._mark_ready(session)
        self._update_depth()

    def remove(self, session: Session) -> None:
        """Forget a session (its connection is gone); an in-flight result is dropped and its
        rows are released when that step returns."""
        session.close()
        self._ready.discard(session)
        if session.sched is Sched.QUEUED:
            session.sched = Sched.IDLE
        if session in self._sessions:
            self._sessions.discard(session)
            if session.sched is not Sched.IN_FLIGHT:
                self._release(session)
        self._update_depth()

    def _release(self, s: Session) -> None:
        if s.enc_slot is not None:
            self.enc_pool.release(s.enc_slot)
            s.enc_slot = None
        if s.dec_slot is not None:
            self.dec_pool.release(s.dec_slot)
            s.dec_slot = None

    @property
    def queue_depth(self) -> int:
        """Blocks waiting for a step, in every session (in a running step: not counted)."""
        return sum(len(s.pending) for s in self._sessions)

    def _mark_ready(self, s: Session) -> None:
        if s.pending and s.sched is Sched.IDLE and not s.dropped:
            s.sched = Sched.QUEUED
            self._ready.add(s)
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
        if self._steps:
            await asyncio.gather(*self._steps, return_exceptions=True)
        self._executor.shutdown(wait=True)

    # ---- the consumer ------------------------------------------------------------
    def _due(self, s: Session) -> float:
        """When this session's head job is due: it became ready, and the session is not ahead
        of its fair share."""
        return max(s.pending[0].t_ready, s.vclock)

    async def _sleep(self, timeout: float | None) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _on_time(self, s: Session, now: float) -> bool:
        return self._due(s) <= now + self.block_seconds

    def _pick(self) -> tuple[list[Session], bool]:
        """The next step's sessions and whether they are ahead of their share: on-time ones
        (most overdue first), else ahead ones when a worker and the ahead budget are to spare;
        [] when nothing may run now."""
        now = time.monotonic()
        for s in [s for s in self._ready if not s.pending or s.dropped]:
            self._ready.discard(s)
            s.sched = Sched.IDLE
        on_time = sorted((s for s in self._ready if self._on_time(s, now)), key=self._due)
        if on_time:
            self._live_until = now + LIVE_MEMORY
            return on_time[:self.max_batch], False
        if self.workers > 1 and self._busy >= self.workers - 1:
            return [], True  # keep a worker free for the next on-time block
        self._ahead_budget = min(AHEAD_BURST, self._ahead_budget + (now - self._ahead_at) * AHEAD_SHARE)
        self._ahead_at = now
        if now < self._live_until and self._ahead_budget < 0:
            return [], True  # real-time streams are present and the ahead share is spent
        return sorted(self._ready, key=self._due)[:min(AHEAD_BATCH, self.max_batch)], True

    async def _run(self) -> None:
        while True:
            while not (self._ready and self._busy < self.workers):
                if self._stopping and not self._ready:
                    return
                await self._sleep(None)
            # Gather: until max_batch on-time sessions (or every session that could be one)
            # are ready, or the oldest on-time job waited max_wait.
            want = min(self.max_batch, len(self._sessions) - self._in_flight())
            while not self._stopping:
                now = time.monotonic()
                on_time = [s for s in self._ready if s.pending and self._on_time(s, now)]
                if not on_time or len(on_time) >= want:
                    break
                left = min(s.pending[0].t_ready for s in on_time) + self.max_wait - now
                if left <= 0:
                    break
                await self._sleep(left)
            batch, ahead = self._pick()
            if not batch:  # only ahead sessions, and no worker or budget to spare: wait for either
                await self._sleep(self.block_seconds / 4)
                continue
            jobs = []
            for s in batch:
                self._ready.discard(s)
                job = s.pending.popleft()
                s.vclock = max(s.vclock, job.t_ready) + self.block_seconds
                s.sched = Sched.IN_FLIGHT
                jobs.append(job)
            self._update_depth()
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch, jobs, ahead))
            self._steps.add(task)
            task.add_done_callback(self._steps.discard)

    def _in_flight(self) -> int:
        return sum(1 for s in self._sessions if s.sched is Sched.IN_FLIGHT)

    async def _execute(self, batch: list[Session], jobs: list[Block | CodesJob], ahead: bool) -> None:
        loop = asyncio.get_running_loop()
        enc_slots = [s.enc_slot for s, j in zip(batch, jobs) if isinstance(j, Block)]
        dec_slots = [s.dec_slot if (isinstance(j, CodesJob) or s.wants_audio) else None
                     for s, j in zip(batch, jobs)]
        t0 = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self._step, jobs, enc_slots, dec_slots)
        except Exception as e:  # a model failure ends the sessions in the step, not the server
            log.exception("batched step failed")
            results = None
            for s in batch:
                s.fail(ProtocolError("internal", f"the model step failed: {type(e).__name__}: {e}"))
        finally:
            self.steps += 1
            self._busy -= 1
            if ahead:
                self._ahead_budget -= time.monotonic() - t0
        for i, s in enumerate(batch):
            s.sched = Sched.IDLE
            if s not in self._sessions:  # removed during the step: its rows are free now
                self._release(s)
                continue
            if results is not None:
                s.deliver(results[i])
            self._mark_ready(s)
        self._update_depth()
        self._wake.set()

    # ---- the worker thread ----------------------------------------------------------
    def _run_part(self, kind: str, pool: StatePool, slots: list[int], step, inputs):
        """Gather ``slots``' rows, run one step, scatter the new rows; returns its output."""
        state = pool.gather(slots)
        t = time.monotonic()
        out, new = step(inputs, state)
        self.metrics.step_seconds.labels(kind).observe(time.monotonic() - t)
        self.metrics.batch_size.labels(kind).observe(len(slots))
        pool.scatter(slots, new)
        return out

    def _step(self, jobs: list[Block | CodesJob], enc_slots: list[int],
              dec_slots: list[int | None]) -> list[StepResult]:
        """Worker thread: one encode step and/or one decode step over the batch's rows. Reads
        the jobs and writes only its own rows of the pools (no session field is touched)."""
        t0 = time.monotonic()
        n = len(jobs)
        codes_out: list[list[np.ndarray] | None] = [None] * n
        audio_out: list[np.ndarray | None] = [None] * n
        enc = [i for i, j in enumerate(jobs) if isinstance(j, Block)]
        if enc:
            codes = self._run_part("encode", self.enc_pool, enc_slots, self.backend.encode_step,
                                   np.stack([jobs[i].pcm for i in enc]))
            for r, i in enumerate(enc):
                codes_out[i] = [np.asarray(c[r]) for c in codes]
        dec = [i for i in range(n) if dec_slots[i] is not None]
        if dec:
            rows = [jobs[i].codes if isinstance(jobs[i], CodesJob) else [c[None, :] for c in codes_out[i]]
                    for i in dec]
            pcm = self._run_part("decode", self.dec_pool, [dec_slots[i] for i in dec], self.backend.decode_step,
                                 [np.concatenate([r[l] for r in rows]) for l in range(len(rows[0]))])
            for r, i in enumerate(dec):
                audio_out[i] = np.asarray(pcm[r], dtype=np.float32)
        t1 = time.monotonic()
        return [StepResult(j.seq, codes_out[i], audio_out[i], getattr(j, "input_samples", 0),
                           j.t_ready, t0, t1, n) for i, j in enumerate(jobs)]
