"""How long a story is, in words people use: shared by the rules (status, end) and the exports."""

from __future__ import annotations

import re

# Scripts written without spaces (Chinese, Japanese): each character counts as one word.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A Chinese or Japanese character, or a run between spaces (starting at the run's start) that
# holds a letter or digit: "—" alone is no word, "o'clock" is one.
_WORD = re.compile(f"[{_UNSPACED}]|(?<![^\\s{_UNSPACED}])[^\\s{_UNSPACED}]*?[^\\W_{_UNSPACED}][^\\s{_UNSPACED}]*")


def word_count(text: str) -> int:
    """Words as a reader counts them: runs between spaces that hold a letter or digit, and each
    Chinese or Japanese character (those scripts put no spaces between words)."""
    return len(_WORD.findall(text))


def counted(number: int, noun: str) -> str:
    """``1 passage``, ``3 passages``: a count with its noun in the right number."""
    return f"{number} {noun if number == 1 else noun + 's'}"


def story_size(passages: int, words: int) -> str:
    """``12 passages, 1 word``: how long a story is, as status, end and show say it."""
    return f"{counted(passages, 'passage')}, {counted(words, 'word')}"
