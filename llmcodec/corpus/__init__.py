"""Corpus tokenization: many audio files -> a Parquet dataset of LLM tokens (``llmcodec tokenize``)."""
