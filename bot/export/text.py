"""Plain text wrapped at 80 columns, for e-mail, terminals and anything that shows no markup.

Columns are display columns: Chinese characters and most emoji take two, combining marks none,
so a line of Chinese wraps at 40 characters and still fits an 80-column terminal. Chinese and
Japanese break between any two characters; a word wider than a line (a long URL) is cut.
"""

from __future__ import annotations

import functools
import unicodedata

from bot.export.common import (
    ExportOptions,
    RenderedFile,
    contributor_label,
    date_line,
    paragraphs,
    rating_line,
    slug,
)
from bot.export.model import ExportStory
from bot.words import counted

WIDTH = 80


@functools.lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    if text.isascii():  # the common case, and one column per character
        return len(text)
    return sum(map(char_width, text))


def _breakable(word: str, width: int) -> bool:
    """A word that may be split across lines: wider than a line, or in a script without spaces."""
    return text_width(word) > width or any(char_width(ch) == 2 for ch in word)


def wrap(text: str, width: int = WIDTH) -> list[str]:
    """Greedy wrap by display width, at spaces, between wide (CJK) characters, or inside a word
    that is wider than a whole line."""
    lines: list[str] = []
    current, used = "", 0
    for word in text.split():
        gap = 1 if current else 0
        w = text_width(word)
        if used + gap + w <= width:
            current, used = current + " " * gap + word, used + gap + w
        elif not _breakable(word, width):
            lines.append(current)
            current, used = word, w
        else:
            if used + gap < width:
                current, used = current + " " * gap, used + gap
            for ch in word:
                cw = char_width(ch)
                if used + cw > width:
                    lines.append(current.rstrip())
                    current, used = "", 0
                current, used = current + ch, used + cw
    if current:
        lines.append(current)
    return lines


def _underline(text: str, mark: str) -> str:
    return mark * min(text_width(text), WIDTH)


def render(story: ExportStory, options: ExportOptions) -> RenderedFile:
    out: list[str] = [*wrap(story.title), _underline(story.title, "="), "", *wrap(date_line(story)), rating_line(story)]
    people = story.contributors
    if people:
        listing = ", ".join(map(contributor_label, people))
        out += ["", *wrap(f"Contributors ({counted(story.words, 'word')}): {listing}")]
    chapters = story.chapters(0)
    for chapter in chapters:
        out += ["", ""]
        if chapter.marked or len(chapters) > 1:
            out += [*wrap(chapter.title), _underline(chapter.title, "-"), ""]
        else:
            out += ["* * *", ""]
        for passage in chapter.passages:
            for index, lines in enumerate(paragraphs(passage.text)):
                if index == 0 and options.authors:
                    lines = [f"{passage.author_name}: {lines[0]}", *lines[1:]]
                for line in lines:
                    out += wrap(line)
                out.append("")
    text = "\n".join(out).rstrip("\n") + "\n"
    return RenderedFile(f"{slug(story.title)}.txt", "text/plain; charset=utf-8", text.encode("utf-8"))
