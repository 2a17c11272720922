"""The trainer: the LLM-Codec recipe on a corpus cache, resumable exactly.

One step (``Trainer.train_step``):

1. ``model(x)`` on a batch of segments ``[B, 1, T]``;
2. a generator update on
   ``w_stft * MS-STFT + w_subband * sub-band STFT + w_commit * commitment
   + w_codebook * codebook + w_semantic * semantic + w_consistency * consistency
   + w_asr * asr (``asr_loss.py``; 0 in the reference recipe) + w_distill * distill
   + w_distill_codes * distill_codes (the teacher encoder's latents and codes,
   ``TrainConfig.teacher``) (+ w_adv * LSGAN + w_fm * feature
   matching after the warm-up)``;
3. after the reconstruction-only warm-up: a least-squares discriminator update
   on real vs generated (detached) audio.

The learning rate decays exponentially, ``lr * lr_gamma ** (step // lr_decay_every)``
(the reference's ExponentialLR(0.999) per epoch), computed from the step so a
resumed run follows the same schedule.

The LLM embedding tables stay frozen (buffers); their projections, the codec and
the teacher heads learn. Every loss goes to ``run_dir/log.csv``; a checkpoint
(``checkpoint.py``) is written every ``checkpoint_minutes`` and at the end.
"""
from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..checkpoint import load_model, read_training_json
from ..model import CodecOutput, LLMCodec
from ..vocab import Vocabulary
from .run_state import has_training_state, load_training_state, save_training_state, ship_model
from .config import TrainConfig
from .discriminator import MultiFrequencyDiscriminator
from .distill import Distillation
from .losses import (MultiScaleSTFTLoss, SubBandSTFTLoss, TeacherHeads, feature_matching, lsgan_d_loss,
                     lsgan_g_loss)

LOSS_NAMES = ("total", "stft", "subband", "commit", "codebook", "semantic", "consistency", "asr", "adv",
              "fm", "disc", "distill", "distill_codes", "agree")
CSV_FIELDS = ("step", "seconds", "lr", *LOSS_NAMES)


@dataclass(frozen=True)
class TrainStep:
    step: int
    losses: dict[str, float]
    seconds: float
    lr: float  # the learning rate of this step


def _codebooks_for(model: LLMCodec) -> list[Tensor]:
    cfg = model.cfg
    vocab = Vocabulary.default()
    if cfg.llm_dim != vocab.embedding_dim or cfg.level_sizes[0] != vocab.num_words or \
            any(cfg.level_sizes[i] != vocab.level_size(i) for i in range(cfg.num_levels)):
        raise ValueError(f"model {cfg.name!r} (levels {cfg.level_sizes}, dim {cfg.llm_dim}) does not fit "
                         f"the bundled vocabulary {vocab}; train with the bundled sizes")
    return [vocab.codebook(i) for i in range(cfg.num_levels)]


