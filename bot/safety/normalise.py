"""Text folded to a plain skeleton before the word lists look at it, with a way back.

People who want a banned word past a filter disguise it: ``fu\\u200bck`` (a zero-width space),
``ѕhit`` (a Cyrillic ѕ), ``ｆｕｃｋ`` (fullwidth), ``f̶u̶c̶k̶`` (combining strokes), ``sh1t``
(leetspeak), ``f.u.c.k`` (spelled out). ``normalise`` undoes each trick, so that one plain entry
(``shit``) catches every disguise; the list entries go through the same function, so an entry
and a text that mean the same word fold to the same string.

The folded text is for matching only. Each folded character remembers the span of the original
text it came from (``Normalised.original``), so a checker can report the offending word *as the
text wrote it* (``"ѕhit"``, not ``"shit"``): that is what the bot's second try bans at decode time.

The steps, in order:

1. Per character: drop format characters (Unicode category Cf: zero-width spaces and joiners,
   word joiner, BOM, soft hyphen, bidi controls) and the blank Hangul fillers; NFKD (fullwidth
   and mathematical letters and ligatures become plain ones, accents split off); map Cyrillic and
   Greek look-alikes to Latin (before casefolding, since Greek capital Η looks like H but small η
   like n, and again after); casefold; drop the combining diacritics (accents, strokes; other
   scripts' marks, such as Japanese voicing marks and Thai vowels, are part of their letters). A dropped combining mark
   joins the span of the character before it, so ``f̶u̶c̶k̶`` is reported whole.
2. Leetspeak (``0→o 1→i 3→e 4→a 5→s 7→t @→a $→s !→i``), only inside a token that also has a
   letter, so ``2024``, ``100%`` and ``$5`` stay as they are; a ``!`` at either end of a token is
   punctuation (``ass!``), not a letter.
3. Runs of three or more single letters, each separated from the next by exactly one of
   ``. - _ * `` or a space, close up: ``f.u.c.k`` and ``f u c k`` become ``fuck``. Initials
   (``J. R. R. Tolkien``: two characters between letters) and a lone ``a`` or ``I`` stay apart.

The result is lower-case, so a list's ``re:`` pattern must be written in lower case.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Normalised", "normalise"]

# Look-alikes NFKD leaves alone. Upper case is listed separately because the same Greek letter
# looks like different Latin ones in its two cases (Η/H but η/n; Ν/N but ν/v).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic, small
        "а": "a",
        "в": "b",
        "е": "e",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "ԁ": "d",
        "һ": "h",
        "ӏ": "l",
        "ԛ": "q",
        "ԝ": "w",
        # Cyrillic, capital
        "А": "a",
        "В": "b",
        "Е": "e",
        "І": "i",
        "Ј": "j",
        "К": "k",
        "М": "m",
        "Н": "h",
        "О": "o",
        "Р": "p",
        "С": "c",
        "Т": "t",
        "У": "y",
        "Х": "x",
        "Ѕ": "s",
        # Greek, small
        "α": "a",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        # Greek, capital
        "Α": "a",
        "Β": "b",
        "Ε": "e",
        "Ζ": "z",
        "Η": "h",
        "Ι": "i",
        "Κ": "k",
        "Μ": "m",
        "Ν": "n",
        "Ο": "o",
        "Ρ": "p",
        "Τ": "t",
        "Υ": "y",
        "Χ": "x",
        # Latin letters that NFKD keeps but that read as plain ones
        "ı": "i",
        "ɡ": "g",
    }
)

# Blank letters (category Lo, so not caught as Cf) that render as nothing or a space.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")
_DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me"})

_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")  # ASCII and other runs, in turn

_LEET = str.maketrans("013457@$!", "oieastasi")
# A token that may hold leetspeak: a whole run of letters, digits and the symbols that stand for
# letters, matched only where the run starts and only when it holds a character that could be
# leet (the lookahead stops at the run's end, so the scan stays linear in the text's length).
_LEET_TOKEN = re.compile(r"(?<![^\W_])(?<![@$!])(?=(?:[^\W_]|[@$!])*?[013457@$!])(?:[^\W_]|[@$!])++")

# Three or more single letters, each apart from the next by one separator character.
_SPELLED = re.compile(r"(?<![^\W_])[^\W\d_](?:[ ._*-][^\W\d_]){2,}(?![^\W_])")


@dataclass(frozen=True, slots=True)
class Normalised:
    """A folded text, and for each of its characters the original span it came from
    (``starts[i]``, ``ends[i]``: one original character may give several folded ones, as ``ﬁ``
    gives ``fi``; a dropped combining mark widens the span of the character it sat on)."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind the folded span ``[start, end)`` (which must not be empty).
        Anything dropped inside it (a zero-width space, the dots of ``f.u.c.k``) is included."""
        return self.starts[start], self.ends[end - 1]


def normalise(text: str) -> Normalised:
    """Fold ``text`` as the module docstring says."""
    folded, starts, ends = _fold_characters(text)
    if any(ch in folded for ch in "013457@$!"):
        folded = _LEET_TOKEN.sub(_unleet, folded)  # same length: the spans stay valid
    spelled = list(_SPELLED.finditer(folded))
    if spelled:
        folded, starts, ends = _close_up(folded, starts, ends, spelled)
    return Normalised(folded, starts, ends)


def _fold_characters(text: str) -> tuple[str, list[int], list[int]]:
    """Step 1. ASCII runs only need lower-casing (and keep one folded character per original
    one); other characters go one at a time through the cached ``_fold``."""
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for run in _RUNS.finditer(text):
        if run.group().isascii():
            parts.append(run.group().lower())
            starts.extend(range(run.start(), run.end()))
            ends.extend(range(run.start() + 1, run.end() + 1))
            continue
        for i in range(run.start(), run.end()):
            folded = _fold(text[i])
            if folded:
                parts.append(folded)
                starts.extend([i] * len(folded))
                ends.extend([i + 1] * len(folded))
            elif ends and unicodedata.category(text[i])[0] == "M":
                ends[-1] = i + 1
    return "".join(parts), starts, ends


@functools.lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One non-ASCII character folded (step 1); the empty string when it is dropped."""
    if char in _INVISIBLE or unicodedata.category(char) == "Cf":
        return ""
    plain = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).translate(_HOMOGLYPHS).casefold())
    return "".join(ch for ch in plain if not _dropped(ch)).translate(_HOMOGLYPHS)


