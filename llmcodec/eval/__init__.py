"""Evaluation: metrics (PESQ-WB, STOI, WER, DNSMOS), baselines (Opus 6 kbps,
Whisper tiny.en transcription) and the side-by-side report of ``llmcodec eval``."""
