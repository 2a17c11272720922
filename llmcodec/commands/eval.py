"""eval: PESQ-WB, STOI, WER, DNSMOS and codebook usage of a model, with Opus 6 kbps beside it."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--data", required=True,
                   help="directory of audio files with optional NAME.txt transcripts and an optional "
                        "speakers.json (e.g. data_cache/heldout/unseen: speaker-disjoint; "
                        "data_cache/heldout/en: held-out prompts of trained speakers)")
    p.add_argument("--limit", type=int, help="only the first N files")
    p.add_argument("--per-speaker", type=int, metavar="N",
                   help="only the first N files of each speaker (speakers.json): a quick check of every speaker")
    p.add_argument("--no-opus", action="store_true", help="skip the Opus 6 kbps baseline")
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS")
    p.add_argument("--no-judges", action="store_true",
                   help="skip the independent judges (Whisper base WER, speaker similarity, high band)")
    p.add_argument("--threads", type=int, default=2, help="threads for Whisper")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--markdown", help="also write the table, and what Whisper heard in the first files, "
                                      "as Markdown to this file")
    p.add_argument("--model-card", action="store_true",
                   help="write MODEL_CARD.md into --model (training.json facts + this table)")
    p.add_argument("--history", nargs="+", default=[], metavar="JSON",
                   help="with --model-card: earlier `--json` reports of the same run on the same data, "
                        "tabled by training step in the card")


def run(args: argparse.Namespace) -> int:
    from llmcodec.eval.report import evaluate
    if args.model_card and not args.model:
        raise ValueError("--model-card needs --model DIR (the directory to write MODEL_CARD.md into)")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.per_speaker is not None and args.per_speaker < 1:
        raise ValueError(f"--per-speaker must be >= 1, got {args.per_speaker}")
    if args.history and not args.model_card:
        raise ValueError("--history is for --model-card")
    from llmcodec.eval.report import EvalReport
    history = [EvalReport.from_json(Path(h).read_text()) for h in args.history]  # fail before the long run
    report = evaluate(args.model, args.data, limit=args.limit, per_speaker=args.per_speaker, opus=not args.no_opus,
                      dns=not args.no_dnsmos, judges=not args.no_judges, threads=args.threads)
    table = report.to_markdown()
    print(table, end="")
    if args.json:
        Path(args.json).write_text(report.to_json() + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n" + report.transcripts_markdown())
    if args.model_card:
        from llmcodec.eval.report import model_card
        from llmcodec.checkpoint import read_training_json
        card = Path(args.model) / "MODEL_CARD.md"
        card.write_text(model_card(report, read_training_json(Path(args.model)), history))
        print(f"wrote {card}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.eval``: the same as ``llmcodec eval``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("eval", argv)


if __name__ == "__main__":
    raise SystemExit(main())
