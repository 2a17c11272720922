"""Training checkpoints (exact resume) and shipping exports, without pickle.

A run directory holds:

* ``checkpoint/``: ``state.safetensors`` (every tensor: codec with its weight-norm
  parametrisation, discriminator, teacher heads, both optimisers' moments, the
  torch RNG) and ``state.json`` (step, elapsed time, optimiser groups,
  scheduler states, the config). Written to ``checkpoint.tmp`` and swapped in,
  so a stop at any moment leaves a whole checkpoint.
* ``model/``: the shipping model directory (weight norm folded, float16, no
  training state) that ``load_model`` and ``llmcodec eval`` read, with
  ``training.json`` (steps, hours, data).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import TRAINING_JSON, save_model
from ..model import LLMCodec

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{prefix}.{pid}.{name}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def _prefixed(prefix: str, module: nn.Module) -> dict:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _strip(prefix: str, tensors: dict) -> dict:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def save_training_state(directory: Path, *, modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], meta: dict) -> None:
    """Write a whole checkpoint atomically into ``directory``."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict = {}
    for name, m in modules.items():
        tensors.update(_prefixed(name, m))
    groups = {}
    for name, opt in optimizers.items():
        t, g = _optimizer_tensors(f"optim_{name}", opt)
        tensors.update(t)
        groups[name] = g
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / STATE_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps({**meta, "optimizer_groups": groups}, indent=1) + "\n")
    swap_in(tmp, directory)


def swap_in(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` by the complete ``tmp`` with renames only: a crash at any point
    leaves either the old or the new directory (or ``.old``), never a half-written one."""
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def has_training_state(directory: Path) -> bool:
    return (Path(directory) / STATE_JSON).is_file() and (Path(directory) / STATE_TENSORS).is_file()


def load_training_state(directory: Path, *, modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore modules, optimisers and the RNG in place; returns the JSON metadata."""
    directory = Path(directory)
    if not has_training_state(directory):
        raise ValueError(f"{directory}: no training checkpoint ({STATE_JSON} + {STATE_TENSORS})")
    meta = json.loads((directory / STATE_JSON).read_text())
    tensors = load_file(str(directory / STATE_TENSORS))
    for name, m in modules.items():
        sd = _strip(name, tensors)
        missing, unexpected = m.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ValueError(f"{directory}: checkpoint does not fit the {name} of this config: "
                             f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    for name, opt in optimizers.items():
        _load_optimizer(f"optim_{name}", opt, tensors, meta["optimizer_groups"][name])
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def folded_copy(model: LLMCodec) -> LLMCodec:
    """A fresh codec with ``model``'s weights, weight norm folded (``model`` is untouched)."""
    sd = {}
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            sd[f"{name}.weight" if name else "weight"] = m.weight.detach()
    for k, v in model.state_dict().items():
        if ".parametrizations." not in k:
            sd[k] = v
    out = LLMCodec(model.cfg)
    out.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
                         for k, v in sd.items()})
    return out


def ship_model(model: LLMCodec, directory: Path, training: dict) -> Path:
    """Write a shipping model directory (float16, folded) plus ``training.json``."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(folded_copy(model), tmp, half=True)
    (tmp / TRAINING_JSON).write_text(json.dumps(training, indent=1) + "\n")
    swap_in(tmp, directory)
    return directory
