"""JSON: the whole story at full fidelity, and the file ``storybot import`` reads back.

Every passage is there, the bot's alternatives not chosen (``superseded``: retried or picked
away) and withdrawn ones (``undone``) included, with its author, times, the direction that steered
it and the generation settings that wrote it; so are the memory, the author's note, lore and
participants. Nothing refers to database row ids: passages are numbered by their place in the
story and a retry names the number it replaced, so exporting an imported story gives the same
document. ``alternatives`` lists, for each place where the bot wrote more than one, its
alternatives and the one chosen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, overload

from bot.alternatives import retry_families
from bot.export.common import ExportOptions, RenderedFile, slug
from bot.export.model import (
    AUDIT_ACTIONS,
    AUTHOR_KINDS,
    MODES,
    PASSAGE_STATUSES,
    RATINGS,
    STORY_STATUSES,
    ExportAuditEntry,
    ExportLore,
    ExportParent,
    ExportParticipant,
    ExportPassage,
    ExportStory,
)
from bot.identity import ChannelRef
from storage.models import ContentRating

FORMAT = "storybot-story"
FORMAT_VERSION = 1
MIME = "application/json"

T = TypeVar("T")


class DocumentError(ValueError):
    """The file is not a story export this version can read; the message is one line."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def document(story: ExportStory) -> dict[str, Any]:
    """The story as a JSON-ready dict; a branch's also names its parent (``"parent"``, only there)."""
    parent = {"parent": {"title": story.parent.title, "passage": story.parent.passage}} if story.parent else {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "title": story.title,
        "genre": story.genre,
        "language": story.language,
        "mode": story.mode,
        "rating": story.rating,
        "status": story.status,
        "starter": {"id": story.starter_id, "name": story.starter_name},
        "created_at": _time(story.created_at),
        "finished_at": _time(story.finished_at),
        "channel": {
            "platform": story.channel.platform,
            "workspace": story.channel.workspace,
            "channel": story.channel.channel,
            "thread": story.channel.thread,
        },
        "memory": story.memory,
        "note": story.note,
        "settings": story.settings,
        **parent,
        # Derived from the passages, for readers of the file; import ignores it.
        "contributors": [
            {"name": p.name, "kind": p.kind, "passages": p.passages, "words": p.words} for p in story.contributors
        ],
        "participants": [
            {
                "user_id": p.user_id,
                "name": p.name,
                "position": p.position,
                "active": p.active,
                "joined_at": _time(p.joined_at),
                "left_at": _time(p.left_at),
            }
            for p in story.participants
        ],
        "lore": [
            {
                "number": e.number,
                "keys": list(e.keys),
                "text": e.text,
                "author_id": e.author_id,
                "removed": e.removed,
                "created_at": _time(e.created_at),
            }
            for e in story.lore
        ],
        "passages": [
            {
                "number": p.number,
                "status": p.status,
                "author": {"kind": p.author_kind, "id": p.author_id, "name": p.author_name},
                "text": p.text,
                "created_at": _time(p.created_at),
                "replaces": p.replaces,
                "requested_by_id": p.requested_by_id,
                "direction": p.direction,
                "generation": p.generation,
                "changed_by_id": p.changed_by_id,
                "changed_at": _time(p.changed_at),
            }
            for p in story.passages
        ],
        # Derived from "replaces", for readers; import ignores it. Each place where the bot wrote more
        # than one alternative (retries), oldest first, and the one the story holds ("chosen": null
        # when none is, e.g. the last was undone).
        "alternatives": [
            {"passages": [p.number for p in family], "chosen": next((p.number for p in family if p.canonical), None)}
            for family in retry_families(story.passages, lambda p: p.number, lambda p: p.replaces)
            if len(family) > 1
        ],
        # What moderators did (and the checks withheld): "passage" is a number above, when it is there.
        "audit": [
            {
                "action": e.action,
                "actor": {"id": e.actor_id, "name": e.actor_name},
                "detail": e.detail,
                "passage": e.passage,
                "created_at": _time(e.created_at),
            }
            for e in story.audit
        ],
    }


def dumps(story: ExportStory) -> str:
    return json.dumps(document(story), ensure_ascii=False, indent=2) + "\n"


def render(story: ExportStory, options: ExportOptions) -> RenderedFile:
    return RenderedFile(f"{slug(story.title)}.json", MIME, dumps(story).encode("utf-8"))


# ---------------------------------------------------------------------------------- reading


