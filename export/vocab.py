"""Token names of an export directory without torch: ``vocab.json`` + ``tokenizer.json``,
read as ``llmcodec.token_forms.TokenForms`` (the same forms as ``llmcodec.vocab.Vocabulary``)."""
from __future__ import annotations

from pathlib import Path

from llmcodec.token_forms import TOKENIZER_FILE, VOCAB_FILE, TokenForms


def load_export_vocab(directory: str | Path) -> TokenForms | None:
    """The export directory's token forms, or None when it has none (a model without a vocabulary)."""
    d = Path(directory)
    if (d / VOCAB_FILE).is_file() and (d / TOKENIZER_FILE).is_file():
        return TokenForms.load(d)
    return None
