"""llmcodec: a streaming audio codec whose codebooks are an LLM's token embeddings."""
