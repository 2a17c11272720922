"""The results file of ``llmcodec icl run --results``: resumable and mergeable.

One JSON document per run::

    {"format": 1, "identity": {...}, "commands": ["llmcodec icl run ..."],
     "results": [{"task": "digits", "ways": 2, ..., "greedy": 97, "scored": 96, ...}, ...]}

``identity`` (codec weights, LLM, dtype, seed, clip duration, episodes per setting)
decides whether results can be pooled: a run resumed on the same file skips the
settings already in it, and ``llmcodec icl report`` merges files only when their
identities agree. The file is rewritten atomically after every finished setting,
so a stop loses at most the setting in progress.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .report import SettingResult
from .tasks import Setting

FORMAT = 1
IDENTITY_KEYS = ("codec", "llm", "dtype", "seed", "duration", "episodes")


def result_to_dict(r: SettingResult) -> dict:
    return {**asdict(r.setting), "episodes": r.episodes, "greedy": r.greedy, "scored": r.scored,
            "valid": r.valid, "mean_prompt_tokens": round(r.mean_prompt_tokens, 2),
            "seconds": round(r.seconds, 2)}


def result_from_dict(d: dict) -> SettingResult:
    s = Setting(d["task"], int(d["ways"]), int(d["shots"]), int(d["levels"]), bool(d["induction"]),
                int(d["repeats"]))
    r = SettingResult(s, int(d["episodes"]), int(d["greedy"]), int(d["scored"]), int(d["valid"]),
                      float(d["mean_prompt_tokens"]), float(d["seconds"]))
    if not (0 <= r.greedy <= r.episodes and 0 <= r.scored <= r.episodes):
        raise ValueError(f"{s.name}: counts outside [0, {r.episodes}]")
    return r


class ResultsFile:
    """Results of one identity, loaded from and saved to ``path``."""

    def __init__(self, path: str | Path, identity: dict, command: str | None = None):
        self.path = Path(path)
        self.identity = {k: identity[k] for k in IDENTITY_KEYS}
        self.commands: list[str] = []
        self.results: list[SettingResult] = []
        if self.path.is_file():
            doc = read(self.path)
            check_identity(self.identity, doc["identity"], str(self.path))
            self.commands = list(doc["commands"])
            self.results = [result_from_dict(d) for d in doc["results"]]
        if command and command not in self.commands:
            self.commands.append(command)

    def done(self) -> set[Setting]:
        return {r.setting for r in self.results}

    def add(self, r: SettingResult) -> None:
        self.results = [x for x in self.results if x.setting != r.setting] + [r]
        self.save()

    def save(self) -> None:
        doc = {"format": FORMAT, "identity": self.identity, "commands": self.commands,
               "results": [result_to_dict(r) for r in self.results]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable ICL results file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("results"), list):
        raise ValueError(f"{path}: not an ICL results file of format {FORMAT} "
                         f"(written by `llmcodec icl run --results`)")
    return doc


def check_identity(want: dict, got: dict, where: str) -> None:
    for k in IDENTITY_KEYS:
        if want.get(k) != got.get(k):
            raise ValueError(f"{where} was made with {k} = {got.get(k)!r}, this run has {want.get(k)!r}; "
                             f"results of different {', '.join(IDENTITY_KEYS)} cannot be pooled: "
                             f"use another results file")


def merge(paths: Sequence[str | Path]) -> tuple[dict, list[str], list[SettingResult]]:
    """(identity, commands, results) of several files of one identity; a setting twice is an error."""
    if not paths:
        raise ValueError("no results files given")
    identity: dict | None = None
    commands: list[str] = []
    results: dict[Setting, SettingResult] = {}
    for p in paths:
        doc = read(Path(p))
        if identity is None:
            identity = {k: doc["identity"].get(k) for k in IDENTITY_KEYS}
        else:
            check_identity(identity, doc["identity"], str(p))
        commands += [c for c in doc["commands"] if c not in commands]
        for d in doc["results"]:
            r = result_from_dict(d)
            if r.setting in results:
                raise ValueError(f"{p}: setting {r.setting.name} is also in another file")
            results[r.setting] = r
    return identity, commands, list(results.values())
