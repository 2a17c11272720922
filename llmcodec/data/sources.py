"""Offline data sources on a Debian machine, and the fixed held-out split.

Speech with transcripts: ``asterisk-core-sounds-{en,es,fr}-wav`` (recorded
prompts, 8 kHz) with their transcripts from ``asterisk-core-sounds-{en,es,fr}``.
Text for synthesis: ``fortunes`` and ``wordnet-base`` example sentences.
Non-speech: ``asterisk-moh-opsound-wav`` (music), ``sound-theme-freedesktop`` and
``sound-icons`` (event sounds).

The held-out split is a pure function of a prompt's language and name (a hash),
so it never changes with package versions or file order.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

SOUNDS = Path("/usr/share/asterisk/sounds")
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June"}
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")
MUSIC = Path("/usr/share/asterisk/moh")
EVENT_DIRS = (Path("/usr/share/sounds/freedesktop/stereo"), Path("/usr/share/sounds/sound-icons"))
# Fortune files that are pictures, lists or offensive rather than sayings.
FORTUNE_SKIP = {"art", "ascii-art", "definitions", "ethnic", "translate-me", "knghtbrd", "perl"}
HELDOUT_PERCENT = 10  # of transcribed prompts per language


@dataclass(frozen=True)
class Prompt:
    """One recorded prompt: ``name`` like ``digits/5``, its file, transcript (None if none)."""

    lang: str
    name: str
    path: Path
    text: str | None


def is_heldout(lang: str, name: str) -> bool:
    """The fixed held-out split: about 10% of each language's prompts, chosen by hash."""
    h = hashlib.sha1(f"{lang}/{name}".encode()).digest()
    return int.from_bytes(h[:4], "big") % 100 < HELDOUT_PERCENT


def _clean_transcript(text: str) -> str | None:
    text = " ".join(text.split())
    if not text or (text.startswith("[") and text.endswith("]")):
        return None  # "[ascending tones]": a sound, not speech
    text = re.sub(r"\[[^\]]*\]", " ", text)  # drop bracketed notes inside a line
    text = " ".join(text.split())
    return text or None


def read_transcripts(lang: str) -> dict[str, str | None]:
    """``name -> text`` from the Debian transcript file (``;`` lines are comments).

    The Spanish file has a slip: a second ``digits/0`` line that means ``digits/10``.
    """
    path = Path(TRANSCRIPTS.format(lang=lang))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: install Debian's asterisk-core-sounds-{lang}")
    out: dict[str, str | None] = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            name = name.strip()
            if name in out and name == "digits/0":
                name = "digits/10"
            out[name] = _clean_transcript(text)
    return out


def prompts(lang: str) -> list[Prompt]:
    """All recorded prompts of one language, sorted by name."""
    if lang not in VOICES:
        raise ValueError(f"unknown language {lang!r}; accepted: {sorted(VOICES)}")
    root = SOUNDS / VOICES[lang]
    files = sorted(root.rglob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no recorded prompts under {root}: install asterisk-core-sounds-{lang}-wav")
    texts = read_transcripts(lang)
    out = []
    for p in files:
        name = p.relative_to(root).with_suffix("").as_posix()
        out.append(Prompt(lang, name, p, texts.get(name)))
    return out


def _sentences_ok(text: str) -> bool:
    letters = sum(c.isalpha() for c in text)
    return 12 <= len(text) <= 320 and letters >= 0.7 * sum(not c.isspace() for c in text)


def fortune_texts() -> list[str]:
    """Sayings from Debian's ``fortunes`` (entries separated by ``%`` lines), cleaned."""
    if not FORTUNES.is_dir():
        raise FileNotFoundError(f"{FORTUNES}: install Debian's fortunes")
    out = []
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or path.is_dir() or path.name in FORTUNE_SKIP:
            continue
        for entry in path.read_text(encoding="utf-8", errors="ignore").split("\n%\n"):
            text = " ".join(entry.replace("\t", " ").split())
            text = re.sub(r"\s*--\s*", ". ", text)  # attributions read as a new sentence
            if _sentences_ok(text):
                out.append(text)
    return out


def wordnet_sentences() -> list[str]:
    """The quoted example sentences of Debian's ``wordnet-base``."""
    out = []
    for path in sorted(WORDNET.glob("data.*")):
        for m in re.finditer(r'"([^"]{12,200})"', path.read_text(encoding="utf-8", errors="ignore")):
            s = m.group(1).strip()
            if _sentences_ok(s):
                out.append(s[0].upper() + s[1:] + ("" if s[-1] in ".!?" else "."))
    return out


def music_files() -> list[Path]:
    files = sorted(MUSIC.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no music under {MUSIC}: install asterisk-moh-opsound-wav")
    return files


def event_files() -> list[Path]:
    """Short event sounds (bells, alarms, clicks); symlinks resolved and de-duplicated."""
    seen, out = set(), []
    for d in EVENT_DIRS:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            r = p.resolve()
            if r.suffix in (".oga", ".ogg", ".wav") and r.is_file() and r not in seen:
                seen.add(r)
                out.append(r)
    return out
