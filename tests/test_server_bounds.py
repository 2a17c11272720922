"""Bounded and fair per connection, on a real server with real speech: a client that sends
as fast as it can is held to its queue limit by backpressure, is served after the streams
that are due, and still gets exactly its offline tokens; the queue depth counts every
queued block; a drain that times out says how many blocks were sent."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from conftest import shut_down_mid_stream
from llmcodec.speech import speech_clip
from llmcodec.stream.backend import ModelFacts
from llmcodec.stream.batcher import Batcher
from llmcodec.stream.buffer import encode_all
from llmcodec.stream.client import stream_pcm
from llmcodec.stream.protocol import STREAM_PATH, parse_start
from llmcodec.stream.server_config import ServerConfig
from llmcodec.stream.server_thread import ServerThread
from llmcodec.stream.session import Session
from llmcodec.stream.slots import StatePool


def _watch(st: ServerThread, stop: threading.Event, seen: dict) -> None:
    """Poll the server: the most unsent blocks of any session, and the largest queue depth."""
    while not stop.is_set():
        unsent, depth = st.call(lambda: (max((s.unsent for s in st.server.sessions.values()), default=0),
                                         st.server.batcher.queue_depth))
        seen["unsent"] = max(seen.get("unsent", 0), unsent)
        seen["depth"] = max(seen.get("depth", 0), depth)
        time.sleep(0.01)


def test_a_fast_sender_is_held_to_its_queue_limit_and_gets_exact_tokens(default_backend):
    clip = speech_clip(12.0, start=30)  # 100 blocks, sent in 64 KiB frames (8.5 blocks each) at once
    cfg = ServerConfig(port=0, max_batch=4, max_queued_seconds=1.0)  # 9 blocks
    with ServerThread(default_backend, cfg) as st:
        limit = st.server.max_unsent
        assert limit == 9
        seen, stop = {}, threading.Event()
        watcher = threading.Thread(target=_watch, args=(st, stop, seen), daemon=True)
        watcher.start()
        try:
            r = asyncio.run(stream_pcm(st.url, clip, 16000, chunk=16384, realtime=False))
        finally:
            stop.set()
            watcher.join(10)
    per_frame = -(-16384 // 1920) + 1
    assert 0 < seen["unsent"] <= limit + per_frame, seen  # never more than the limit plus one message
    assert seen["depth"] > 0  # the queued blocks are counted
    assert r.end_blocks == len(r.blocks) == 100
    ref = encode_all(default_backend, clip)
    assert all(np.array_equal(a, b) for a, b in zip(r.codes(), ref))


def test_a_backlog_does_not_delay_a_stream_that_is_due(default_backend):
    """max_batch 1: four sessions with 12 queued blocks each, ahead of their fair share, and a
    stream whose block is due now. Round-robin would serve the four backlogs first; the
    fair-share clock serves the due block in the next step."""
    facts: ModelFacts = default_backend.facts
    clip = speech_clip(13 * 0.12, start=5)

    def session() -> Session:
        return Session(STREAM_PATH, parse_start({"type": "start", "sample_rate": 16000}), facts)

    async def run():
        b = Batcher(default_backend, max_batch=1, max_wait_ms=0.0)
        greedy, live = [session() for _ in range(4)], session()
        order: list[str] = []
        for i, s in enumerate(greedy + [live]):
            b.attach(s)
            deliver, name = s.deliver, f"g{i}" if s is not live else "live"
            s.deliver = lambda r, deliver=deliver, name=name: (order.append(name), deliver(r))
        b.start()
        for s in greedy:
            b.submit(s, s.push_pcm(clip[:12 * 1920].astype("<f4").tobytes()))
        while len(order) < 8:
            await asyncio.sleep(0.001)
        for s in greedy:  # as a fast client is once served faster than real time (on a slow or
            s.vclock = max(s.vclock, time.monotonic() + 0.5)  # loaded machine it may not be yet)
        served = len(order)
        b.submit(live, live.push_pcm(clip[12 * 1920:].astype("<f4").tobytes()))
        while len(order) < 49:
            await asyncio.sleep(0.005)
        await b.stop()
        return order, served
    order, served = asyncio.run(run())
    assert order.index("live") <= served + 1, (served, order)  # at most the step already running first
    assert sorted(set(order)) == ["g0", "g1", "g2", "g3", "live"] and len(order) == 49


def test_state_pool_rows_are_independent_and_grow():
    init = {"a": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "b": np.ones((1, 4), np.float32)}
    pool = StatePool(init, capacity=2)
    slots = [pool.acquire() for _ in range(5)]  # grows from 2 to 8
    assert pool.capacity == 8 and pool.in_use == 5 and len(set(slots)) == 5
    got = pool.gather([slots[3], slots[1]])
    assert got["a"].shape == (2, 2, 3) and np.array_equal(got["a"][0], init["a"][0])
    pool.scatter([slots[3]], {"a": np.full((1, 2, 3), 7, np.float32), "b": np.zeros((1, 4), np.float32)})
    after = pool.gather(slots)
    assert np.all(after["a"][3] == 7) and np.array_equal(after["a"][1], init["a"][0])
    pool.release(slots[3])
    with pytest.raises(ValueError, match="not in use"):
        pool.release(slots[3])
    again = pool.acquire()
    assert again == slots[3] and np.array_equal(pool.gather([again])["a"][0], init["a"][0])  # reset to initial


def test_a_drain_timeout_says_how_many_blocks_were_sent(default_backend):
    clip = speech_clip(6.0, start=90)  # 50 blocks at once; the drain gives them no time
    st = ServerThread(default_backend, ServerConfig(port=0, max_batch=1, drain_timeout=0.0,
                                                     max_queued_seconds=10.0)).start()
    try:
        seqs, error, _ = shut_down_mid_stream(st, [clip.astype("<f4").tobytes()], lambda s: s.next_seq >= 50)
    finally:
        st.stop()
    assert error["code"] == "going_away", error
    assert f"{len(seqs)} of 50 complete block(s) were sent" in error["message"], (len(seqs), error)
    assert len(seqs) < 50 and seqs == list(range(len(seqs)))
