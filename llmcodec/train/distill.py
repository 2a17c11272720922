"""Distillation: a model's encoder learns the tokens of another model's encoder (the teacher).

Used to give a new encoder architecture the tokens of a trained one, behind the trained one's
quantizer and decoder (``TrainConfig.teacher``, ``w_distill``; ``distill_only`` when every other
loss weight is 0).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checkpoint import load_model
from ..model import LLMCodec


class Distillation:
    """The teacher's encoder (frozen, compiled when ``compile``) and the distillation loss."""

    def __init__(self, teacher: str, model: LLMCodec, device: torch.device, compile: bool,
                 log: Callable[[str], None] = print):
        t = load_model(None if teacher == "default" else teacher).model
        if t.cfg.latent_dim != model.cfg.latent_dim or t.cfg.hop != model.cfg.hop:
            raise ValueError(f"teacher {teacher}: latents [{t.cfg.latent_dim}] per {t.cfg.hop} samples do not "
                             f"match the model's [{model.cfg.latent_dim}] per {model.cfg.hop}")
        self.model, self.log = model, log
        self.encoder = t.encoder.to(device)
        self._run = torch.compile(self.encoder) if compile else self.encoder

    def latents(self, x: Tensor) -> Tensor:
        """The teacher's latents of ``x [B, 1, T]``, without gradients."""
        with torch.no_grad():
            try:
                return self._run(x)  # compiled: half the time of eager on CPU
            except Exception as e:  # no C++ compiler, unsupported backend: run it eagerly
                if self._run is self.encoder:
                    raise
                self.log(f"torch.compile of the teacher failed ({type(e).__name__}: {str(e)[:200]}); eager")
                self._run = self.encoder
                return self.encoder(x)

    def loss(self, x: Tensor, z: Tensor) -> Tensor:
        """The latent loss of ``losses`` alone (``distill``)."""
        return self.losses(x, z, tau=None)["distill"]

    def losses(self, x: Tensor, z: Tensor, tau: float | None) -> dict[str, Tensor]:
        """How far the model's latents ``z`` [B, C, F] are from the teacher's where the tokens are
        decided. Per level, ``got`` is the search input (``LevelVQ.search_input``) of the
        teacher's residual plus ``z - z_teacher`` and ``want`` that of the teacher's residual.

        * ``distill``: the squared error of ``got`` against ``want``, relative to the latter's
          energy; the mean over levels. Latent directions no level searches in do not count.
        * ``distill_codes`` (with ``tau``): the cross-entropy of the teacher's codes under
          ``softmax(cos(got, codes) / tau)`` over each level's whole codebook, the mean over
          levels: the search is a cosine nearest neighbour, so this trains the decisions
          themselves, not only the distance.
        * ``agree``: the fraction of positions whose nearest code of ``got`` is the teacher's
          (no gradient), the mean over levels.

        The teacher's latents go through the model's own quantizer (the teacher's, with
        ``init_parts``). All of it runs in float32 whatever autocast is on: the codes are those
        of float32 inference (under bfloat16 autocast the default's codes of real speech agree
        with them at only 73% / 76% / 51% of positions, levels 1 / 2 / 3)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._losses(x.float(), z.float(), tau)

    def _losses(self, x: Tensor, z: Tensor, tau: float | None) -> dict[str, Tensor]:
        target = self.latents(x)
        levels = self.model.quantizer.quantizers
        diff, residual = z - target, target
        mse, ce, agree = z.new_zeros(()), z.new_zeros(()), z.new_zeros(())
        for q in levels:
            with torch.no_grad():
                want = q.search_input(residual)
                codes, zq, _, _ = q(residual)
                _, unit = q.tables()
            got = q.search_input(residual + diff)
            mse = mse + (got - want).pow(2).mean() / want.pow(2).mean().clamp_min(1e-8)
            cos = F.normalize(got.transpose(1, 2), dim=-1) @ unit.t()  # [B, F/s, K]
            with torch.no_grad():
                agree = agree + (cos.argmax(dim=-1) == codes).float().mean()
            if tau is not None:
                ce = ce + F.cross_entropy((cos / tau).flatten(0, 1), codes.flatten())
            residual = residual - zq
        n = len(levels)
        out = {"distill": mse / n, "agree": agree / n}
        if tau is not None:
            out["distill_codes"] = ce / n
        return out
