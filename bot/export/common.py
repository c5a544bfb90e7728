"""What every reading format shares: options, file names, paragraphs and the story's header lines."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.export.model import Contributor, ExportPassage, ExportStory
from bot.words import counted

MAX_SLUG_CHARS = 60
_NOT_WORD = re.compile(r"[^\w]+")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """How to render: per-passage attribution, the AO3 body, chapter length."""

    authors: bool = True  # name each passage's author
    body: bool = False  # html: only the story body, in tags that paste cleanly into AO3
    chapter_passages: int = 10  # epub: passages per chapter where the story marks none


@dataclass(frozen=True, slots=True)
class RenderedFile:
    filename: str
    mime_type: str
    data: bytes


def slug(title: str) -> str:
    """A file name stem from the title, in any script: ``Der Zauberberg!`` -> ``der-zauberberg``."""
    text = unicodedata.normalize("NFKC", title).casefold()
    stem = _NOT_WORD.sub("-", text).strip("-_")[:MAX_SLUG_CHARS].strip("-_")
    return stem or "story"


def paragraphs(text: str) -> list[list[str]]:
    """A passage as paragraphs (split on blank lines), each a list of its lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return [
        [line.strip() for line in block.split("\n") if line.strip()]
        for block in _BLANK_LINES.split(text)
        if block.strip()
    ]


def date_line(story: ExportStory) -> str:
    """``mystery · started 2024-05-01 · finished 2024-05-03``."""
    parts = [story.genre] if story.genre else []
    parts.append(f"started {story.created_at:%Y-%m-%d}")
    if story.finished_at is not None:
        parts.append(f"finished {story.finished_at:%Y-%m-%d}")
    else:
        parts.append("still being written")
    return " · ".join(parts)


def rating_line(story: ExportStory) -> str:
    """``Rating: Teen``: who the story is for, on its own line beside the dates in every format."""
    return f"Rating: {story.rating.capitalize()}"


def contributor_label(person: Contributor) -> str:
    return f"{person.name} ({counted(person.words, 'word')})"


def author_prefix(passage: ExportPassage, options: ExportOptions) -> str | None:
    """The name that opens a passage when attribution is on."""
    return passage.author_name if options.authors else None
