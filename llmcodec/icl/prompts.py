"""In-context prompts in the reference's layout, built as LLM token-id sequences.

The layout of UniAudio 1.5 (``infer_code/eval_accent_understanding_v2.py`` of
LLM-Codec)::

    For each of the following input output pairs, output is one of ['a' or 'b']
    ###
    Input: < AUDIO >
    Output: a
    ###
    Input: < AUDIO >
    Output:

Each text part is tokenised on its own and the parts' ids are concatenated, as
the reference does. AUDIO is the level-1 words (``" word word ..."``, which
re-tokenise exactly into the LLM's tokens) optionally followed by the level-2
and level-3 codes, which *are* LLM token ids and go into the sequence as such.
With GPT-2 style BPE (SmolLM2) the space of ``Output: a`` belongs to the label
token ``" a"``, so the query's text ends at ``Output:`` and every candidate
label is ``" " + label`` followed by the ``"\\n"`` that ends an example.
Without task induction the instruction line is left out.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..vocab import Vocabulary

INSTRUCTION = "For each of the following input output pairs, output is one of [{labels}]\n"
EXAMPLE_OPEN = "###\nInput: <"
EXAMPLE_CLOSE = " >\nOutput:"
SEPARATOR = "\n"

Codes = Sequence[np.ndarray]  # codes per level, [n_l] each


@dataclass(frozen=True)
class Prompt:
    """A prompt as the LLM sees it (``ids``) and as text (``text`` = decode(ids)).

    ``candidates[i]`` are the token ids the LLM must produce for ``labels[i]``:
    ``" " + label`` then the separator. ``audio_spans`` are the ``[start, end)``
    positions in ``ids`` of each example's audio, the query's last.
    """

    ids: tuple[int, ...]
    text: str
    labels: tuple[str, ...]
    candidates: tuple[tuple[int, ...], ...]
    audio_spans: tuple[tuple[int, int], ...]
    target: str | None = None

    def __len__(self) -> int:
        return len(self.ids)


def instruction(labels: Sequence[str]) -> str:
    return INSTRUCTION.format(labels=" or ".join(f"'{lab}'" for lab in labels))


class PromptBuilder:
    """Builds prompts for one LLM tokenizer and one codec vocabulary.

    ``tokenize(text) -> ids`` (no special tokens) and ``decode(ids) -> text`` are
    the LLM's. ``same_vocab`` says the LLM's vocabulary is the codec's: then the
    level-1 words map to their stored token ids and levels 2 and 3 can be used;
    otherwise the words are re-tokenised as text and only level 1 is accepted.
    """

    def __init__(self, tokenize: Callable[[str], list[int]], decode: Callable[[list[int]], str],
                 vocab: Vocabulary, levels: int = 1, same_vocab: bool = True):
        if levels not in (1, 3):
            raise ValueError(f"levels must be 1 (level-1 words) or 3 (all levels), got {levels}")
        if levels == 3 and not same_vocab:
            raise ValueError("levels 2 and 3 are token ids of the codec's LLM "
                             f"({vocab.llm_name}); this LLM has another vocabulary: use level 1 only")
        self.tokenize, self.decode, self.vocab = tokenize, decode, vocab
        self.levels, self.same_vocab = levels, same_vocab
        self._cache: dict[str, tuple[int, ...]] = {}

    def _text(self, text: str) -> tuple[int, ...]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self._cache[text] = tuple(self.tokenize(text))
        return ids

    def audio_ids(self, codes: Codes) -> list[int]:
        """Token ids of one clip: level-1 words, then (all levels) level-2 and level-3 ids."""
        if len(codes) < self.levels:
            raise ValueError(f"expected {self.levels} levels of codes, got {len(codes)}")
        if self.same_vocab:
            ids = self.vocab.codes_to_token_ids(0, codes[0])
        else:
            ids = list(self.tokenize(self.vocab.codes_to_text(0, codes[0])))
        for level in range(1, self.levels):
            ids += self.vocab.codes_to_token_ids(level, codes[level])
        return ids

    def candidates(self, labels: Sequence[str]) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(self._text(" " + lab) + self._text(SEPARATOR)) for lab in labels)

    def build(self, examples: Sequence[tuple[Codes, str]], query: Codes, labels: Sequence[str], *,
              induction: bool = True, target: str | None = None) -> Prompt:
        """Instruction (with induction), the examples in order, then the query."""
        labels = tuple(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"need at least 2 distinct labels, got {labels}")
        for lab in labels:
            if not lab or lab != lab.strip() or "\n" in lab or "'" in lab:
                raise ValueError(f"label {lab!r} must be non-empty, without outer spaces, newlines or quotes")
        if target is not None and target not in labels:
            raise ValueError(f"target {target!r} is not one of the labels {labels}")
        ids: list[int] = list(self._text(instruction(labels))) if induction else []
        spans = []
        for codes, lab in list(examples) + [(query, None)]:
            if lab is not None and lab not in labels:
                raise ValueError(f"example label {lab!r} is not one of the labels {labels}")
            ids += self._text(EXAMPLE_OPEN)
            audio = self.audio_ids(codes)
            spans.append((len(ids), len(ids) + len(audio)))
            ids += audio
            ids += self._text(EXAMPLE_CLOSE)
            if lab is not None:
                ids += self._text(" " + lab) + self._text(SEPARATOR)
        return Prompt(tuple(ids), self.decode(ids), labels, self.candidates(labels), tuple(spans), target)
