"""The archive outside chat: list every story, and bring a JSON export back as a finished story.

An import writes a new story (new row ids) in one transaction, so a bad file changes nothing.
It does not go through the story rules: the story arrives finished, and nobody's turn is
affected. Exporting the imported story as JSON gives the file that was imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.export.model import ExportStory, chapter_title
from bot.identity import ChannelRef
from bot.words import word_count
from storage import queries as q
from storage.database import Database
from storage.models import LoreEntry, ModerationEntry, Participant, Passage, Story, StoryStatus


@dataclass(frozen=True, slots=True)
class StoryRow:
    """One line of ``storybot list``."""

    id: int
    channel: str
    title: str
    status: str
    rating: str
    passages: int
    words: int
    depth: int = 0  # a branch's: one more than its parent's (``/story branch``)


async def list_stories(db: Database) -> list[StoryRow]:
    async def read(tx: AsyncSession) -> tuple[Sequence[Story], dict[int, list[str]]]:
        return await q.all_stories(tx), await q.canonical_texts(tx)

    stories, texts = await db.transaction(read, write=False)
    rows = []
    for story, depth in _family_order(stories):
        # Counted as the exports count them: chapter headings are not passages.
        passages = [t for t in texts.get(story.id, []) if chapter_title(t) is None]
        words = sum(word_count(t) for t in passages)
        rows.append(
            StoryRow(story.id, story.channel_key, story.title, story.status, story.rating, len(passages), words, depth)
        )
    return rows


def _family_order(stories: Sequence[Story]) -> list[tuple[Story, int]]:
    """The stories in id order, each followed by its branches (and theirs), with their depth."""
    ids = {story.id for story in stories}
    children: dict[int | None, list[Story]] = {}
    for story in stories:
        children.setdefault(story.parent_id if story.parent_id in ids else None, []).append(story)
    ordered: list[tuple[Story, int]] = []

    def visit(parent: int | None, depth: int) -> None:
        for story in children.get(parent, []):
            ordered.append((story, depth))
            visit(story.id, depth + 1)

    visit(None, 0)
    return ordered


def parse_channel(text: str) -> ChannelRef:
    """``platform:workspace:channel[:thread]``, or a bare name for a console channel."""
    parts = text.split(":")
    if len(parts) == 1 and parts[0]:
        return ChannelRef("console", "local", parts[0])
    if len(parts) in (3, 4) and parts[0] and parts[2]:
        return ChannelRef(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else "")
    raise ValueError(f"--channel must be NAME (a console channel) or PLATFORM:WORKSPACE:CHANNEL[:THREAD], got {text!r}")


async def import_story(db: Database, story: ExportStory, *, channel: ChannelRef | None = None, now: datetime) -> int:
    """Store ``story`` as a new finished story (in ``channel`` if given); returns its id."""
    if channel is not None:
        story = replace(story, channel=channel)
    where = story.channel

    async def store(tx: AsyncSession) -> int:
        row = Story(
            channel_key=where.key,
            platform=where.platform,
            workspace=where.workspace,
            channel=where.channel,
            thread=where.thread,
            title=story.title,
            genre=story.genre,
            mode=story.mode,
            rating=story.rating,
            status=StoryStatus.FINISHED,
            starter_id=story.starter_id,
            starter_name=story.starter_name,
            memory=story.memory,
            note=story.note,
            settings=dict(story.settings),
            created_at=story.created_at,
            turn_started_at=story.created_at,
            finished_at=story.finished_at or now,
        )
        tx.add(row)
        await tx.flush()
        passages = [
            Passage(
                story_id=row.id,
                seq=p.number,
                author_kind=p.author_kind,
                author_id=p.author_id,
                author_name=p.author_name,
                text=p.text,
                status=p.status,
                requested_by_id=p.requested_by_id,
                direction=p.direction,
                generation=p.generation,
                created_at=p.created_at,
                changed_by_id=p.changed_by_id,
                changed_at=p.changed_at,
            )
            for p in story.passages
        ]
        tx.add_all(passages)
        await tx.flush()
        for passage, source in zip(passages, story.passages, strict=True):
            if source.replaces is not None:
                passage.replaces_id = passages[source.replaces - 1].id
        tx.add_all(Participant.like(row.id, p) for p in story.participants)
        tx.add_all(
            LoreEntry(
                story_id=row.id,
                number=e.number,
                keys=list(e.keys),
                text=e.text,
                author_id=e.author_id,
                removed=e.removed,
                created_at=e.created_at,
            )
            for e in story.lore
        )
        tx.add_all(
            ModerationEntry(
                channel_key=where.key,
                story_id=row.id,
                passage_id=passages[e.passage - 1].id if e.passage is not None and e.passage <= len(passages) else None,
                action=e.action,
                actor_id=e.actor_id,
                actor_name=e.actor_name,
                detail=e.detail,
                created_at=e.created_at,
            )
            for e in story.audit
        )
        return row.id

    return await db.transaction(store)
