"""Benchmarks: step latency per backend, server load, peers (Opus, Mimi), report and plots.

``llmcodec bench [--quick]`` or ``python -m bench.run_all`` runs them all;
each module is also runnable on its own (``python -m bench.step_latency``).
"""
