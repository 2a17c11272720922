"""Which files a tokenize job reads: a folder, a glob, a manifest, or one audio file."""
from __future__ import annotations

import glob
from pathlib import Path

# file name endings soundfile (libsndfile) reads
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".snd", ".caf", ".w64")
MANIFEST_SUFFIXES = (".txt", ".lst", ".list")


def list_inputs(spec: str) -> list[str]:
    """``spec`` -> sorted absolute paths of the audio files it names.

    * a folder: every audio file under it (recursively, by ``AUDIO_SUFFIXES``);
    * a glob (``data/**/*.wav``; ``**`` recurses);
    * a manifest (``.txt``, ``.lst``, ``.list``): one path per line, relative to the manifest's
      folder; blank lines and ``#`` comments are skipped. Every listed path is kept, so a
      missing file is reported in the errors table rather than dropped;
    * one audio file.

    ValueError when ``spec`` names nothing.
    """
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES]
        if not files:
            raise ValueError(f"{spec}: the folder holds no audio files (accepted endings: {', '.join(AUDIO_SUFFIXES)})")
        return sorted(str(f.resolve()) for f in files)
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        lines = [ln.strip() for ln in p.read_text().splitlines()]
        files = [ln for ln in lines if ln and not ln.startswith("#")]
        if not files:
            raise ValueError(f"{spec}: the manifest lists no files (one path per line)")
        return sorted({str((p.parent / f).resolve()) if not Path(f).is_absolute() else str(Path(f)) for f in files})
    if p.is_file():
        return [str(p.resolve())]
    if glob.has_magic(spec):
        files = [f for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
        if not files:
            raise ValueError(f"{spec}: the glob matches no files")
        return sorted(str(Path(f).resolve()) for f in files)
    raise ValueError(f"{spec}: no such folder, file or manifest; accepted: a folder of audio files, a glob "
                     f"(quoted, e.g. 'data/**/*.wav'), a manifest ({', '.join(MANIFEST_SUFFIXES)}: one path per line) "
                     "or one audio file")