class Trainer:
    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] = print):
        from ..data.corpus import Corpus
        from ..data.sampler import SegmentSampler
        self.cfg, self.log = cfg, log
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA device")
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.run_dir = Path(cfg.run_dir)
        self.corpus = Corpus(cfg.data)
        self.start_step, self.start_hours = 0, 0.0
        self.init_steps: int | None = None  # the step of the model init_parts came from

        if cfg.init_from and not cfg.init_parts:
            loaded = load_model(None if cfg.init_from == "default" else cfg.init_from, inference=False)
            self.model = loaded.model
            if self.model.cfg != cfg.codec_config():
                raise ValueError(f"init_from {loaded.directory} holds a {self.model.cfg.name!r} model that "
                                 f"differs from the config's {cfg.model!r}")
            done = read_training_json(loaded.directory)
            self.start_step = int(done.get("steps", 0))
            self.start_hours = float(done.get("hours", 0.0))
        else:
            self.model = LLMCodec(cfg.codec_config())
            self.model.set_codebooks(_codebooks_for(self.model))
            if cfg.init_parts:
                self._load_parts(cfg.init_from, cfg.init_parts)
        self.model.apply_weight_norm().to(self.device).train()
        for part in cfg.freeze:  # after weight norm, whose parametrisation makes new parameters
            getattr(self.model, part).requires_grad_(False).eval()
        if "quantizer" in cfg.freeze:  # its projected tables no longer change: compute them once
            self.model.quantizer.freeze_tables()
        self.distill = Distillation(cfg.teacher, self.model, self.device, cfg.compile, log) if cfg.teacher else None
        lat = self.model.cfg.latent_dim
        self.heads = TeacherHeads(lat).to(self.device)
        self.disc = MultiFrequencyDiscriminator(cfg.disc_hops, cfg.disc_channels,
                                                self.model.cfg.sample_rate).to(self.device)
        self.stft_loss = MultiScaleSTFTLoss(cfg.stft_ffts).to(self.device)
        self.subband_loss = SubBandSTFTLoss(cfg.subbands, cfg.subband_ffts).to(self.device)
        self.asr_loss = None
        if cfg.w_asr > 0:
            from .asr_loss import ASRLoss
            self.asr_loss = ASRLoss().to(self.device)

        g_params = [p for p in self.model.parameters() if p.requires_grad] + list(self.heads.parameters())
        kw = dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.opt_g = torch.optim.AdamW(g_params, **kw)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), **kw)
        self.step = self.start_step

        amp = cfg.amp and self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16) if amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.sampler = SegmentSampler(self.corpus, cfg.segment_samples, cfg.batch_size, cfg.mix, cfg.seed,
                                      align=self.model.cfg.block_size, gain_db=cfg.gain_db,
                                      augment=cfg.augment_config())
        self.elapsed = self.start_hours * 3600  # a run continued from a model export keeps its hours
        self.resumed = False
        self._encoder, self._decoder = self.model.encoder, self.model.decoder
        self._compiled = cfg.compile
        if cfg.compile:
            self._encoder, self._decoder = torch.compile(self._encoder), torch.compile(self._decoder)

    def _load_parts(self, source: str, parts: tuple[str, ...]) -> None:
        """Copy ``parts`` of the model in ``source`` into the new model (their configs must agree)."""
        loaded = load_model(None if source == "default" else source, inference=False)
        for part in parts:
            try:
                getattr(self.model, part).load_state_dict(getattr(loaded.model, part).state_dict())
            except RuntimeError as e:
                raise ValueError(f"init_from {loaded.directory}: its {part} does not fit the config's "
                                 f"{self.cfg.model!r} ({str(e)[:200]})") from None
        self.init_steps = int(read_training_json(loaded.directory).get("steps", 0))
        self.log(f"took {', '.join(parts)} from {loaded.directory} (step {self.init_steps})")

    # ---- state ---------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    def _modules(self) -> dict:
        return {"model": self.model, "disc": self.disc, "heads": self.heads}

    def _optimizers(self) -> dict:
        return {"g": self.opt_g, "d": self.opt_d}

    def lr(self) -> float:
        """Exponential decay, ``lr * gamma ** (step // lr_decay_every)``, times the final anneal's
        linear ramp ``(steps - step) / anneal_steps`` over the last ``anneal_steps`` steps, and
        the warm-up ramp over the first ``lr_warmup_steps`` steps of this run."""
        cfg = self.cfg
        lr = cfg.lr * cfg.lr_gamma ** (self.step // cfg.lr_decay_every)
        if cfg.anneal_steps:
            lr *= min(1.0, max(0.0, (cfg.steps - self.step) / cfg.anneal_steps))
        if cfg.lr_warmup_steps:  # fresh optimiser moments: ramp up from the run's first step
            lr *= min(1.0, (self.step - self.start_step + 1) / cfg.lr_warmup_steps)
        return lr

    def resume(self) -> bool:
        """Load ``run_dir/checkpoint`` if there is one; returns whether it did."""
        if not has_training_state(self.checkpoint_dir):
            return False
        meta = load_training_state(self.checkpoint_dir, modules=self._modules(), optimizers=self._optimizers())
        saved = TrainConfig.from_dict(meta["config"])
        if saved.codec_config() != self.cfg.codec_config():
            raise ValueError(f"{self.checkpoint_dir} holds a different model ({saved.model}) than the config")
        self.step, self.elapsed, self.resumed = int(meta["step"]), float(meta["elapsed_seconds"]), True
        self._truncate_log()
        self.log(f"resumed {self.checkpoint_dir} at step {self.step}")
        return True

    def save(self) -> None:
        meta = {"step": self.step, "elapsed_seconds": self.elapsed, "config": self.cfg.to_dict(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        save_training_state(self.checkpoint_dir, modules=self._modules(), optimizers=self._optimizers(),
                            meta=meta)
        self.export(self.run_dir / "model")

    def export(self, directory: Path) -> Path:
        """The shipping model (fp16, folded) of the current weights, with ``training.json``."""
        training = {"steps": self.step, "hours": round(self.elapsed / 3600, 3), "config": self.cfg.name,
                    "segment_seconds": self.cfg.segment_seconds, "batch_size": self.cfg.batch_size,
                    "data": self.corpus.summary()}
        if self.cfg.anneal_steps:
            training["anneal_steps"] = self.cfg.anneal_steps
        if self.cfg.init_parts:
            training["init"] = {"from": self.cfg.init_from, "parts": list(self.cfg.init_parts),
                                "steps": self.init_steps}
        return ship_model(self.model, directory, training)

    # ---- one step ------------------------------------------------------------
    def forward(self, x: Tensor) -> CodecOutput:
        """``LLMCodec.forward`` through the (optionally compiled) encoder and decoder."""
        self.model._check_len(x.shape[-1])
        frozen = {"encoder", "quantizer"} <= set(self.cfg.freeze)
        try:
            with torch.no_grad() if frozen else contextlib.nullcontext():
                z = self._encoder(x)
                q = self.model.quantizer(z)
            return CodecOutput(self._decoder(q.quantized), z, q)
        except Exception as e:  # no C++ compiler, unsupported backend: train eagerly
            if not self._compiled:
                raise
            self.log(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly")
            self._encoder, self._decoder, self._compiled = self.model.encoder, self.model.decoder, False
            return self.model(x)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _reconstruction_losses(self, batch, out) -> dict[str, Tensor]:
        """Every non-adversarial loss and their weighted sum ``total``."""
        cfg, q = self.cfg, out.quant
        x, y = batch.audio.to(self.device), out.audio.float()
        losses: dict[str, Tensor] = {"stft": self.stft_loss(y, x), "subband": self.subband_loss(y, x),
                                     "commit": q.commitment_loss.float(), "codebook": q.codebook_loss.float()}
        total = (cfg.w_stft * losses["stft"] + cfg.w_subband * losses["subband"]
                 + cfg.w_commit * losses["commit"] + cfg.w_codebook * losses["codebook"])
        if batch.text_emb is not None and cfg.w_semantic > 0:
            losses["semantic"] = self.heads.semantic_loss(q.levels[0].float(), batch.text_emb.to(self.device),
                                                          batch.text_mask.to(self.device))
            total = total + cfg.w_semantic * losses["semantic"]
        if batch.whisper is not None and cfg.w_consistency > 0 and len(q.levels) > 1:
            spf = self.model.cfg.hop * self.model.cfg.vq_strides[1]
            losses["consistency"] = self.heads.consistency_loss(q.levels[1].float(),
                                                                batch.whisper.to(self.device), spf)
            total = total + cfg.w_consistency * losses["consistency"]
        if self.asr_loss is not None:
            losses["asr"] = self.asr_loss(y, x)
            total = total + cfg.w_asr * losses["asr"]
        losses["total"] = total
        return losses

    @torch.no_grad()
    def measure(self, key: int = 10**9) -> dict[str, float]:
        """The reconstruction losses on a fixed batch (``sampler.batch(key)``), no update."""
        batch = self.sampler.batch(key)
        with self._autocast():
            out = self.model(batch.audio.to(self.device))  # eager: no recompilation for no_grad
        return {k: float(v) for k, v in self._reconstruction_losses(batch, out).items()}

    def _distill_step(self, x: Tensor, t0: float, lr: float) -> TrainStep:
        """A distillation-only step: the encoder alone learns."""
        with self._autocast():
            parts = self._distill_losses(x, self._encoder(x))
        loss = parts["total"]
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt_g)
            torch.nn.utils.clip_grad_norm_([p for g in self.opt_g.param_groups for p in g["params"]],
                                           self.cfg.grad_clip)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.step += 1
        dt = time.perf_counter() - t0
        self.elapsed += dt
        return TrainStep(self.step, {k: float(v.detach()) for k, v in parts.items()}, dt, lr)

    def _distill_losses(self, x: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The distillation losses of latents ``z`` [B, C, F] and their weighted sum (``total``)."""
        cfg = self.cfg
        parts = self.distill.losses(x, z, cfg.distill_tau if cfg.w_distill_codes > 0 else None)
        total = cfg.w_distill * parts["distill"]
        if "distill_codes" in parts:
            total = total + cfg.w_distill_codes * parts["distill_codes"]
        return {"total": total, **parts}

    def train_step(self) -> TrainStep:
        cfg, t0, lr = self.cfg, time.perf_counter(), self.lr()
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        batch = self.sampler.batch(self.step)
        x = batch.audio.to(self.device)
        if cfg.distill_only:
            return self._distill_step(x, t0, lr)
        gan = self.step >= cfg.warmup_steps and (cfg.w_adv > 0 or cfg.w_fm > 0)
        with self._autocast():
            out = self.forward(x)
        y = out.audio.float()
        losses = self._reconstruction_losses(batch, out)
        total = losses["total"]
        if self.distill is not None:
            parts = self._distill_losses(x, out.latent)
            total = total + parts.pop("total")
            losses.update(parts)
        if gan:  # adversarial + feature matching against the current discriminator
            with self._autocast():
                real_logits, real_feats = self.disc(x)
                self.disc.requires_grad_(False)
                fake_logits, fake_feats = self.disc(y)
                self.disc.requires_grad_(True)
            losses["adv"] = lsgan_g_loss(fake_logits)
            losses["fm"] = feature_matching(real_feats, fake_feats)
            total = total + cfg.w_adv * losses["adv"] + cfg.w_fm * losses["fm"]
        losses["total"] = total

        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.opt_g)
            torch.nn.utils.clip_grad_norm_([p for g in self.opt_g.param_groups for p in g["params"]],
                                           cfg.grad_clip)
        self.scaler.step(self.opt_g)
        if gan:  # then the discriminator: real (graph kept above) vs generated, detached
            with self._autocast():
                fake_logits, _ = self.disc(y.detach())
            d_loss = lsgan_d_loss(real_logits, fake_logits)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.opt_d)
            losses["disc"] = d_loss.detach()
        self.scaler.update()
        self.step += 1
        dt = time.perf_counter() - t0
        self.elapsed += dt
        return TrainStep(self.step, {k: float(v.detach()) for k, v in losses.items()}, dt, lr)

    # ---- the loop --------------------------------------------------------------
    def _log_path(self) -> Path:
        return self.run_dir / "log.csv"

    def _truncate_log(self) -> None:
        """Drop CSV rows past the checkpoint (they will be recomputed identically)."""
        path = self._log_path()
        if not path.is_file():
            return
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def fit(self, steps: int | None = None, max_minutes: float | None = None,
            progress: bool = True) -> list[TrainStep]:
        """Train until ``cfg.steps`` (or ``steps`` more, or ``max_minutes``); checkpoint on the way."""
        from tqdm import tqdm
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.run_dir / "train_config.json")
        end = self.cfg.steps if steps is None else self.step + steps
        new_log = not self._log_path().is_file()
        results: list[TrainStep] = []
        t_start, last_ckpt = time.time(), time.time()
        with self._log_path().open("a", newline="") as f, \
                tqdm(total=end, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True) as bar:
            writer = csv.DictWriter(f, CSV_FIELDS)
            if new_log:
                writer.writeheader()
            while self.step < end:
                try:
                    r = self.train_step()
                except KeyboardInterrupt:  # Ctrl-C (or SIGTERM turned into it): keep the work done
                    self.save()
                    self.log(f"interrupted: checkpoint at step {self.step}")
                    raise
                results.append(r)
                if r.step % self.cfg.log_every == 0:
                    writer.writerow({"step": r.step, "seconds": round(r.seconds, 3), "lr": f"{r.lr:.3e}",
                                     **{k: f"{r.losses[k]:.5f}" if k in r.losses else "" for k in LOSS_NAMES}})
                    f.flush()
                bar.update(1)
                bar.set_postfix({k: f"{r.losses[k]:.3f}" for k in ("stft", "semantic", "consistency", "fm")
                                 if k in r.losses}, refresh=False)
                now = time.time()
                if now - last_ckpt >= self.cfg.checkpoint_minutes * 60:
                    self.save()
                    last_ckpt = now
                    if not progress:
                        recent = results[-50:]
                        mean = {k: sum(r.losses[k] for r in recent) / len(recent)
                                for k in ("total", "stft", "semantic", "consistency", "asr", "adv", "fm", "disc",
                                          "distill", "distill_codes", "agree")
                                if all(k in r.losses for r in recent)}
                        self.log(f"step {self.step}: checkpoint; last {len(recent)} steps "
                                 f"{sum(r.seconds for r in recent) / len(recent):.2f} s/step, "
                                 + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
                if max_minutes is not None and now - t_start >= max_minutes * 60:
                    break
        self.save()
        return results
