"""Few-shot audio task learning with a frozen LLM (UniAudio 1.5's in-context harness).

The codec turns audio into tokens of an LLM's vocabulary; shown a few labelled
examples as such tokens, a frozen LLM classifies a new clip with no parameter
update. Modules: :mod:`.prompts` (the reference's prompt layout, as token ids),
:mod:`.llm` (loading, constrained greedy decoding, log-likelihood scoring),
:mod:`.tasks` (real-recording episode sources, seeded N-way K-shot sampling),
:mod:`.report` (Wilson intervals, tables), :mod:`.run` (the harness).
Command line: ``llmcodec icl run`` / ``llmcodec icl show``.
"""
