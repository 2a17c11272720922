"""Benchmarks: step latency per backend, server load, peers (Opus, Mimi), report and plots.

``llmcodec bench [--quick]`` or ``python -m llmcodec.bench.run_all`` runs them all;
each module is also runnable on its own (``python -m llmcodec.bench.step_latency``).
"""
