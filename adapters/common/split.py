"""Where a long text is cut into pieces that each fit a platform's limit: Discord messages, Slack
sections.

A piece ends at the last sentence end that fits, else at the last space, else where the limit
falls, so each piece reads as whole sentences. What ends a sentence is the core's knowledge
(``bot.generation.text``), Chinese and Japanese full stops and marks included; here it also may
be followed by emphasis markup (``*`` and ``_``), and a line break is a place to cut too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.generation.text import CJK_CLOSING_MARKS, CJK_SENTENCE_MARKS, CLOSING_MARKS, SENTENCE_MARKS

__all__ = ["Fitting", "split_text"]

# Markup that may close right after a sentence end: "*He left.*", "_so it was._"
_EMPHASIS = "*_"
_SENTENCE_BREAK = re.compile(
    rf"[{re.escape(SENTENCE_MARKS)}][{re.escape(CLOSING_MARKS + _EMPHASIS)}]*\s+"
    rf"|[{re.escape(CJK_SENTENCE_MARKS)}][{re.escape(CJK_CLOSING_MARKS + _EMPHASIS)}]*\s*"
    r"|\n\s*"
)
_SPACE = re.compile(r"\s+")

# How many leading characters of a text fit in a limit (Slack counts them once escaped).
Fitting = Callable[[str, int], int]


def _fits_as_is(text: str, limit: int) -> int:
    return min(len(text), limit)


def _cut(text: str, fits: int) -> int:
    """Where to end a piece of at most ``fits`` characters: a sentence end, else a space.

    Depends only on ``text[: fits + 1]``, so while a passage streams in, the cut of a full piece
    never moves and the pieces before it need no more edits.
    """
    floor = fits // 4  # a cut this early would leave a stub of a piece
    window = text[: fits + 1]
    for pattern in (_SENTENCE_BREAK, _SPACE):
        ends = [m.end() for m in pattern.finditer(window) if floor <= m.end() <= fits]
        if ends:
            return ends[-1]
    return max(fits, 1)


def split_text(text: str, limit: int, fitting: Fitting = _fits_as_is) -> list[str]:
    """``text`` as consecutive pieces of which ``fitting`` says each fits ``limit`` (at least one).

    White space at a cut is dropped; a text that fits is returned as it is.
    """
    pieces: list[str] = []
    while (fits := fitting(text, limit)) < len(text):
        cut = _cut(text, fits)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    pieces.append(text)
    return pieces
