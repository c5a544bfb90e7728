"""The story as every export format sees it: a plain, immutable snapshot with no database ids.

Renderers never touch the database: ``bot.export.snapshot`` reads a story into these classes
and ``bot.export.json_format`` reads an exported JSON file back into them. Passages refer to
each other by their position in the story (``number``), never by row id, so exporting an
imported story gives the same document as the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.identity import ChannelRef
from bot.words import word_count
from storage.models import AuthorKind, ContentRating, ModerationAction, PassageStatus, StoryStatus

CANONICAL = PassageStatus.CANONICAL
SUPERSEDED = PassageStatus.SUPERSEDED
UNDONE = PassageStatus.UNDONE
# What an export may hold: not the candidates of an open vote, which no export has (a finished
# story's votes are closed or withdrawn), so an import never makes passages nobody can see.
PASSAGE_STATUSES = tuple(s for s in PassageStatus if s != PassageStatus.CANDIDATE)
AUTHOR_KINDS = tuple(AuthorKind)
STORY_STATUSES = tuple(StoryStatus)
MODES = ("alternate", "round-robin", "free")
RATINGS = tuple(ContentRating)
AUDIT_ACTIONS = tuple(ModerationAction)

# A passage that is only a heading such as "Chapter 2", "Part Three: The Storm" or "Epilogue"
# is how participants mark a chapter break; it becomes the next chapter's title.
_CHAPTER_MARK = re.compile(
    r"#{0,6}\s*((?:chapter|part|book)\s+\S.*|prologue\b.*|epilogue\b.*|interlude\b.*)",
    re.IGNORECASE,
)
MAX_CHAPTER_MARK_CHARS = 80


def chapter_title(text: str) -> str | None:
    """The title when ``text`` is only a chapter heading (``Chapter 2: The Storm``), else None."""
    text = text.strip()
    if "\n" in text or len(text) > MAX_CHAPTER_MARK_CHARS:
        return None
    match = _CHAPTER_MARK.fullmatch(text)
    return match[1].strip() if match else None


@dataclass(frozen=True, slots=True)
class ExportPassage:
    """One passage, whatever became of it; ``number`` is its 1-based place among all passages."""

    number: int
    author_kind: str  # an AuthorKind: "human" or "bot"
    author_id: str
    author_name: str
    text: str
    status: str  # canonical, superseded (an alternative not chosen: retried or picked away) or undone
    created_at: datetime
    replaces: int | None = None  # number of the passage a retry replaced
    requested_by_id: str | None = None  # bot passages: who asked for them
    direction: str | None = None  # bot passages: the steering text of /story continue
    generation: dict[str, Any] | None = None  # bot passages: model and sampling settings used
    changed_by_id: str | None = None  # who undid or retried it
    changed_at: datetime | None = None

    @property
    def canonical(self) -> bool:
        return self.status == CANONICAL

    @property
    def chapter_mark(self) -> str | None:
        """The chapter title when this passage is only a chapter heading, else None."""
        return chapter_title(self.text)


@dataclass(frozen=True, slots=True)
class ExportParticipant:
    user_id: str
    name: str
    position: int
    active: bool
    joined_at: datetime
    left_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExportLore:
    number: int
    keys: tuple[str, ...]
    text: str
    author_id: str
    removed: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ExportAuditEntry:
    """A line of the story's audit log (a moderator's action, a report, a withheld bot passage);
    ``passage`` is the number of the passage it names in this export, if the export holds it."""

    action: str
    actor_id: str
    actor_name: str
    detail: str
    created_at: datetime
    passage: int | None = None


@dataclass(frozen=True, slots=True)
class ExportParent:
    """What a branch (``/story branch``) was copied from: the parent's title, and the parent's
    passage number it branched at (the parent's id is the database's, not the file's)."""

    title: str
    passage: int


@dataclass(frozen=True, slots=True)
class Contributor:
    """Someone who wrote canonical passages, with how much they wrote."""

    name: str
    kind: str
    passages: int
    words: int


@dataclass(frozen=True, slots=True)
class Chapter:
    """A run of canonical passages; ``title`` comes from a chapter mark, else it is numbered."""

    number: int
    title: str
    passages: tuple[ExportPassage, ...]
    marked: bool  # the title is a participant's chapter mark


@dataclass(frozen=True, slots=True)
class ExportStory:
    """Everything a finished (or running) story holds, for rendering and for the archive."""

    title: str
    genre: str | None
    language: str
    mode: str
    status: str  # "active" or "finished"
    starter_id: str
    starter_name: str
    created_at: datetime
    finished_at: datetime | None
    channel: ChannelRef  # where it was written; an import puts the story back there
    rating: str = ContentRating.GENERAL.value  # a ContentRating: general, teen or mature
    memory: str = ""
    note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    passages: tuple[ExportPassage, ...] = ()
    participants: tuple[ExportParticipant, ...] = ()
    lore: tuple[ExportLore, ...] = ()
    audit: tuple[ExportAuditEntry, ...] = ()
    parent: ExportParent | None = None  # a branch's parent; None for a story started afresh

    @property
    def canonical(self) -> tuple[ExportPassage, ...]:
        return tuple(p for p in self.passages if p.canonical)

    @property
    def words(self) -> int:
        return sum(person.words for person in self.contributors)

    @property
    def contributors(self) -> tuple[Contributor, ...]:
        """Writers of the canonical story in order of their first passage."""
        totals: dict[tuple[str, str], list[int]] = {}
        for passage in self.canonical:
            if passage.chapter_mark is not None:
                continue
            entry = totals.setdefault((passage.author_name, passage.author_kind), [0, 0])
            entry[0] += 1
            entry[1] += word_count(passage.text)
        return tuple(Contributor(name, kind, count, words) for (name, kind), (count, words) in totals.items())

    def chapters(self, every: int) -> tuple[Chapter, ...]:
        """The canonical story cut into chapters.

        Where participants marked chapters (a passage that is only a heading), each mark starts
        a chapter titled by it; otherwise a chapter starts every ``every`` passages (0: never).
        """
        passages = self.canonical
        marked = any(p.chapter_mark is not None for p in passages)
        groups: list[tuple[str | None, list[ExportPassage]]] = []
        for index, passage in enumerate(passages):
            mark = passage.chapter_mark
            if mark is not None:
                groups.append((mark, []))
            elif not groups or (not marked and every > 0 and index % every == 0):
                groups.append((None, [passage]))
            else:
                groups[-1][1].append(passage)
        groups = [(title, body) for title, body in groups if body or title]
        return tuple(
            Chapter(number, title or f"Chapter {number}", tuple(body), marked=title is not None)
            for number, (title, body) in enumerate(groups, start=1)
        )
