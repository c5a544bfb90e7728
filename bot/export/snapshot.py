"""Read one story from the database into an :class:`ExportStory` (one read, no rendering)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.export.model import (
    ExportAuditEntry,
    ExportLore,
    ExportParent,
    ExportParticipant,
    ExportPassage,
    ExportStory,
)
from bot.identity import ChannelRef
from storage import queries as q
from storage.models import ModerationAction, ModerationEntry, PassageStatus, Story

# Passages no export holds: one a moderator hid, one the content checks withheld (both stay in
# the database, for the moderators), and the bot's candidates while the channel votes on them.
UNEXPORTED = (PassageStatus.HIDDEN, PassageStatus.WITHHELD, PassageStatus.CANDIDATE)


async def load_story(tx: AsyncSession, story: Story, *, language: str) -> ExportStory:
    """Everything about ``story``: its passages (with what became of them; not the hidden or
    withheld ones), participants, lore, and its audit log."""
    rows = [row for row in await q.all_passages(tx, story.id) if row.status not in UNEXPORTED]
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
    audit = tuple(
        ExportAuditEntry(
            e.action,
            e.actor_id,
            e.actor_name,
            e.detail,
            e.created_at,
            numbers.get(e.passage_id) if e.passage_id is not None else None,
        )
        for e in await _audit_log(tx, story)
    )
    parent = await q.story_by_id(tx, story.parent_id) if story.parent_id is not None else None
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
        audit=audit,
        parent=ExportParent(parent.title, story.branched_at or 0) if parent is not None else None,
    )


async def _audit_log(tx: AsyncSession, story: Story) -> list[ModerationEntry]:
    """What the moderators did to the story, and to its channel's word list while it ran; not the
    reports, whose reporters an export must not name."""
    ended = story.finished_at
    channel = ChannelRef(story.platform, story.workspace, story.channel).channel_key
    in_channel = [
        e
        for e in await q.moderation_log(tx, channel_key=channel)
        if e.story_id is None and e.created_at >= story.created_at and (ended is None or e.created_at <= ended)
    ]
    own = [e for e in await q.moderation_log(tx, story_id=story.id) if e.action != ModerationAction.REPORT]
    # An imported story holds copies of its channel's lines as its own: one of each.
    copied = {(e.action, e.actor_id, e.detail, e.created_at) for e in own}
    in_channel = [e for e in in_channel if (e.action, e.actor_id, e.detail, e.created_at) not in copied]
    return sorted(own + in_channel, key=lambda e: (e.created_at, e.id))


def _without_prompt(generation: dict[str, Any] | None) -> dict[str, Any] | None:
    """How a bot passage was written, without the story the model saw: that stays in the
    database for ``storybot export-dataset``, and in an export it would make a story's file grow
    with the square of its length."""
    if generation is None:
        return None
    return {key: value for key, value in generation.items() if key != "story_prompt"}
