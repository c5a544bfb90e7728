"""Markdown: title, genre and dates, rating, contributors with word counts, then the canonical story.

Everything people and the model wrote is escaped so it stays text: a passage that starts with
``#`` or ``-`` is not a heading or a list, ``*stars*`` and ``<tags>`` are not markup. Line
breaks inside a paragraph are kept as hard breaks.
"""

from __future__ import annotations

import re

from bot.export.common import (
    ExportOptions,
    RenderedFile,
    contributor_label,
    date_line,
    paragraphs,
    rating_line,
    slug,
)
from bot.export.model import ExportPassage, ExportStory
from bot.words import counted

# Characters with an inline meaning anywhere in a line (CommonMark lets any ASCII punctuation
# be backslash-escaped, so escaping these is always safe).
_INLINE = re.compile(r"([\\`*_\[\]<>|~&!#])")
# What a line may start with to become a block: headings, quotes, lists, breaks, setext lines.
_LIST_NUMBER = re.compile(r"^(\d{1,9})([.)])")
_LINE_START = re.compile(r"^([+\-=:])")


def escape(line: str) -> str:
    """One line of text as Markdown that renders exactly as that text."""
    line = _INLINE.sub(r"\\\1", line.strip())
    line = _LIST_NUMBER.sub(r"\1\\\2", line)
    return _LINE_START.sub(r"\\\1", line)


def _passage(passage: ExportPassage, options: ExportOptions) -> list[str]:
    blocks = []
    for index, lines in enumerate(paragraphs(passage.text)):
        escaped = [escape(line) for line in lines]
        if index == 0 and options.authors:
            escaped[0] = f"**{escape(passage.author_name)}:** {escaped[0]}"
        blocks.append("\\\n".join(escaped))
    return blocks


def render(story: ExportStory, options: ExportOptions) -> RenderedFile:
    blocks = [f"# {escape(story.title)}", f"*{escape(date_line(story))}*", f"*{escape(rating_line(story))}*"]
    people = story.contributors
    if people:
        listing = "\n".join(f"- {escape(contributor_label(p))}" for p in people)
        blocks.append(f"**Contributors** ({counted(story.words, 'word')})\n\n{listing}")
    chapters = story.chapters(0)
    blocks.append("---")
    for chapter in chapters:
        if chapter.marked or len(chapters) > 1:
            blocks.append(f"## {escape(chapter.title)}")
        for passage in chapter.passages:
            blocks.extend(_passage(passage, options))
    text = "\n\n".join(blocks) + "\n"
    return RenderedFile(f"{slug(story.title)}.md", "text/markdown; charset=utf-8", text.encode("utf-8"))
