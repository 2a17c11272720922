"""``llmcodec icl generate``: few-shot text-to-speech and denoising by a frozen LLM that writes
codec tokens (``llmcodec/icl/gen_*.py``), judged beside the baselines."""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

LEVELS = {"1": 1, "all": 3}


def add_generate(sub) -> None:
    g = sub.add_parser("generate", help="few-shot text-to-speech of digits and denoising: the LLM writes "
                                        "audio tokens; Whisper base, DNSMOS, PESQ-WB and STOI judge them")
    g.add_argument("--tasks", nargs="+", default=["tts", "denoise"], choices=["tts", "denoise"])
    g.add_argument("--levels", nargs="+", default=["1", "all"], choices=list(LEVELS),
                   help="the LLM reads and writes level-1 words only, and/or all levels in block order")
    g.add_argument("--shots", nargs="+", type=int, default=[1, 3],
                   help="K: recordings per digit (tts, at most 3) / noisy-clean pairs (denoise)")
    g.add_argument("--ways", type=int, default=3, help="tts: digits among the examples (the query is one)")
    g.add_argument("--snr", nargs="+", type=float, default=[0.0, 5.0, 10.0], help="denoise: SNRs in dB")
    g.add_argument("--episodes", type=int, default=100, help="episodes per setting")
    g.add_argument("--duration", type=float, default=None,
                   help="seconds per clip (default: tts 1.0, denoise 1.5), truncated or zero-padded")
    g.add_argument("--model", help="codec model directory (default: the bundled llmcodec/assets/default)")
    g.add_argument("--llm", help="the codec's LLM as a .gguf file or Hugging Face folder (default: SmolLM2-135M)")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    g.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (faster)")
    g.add_argument("--results", help="results file (JSON), rewritten after every setting; a rerun on it "
                                     "skips the settings already there")
    g.add_argument("--markdown", help="write the Markdown report here")
    g.add_argument("--log", help="one JSON line per episode")


def settings(args: argparse.Namespace):
    from llmcodec.icl.gen_tasks import GenSetting
    out = []
    for task in args.tasks:
        for lv in sorted({LEVELS[v] for v in args.levels}):
            for k in args.shots:
                if task == "tts":
                    out.append(GenSetting("tts", k, lv, args.ways))
                else:
                    out += [GenSetting("denoise", k, lv, snr_db=s) for s in args.snr]
    return out


def _command(args: argparse.Namespace) -> str:
    parts = ["llmcodec", "icl", "generate"]
    for key in ("tasks", "levels", "shots", "ways", "snr", "episodes", "duration", "model", "llm", "dtype",
                "seed", "threads", "results", "markdown"):
        v = getattr(args, key)
        if v is not None:
            parts += ["--" + key] + ([str(x) for x in v] if isinstance(v, list) else [str(v)])
    if args.no_dnsmos:
        parts.append("--no-dnsmos")
    return " ".join(shlex.quote(p) for p in parts)


def run_generate(args: argparse.Namespace) -> int:
    import torch
    from llmcodec.icl.gen_report import load_results, markdown, save_results, summarize, table
    from llmcodec.icl.gen_run import GenCoder, GenRunner, Judges, evaluate_gen
    from llmcodec.icl.gen_tasks import DEFAULT_DURATION, sample_gen_episodes
    from llmcodec.icl.llm import load_llm
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    todo = settings(args)
    coder = GenCoder(args.model)
    llm = load_llm(args.llm, args.dtype)
    weights = hashlib.sha256((coder.directory / "model.safetensors").read_bytes()).hexdigest()[:16]
    identity = {"codec": f"{coder.directory} (config {coder.model.cfg.name!r}, weights sha256 {weights}...)",
                "llm": llm.name, "dtype": args.dtype, "seed": args.seed, "episodes": args.episodes,
                "duration": args.duration, "dnsmos": not args.no_dnsmos}
    commands, rows = load_results(args.results, identity) if args.results else ([], [])
    command = _command(args)
    done = {r["name"] for r in rows}
    todo = [s for s in todo if s.name not in done]
    if todo and command not in commands:  # the commands that ran settings
        commands = commands + [command]
    judges = Judges(args.threads or 1, use_dnsmos=not args.no_dnsmos)
    logf = open(args.log, "a", encoding="utf-8", buffering=1) if args.log else None  # a line per episode
    meta = {"codec": identity["codec"], "LLM": f"{llm.name} ({args.dtype}), greedy, constrained to valid ids per "
            "level and whole blocks", "episodes per setting": str(args.episodes), "seed": str(args.seed),
            "commands": "; ".join(f"`{c}`" for c in commands)}

    def write(final: bool) -> None:
        if args.results:
            save_results(args.results, identity, commands, rows)
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(markdown(rows, meta | {"date": time.strftime("%Y-%m-%d")}, not final),
                                           encoding="utf-8")

    runners: dict[float, GenRunner] = {}
    try:
        for s in todo:
            duration = args.duration or DEFAULT_DURATION[s.task]
            runner = runners.setdefault(duration, GenRunner(coder, llm, judges, duration))
            eps = sample_gen_episodes(s, args.episodes, args.seed, duration)

            def progress(setting, outs, seconds):
                rows.append(summarize(setting, outs, seconds))
                print(table(rows[-1:]), flush=True)
                write(False)

            evaluate_gen(runner, [(s, eps)], progress=progress,
                         log=(lambda rec: logf.write(json.dumps(rec) + "\n")) if logf else None)
        write(True)
    finally:
        if logf:
            logf.close()
    if args.markdown:
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0
