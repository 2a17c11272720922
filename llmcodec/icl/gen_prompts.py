"""Generation prompts: the LLM reads examples ``Input: ... / Output: <audio tokens>`` and writes
the audio tokens of the query's output, which the codec decodes.

The layout (UniAudio 1.5's generation tasks, in the classification prompt's style)::

    ###
    Input: four                     (text-to-speech: the digit word)
    Output: word word ... <ids>
    ###
    Input: < word ... <ids> >       (denoising: the noisy recording's tokens)
    Output: word word ... <ids>
    ###
    Input: two
    Output:

Audio is written in **block order**: per codec block (4 frames, 120 ms), its level-1 word
(1-2 LLM tokens, with its leading space), then with ``levels=3`` its 2 level-2 and 4 level-3
codes, which are LLM token ids themselves. Each example's output ends with ``"\\n"``. As in the
classification prompts, the query's text ends at ``Output:``: the space belongs to the first
word's token.

:class:`AudioGrammar` is what the generated positions may be: at a block's first position a
level-1 word's first token (every one starts with a space piece, ``Ġ``) or, once at least one
block is written, the newline that ends the output; after a two-token word's first token its
second tokens; levels 2 and 3 any of their ids. So decoding stops only at a whole number of
blocks and every position is a valid id of its level. A one-token word can also begin a
two-token word (77 of SmolLM2's 4096 words); with ``levels=3`` the token after it may then be
either the word's second token or a level-2 id, and the longer word is read (the rule
:meth:`AudioGrammar.parse` and the generator share).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..vocab import Vocabulary

EXAMPLE_INPUT = "###\nInput:"
AUDIO_OPEN, AUDIO_CLOSE = " <", " >"
EXAMPLE_OUTPUT = "\nOutput:"
SEPARATOR = "\n"
# Codes of one block per level (strides 4, 2, 1 over 4 frames).
BLOCK_CODES = (1, 2, 4)

Codes = Sequence[np.ndarray]  # codes per level, [blocks * BLOCK_CODES[l]] each


@dataclass(frozen=True)
class GrammarState:
    """Where the generator is: ``pos`` in the block (0: a level-1 word starts), the first token
    of a word that may still take a second one (``pending``, -1: none), whole ``blocks``
    written, and ``done`` once the closing newline is written."""

    pos: int
    pending: int
    blocks: int
    done: bool


@dataclass(frozen=True)
class GenPrompt:
    """The prompt's token ids (ending at ``Output:``) and its text."""

    ids: tuple[int, ...]
    text: str

    def __len__(self) -> int:
        return len(self.ids)