class _Reader:
    """Typed access to one JSON object, with errors that name the field (``passages[3].text``)."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise DocumentError(f"{where or 'the file'} must be a JSON object.")
        self.data: dict[str, object] = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    # A required field is a T; an optional one is a T, or None where it has no default.
    @overload
    def get(self, key: str, kind: type[T]) -> T: ...
    @overload
    def get(self, key: str, kind: type[T], *, optional: bool) -> T | None: ...
    @overload
    def get(self, key: str, kind: type[T], *, optional: bool, default: T) -> T: ...
    def get(self, key: str, kind: type[T], *, optional: bool = False, default: T | None = None) -> T | None:
        value = self.data.get(key)
        if value is None:
            if optional:
                return default
            raise DocumentError(f"{self._name(key)} is missing.")
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise DocumentError(f"{self._name(key)} must be {_KIND_NAMES[kind]}.")
        return value

    @overload
    def time(self, key: str) -> datetime: ...
    @overload
    def time(self, key: str, *, optional: bool) -> datetime | None: ...
    def time(self, key: str, *, optional: bool = False) -> datetime | None:
        text = self.get(key, str, optional=optional)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise DocumentError(f"{self._name(key)} is not a date and time: {text[:40]!r}.") from None
        if value.tzinfo is None:
            raise DocumentError(f"{self._name(key)} must include a time zone.")
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
        """One of ``choices``; with a ``default``, the field may be missing (files from before it)."""
        value = self.get(key, str) if default is None else self.get(key, str, optional=True, default=default)
        if value not in choices:
            raise DocumentError(f"{self._name(key)} must be one of {', '.join(choices)} (got {value[:40]!r}).")
        return value

    def items(self, key: str, read: Callable[[_Reader], T]) -> tuple[T, ...]:
        values = self.get(key, list, optional=True, default=[])
        return tuple(read(_Reader(value, f"{self._name(key)}[{index}]")) for index, value in enumerate(values))

    def child(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), self._name(key))


_KIND_NAMES = {str: "text", int: "a whole number", bool: "true or false", dict: "an object", list: "a list"}


def _passage(r: _Reader) -> ExportPassage:
    author = r.child("author")
    return ExportPassage(
        number=r.get("number", int),
        author_kind=author.choice("kind", AUTHOR_KINDS),
        author_id=author.get("id", str),
        author_name=author.get("name", str),
        text=r.get("text", str),
        status=r.choice("status", PASSAGE_STATUSES),
        created_at=r.time("created_at"),
        replaces=r.get("replaces", int, optional=True),
        requested_by_id=r.get("requested_by_id", str, optional=True),
        direction=r.get("direction", str, optional=True),
        generation=r.get("generation", dict, optional=True),
        changed_by_id=r.get("changed_by_id", str, optional=True),
        changed_at=r.time("changed_at", optional=True),
    )


def _participant(r: _Reader) -> ExportParticipant:
    return ExportParticipant(
        user_id=r.get("user_id", str),
        name=r.get("name", str),
        position=r.get("position", int),
        active=r.get("active", bool),
        joined_at=r.time("joined_at"),
        left_at=r.time("left_at", optional=True),
    )


def _lore(r: _Reader) -> ExportLore:
    keys = r.get("keys", list)
    if not all(isinstance(key, str) for key in keys):
        raise DocumentError(f"{r.where}.keys must be a list of text.")
    return ExportLore(
        number=r.get("number", int),
        keys=tuple(keys),
        text=r.get("text", str),
        author_id=r.get("author_id", str),
        removed=r.get("removed", bool, optional=True, default=False),
        created_at=r.time("created_at"),
    )


def _audit_entry(r: _Reader) -> ExportAuditEntry:
    actor = r.child("actor")
    return ExportAuditEntry(
        action=r.choice("action", AUDIT_ACTIONS),
        actor_id=actor.get("id", str),
        actor_name=actor.get("name", str),
        detail=r.get("detail", str, optional=True, default=""),
        created_at=r.time("created_at"),
        passage=r.get("passage", int, optional=True),
    )


def _check_numbers(passages: tuple[ExportPassage, ...]) -> None:
    """Passages are numbered 1..n in order, and a retry replaces an earlier passage."""
    for index, passage in enumerate(passages, start=1):
        if passage.number != index:
            raise DocumentError(f"passages[{index - 1}].number must be {index} (passages are numbered in order).")
        if passage.replaces is not None and not 1 <= passage.replaces < index:
            raise DocumentError(f"passages[{index - 1}].replaces must name an earlier passage.")


def _check_unique(field: str, values: list[object], key: str) -> None:
    seen: set[object] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise DocumentError(f"{field}[{index}].{key} {value!r} appears twice.")
        seen.add(value)


def loads(data: bytes | str) -> ExportStory:
    """Read an exported story; DocumentError says in one line what is wrong with the file."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(f"not a JSON file: {error}.") from None
    r = _Reader(raw, "")
    if r.data.get("format") != FORMAT:
        raise DocumentError(f'not a storybot story export (no "format": "{FORMAT}").')
    version = r.get("format_version", int)
    if version > FORMAT_VERSION:
        raise DocumentError(
            f"format_version {version} is newer than this storybot reads ({FORMAT_VERSION}); upgrade storybot."
        )
    starter, channel = r.child("starter"), r.child("channel")
    passages = r.items("passages", _passage)
    _check_numbers(passages)
    participants, lore = r.items("participants", _participant), r.items("lore", _lore)
    _check_unique("participants", [p.user_id for p in participants], "user_id")
    _check_unique("lore", [e.number for e in lore], "number")
    return ExportStory(
        title=r.get("title", str),
        genre=r.get("genre", str, optional=True),
        language=r.get("language", str, optional=True, default="en"),
        mode=r.choice("mode", MODES),
        rating=r.choice("rating", RATINGS, default=ContentRating.GENERAL.value),
        status=r.choice("status", STORY_STATUSES),
        starter_id=starter.get("id", str),
        starter_name=starter.get("name", str),
        created_at=r.time("created_at"),
        finished_at=r.time("finished_at", optional=True),
        channel=ChannelRef(
            platform=channel.get("platform", str),
            workspace=channel.get("workspace", str, optional=True, default=""),
            channel=channel.get("channel", str),
            thread=channel.get("thread", str, optional=True, default=""),
        ),
        memory=r.get("memory", str, optional=True, default=""),
        note=r.get("note", str, optional=True, default=""),
        settings=r.get("settings", dict, optional=True, default={}),
        passages=passages,
        participants=participants,
        lore=lore,
        audit=r.items("audit", _audit_entry),
        parent=_parent(r.child("parent")) if r.data.get("parent") is not None else None,
    )


def _parent(r: _Reader) -> ExportParent:
    passage = r.get("passage", int)
    if passage < 1:
        raise DocumentError(f"{r._name('passage')} must be 1 or more.")
    return ExportParent(r.get("title", str), passage)
