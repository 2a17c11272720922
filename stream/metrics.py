"""Prometheus metrics of one server instance (its own registry, so several
servers in one process, as in tests, never share counters)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class ServerMetrics:
    """The server's counters, gauges and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.step_seconds = Histogram("llmcodec_step_seconds", "Wall time of one batched model step",
                                      ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("llmcodec_batch_size", "Streams in one batched step",
                                    ["kind"], buckets=BATCH_BUCKETS, registry=r)
        self.block_latency = Histogram("llmcodec_block_latency_seconds",
                                       "Block complete at the server -> its result sent",
                                       ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("llmcodec_queue_seconds", "Block complete -> its batched step starts",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.active_streams = Gauge("llmcodec_active_streams", "Open sessions", ["endpoint"], registry=r)
        self.queue_depth = Gauge("llmcodec_queue_depth", "Blocks waiting for a model step", registry=r)
        self.blocks = Counter("llmcodec_blocks", "Blocks processed", ["endpoint"], registry=r)
        self.errors = Counter("llmcodec_errors", "Error messages sent to clients", ["code"], registry=r)
        self.refused = Counter("llmcodec_refused_connections", "HTTP requests refused before the handshake",
                               ["reason"], registry=r)
        self.connections = Counter("llmcodec_connections", "WebSocket sessions opened", ["endpoint"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
