"""A session's lifecycle is one explicit state with its transitions in one table."""
from __future__ import annotations

import asyncio

import pytest

from llmcodec.stream.backend import ModelFacts
from llmcodec.stream.protocol import DECODE_PATH, STREAM_PATH, ProtocolError, parse_start
from llmcodec.stream.session import TRANSITIONS, Phase, Sched, Session

FACTS = ModelFacts("m", 16000, 1920, 480, (4, 2, 1), (1, 2, 4), (10, 20, 20), "llm")


def _session(endpoint: str = STREAM_PATH) -> Session:
    start = parse_start({"type": "start", "sample_rate": 16000}, endpoint) \
        if endpoint == STREAM_PATH else parse_start({"type": "start"}, endpoint)
    return Session(endpoint, start, FACTS)


def test_lifecycle_transitions():
    async def run():
        s = _session()
        assert s.phase is Phase.OPEN and s.accepting and not s.dropped and s.sched is Sched.IDLE
        s.end()
        assert s.phase is Phase.ENDING and not s.accepting and not s.dropped
        with pytest.raises(RuntimeError, match="ending -> draining"):
            s.drain()  # a session the client ended is not drained
        s.fail(ProtocolError("internal", "x"))
        assert s.phase is Phase.FAILED and s.dropped and s.out.qsize() == 1
        s.fail(ProtocolError("internal", "again"))  # already failed: nothing more is queued
        assert s.out.qsize() == 1
        s.close()
        s.close()  # closing twice is harmless
        assert s.phase is Phase.CLOSED and TRANSITIONS[Phase.CLOSED] == set()
        with pytest.raises(RuntimeError, match="closed -> ending"):
            s.end()
        d = _session(DECODE_PATH)
        d.drain()
        assert d.phase is Phase.DRAINING and not d.accepting
        d.close()
        assert d.dropped
        await asyncio.wait_for(d.wait_idle(), 1)  # a closed session never blocks its waiters
    asyncio.run(run())


def test_every_phase_can_end_closed():
    for phase, targets in TRANSITIONS.items():
        assert phase is Phase.CLOSED or Phase.CLOSED in targets
        assert Phase.OPEN not in targets  # nothing reopens
