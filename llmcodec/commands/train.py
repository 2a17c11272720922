"""train: run (or resume) the LLM-Codec training recipe; export a shipping model."""
from __future__ import annotations

import argparse
import dataclasses


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TrainConfig JSON (default: the built-in small recipe, "
                                    "configs/train_small.json)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir; without a checkpoint there, start from the "
                        "bundled default model's weights (or the config's init_from)")
    p.add_argument("--data", help="corpus directory (overrides the config)")
    p.add_argument("--run-dir", help="run directory (overrides the config)")
    p.add_argument("--steps", type=int, help="train until this step (overrides the config)")
    p.add_argument("--anneal-steps", type=int,
                   help="decay the learning rate linearly towards zero over the last N steps before "
                        "--steps (overrides the config; for a shipping branch of a run)")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    p.add_argument("--threads", type=int, help="torch CPU threads (overrides the config)")
    p.add_argument("--export", metavar="DIR",
                   help="write the run's current weights as a shipping model directory (fp16) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plot", metavar="PNG",
                   help="draw the run's training curve (losses from log.csv; held-out figures from "
                        "--evals) and exit")
    p.add_argument("--evals", nargs="+", default=[], metavar="JSON",
                   help="with --plot: `llmcodec eval --json` reports of the run's exports")


def build_config(args: argparse.Namespace):
    from llmcodec.train.config import TrainConfig
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    changes = {k: v for k, v in {"data": args.data, "run_dir": args.run_dir, "steps": args.steps,
                                 "device": args.device, "threads": args.threads,
                                 "anneal_steps": args.anneal_steps}.items() if v is not None}
    cfg = dataclasses.replace(cfg, **changes)
    return cfg


def run(args: argparse.Namespace) -> int:
    from llmcodec.train.run_state import has_training_state
    from llmcodec.train.trainer import Trainer
    from pathlib import Path
    cfg = build_config(args)
    if args.evals and not args.plot:
        raise ValueError("--evals is for --plot")
    if args.plot:
        from llmcodec.eval.report import EvalReport
        from llmcodec.train.curve import plot_run
        reports = [EvalReport.from_json(Path(e).read_text()) for e in args.evals]
        print(f"wrote {plot_run(cfg.run_dir, args.plot, reports)}")
        return 0
    ckpt = Path(cfg.run_dir) / "checkpoint"
    if has_training_state(ckpt) and not args.resume and not args.export:
        raise ValueError(f"{cfg.run_dir} already holds a run; pass --resume to continue it "
                         f"or choose another --run-dir")
    if args.export and not has_training_state(ckpt):
        raise ValueError(f"{ckpt}: no training checkpoint to export")
    if args.resume and not has_training_state(ckpt) and cfg.init_from is None:
        cfg = dataclasses.replace(cfg, init_from="default")  # continue the bundled default
    trainer = Trainer(cfg)
    if args.resume or args.export:
        trainer.resume()
    if args.export:
        out = trainer.export(Path(args.export))
        print(f"wrote {out} (step {trainer.step})")
        return 0
    import signal
    import sys
    if hasattr(signal, "SIGTERM"):  # `kill PID` stops like Ctrl-C: a checkpoint first
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        trainer.fit(max_minutes=args.max_minutes, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"stopped at step {trainer.step}: checkpoint {ckpt}; continue with --resume", file=sys.stderr)
        return 130
    print(f"step {trainer.step}: checkpoint {ckpt}, model {Path(cfg.run_dir) / 'model'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.train``: the same as ``llmcodec train``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("train", argv)


if __name__ == "__main__":
    raise SystemExit(main())
