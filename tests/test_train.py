"""The trainer end to end on ``tiny`` (configs/train_tiny_ci.json) over a quick real corpus."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcodec.data.corpus import ensure_corpus
from llmcodec.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY_CI = ROOT / "configs" / "train_tiny_ci.json"


@pytest.fixture(scope="session")
def quick_corpus(tmp_path_factory):
    return ensure_corpus(tmp_path_factory.getbasetemp() / "quick_corpus")


def _cfg(corpus, run_dir, **kw) -> TrainConfig:
    return dataclasses.replace(TrainConfig.load(TINY_CI), data=str(corpus), run_dir=str(run_dir), **kw)


def test_configs_load_and_validate():
    small = TrainConfig.load(ROOT / "configs" / "train_small.json")
    assert small == TrainConfig()  # the file spells out the built-in defaults
    assert small.segment_samples % 1920 == 0 and small.w_fm == 20.0 and small.betas == (0.8, 0.99)
    assert TrainConfig.load(ROOT / "configs" / "train_small_gpu.json").device == "cuda"
    asr = TrainConfig.load(ROOT / "configs" / "train_small_asr.json")
    assert asr.w_asr > 0 and asr.codec_config() == small.codec_config() and small.w_asr == 0
    istft = TrainConfig.load(ROOT / "configs" / "train_small_istft.json")
    assert istft.codec_config().decoder == "istft" and istft.freeze == ("encoder", "quantizer")
    joint = TrainConfig.load(ROOT / "configs" / "train_small_istft_joint.json")
    assert joint.codec_config() == istft.codec_config() and not joint.freeze
    distill = TrainConfig.load(ROOT / "configs" / "distill_small_stft.json")
    assert distill.distill_only and distill.codec_config().encoder == "stft"
    assert distill.freeze == ("quantizer", "decoder") and not small.distill_only
    stft_joint = TrainConfig.load(ROOT / "configs" / "train_small_stft_joint.json")
    assert stft_joint.codec_config() == distill.codec_config() and not stft_joint.freeze
    assert stft_joint.init_from == str(Path(distill.run_dir) / "model")
    for name in ("distill_stft_default", "distill_stft_default_continue"):
        d = TrainConfig.load(ROOT / "configs" / f"{name}.json")
        assert d.distill_only and d.teacher == "default" and d.codec_config().encoder == "stft"
        assert d.codec_config().decoder == "snac" and d.run_dir == "runs/distill_stft_default"
    for name in ("joint_stft_default", "joint_stft_default_continue"):
        j = TrainConfig.load(ROOT / "configs" / f"{name}.json")
        assert not j.distill_only and j.teacher == "default" and j.freeze == ("quantizer",) and j.w_stft > 0
        assert j.codec_config() == TrainConfig.load(ROOT / "configs" / "distill_stft_default.json").codec_config()
        assert (ROOT / j.init_from / "model.safetensors").is_file()
    wide = TrainConfig.load(ROOT / "configs" / "train_small_wide.json")
    wide_cont = TrainConfig.load(ROOT / "configs" / "train_small_wide_continue.json")
    assert wide.init_from == "default" and wide_cont.codec_config() == small.codec_config()
    assert wide_cont.lr_warmup_steps > 0 and wide_cont.run_dir == wide.run_dir
    assert (ROOT / wide_cont.init_from / "model.safetensors").is_file()
    aug = TrainConfig.load(ROOT / "configs" / "train_small_wide_aug.json")  # the A/B of augmentation
    assert aug.augment_config().active and aug.augment_config().p_reverb > 0 and aug.run_dir != wide.run_dir
    assert dataclasses.replace(aug, name=wide.name, run_dir=wide.run_dir, augment={}) == wide
    aug_cont = TrainConfig.load(ROOT / "configs" / "train_small_wide_aug_continue.json")
    assert aug_cont.augment == aug.augment and (ROOT / aug_cont.init_from / "model.safetensors").is_file()
    cont = TrainConfig.load(ROOT / "configs" / "distill_stft_default_continue.json")
    assert cont.init_parts == () and (ROOT / cont.init_from / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="teacher and w_distill"):
        TrainConfig(w_distill=1.0)
    with pytest.raises(ValueError, match="whole number"):
        TrainConfig(segment_seconds=1.0)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"learning_rate": 1})


def test_losses_decrease_on_a_fixed_seed(quick_corpus, tmp_path):
    from llmcodec.train.trainer import CSV_FIELDS, Trainer
    cfg = _cfg(quick_corpus, tmp_path / "run", w_asr=10.0)
    trainer = Trainer(cfg, log=lambda s: None)
    before = trainer.measure()
    results = trainer.fit(progress=False)
    after = trainer.measure()
    assert len(results) == cfg.steps == trainer.step
    # Real losses on the same fixed batch, before vs after the steps.
    for name in ("stft", "subband", "semantic", "consistency", "asr", "total"):
        assert after[name] < before[name], (name, before[name], after[name])
    # The GAN starts after the warm-up, and every loss is logged for every step.
    assert "adv" not in results[cfg.warmup_steps - 1].losses
    assert {"adv", "fm", "disc"} <= set(results[-1].losses)
    rows = list(csv.DictReader((cfg_dir := Path(cfg.run_dir)).joinpath("log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, cfg.steps + 1))
    assert tuple(rows[0]) == CSV_FIELDS and rows[-1]["fm"] != "" and rows[0]["fm"] == ""
    assert all(np.isfinite(float(r["total"])) for r in rows)
    # The shipping export loads like any model directory and runs the streaming path.
    from llmcodec.checkpoint import load_model
    loaded = load_model(cfg_dir / "model")
    assert loaded.model.cfg.name == "tiny"
    assert json.loads((cfg_dir / "model" / "training.json").read_text())["steps"] == cfg.steps
    from safetensors import safe_open
    with safe_open(str(cfg_dir / "model" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert all(f.get_tensor(k).dtype in (torch.float16, torch.int64) for k in keys)
        assert not [k for k in keys if "parametrizations" in k or "codebook" in k or "heads" in k]
    enc = loaded.model.encode(torch.zeros(1, 1920 * 2))
    assert [c.shape[1] for c in enc.codes] == [2, 4, 8]


def test_resume_is_exact(quick_corpus, tmp_path):
    from llmcodec.train.trainer import Trainer
    # Four steps in one go ...
    a = Trainer(_cfg(quick_corpus, tmp_path / "a", steps=4, warmup_steps=2), log=lambda s: None)
    ra = a.fit(progress=False)
    # ... equal two steps, a stop, a resume from the checkpoint and two more (crossing the warm-up).
    b = Trainer(_cfg(quick_corpus, tmp_path / "b", steps=2, warmup_steps=2), log=lambda s: None)
    b.fit(progress=False)
    del b
    c = Trainer(_cfg(quick_corpus, tmp_path / "b", steps=4, warmup_steps=2), log=lambda s: None)
    assert c.resume() and c.step == 2
    rc = c.fit(progress=False)
    assert [r.step for r in rc] == [3, 4]
    for k in ("stft", "total", "disc"):
        assert rc[-1].losses[k] == pytest.approx(ra[-1].losses[k], rel=1e-5, abs=1e-6)
    for (n, p), (_, q) in zip(a.model.state_dict().items(), c.model.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    for p, q in zip(a.disc.parameters(), c.disc.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    rows = list(csv.DictReader((tmp_path / "b" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_cli_train_resume_and_export(quick_corpus, tmp_path):
    from llmcodec.cli import main
    run = tmp_path / "run"
    args = ["train", "--config", str(TINY_CI), "--data", str(quick_corpus), "--run-dir", str(run),
            "--no-progress"]
    assert main([*args, "--steps", "1"]) == 0
    assert main([*args, "--steps", "2"]) == 2  # an existing run needs --resume
    assert main([*args, "--steps", "2", "--resume"]) == 0
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 2
    assert main([*args, "--export", str(tmp_path / "ship")]) == 0
    assert json.loads((tmp_path / "ship" / "training.json").read_text())["steps"] == 2
    # The training curve: running means of log.csv, and held-out points from eval reports.
    from llmcodec.eval.report import EvalReport, SystemScores
    from llmcodec.train.curve import read_log
    log = read_log(run / "log.csv")
    stft = [float(r["stft"]) for r in csv.DictReader((run / "log.csv").open())]
    steps, mean = log.running_mean("stft", 2)
    assert list(steps) == [2] and mean[0] == pytest.approx((stft[0] + stft[1]) / 2)
    evals = []
    for step, stoi in ((0, 0.41), (2, 0.45)):
        rows = [SystemScores("llmcodec tiny", "58.3 tokens/s", 1.05, stoi, 1.0, 1.1, 1.2, 1.3, ["3/4096"]),
                SystemScores("Opus 6 kbps", "6 kbps", 2.37, 0.91, 0.13, 2.9, 3.2, 3.9)]
        path = tmp_path / f"eval_{step}.json"
        path.write_text(EvalReport("m", "d", 3, 5.0, 58.3, rows, 1.0, {"steps": step}).to_json())
        evals.append(str(path))
    png = tmp_path / "curve.png"
    assert main([*args, "--plot", str(png), "--evals", *evals]) == 0
    import matplotlib.image
    assert matplotlib.image.imread(png).shape[:2] == (450, 1700)  # losses, STOI/PESQ-WB, WER
    assert main([*args, "--evals", *evals]) == 2  # --evals only with --plot
    assert main([*args, "--run-dir", str(tmp_path / "nothing"), "--plot", str(png)]) == 2  # no log.csv
    # A final anneal: the learning rate falls linearly to zero over the last N steps before --steps.
    assert main([*args, "--steps", "5", "--resume", "--anneal-steps", "9"]) == 2  # more than --steps
    assert main([*args, "--steps", "5", "--resume", "--anneal-steps", "2"]) == 0
    lrs = [float(r["lr"]) for r in csv.DictReader((run / "log.csv").open())]
    assert len(lrs) == 5 and lrs[3] == pytest.approx(lrs[2], rel=1e-2)
    assert lrs[4] == pytest.approx(lrs[2] / 2, rel=1e-2)
    assert json.loads((run / "model" / "training.json").read_text())["anneal_steps"] == 2
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert main(["train", "--config", str(TINY_CI), "--data", str(quick_corpus), "--run-dir",
                 str(tmp_path / "empty"), "--export", str(tmp_path / "x")]) == 2


def test_resume_without_checkpoint_starts_from_a_model_dir(quick_corpus, tmp_path):
    """``--resume`` with no run checkpoint continues a shipped model (the bundled default's path)."""
    from llmcodec.train.trainer import Trainer
    first = Trainer(_cfg(quick_corpus, tmp_path / "one", steps=3), log=lambda s: None)
    first.fit(progress=False)
    second = Trainer(_cfg(quick_corpus, tmp_path / "two", steps=4, init_from=str(tmp_path / "one" / "model")),
                     log=lambda s: None)
    assert second.step == 3 and not second.resume()
    # fp16 shipping weights, weight norm re-applied: the same function up to fp16 rounding.
    x = second.sampler.batch(7).audio
    with torch.no_grad():
        ya, yb = first.model(x).audio, second.model(x).audio
    assert float((ya - yb).abs().max()) < 0.05
    second.fit(progress=False)
    assert second.step == 4
    # the hours go on, and the warm-up ramps the learning rate from the step it started at
    hours = json.loads((tmp_path / "one" / "model" / "training.json").read_text())["hours"]
    third = Trainer(_cfg(quick_corpus, tmp_path / "three", steps=9, init_from=str(tmp_path / "one" / "model"),
                         lr_warmup_steps=4), log=lambda s: None)
    assert third.elapsed == pytest.approx(hours * 3600)
    lrs = []
    for _ in range(5):
        lrs.append(third.lr())
        third.step += 1
    assert lrs == pytest.approx([third.cfg.lr * third.cfg.lr_gamma ** (k // third.cfg.lr_decay_every) * min(1, (k - 2) / 4)
                                 for k in range(3, 8)])
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        TrainConfig(lr_warmup_steps=-1)


def test_new_decoder_on_a_frozen_encoder(quick_corpus, tmp_path):
    """``init_parts`` takes the encoder and quantizer of a model with another decoder; ``freeze``
    keeps them fixed (same tokens) while the new istft decoder learns; the run resumes."""
    from llmcodec.train.trainer import Trainer
    first = Trainer(_cfg(quick_corpus, tmp_path / "one", steps=2), log=lambda s: None)
    first.fit(progress=False)
    istft = {"decoder": "istft", "istft_dim": 32, "istft_hidden": 64, "istft_layers": 2}
    kw = dict(steps=3, model_overrides=istft, init_from=str(tmp_path / "one" / "model"),
              init_parts=("encoder", "quantizer"), freeze=("encoder", "quantizer"))
    with pytest.raises(ValueError, match="init_parts \\['decoder2'\\] unknown"):
        _cfg(quick_corpus, tmp_path / "bad", **{**kw, "init_parts": ("decoder2",)})
    second = Trainer(_cfg(quick_corpus, tmp_path / "two", **kw), log=lambda s: None)
    assert second.step == 0
    enc0 = {k: v.clone() for k, v in second.model.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in second.model.decoder.state_dict().items()}
    x = second.sampler.batch(0).audio
    with torch.no_grad():
        codes_before = second.model.encode(x.squeeze(1)).codes
    second.fit(progress=False)
    assert all(torch.equal(v, second.model.encoder.state_dict()[k]) for k, v in enc0.items())
    assert any(not torch.equal(v, second.model.decoder.state_dict()[k]) for k, v in dec0.items())
    with torch.no_grad():
        codes_after = second.model.encode(x.squeeze(1)).codes
    assert all(torch.equal(a, b) for a, b in zip(codes_before, codes_after))
    shipped = json.loads((tmp_path / "two" / "model" / "training.json").read_text())
    assert shipped["steps"] == 3 and shipped["init"]["parts"] == ["encoder", "quantizer"]
    third = Trainer(_cfg(quick_corpus, tmp_path / "two", **{**kw, "steps": 4}), log=lambda s: None)
    assert third.resume() and third.step == 3


def test_stft_encoder_learns_the_old_encoders_latents(quick_corpus, tmp_path):
    """Distillation only: a new STFT encoder learns the latents of a model's SNAC encoder behind
    that model's quantizer and decoder (frozen); only the encoder's weights change."""
    from llmcodec.train.trainer import Trainer
    first = Trainer(_cfg(quick_corpus, tmp_path / "one", steps=2), log=lambda s: None)
    first.fit(progress=False)
    teacher = str(tmp_path / "one" / "model")
    zero = {w: 0.0 for w in ("w_stft", "w_subband", "w_adv", "w_fm", "w_commit", "w_codebook",
                             "w_semantic", "w_consistency", "w_asr")}
    stft = {"encoder": "stft", "stft_dim": 32, "stft_hidden": 64, "stft_layers": 2}
    cfg = _cfg(quick_corpus, tmp_path / "two", steps=6, model_overrides=stft, init_from=teacher,
               init_parts=("quantizer", "decoder"), freeze=("quantizer", "decoder"), teacher=teacher,
               w_distill=1.0, w_distill_codes=0.1, lr=3e-3, **zero)
    assert cfg.distill_only
    student = Trainer(cfg, log=lambda s: None)
    fixed = {k: v.clone() for k, v in {**student.model.quantizer.state_dict(),
                                       **student.model.decoder.state_dict()}.items()}
    enc0 = {k: v.clone() for k, v in student.model.encoder.state_dict().items()}
    x = student.sampler.batch(0).audio
    with torch.no_grad():
        before = float(student.distill.loss(x, student.model.encoder(x)))
    steps = student.fit(progress=False)
    with torch.no_grad():
        after = float(student.distill.loss(x, student.model.encoder(x)))
    # no decoder, no discriminator in a step
    assert set(steps[0].losses) == {"total", "distill", "distill_codes", "agree"}
    assert all(0.0 <= s.losses["agree"] <= 1.0 for s in steps)
    assert after < before, (before, after)
    assert any(not torch.equal(v, student.model.encoder.state_dict()[k]) for k, v in enc0.items())
    now = {**student.model.quantizer.state_dict(), **student.model.decoder.state_dict()}
    assert all(torch.equal(v, now[k]) for k, v in fixed.items())
    with open(tmp_path / "two" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[-1]["distill"] and rows[-1]["agree"] and not rows[-1]["stft"]


def test_distillation_losses_read_the_teachers_codes():
    """The teacher's own latents agree with its codes everywhere (latent loss 0); perturbed
    latents lose agreement and raise both losses. On a real recording, the bundled model."""
    from llmcodec.audio import load_audio
    from llmcodec.checkpoint import load_model
    from llmcodec.train.distill import Distillation
    model = load_model(None).model
    dist = Distillation("default", model, torch.device("cpu"), compile=False)
    wav = Path("/usr/share/asterisk/sounds/en/activated.wav")
    audio, _ = load_audio(wav, 16000)
    x = torch.from_numpy(audio[:7680].copy()).float()[None, None]
    z = dist.latents(x)
    same = dist.losses(x, z, tau=0.05)
    assert float(same["agree"]) == 1.0 and float(same["distill"]) == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the training step's autocast: still float32 codes
        assert float(dist.losses(x, z, tau=0.05)["agree"]) == 1.0
    noisy = dist.losses(x, z + 0.5 * z.std() * torch.randn_like(z), tau=0.05)
    assert float(noisy["agree"]) < 0.9
    assert float(noisy["distill"]) > 0.01 and float(noisy["distill_codes"]) > float(same["distill_codes"])
    assert "distill_codes" not in dist.losses(x, z, tau=None)
    assert float(dist.loss(x, z)) == 0.0


def test_loss_building_blocks():
    from llmcodec.train.discriminator import MultiFrequencyDiscriminator, mel_filterbank
    from llmcodec.train.losses import PQMF, MultiScaleSTFTLoss, TeacherHeads
    x = torch.randn(2, 1, 3840) * 0.1
    loss = MultiScaleSTFTLoss()
    assert float(loss(x, x)) < 1e-5 and float(loss(x * 0.5, x)) > 0.1
    bands = PQMF(6)(x)
    assert bands.shape == (2, 6, 640)
    # The bands split the energy: a 1 kHz tone lands in band 0, a 6 kHz tone in band 4.
    t = torch.arange(3840) / 16000
    for f, band in ((1000, 0), (6000, 4)):
        e = PQMF(6)(torch.sin(2 * torch.pi * f * t)[None, None]).pow(2).mean(-1)[0]
        assert int(e.argmax()) == band
    fb = mel_filterbank(16000, 128, 16)
    assert fb.shape == (16, 65) and bool((fb.sum(1) > 0).all())
    logits, feats = MultiFrequencyDiscriminator((32, 256), (16, 32))(x)
    assert len(logits) == 2 and len(feats[0]) == 6
    heads = TeacherHeads(64)
    lvl = torch.randn(2, 64, 4)
    target = torch.nn.functional.normalize(heads.semantic(lvl.mean(-1)), dim=-1).detach()
    with torch.no_grad():
        assert float(heads.semantic_loss(lvl, target, torch.ones(2))) < 1e-5
        assert float(heads.semantic_loss(lvl, target, torch.zeros(2))) == 0.0


def test_cuda_training_with_mixed_precision(quick_corpus, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the --device cuda / mixed-precision path is not run")
    from llmcodec.train.trainer import Trainer
    t = Trainer(_cfg(quick_corpus, tmp_path / "gpu", steps=8, device="cuda", amp=True), log=lambda s: None)
    before = t.measure()
    t.fit(progress=False)
    assert t.measure()["stft"] < before["stft"]


def test_interrupt_saves_a_checkpoint(quick_corpus, tmp_path):
    """Ctrl-C (and `kill`, turned into it by the train command) stops with a checkpoint."""
    from llmcodec.train.trainer import Trainer
    t = Trainer(_cfg(quick_corpus, tmp_path / "run", steps=10), log=lambda s: None)
    real_step = t.train_step

    def step_then_interrupt():
        if t.step == 2:
            raise KeyboardInterrupt
        return real_step()
    t.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        t.fit(progress=False)
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 2


def test_kill_stops_the_train_command_with_a_checkpoint(quick_corpus, tmp_path):
    """`kill PID` (SIGTERM) on `llmcodec train`: a checkpoint at the step reached, exit 130."""
    import os
    import signal
    import subprocess
    import sys
    import time
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "llmcodec.commands.train", "--config", str(TINY_CI), "--data", str(quick_corpus),
           "--run-dir", str(run), "--no-progress", "--steps", "100000"]
    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:
            log = run / "log.csv"
            if log.is_file() and len(log.read_text().splitlines()) > 3:  # header + 3 steps done
                break
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()[1][-2000:]
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err[-2000:]
    step = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    assert step >= 3 and f"stopped at step {step}" in err
