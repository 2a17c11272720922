"""Running the generation tasks: encode the examples, let the frozen LLM write the query's
output tokens, decode them, and judge the audio beside its baselines.

Per episode:

* ``tts``: Whisper base (multilingual, in the voice's language) hears the output; the episode
  counts when the first digit it hears (a numeral or a digit word of that language) is the
  intended one (chance 10%); DNSMOS OVRL of the output. The ceiling is the codec's own round
  trip of a recording of the intended digit (from the examples), decoded from the same levels.
* ``denoise``: PESQ-WB and STOI of the output against the clean recording, beside the noisy
  input itself (doing nothing) and the codec's round trip of the clean recording at the same
  levels (the ceiling).

Decoding level 1 alone sums only that level's code vectors (``quantizer.decode`` of the first
levels, :meth:`GenCoder.decode_levels`).
"""
from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checkpoint import load_model
from ..eval.metrics import dnsmos, pesq_wb, stoi
from .gen_prompts import AudioGrammar, GenPromptBuilder
from .gen_tasks import GenEpisode, GenSetting, Noisy, clean_audio, noisy_audio
from .llm import FrozenLLM
from .tasks import Clip

DIGIT_WORDS = {
    "en": "zero one two three four five six seven eight nine",
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve",
    "fr": "zero un deux trois quatre cinq six sept huit neuf",
    "it": "zero uno due tre quattro cinque sei sette otto nove",
    "ru": "ноль один два три четыре пять шесть семь восемь девять",
}
DIGIT_ALIASES = {"en": {"oh": 0, "for": 4, "to": 2, "too": 2}, "fr": {"une": 1, "cette": 7, "set": 7},
                 "es": {"una": 1}, "it": {"una": 1}, "ru": {"нуль": 0, "одна": 1, "одно": 1, "две": 2}}


def heard_digit(text: str, lang: str) -> int | None:
    """The first digit in a transcript: a numeral, or a digit word of ``lang`` (accents ignored)."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(ch))
    words = {w: i for i, w in enumerate(DIGIT_WORDS[lang].split())} | DIGIT_ALIASES.get(lang, {})
    for tok in re.findall(r"\d|[^\W\d_]+", plain):
        if tok.isdigit():
            return int(tok)
        if tok in words:
            return words[tok]
    return None


class GenCoder:
    """The codec for generation: audio -> codes per level, codes of the first levels -> audio."""

    def __init__(self, model_dir: str | None = None):
        loaded = load_model(model_dir)
        if loaded.vocab is None:
            raise ValueError(f"{loaded.directory}: the codec has no vocabulary naming its codes")
        self.model, self.vocab, self.directory = loaded.model, loaded.vocab, loaded.directory
        self.sample_rate = self.model.sample_rate

    @torch.inference_mode()
    def encode(self, wav: np.ndarray) -> list[np.ndarray]:
        """float32 [T] -> codes per level (whole blocks, zero-padded)."""
        b = self.model.block_size
        n = max(1, -(-wav.size // b)) * b
        x = torch.nn.functional.pad(torch.from_numpy(np.asarray(wav, np.float32)), (0, n - wav.size))[None, None]
        return [c[0].numpy().astype(np.int64) for c in self.model.quantizer(self.model.encoder(x)).codes]

    @torch.inference_mode()
    def decode_levels(self, codes: Sequence[np.ndarray]) -> np.ndarray:
        """Codes of the first ``len(codes)`` levels [blocks * per-block codes] -> float32 [blocks * block]."""
        z = self.model.quantizer.decode([torch.as_tensor(np.asarray(c, np.int64))[None] for c in codes])
        frames = self.model.block_size // self.model.cfg.hop
        state = dict(self.model.init_decoder_state(1).tensors)
        out = []
        for i in range(z.shape[-1] // frames):
            y, state = self.model.decoder.step(z[..., i * frames:(i + 1) * frames], state)
            out.append(y.reshape(-1))
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


@dataclass
class GenOutcome:
    """One episode: what was written and the judges' scores (``scores`` by name)."""

    setting: GenSetting
    index: int
    prompt_tokens: int
    blocks: int
    closed: bool
    scores: dict[str, float] = field(default_factory=dict)


class Judges:
    """Whisper base (loaded on first use) and the signal metrics."""

    def __init__(self, threads: int = 1, whisper: Callable[[np.ndarray, str], str] | None = None,
                 use_dnsmos: bool = True):
        self._whisper, self.threads, self.use_dnsmos = whisper, threads, use_dnsmos

    def hear(self, audio: np.ndarray, lang: str) -> str:
        if self._whisper is None:
            from ..eval.judges import base_transcriber
            self._whisper = base_transcriber(self.threads).transcribe
        return self._whisper(audio, lang)

    def dnsmos(self, audio: np.ndarray) -> float:
        return dnsmos(audio).ovrl if self.use_dnsmos and audio.size else math.nan


