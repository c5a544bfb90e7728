"""The web archive's reads: the stories it may show, a page at a time, and what its lists say of them.

The archive shows a story that is finished and published (``published_at`` set): ``PUBLIC`` is
that rule, in every query here, so no list or count can hold anything else. Lists are newest
published first (the ``published_at`` index), a page at a time with LIMIT/OFFSET and nothing
counted, so the first pages cost the same with ten stories or ten thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ContentRating, Passage, PassageStatus, Story, StoryStatus

# (Not a story rated mature, whatever its flags say: the archive asks nobody's age. The rules
# refuse to publish one; this keeps out one whose rating was raised since.)
PUBLIC = and_(
    Story.status == StoryStatus.FINISHED, Story.published_at.is_not(None), Story.rating != ContentRating.MATURE
)


def is_public(story: Story) -> bool:
    """``PUBLIC``, for one story in hand (the same rule, next to it: change both or neither)."""
    return (
        story.status == StoryStatus.FINISHED and story.published_at is not None and story.rating != ContentRating.MATURE
    )


@dataclass(frozen=True, slots=True)
class Place:
    """Where stories were written: one platform's workspace (or server), or one channel of it
    (its threads included); ``channel`` None for the whole workspace."""

    platform: str
    workspace: str
    channel: str | None = None

    def condition(self) -> ColumnElement[bool]:
        where = and_(Story.platform == self.platform, Story.workspace == self.workspace)
        return and_(where, Story.channel == self.channel) if self.channel is not None else where


def _public(place: Place | None) -> ColumnElement[bool]:
    return and_(PUBLIC, place.condition()) if place is not None else PUBLIC


async def published(tx: AsyncSession, place: Place | None, *, limit: int, offset: int = 0) -> Sequence[Story]:
    """The public stories (of ``place``, else all), newest published first."""
    query = (
        select(Story)
        .where(_public(place))
        .order_by(Story.published_at.desc(), Story.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await tx.execute(query)).scalars().all()


async def public_stories(tx: AsyncSession, story_ids: Sequence[int]) -> dict[int, Story]:
    """Those of ``story_ids`` that are public, by id."""
    query = select(Story).where(PUBLIC, Story.id.in_(story_ids))
    return {story.id: story for story in (await tx.execute(query)).scalars()}


async def public_branches(tx: AsyncSession, parent_id: int) -> Sequence[Story]:
    """The public branches of story ``parent_id`` (``/story branch``), oldest first."""
    query = select(Story).where(PUBLIC, Story.parent_id == parent_id).order_by(Story.id)
    return (await tx.execute(query)).scalars().all()


@dataclass(frozen=True, slots=True)
class Line:
    """A canonical passage as a list counts it: who wrote it and its text."""

    story_id: int
    passage_id: int
    author_name: str
    author_kind: str
    text: str


async def canonical_lines(tx: AsyncSession, story_ids: Sequence[int]) -> list[Line]:
    """The canonical passages of ``story_ids``, each story's in order, in one query."""
    query = (
        select(Passage.story_id, Passage.id, Passage.author_name, Passage.author_kind, Passage.text)
        .where(Passage.story_id.in_(story_ids), Passage.status == PassageStatus.CANONICAL)
        .order_by(Passage.story_id, Passage.seq)
    )
    return [Line(*row) for row in await tx.execute(query)]


async def passage_stamps(tx: AsyncSession, story_ids: Sequence[int]) -> dict[int, tuple[object, ...]]:
    """For each of ``story_ids``, what changes whenever its canonical passages do, in one grouped
    aggregate (no text read): their count, the sum and greatest of their ids (a passage's text and
    author never change once stored), and the last time any of its passages changed status (hidden,
    unhidden, picked, voted on, undone). A story without passages has ``NO_PASSAGES``."""
    canonical = Passage.status == PassageStatus.CANONICAL
    query = (
        select(
            Passage.story_id,
            func.count(case((canonical, 1))),
            func.coalesce(func.sum(case((canonical, Passage.id), else_=0)), 0),
            func.coalesce(func.max(case((canonical, Passage.id), else_=0)), 0),
            func.max(Passage.changed_at),
        )
        .where(Passage.story_id.in_(story_ids))
        .group_by(Passage.story_id)
    )
    found = {story_id: tuple(rest) for story_id, *rest in await tx.execute(query)}
    return {story_id: found.get(story_id, NO_PASSAGES) for story_id in story_ids}


NO_PASSAGES: tuple[object, ...] = (0, 0, 0, None)
