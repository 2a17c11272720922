"""Training data: offline sources, the corpus cache, teacher features, segment sampling.

* ``sources``: what this machine has offline (Debian speech prompts with their
  transcripts, texts for synthesis, music, event sounds) and the fixed held-out split.
* ``synth``: English speech synthesised by Piper.
* ``teachers``: Whisper tiny.en encoder frames and MiniLM sentence embeddings.
* ``corpus``: ``build_corpus`` writes the cache; ``Corpus`` reads it (memory-mapped).
* ``sampler``: deterministic batches of segments with their teacher targets.
"""
