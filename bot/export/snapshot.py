"""Read one story from the database into an :class:`ExportStory` (one read, no rendering)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.export.model import ExportLore, ExportParticipant, ExportPassage, ExportStory
from bot.identity import ChannelRef
from storage import queries as q
from storage.models import Story


async def load_story(tx: AsyncSession, story: Story, *, language: str) -> ExportStory:
    """Everything about ``story``: all passages (with what became of them), participants, lore."""
    rows = await q.all_passages(tx, story.id)
    numbers = {row.id: number for number, row in enumerate(rows, start=1)}
    passages = tuple(
        ExportPassage(
            number=numbers[row.id],
            author_kind=row.author_kind,
            author_id=row.author_id,
            author_name=row.author_name,
            text=row.text,
            status=row.status,
            created_at=row.created_at,
            replaces=numbers.get(row.replaces_id) if row.replaces_id is not None else None,
            requested_by_id=row.requested_by_id,
            direction=row.direction,
            generation=_without_prompt(row.generation),
            changed_by_id=row.changed_by_id,
            changed_at=row.changed_at,
        )
        for row in rows
    )
    participants = tuple(
        ExportParticipant(p.user_id, p.name, p.position, p.active, p.joined_at, p.left_at)
        for p in await q.participants(tx, story.id, active_only=False)
    )
    lore = tuple(
        ExportLore(e.number, tuple(e.keys), e.text, e.author_id, e.removed, e.created_at)
        for e in await q.all_lore_entries(tx, story.id)
    )
    return ExportStory(
        title=story.title,
        genre=story.genre,
        language=language,
        mode=story.mode,
        rating=story.rating,
        status=story.status,
        starter_id=story.starter_id,
        starter_name=story.starter_name,
        created_at=story.created_at,
        finished_at=story.finished_at,
        channel=ChannelRef(story.platform, story.workspace, story.channel, story.thread),
        memory=story.memory,
        note=story.note,
        settings=dict(story.settings or {}),
        passages=passages,
        participants=participants,
        lore=lore,
    )


def _without_prompt(generation: dict[str, Any] | None) -> dict[str, Any] | None:
    """How a bot passage was written, without the story the model saw: that stays in the
    database for ``storybot export-dataset``, and in an export it would make a story's file grow
    with the square of its length."""
    if generation is None:
        return None
    return {key: value for key, value in generation.items() if key != "story_prompt"}
