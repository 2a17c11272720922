"""prepare-data: build the local training corpus cache from offline sources."""
from __future__ import annotations

import argparse


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="data_cache", help="corpus directory to create (default: data_cache)")
    p.add_argument("--langs", default="en,es,fr", help="recorded prompt languages, comma-separated")
    p.add_argument("--piper-minutes", type=float, default=120.0, help="minutes of synthesised English speech")
    p.add_argument("--max-prompts", type=int, default=None, help="training prompts per language (default: all)")
    p.add_argument("--max-heldout", type=int, default=None, help="held-out prompts per language (default: all)")
    p.add_argument("--music-seconds", type=float, default=None, help="seconds of music (default: all)")
    p.add_argument("--no-events", action="store_true", help="leave out event sounds")
    p.add_argument("--no-teachers", action="store_true",
                   help="skip Whisper frames and transcript embeddings (no semantic/consistency losses)")
    p.add_argument("--track-seconds", type=float, default=28.0, help="length of packed tracks (<= 30)")
    p.add_argument("--no-voices", action="store_true",
                   help="leave out the multi-speaker sources (wideband recordings, flite, ambience; "
                        "and with them the speaker-disjoint held-out set heldout/unseen)")
    p.add_argument("--max-speakers", type=int, default=None,
                   help="speaker groups of the multi-speaker sources (default: all)")
    p.add_argument("--max-clips-per-speaker", type=int, default=None, help="training clips per speaker group")
    p.add_argument("--flite-minutes", type=float, default=40.0, help="minutes of flite speech (3 voices)")
    p.add_argument("--kokoro-minutes", type=float, default=20.0,
                   help="minutes of Kokoro-82M speech (8 voices, English)")
    p.add_argument("--ambience-minutes", type=float, default=40.0, help="minutes of game music and effects")
    p.add_argument("--unseen-seconds", type=float, default=150.0,
                   help="seconds of each held-out speaker in heldout/unseen (default 150)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads for the Whisper encoder")


def run(args: argparse.Namespace) -> int:
    from llmcodec.data.corpus import PrepareOptions, build_corpus
    langs = tuple(x.strip() for x in args.langs.split(",") if x.strip())
    opts = PrepareOptions(langs=langs, max_prompts=args.max_prompts, max_heldout=args.max_heldout,
                          piper_minutes=args.piper_minutes, music_seconds=args.music_seconds,
                          events=not args.no_events, track_seconds=args.track_seconds,
                          teachers=not args.no_teachers, seed=args.seed, threads=args.threads,
                          voices=not args.no_voices, max_speakers=args.max_speakers,
                          max_clips_per_speaker=args.max_clips_per_speaker,
                          flite_minutes=args.flite_minutes, kokoro_minutes=args.kokoro_minutes,
                          ambience_minutes=args.ambience_minutes,
                          unseen_seconds_per_speaker=args.unseen_seconds,
                          unseen_min_seconds=min(20.0, args.unseen_seconds))
    build_corpus(args.out, opts)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m llmcodec.commands.prepare_data``: the same as ``llmcodec prepare-data``."""
    from llmcodec.cli import subcommand_main
    return subcommand_main("prepare-data", argv)


if __name__ == "__main__":
    raise SystemExit(main())