class GenRunner:
    """Episodes of the generation settings with one codec, one LLM and the judges."""

    def __init__(self, coder: GenCoder, llm: FrozenLLM, judges: Judges, duration: float):
        if not llm.same_vocab(coder.vocab):
            raise ValueError(f"generation writes the codec's token ids: the LLM must be the codec's "
                             f"({coder.vocab.llm_name}), got {llm.name}")
        self.coder, self.llm, self.judges, self.duration = coder, llm, judges, duration
        self.builders = {lv: GenPromptBuilder(llm.tokenize, llm.decode, AudioGrammar(coder.vocab, lv, llm.newline))
                         for lv in (1, 3)}
        self._codes: dict[str, list[np.ndarray]] = {}
        self._ceiling: dict[tuple[str, int], dict[str, float]] = {}

    def audio(self, x: Clip | Noisy) -> np.ndarray:
        sr = self.coder.sample_rate
        return noisy_audio(x, sr, self.duration) if isinstance(x, Noisy) else clean_audio(x, sr, self.duration)

    def codes(self, x: Clip | Noisy) -> list[np.ndarray]:
        key = repr(x)
        if key not in self._codes:
            self._codes[key] = self.coder.encode(self.audio(x))
        return self._codes[key]

    def prompt(self, setting: GenSetting, ep: GenEpisode):
        b = self.builders[setting.levels]
        inp = (lambda x: x if isinstance(x, str) else self.codes(x)[:setting.levels])
        examples = [(inp(x), self.codes(y)[:setting.levels]) for x, y in ep.examples]
        return b.build(examples, inp(ep.query)), b.grammar, max(len(y[0]) for _, y in examples)

    def run(self, setting: GenSetting, index: int, ep: GenEpisode) -> GenOutcome:
        prompt, grammar, max_blocks = self.prompt(setting, ep)
        ids, closed = self.llm.generate_audio(prompt.ids, grammar, max_blocks)
        codes, _ = grammar.parse(ids)
        out = self.coder.decode_levels(codes) if len(codes[0]) else np.zeros(0, np.float32)
        o = GenOutcome(setting, index, len(prompt), len(codes[0]), closed)
        if setting.task == "tts":
            o.scores["correct"] = float(self._digit_ok(out, ep))
            o.scores["dnsmos"] = self.judges.dnsmos(out)
            ref = next(y for x, y in ep.examples if x == ep.query)
            o.scores.update(self.ceiling(ref, setting.levels, ep))
        else:
            clean = self.audio(ep.target)
            o.scores["pesq"], o.scores["stoi"] = self._signal(clean, out)
            o.scores["pesq_noisy"], o.scores["stoi_noisy"] = self._signal(clean, self.audio(ep.query))
            o.scores.update(self.ceiling(ep.target, setting.levels, ep))
        return o

    def _digit_ok(self, audio: np.ndarray, ep: GenEpisode) -> bool:
        return audio.size > 0 and heard_digit(self.judges.hear(audio, ep.lang), ep.lang) == int(ep.target)

    @staticmethod
    def _signal(clean: np.ndarray, out: np.ndarray) -> tuple[float, float]:
        if out.size < clean.size // 4:
            return math.nan, math.nan
        out = np.pad(out, (0, max(0, clean.size - out.size)))[:clean.size]
        return pesq_wb(clean, out), stoi(clean, out)

    def ceiling(self, clip: Clip, levels: int, ep: GenEpisode) -> dict[str, float]:
        """The codec's round trip of ``clip`` from its first ``levels`` levels, judged alike (cached)."""
        key = (repr(clip), levels)
        if key not in self._ceiling:
            rt = self.coder.decode_levels(self.codes(clip)[:levels])
            if isinstance(ep.target, str):
                self._ceiling[key] = {"correct_ceiling": float(self._digit_ok(rt, ep)),
                                      "dnsmos_ceiling": self.judges.dnsmos(rt)}
            else:
                p, s = self._signal(self.audio(clip), rt)
                self._ceiling[key] = {"pesq_ceiling": p, "stoi_ceiling": s}
        return self._ceiling[key]


def evaluate_gen(runner: GenRunner, plans: Sequence[tuple[GenSetting, list[GenEpisode]]], *,
                 log: Callable[[dict], None] | None = None,
                 progress: Callable[[GenSetting, list[GenOutcome], float], None] | None = None
                 ) -> dict[GenSetting, list[GenOutcome]]:
    """Every setting's episodes; ``progress`` after each setting with its outcomes and seconds."""
    results = {}
    for s, eps in plans:
        t0 = time.perf_counter()
        outs = []
        for i, ep in enumerate(eps):
            o = runner.run(s, i, ep)
            outs.append(o)
            if log is not None:
                log({"setting": s.name, "episode": i, "prompt_tokens": o.prompt_tokens, "blocks": o.blocks,
                     "closed": o.closed, **{k: round(v, 4) for k, v in o.scores.items()}})
        results[s] = outs
        if progress is not None:
            progress(s, outs, time.perf_counter() - t0)
    return results