# The combining marks that decorate letters (accents, strokes, overlays: the blocks of combining
# diacritics). Other scripts' marks are parts of their letters (Japanese voicing marks, Thai vowels
# and tones, Devanagari vowel signs): dropping them would make different words one.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _dropped(char: str) -> bool:
    category = unicodedata.category(char)
    if category in ("Mn", "Me"):
        return _DIACRITICS.match(char) is not None
    return category in _DROPPED_CATEGORIES or char in _INVISIBLE


def _unleet(token: re.Match[str]) -> str:
    """Step 2 for one token: digits and symbols read as letters when the token has a letter;
    ``!`` only between other characters of the token."""
    word = token.group()
    if not any(ch.isalpha() for ch in word):
        return word
    core = word.strip("!")
    if not core:
        return word
    lead = len(word) - len(word.lstrip("!"))
    return word[:lead] + core.translate(_LEET) + word[lead + len(core) :]


def _close_up(
    text: str, starts: list[int], ends: list[int], runs: list[re.Match[str]]
) -> tuple[str, list[int], list[int]]:
    """Step 3: drop the separators inside each spelled-out run (every other character)."""
    dropped = {i for run in runs for i in range(run.start() + 1, run.end(), 2)}
    kept = [i for i in range(len(text)) if i not in dropped]
    return "".join(text[i] for i in kept), [starts[i] for i in kept], [ends[i] for i in kept]
