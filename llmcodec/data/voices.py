"""Many voices offline: wideband multi-speaker speech, its speakers, and the speaker-disjoint split.

Sources (Debian packages; licences in docs/TRAINING.md), each clip labelled with a
*speaker group*: the finest speaker identity the package's layout gives.

=================  =========================================  ===========================
source             speaker group                              transcript
=================  =========================================  ===========================
tuxpaint           ``tuxpaint/LANG`` (the stamp descriptions  the stamp's ``.txt`` line
                   of one language: its volunteer speakers)   ``LANG.utf8=...``
fillets            ``fillets/LANG/m`` (small fish),           ``dialogs_LANG.lua``
                   ``/v`` (big fish), ``/LEVEL-X`` (others)
klettres           ``klettres/LANG``                          the letter or syllable
ktuberling         ``ktuberling/LANG``                        the word (file name)
hedgewars          ``hedgewars/VOICEPACK`` (game voice lines)  none
asterisk           ``asterisk/VOICE`` (Italian and Russian    none
                   telephone prompts, 8 kHz)
flite              ``flite/VOICE`` (synthetic; awb, rms and   the synthesised text
                   slt are built from CMU ARCTIC speakers)
=================  =========================================  ===========================

The speaker-disjoint held-out set is fixed by speaker, never by file: every
group of the children's packages in the languages :data:`HELDOUT_LANGS`
(English, Dutch, Danish, German), both main Dutch voices and the side
characters of ``fillets-ng-data-nl``, and the synthetic flite voice ``slt``.
Nothing of these groups is trained on. ``alsa-utils``' sound files are reserved
for independent evaluation and read by nothing here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TUXPAINT = Path("/usr/share/tuxpaint/stamps")
FILLETS = Path("/usr/share/games/fillets-ng")
KLETTRES = Path("/usr/share/klettres")
KTUBERLING = Path("/usr/share/ktuberling/sounds")
HEDGEWARS = Path("/usr/share/games/hedgewars/Data")
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_VOICES = {"it_IT_f_Menardi": "it", "it_IT_m_Carlo": "it", "ru_RU_f_IvrvoiceRU": "ru"}
FILLETS_LANGS = ("cs", "nl")
FLITE_VOICES = {"kal16": "en", "awb": "en", "rms": "en", "slt": "en"}
# Non-speech with real bandwidth: game music, effects and ambience.
NON_SPEECH_DIRS = (HEDGEWARS / "Music", HEDGEWARS / "Sounds", Path("/usr/share/games/colobot/sounds"),
                   Path("/usr/share/games/colobot/music"), Path("/usr/share/sonic-pi/samples"))

# The speaker-disjoint held-out set (see the module docstring).
HELDOUT_LANGS = frozenset({"en", "en_GB", "nl", "da", "de"})
HELDOUT_FLITE = frozenset({"slt"})
CHILDREN_SOURCES = frozenset({"tuxpaint", "klettres", "ktuberling"})
AUDIO_SUFFIXES = (".ogg", ".wav", ".flac")


@dataclass(frozen=True)
class Clip:
    """One recorded (or synthesised) utterance and who speaks it."""

    source: str
    speaker: str  # the speaker group, e.g. "fillets/nl/m"
    lang: str  # a language code as the package names it ("en_GB", "pt_BR", ...)
    path: Path | None  # None for synthetic clips (made from ``text``)
    text: str | None

    @property
    def base_lang(self) -> str:
        return self.lang.split("_")[0].split("@")[0]


def is_heldout_speaker(source: str, speaker: str, lang: str) -> bool:
    """Whether a speaker group belongs to the speaker-disjoint held-out set."""
    if source in CHILDREN_SOURCES:
        return lang in HELDOUT_LANGS or lang.split("_")[0] in HELDOUT_LANGS
    if source == "fillets":
        return lang == "nl"
    if source == "flite":
        return speaker.split("/")[-1] in HELDOUT_FLITE
    return False


def heldout(clip: Clip) -> bool:
    return is_heldout_speaker(clip.source, clip.speaker, clip.lang)


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


# ---- tuxpaint ------------------------------------------------------------------------------
_TUX_DESC = re.compile(r"^(?P<stamp>.+?)_desc_(?P<lang>[A-Za-z_@]+)$")
_TUX_LETTER = re.compile(r"^(?P<stamp>.+?)_(?:outline|filled)_(?P<lang>en_GB)$")


def _tux_text(txt: Path, lang: str) -> str | None:
    if not txt.is_file():
        return None
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in (f"{lang}.utf8", lang):
            return " ".join(value.split()) or None
    return None


def tuxpaint() -> list[Clip]:
    out = []
    for p in _audio_files(TUXPAINT):
        m = _TUX_DESC.match(p.stem) or _TUX_LETTER.match(p.stem)
        if not m:
            continue  # a sound effect (see non_speech_files)
        lang, stamp = m.group("lang"), m.group("stamp")
        text = stamp.upper() if _TUX_LETTER.match(p.stem) else _tux_text(p.with_name(stamp + ".txt"), lang)
        out.append(Clip("tuxpaint", f"tuxpaint/{lang}", lang, p, text))
    return out


# ---- fillets-ng ------------------------------------------------------------------------------
_DIALOG = re.compile(r'dialogId\("(?P<id>[^"]+)"[^)]*\)\s*dialogStr\("(?P<text>(?:[^"\\]|\\.)*)"\)')


@lru_cache(maxsize=None)
def _fillets_dialogs(lang: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in sorted((FILLETS / "script").glob(f"*/dialogs_{lang}.lua")):
        for m in _DIALOG.finditer(f.read_text(encoding="utf-8", errors="replace")):
            out[m.group("id")] = " ".join(m.group("text").replace('\\"', '"').split())
    return out


def fillets() -> list[Clip]:
    out = []
    for lang in FILLETS_LANGS:
        texts = _fillets_dialogs(lang)
        for p in sorted((FILLETS / "sound").glob(f"*/{lang}/*.ogg")):
            parts = p.stem.split("-")
            level = p.parent.parent.name
            if len(parts) > 2:  # LEVEL-SPEAKER-LINE: m, v, or a side character of the level
                who = parts[1] if parts[1] in ("m", "v") else f"{level}-{parts[1]}"
            else:  # help texts, bubbles: one narrator group per level
                who = f"{level}-other"
            dialog_id = re.sub(r"\d+$", "", p.stem) if p.stem not in texts else p.stem
            out.append(Clip("fillets", f"fillets/{lang}/{who}", lang, p,
                            texts.get(p.stem) or texts.get(dialog_id)))
    return out


# ---- klettres, ktuberling ----------------------------------------------------------------------
def klettres() -> list[Clip]:
    out = []
    for d in sorted(p for p in KLETTRES.iterdir() if p.is_dir()) if KLETTRES.is_dir() else []:
        for p in _audio_files(d):
            out.append(Clip("klettres", f"klettres/{d.name}", d.name, p, p.stem))
    return out


def ktuberling() -> list[Clip]:
    out = []
    for d in sorted(p for p in KTUBERLING.iterdir() if p.is_dir()) if KTUBERLING.is_dir() else []:
        for p in _audio_files(d):
            out.append(Clip("ktuberling", f"ktuberling/{d.name}", d.name, p,
                            p.stem.split("_")[-1].replace("-", " ")))
    return out


# ---- game voices, more telephone voices ---------------------------------------------------------
def hedgewars() -> list[Clip]:
    root = HEDGEWARS / "Sounds" / "voices"
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        lang = d.name.split("_")[1] if "_" in d.name else "en"
        out += [Clip("hedgewars", f"hedgewars/{d.name}", lang, p, None) for p in _audio_files(d)]
    return out


def asterisk_voices() -> list[Clip]:
    out = []
    for voice, lang in ASTERISK_VOICES.items():
        root = ASTERISK / voice
        if root.is_dir():
            out += [Clip("asterisk", f"asterisk/{voice}", lang, p, None) for p in _audio_files(root)]
    return out


def recorded_clips() -> list[Clip]:
    """Every recorded clip of the sources above whose package is installed."""
    return tuxpaint() + fillets() + klettres() + ktuberling() + hedgewars() + asterisk_voices()


def non_speech_files() -> list[Path]:
    """Wideband music, effects and ambience (game packages, tuxpaint's effects); no voices."""
    out = [p for d in NON_SPEECH_DIRS if d.is_dir() for p in _audio_files(d) if "voices" not in p.parts]
    out += [p for p in _audio_files(TUXPAINT) if TUXPAINT.is_dir()
            and not (_TUX_DESC.match(p.stem) or _TUX_LETTER.match(p.stem))]
    return sorted(set(out))


__all__ = ["Clip", "HELDOUT_LANGS", "asterisk_voices", "fillets", "hedgewars", "heldout",
           "is_heldout_speaker", "klettres", "ktuberling", "non_speech_files", "recorded_clips",
           "tuxpaint"]
