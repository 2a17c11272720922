"""The harness: encode clips once, build prompts, ask the frozen LLM, count.

``evaluate`` samples every setting's episodes first, encodes each distinct clip
once with the codec (cached in memory and, optionally, on disk keyed by the
codec's weights and the clip duration), then runs the LLM once per episode.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model
from .llm import Decision, FrozenLLM
from .prompts import Prompt, PromptBuilder
from .report import SettingResult
from .tasks import Clip, Episode, Setting, Task, build_task, load_clip, sample_episodes

Codes = tuple[np.ndarray, ...]


class ClipCoder:
    """Clips -> codec codes per level, each clip encoded once.

    ``model_dir`` None is the bundled default codec (whatever
    ``llmcodec/assets/default`` holds). ``cache_dir`` keeps the codes between runs
    in ``<fingerprint>-<duration ms>.npz`` (no pickles).
    """

    def __init__(self, model_dir: str | None = None, duration: float = 1.0, cache_dir: str | Path | None = None,
                 batch: int = 16, streaming: bool = False):
        if not 0.1 <= duration <= 30.0:
            raise ValueError(f"duration must be in [0.1, 30] seconds, got {duration}")
        loaded = load_model(model_dir)
        if loaded.vocab is None:
            raise ValueError(f"{loaded.directory}: the codec has no vocabulary naming its codes "
                             "(no vocab/ folder and not the bundled LLM)")
        self.model, self.vocab, self.directory = loaded.model, loaded.vocab, loaded.directory
        self.duration, self.batch, self.streaming = duration, batch, streaming
        self.sample_rate = self.model.sample_rate
        self.fingerprint = self._fingerprint()
        self._codes: dict[str, Codes] = {}
        self.cache_file = None
        if cache_dir is not None:
            self.cache_file = Path(cache_dir) / f"{self.fingerprint}-{round(duration * 1000)}ms.npz"
            self._read_cache()

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            h.update((self.directory / name).read_bytes())
        return h.hexdigest()[:16]

    @staticmethod
    def _key(audio_id: str) -> str:
        return hashlib.sha1(audio_id.encode()).hexdigest()

    def _read_cache(self) -> None:
        if self.cache_file is None or not self.cache_file.is_file():
            return
        with np.load(self.cache_file, allow_pickle=False) as z:
            ids = json.loads(str(z["ids"]))
            for i, key in enumerate(ids):
                self._codes[key] = tuple(z[f"c{i}_{lv}"] for lv in range(self.model.cfg.num_levels))

    def _write_cache(self) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        ids = sorted(self._codes)
        arrays = {f"c{i}_{lv}": c for i, k in enumerate(ids) for lv, c in enumerate(self._codes[k])}
        tmp = self.cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, ids=np.array(json.dumps(ids)), **arrays)
        tmp.replace(self.cache_file)

    @property
    def num_cached(self) -> int:
        return len(self._codes)

    def audio(self, clip: Clip) -> np.ndarray:
        return load_clip(clip, self.sample_rate, self.duration)

    def encode(self, clips: Iterable[Clip]) -> int:
        """Encode the clips not yet cached (in batches); returns how many were encoded."""
        todo, seen = [], set()
        for c in clips:
            k = self._key(c.audio_id)
            if k not in self._codes and k not in seen:
                todo.append(c)
                seen.add(k)
        with torch.inference_mode():
            for i in range(0, len(todo), self.batch):
                part = todo[i:i + self.batch]
                wav = torch.from_numpy(np.stack([self.audio(c) for c in part]))
                codes = self.encode_audio(wav)
                for j, c in enumerate(part):
                    self._codes[self._key(c.audio_id)] = tuple(x[j].numpy().astype(np.int64) for x in codes)
        if todo:
            self._write_cache()
        return len(todo)

    def encode_audio(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """float32 [B, T] -> codes per level [B, n_l]: the whole-sequence pass (the same
        function as the streaming steps, much faster offline), or the steps themselves."""
        if self.streaming:
            return self.model.encode(wav).codes
        b = self.model.block_size
        n = max(1, -(-wav.shape[-1] // b)) * b
        x = torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))[:, None]
        return self.model.quantizer(self.model.encoder(x)).codes

    def codes(self, clip: Clip) -> Codes:
        k = self._key(clip.audio_id)
        if k not in self._codes:
            self.encode([clip])
        return self._codes[k]


@dataclass(frozen=True)
class EpisodeOutcome:
    setting: Setting
    index: int
    episode: Episode
    prompt: Prompt
    decision: Decision

    @property
    def greedy_label(self) -> str | None:
        return None if self.decision.greedy < 0 else self.prompt.labels[self.decision.greedy]

    @property
    def scored_label(self) -> str:
        return self.prompt.labels[self.decision.best]

    def record(self) -> dict:
        e = self.episode
        return {"setting": self.setting.name, "episode": self.index, "target": e.target,
                "labels": list(e.labels), "greedy": self.greedy_label, "generated": self.decision.generated,
                "loglik_best": self.scored_label, "scores": [round(s, 4) for s in self.decision.scores],
                "query": e.query.audio_id, "support": [[c.audio_id, lab] for c, lab in e.support],
                "prompt_tokens": len(self.prompt)}


def prompt_for(episode: Episode, setting: Setting, coder: ClipCoder, builder: PromptBuilder) -> Prompt:
    examples = [(coder.codes(c), lab) for c, lab in episode.support]
    return builder.build(examples, coder.codes(episode.query), episode.labels,
                         induction=setting.induction, target=episode.target)


def run_episode(setting: Setting, index: int, episode: Episode, coder: ClipCoder, llm: FrozenLLM,
                builder: PromptBuilder) -> EpisodeOutcome:
    prompt = prompt_for(episode, setting, coder, builder)
    decision = llm.classify(prompt.ids, prompt.candidates, free=not setting.induction)
    return EpisodeOutcome(setting, index, episode, prompt, decision)


def make_builders(llm: FrozenLLM, coder: ClipCoder) -> dict[int, PromptBuilder]:
    same = llm.same_vocab(coder.vocab)
    builders = {1: PromptBuilder(llm.tokenize, llm.decode, coder.vocab, 1, same)}
    if same:
        builders[3] = PromptBuilder(llm.tokenize, llm.decode, coder.vocab, 3, same)
    return builders


def evaluate(settings: Sequence[Setting], episodes: int, seed: int, coder: ClipCoder, llm: FrozenLLM, *,
             log: Callable[[dict], None] | None = None,
             progress: Callable[[SettingResult], None] | None = None) -> list[SettingResult]:
    """Run ``episodes`` seeded episodes of every setting; one :class:`SettingResult` each."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    builders = make_builders(llm, coder)
    if any(s.levels == 3 for s in settings) and 3 not in builders:
        raise ValueError(f"all levels need the codec's LLM vocabulary ({coder.vocab.llm_name}); "
                         f"{llm.name} has another one: use level 1 only")
    tasks: dict[str, Task] = {}
    plans: list[tuple[Setting, list[Episode]]] = []
    for s in settings:
        if s.task not in tasks:
            tasks[s.task] = build_task(s.task, coder.duration)
        plans.append((s, sample_episodes(tasks[s.task], s, episodes, seed)))
    coder.encode(c for _, eps in plans for e in eps for c in [e.query, *(x for x, _ in e.support)])
    results = []
    for s, eps in plans:
        t0 = time.perf_counter()
        g = sc = valid = toks = 0
        for i, e in enumerate(eps):
            out = run_episode(s, i, e, coder, llm, builders[s.levels])
            g += out.greedy_label == e.target
            sc += out.scored_label == e.target
            valid += out.greedy_label is not None
            toks += len(out.prompt)
            if log is not None:
                log(out.record())
        r = SettingResult(s, len(eps), g, sc, valid, toks / len(eps), time.perf_counter() - t0)
        results.append(r)
        if progress is not None:
            progress(r)
    return results


def grid(tasks: Sequence[str], ways: Sequence[int], shots: Sequence[int], levels: Sequence[int], *,
         variants: bool = True, variant_levels: Sequence[int] = (1,), repeats: Sequence[int] = (1, 3),
         all_levels_ways: Sequence[int] | None = None,
         all_levels_shots: Sequence[int] | None = None) -> list[Setting]:
    """tasks x N x K x levels; with ``variants``, the paper's Table-2 variants at K=1 for the
    level modes in ``variant_levels``: no task induction, and the support set repeated.
    The levels-1+2+3 settings are limited to ``all_levels_ways`` x ``all_levels_shots`` when given."""
    out = []
    for task in tasks:
        for n in ways:
            for lv in levels:
                if lv == 3 and all_levels_ways is not None and n not in all_levels_ways:
                    continue
                for k in shots:
                    if lv == 3 and all_levels_shots is not None and k not in all_levels_shots:
                        continue
                    out.append(Setting(task, n, k, lv))
                if variants and lv in variant_levels:
                    out.append(Setting(task, n, 1, lv, induction=False))
                    out += [Setting(task, n, 1, lv, repeats=r) for r in repeats]
    return out
