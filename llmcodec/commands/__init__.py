"""CLI subcommands (see llmcodec/cli.py)."""