class AudioGrammar:
    """Which LLM token ids may come next while writing audio, and how ids read back as codes.

    ``levels`` 1: level-1 words only; 3: all levels in block order.
    """

    def __init__(self, vocab: Vocabulary, levels: int, newline: Sequence[int]):
        if levels not in (1, 3):
            raise ValueError(f"levels must be 1 (level-1 words) or 3 (all levels), got {levels}")
        if len(newline) != 1:
            raise ValueError(f"the separator must be one LLM token, got {list(newline)}")
        self.vocab, self.levels, self.newline = vocab, levels, int(newline[0])
        self.per_block = 1 + (sum(BLOCK_CODES[1:]) if levels == 3 else 0)
        self.word_of: dict[tuple[int, ...], int] = {}
        self.seconds: dict[int, dict[int, int]] = {}  # first token -> {second token: word}
        for code, ids in enumerate(vocab.word_token_ids):
            self.word_of[tuple(ids)] = code
            if len(ids) == 2:
                self.seconds.setdefault(ids[0], {})[ids[1]] = code
        self.first_tokens = np.array(sorted({ids[0] for ids in vocab.word_token_ids}), np.int64)
        if self.newline in set(self.first_tokens.tolist()):
            raise ValueError("the separator token is also a word's first token")
        self.vocab_size = vocab.vocab_size

    # ---- prompts ---------------------------------------------------------------------------------
    def audio_ids(self, codes: Codes) -> list[int]:
        """Codes per level -> token ids in block order."""
        if len(codes) < self.levels:
            raise ValueError(f"expected {self.levels} levels of codes, got {len(codes)}")
        blocks = len(codes[0])
        for lv in range(self.levels):
            if len(codes[lv]) != blocks * BLOCK_CODES[lv]:
                raise ValueError(f"level {lv + 1} has {len(codes[lv])} codes, expected {blocks * BLOCK_CODES[lv]} "
                                 f"for {blocks} blocks")
        words = [self.vocab.word_token_ids[int(c)] for c in codes[0]]
        out: list[int] = []
        for b in range(blocks):
            out += words[b]
            for lv in range(1, self.levels):
                n = BLOCK_CODES[lv]
                out += self.vocab.codes_to_token_ids(lv, codes[lv][b * n:(b + 1) * n])
        return out

    # ---- decoding --------------------------------------------------------------------------------
    def start(self) -> GrammarState:
        return GrammarState(0, -1, 0, False)

    def allowed(self, st: GrammarState, max_blocks: int) -> np.ndarray | None:
        """The ids allowed next ([n] int64) in state ``st``; None: any id (a level-2/3 code)."""
        none = np.zeros(0, np.int64)
        if st.pending >= 0:  # after a word's first token
            seconds = np.array(sorted(self.seconds.get(st.pending, {})), np.int64)
            if (st.pending,) not in self.word_of:
                return seconds
            if self.levels == 3:
                return None  # its second token, or any level-2 id
            nxt = self.first_tokens if st.blocks + 1 < max_blocks else none  # the word ends a block
            return np.concatenate([seconds, nxt, [self.newline]])
        if st.pos == 0:
            starts = self.first_tokens if st.blocks < max_blocks else none
            return np.concatenate([starts, [self.newline]]) if st.blocks else starts
        return None

    def advance(self, st: GrammarState, token: int) -> GrammarState:
        """The state after ``token`` (one the grammar allowed in ``st``)."""
        token = int(token)
        pos, pending, blocks = st.pos, st.pending, st.blocks
        if pending >= 0:
            if token in self.seconds.get(pending, {}):  # the longer word (module docstring)
                return self._word_done(blocks)
            if self.levels == 1:  # the one-token word ended its block
                blocks += 1
                pos, pending = 0, -1
            else:  # the one-token word, then this first level-2 id
                return GrammarState(2, -1, blocks, False) if self.per_block > 2 else self._block_done(blocks)
        if pos == 0:
            if token == self.newline:
                return GrammarState(0, -1, blocks, True)
            return GrammarState(0, token, blocks, False)
        return self._block_done(blocks) if pos + 1 == self.per_block else GrammarState(pos + 1, -1, blocks, False)

    def _word_done(self, blocks: int) -> GrammarState:
        return self._block_done(blocks) if self.per_block == 1 else GrammarState(1, -1, blocks, False)

    @staticmethod
    def _block_done(blocks: int) -> GrammarState:
        return GrammarState(0, -1, blocks + 1, False)

    def parse(self, ids: Sequence[int]) -> tuple[list[np.ndarray], bool]:
        """Token ids as written by the generator (without the final newline) -> codes per level
        of the whole blocks, and whether the ids were exactly whole blocks."""
        codes: list[list[int]] = [[] for _ in range(self.levels)]
        i, n, whole = 0, len(ids), True
        while i < n:
            first = int(ids[i])
            nxt = int(ids[i + 1]) if i + 1 < n else None
            if nxt is not None and nxt in self.seconds.get(first, {}):
                word, i = self.seconds[first][nxt], i + 2
            elif (first,) in self.word_of:
                word, i = self.word_of[(first,)], i + 1
            else:
                raise ValueError(f"token {first} at position {i} does not begin a level-1 word")
            rest = [int(t) for t in ids[i:i + self.per_block - 1]]
            if len(rest) < self.per_block - 1:
                whole = False
                break
            codes[0].append(word)
            if self.levels == 3:
                codes[1] += rest[:2]
                codes[2] += rest[2:]
            i += self.per_block - 1
        return [np.array(c, np.int64) for c in codes], whole


class GenPromptBuilder:
    """Builds generation prompts for one LLM tokenizer (``tokenize``, ``decode``) and grammar."""

    def __init__(self, tokenize, decode, grammar: AudioGrammar):
        self.tokenize, self.decode, self.grammar = tokenize, decode, grammar
        self._cache: dict[str, tuple[int, ...]] = {}

    def _text(self, text: str) -> tuple[int, ...]:
        if text not in self._cache:
            self._cache[text] = tuple(self.tokenize(text))
        return self._cache[text]

    def _input(self, x: str | Codes) -> list[int]:
        if isinstance(x, str):
            if not x or x != x.strip() or "\n" in x:
                raise ValueError(f"text input {x!r} must be non-empty, without outer spaces or newlines")
            return list(self._text(" " + x))
        return list(self._text(AUDIO_OPEN)) + self.grammar.audio_ids(x) + list(self._text(AUDIO_CLOSE))

    def build(self, examples: Sequence[tuple[str | Codes, Codes]], query: str | Codes) -> GenPrompt:
        """Examples (input: text or codes, output codes) in order, then the query's input."""
        if not examples:
            raise ValueError("a generation prompt needs at least one example")
        ids: list[int] = []
        for x, y in examples:
            ids += self._text(EXAMPLE_INPUT) + tuple(self._input(x)) + self._text(EXAMPLE_OUTPUT)
            ids += self.grammar.audio_ids(y) + list(self._text(SEPARATOR))
        ids += self._text(EXAMPLE_INPUT) + tuple(self._input(query)) + self._text(EXAMPLE_OUTPUT)
        return GenPrompt(tuple(ids), self.decode(ids))
