"""The queries the story rules need, each a small function over one open transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    NUMBERED_PASSAGE_STATUSES,
    OPEN_JOB_STATUSES,
    AuthorKind,
    ChannelWord,
    GenerationJob,
    JobKind,
    JobStatus,
    LoreEntry,
    ModerationEntry,
    Participant,
    Passage,
    PassageStatus,
    PassageVote,
    ProcessedEvent,
    Story,
    StoryRecap,
    StoryStatus,
)


async def active_story(tx: AsyncSession, channel_key: str, *, lock: bool = False) -> Story | None:
    """The channel's running story. ``lock`` takes the row lock that serialises writers on PostgreSQL."""
    query = select(Story).where(Story.channel_key == channel_key, Story.status == StoryStatus.ACTIVE)
    if lock:
        query = query.with_for_update()
    return (await tx.execute(query)).scalar_one_or_none()


async def story_by_id(tx: AsyncSession, story_id: int, *, lock: bool = False) -> Story | None:
    query = select(Story).where(Story.id == story_id)
    if lock:
        query = query.with_for_update()
    return (await tx.execute(query)).scalar_one_or_none()


async def active_stories_in_mode(tx: AsyncSession, mode: str, platforms: Sequence[str]) -> Sequence[Story]:
    """The running stories in ``mode`` on ``platforms`` (the round-robin ones whose turns the bot calls)."""
    query = select(Story).where(Story.status == StoryStatus.ACTIVE, Story.mode == mode, Story.platform.in_(platforms))
    return (await tx.execute(query.order_by(Story.id))).scalars().all()


async def finished_stories(tx: AsyncSession, channel_key: str, limit: int = 25) -> Sequence[Story]:
    query = (
        select(Story)
        .where(Story.channel_key == channel_key, Story.status == StoryStatus.FINISHED)
        .order_by(Story.finished_at.desc(), Story.id.desc())
        .limit(limit)
    )
    return (await tx.execute(query)).scalars().all()


async def canonical_passages(tx: AsyncSession, story_id: int) -> Sequence[Passage]:
    query = (
        select(Passage)
        .where(Passage.story_id == story_id, Passage.status == PassageStatus.CANONICAL)
        .order_by(Passage.seq)
    )
    return (await tx.execute(query)).scalars().all()


async def last_canonical_passage(
    tx: AsyncSession, story_id: int, *, author_kind: AuthorKind | None = None
) -> Passage | None:
    """The story's last passage (``author_kind``: its last by a person, or by the bot)."""
    query = select(Passage).where(Passage.story_id == story_id, Passage.status == PassageStatus.CANONICAL)
    if author_kind is not None:
        query = query.where(Passage.author_kind == author_kind)
    return (await tx.execute(query.order_by(Passage.seq.desc()).limit(1))).scalar_one_or_none()


# The bot's alternatives for a place in the story: the one in it, and the ones kept beside it.
_ALTERNATIVE_STATUSES = (PassageStatus.CANONICAL, PassageStatus.SUPERSEDED)


async def alternatives(tx: AsyncSession, passage: Passage) -> list[Passage]:
    """``passage`` and the passages linked to it through retries (``replaces_id``, either way)
    that are in the story or kept beside it, oldest first: the bot's alternatives for its place.

    A retry after a pick rewrites the picked passage, so the links may branch; every passage
    reached from the first try counts. One query per generation of retries."""
    first = passage
    while first.replaces_id is not None and (earlier := await tx.get(Passage, first.replaces_id)) is not None:
        first = earlier
    family, newest = [first], [first.id]
    while newest:
        query = select(Passage).where(Passage.story_id == passage.story_id, Passage.replaces_id.in_(newest))
        later = (await tx.execute(query)).scalars().all()
        family.extend(later)
        newest = [p.id for p in later]
    return sorted((p for p in family if p.status in _ALTERNATIVE_STATUSES), key=lambda p: p.seq)


async def numbered_passages(tx: AsyncSession, story_id: int) -> Sequence[Passage]:
    """The passages the story numbers, in order: number n is item n - 1 (hidden ones included)."""
    query = (
        select(Passage)
        .where(Passage.story_id == story_id, Passage.status.in_(NUMBERED_PASSAGE_STATUSES))
        .order_by(Passage.seq)
    )
    return (await tx.execute(query)).scalars().all()


async def passage_number(tx: AsyncSession, story_id: int, seq: int) -> int:
    """The number of the passage at ``seq``: the numbered passages up to and including it."""
    query = select(func.count()).where(
        Passage.story_id == story_id, Passage.status.in_(NUMBERED_PASSAGE_STATUSES), Passage.seq <= seq
    )
    return int((await tx.execute(query)).scalar_one())


async def next_seq(tx: AsyncSession, story_id: int) -> int:
    query = select(func.coalesce(func.max(Passage.seq), 0)).where(Passage.story_id == story_id)
    return int((await tx.execute(query)).scalar_one()) + 1


async def recent_passage_count(tx: AsyncSession, story_id: int, author_id: str, since: datetime) -> int:
    query = select(func.count()).where(
        Passage.story_id == story_id,
        Passage.author_id == author_id,
        Passage.author_kind == AuthorKind.HUMAN,
        Passage.created_at > since,
    )
    return int((await tx.execute(query)).scalar_one())


async def participants(tx: AsyncSession, story_id: int, *, active_only: bool = True) -> Sequence[Participant]:
    query = select(Participant).where(Participant.story_id == story_id)
    if active_only:
        query = query.where(Participant.active.is_(True))
    return (await tx.execute(query.order_by(Participant.position))).scalars().all()


async def participant(tx: AsyncSession, story_id: int, user_id: str) -> Participant | None:
    query = select(Participant).where(Participant.story_id == story_id, Participant.user_id == user_id)
    return (await tx.execute(query)).scalar_one_or_none()


async def next_participant_position(tx: AsyncSession, story_id: int) -> int:
    query = select(func.coalesce(func.max(Participant.position), -1)).where(Participant.story_id == story_id)
    return int((await tx.execute(query)).scalar_one()) + 1


async def lore_entries(tx: AsyncSession, story_id: int) -> Sequence[LoreEntry]:
    query = (
        select(LoreEntry).where(LoreEntry.story_id == story_id, LoreEntry.removed.is_(False)).order_by(LoreEntry.number)
    )
    return (await tx.execute(query)).scalars().all()


async def next_lore_number(tx: AsyncSession, story_id: int) -> int:
    query = select(func.coalesce(func.max(LoreEntry.number), 0)).where(LoreEntry.story_id == story_id)
    return int((await tx.execute(query)).scalar_one()) + 1


async def open_job(tx: AsyncSession, story_id: int) -> GenerationJob | None:
    """The story's open bot turn (a recap being written between turns is none)."""
    query = (
        select(GenerationJob)
        .where(
            GenerationJob.story_id == story_id,
            GenerationJob.status.in_(OPEN_JOB_STATUSES),
            GenerationJob.kind != JobKind.RECAP,
        )
        .order_by(GenerationJob.id)
        .limit(1)
    )
    return (await tx.execute(query)).scalar_one_or_none()


async def count_pending_jobs(tx: AsyncSession) -> int:
    """Bot turns waiting to be written (recaps wait behind them and are not counted: they never
    make a person's turn "busy")."""
    query = select(func.count()).where(GenerationJob.status == JobStatus.PENDING, GenerationJob.kind != JobKind.RECAP)
    return int((await tx.execute(query)).scalar_one())


async def cancel_open_jobs(tx: AsyncSession, story_id: int, now: datetime, show_after: datetime) -> tuple[int, ...]:
    """Mark the story's pending or running jobs cancelled; returns their ids.

    A cancelled turn whose message was posted is owed a last showing ("withdrawn") from
    ``show_after``; one never shown anywhere owes nothing.
    """
    query = select(GenerationJob.id).where(
        GenerationJob.story_id == story_id, GenerationJob.status.in_(OPEN_JOB_STATUSES)
    )
    ids = tuple((await tx.execute(query)).scalars().all())
    if ids:
        await tx.execute(
            update(GenerationJob)
            .where(GenerationJob.id.in_(ids))
            .values(status=JobStatus.CANCELLED, finished_at=now, show_after=show_after)
        )
        await tx.execute(
            update(GenerationJob)
            .where(GenerationJob.id.in_(ids), GenerationJob.message_ref.is_(None))
            .values(shown_at=now, show_after=None)
        )
    return ids


async def claim_pending_jobs(tx: AsyncSession, limit: int, now: datetime) -> Sequence[GenerationJob]:
    """Take the oldest pending jobs and mark them running, every waiting turn before any recap.

    A story has at most one open turn (the rules refuse a second) and one open recap, so this
    never hands out two turns of one channel. ``SKIP LOCKED`` lets several worker processes share one PostgreSQL job
    table without taking the same job; SQLite ignores it (its writers are already serialised).
    """
    query = (
        select(GenerationJob)
        .where(GenerationJob.status == JobStatus.PENDING)
        .order_by(case((GenerationJob.kind == JobKind.RECAP, 1), else_=0), GenerationJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = (await tx.execute(query)).scalars().all()
    for job in jobs:
        job.status = JobStatus.RUNNING
        job.started_at = job.heartbeat_at = now
        job.attempts += 1
    return jobs


async def beat(tx: AsyncSession, job_ids: Sequence[int], now: datetime) -> None:
    """The jobs this process is writing are still alive."""
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id.in_(job_ids), GenerationJob.status == JobStatus.RUNNING)
        .values(heartbeat_at=now)
    )


async def requeue_running_jobs(tx: AsyncSession, stale_before: datetime | None) -> int:
    """Running jobs whose heartbeat is older than ``stale_before`` (all, when None) go back to pending."""
    query = update(GenerationJob).where(GenerationJob.status == JobStatus.RUNNING)
    if stale_before is not None:
        query = query.where(or_(GenerationJob.heartbeat_at.is_(None), GenerationJob.heartbeat_at < stale_before))
    result = await tx.execute(query.values(status=JobStatus.PENDING))
    if not isinstance(result, CursorResult):  # an UPDATE's result has a cursor, whose row count this needs
        raise TypeError(f"an UPDATE returned {type(result).__name__}, not a CursorResult")
    return result.rowcount or 0


async def claim_owed_showings(
    tx: AsyncSession,
    platforms: Sequence[str],
    limit: int,
    now: datetime,
    lease_until: datetime,
    ended_after: datetime,
    *,
    everything: bool,
) -> Sequence[GenerationJob]:
    """Take jobs of ``platforms`` that ended after ``ended_after`` and whose last showing is owed.

    Owed from their ``show_after`` (from the start when ``everything``: a process alone on its
    database knows every owed showing is a dead process's). A claimed job's ``show_after``
    moves to ``lease_until``, so no other process shows it meanwhile, and a showing that fails
    is tried again then; one that ended before ``ended_after`` is given up.
    """
    query = (
        select(GenerationJob)
        .join(Story, Story.id == GenerationJob.story_id)
        .where(
            GenerationJob.shown_at.is_(None),
            GenerationJob.show_after.is_not(None),
            GenerationJob.status.not_in(OPEN_JOB_STATUSES),
            GenerationJob.finished_at >= ended_after,
            Story.platform.in_(platforms),
        )
        .order_by(GenerationJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=GenerationJob)
    )
    if not everything:
        query = query.where(GenerationJob.show_after <= now)
    jobs = (await tx.execute(query)).scalars().all()
    for job in jobs:
        job.show_after = lease_until
    return jobs


async def mark_shown(tx: AsyncSession, job_id: int, now: datetime) -> None:
    """The ended job's last showing is on its platform: nobody owes it any more."""
    await tx.execute(
        update(GenerationJob)
        .where(
            GenerationJob.id == job_id, GenerationJob.status.not_in(OPEN_JOB_STATUSES), GenerationJob.shown_at.is_(None)
        )
        .values(shown_at=now, show_after=None)
    )


async def record_message(tx: AsyncSession, job_id: int, message_ref: str) -> None:
    await tx.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(message_ref=message_ref))


async def passage_of_job(tx: AsyncSession, job_id: int) -> Passage | None:
    query = select(Passage).where(Passage.job_id == job_id).order_by(Passage.id.desc()).limit(1)
    return (await tx.execute(query)).scalar_one_or_none()


async def job_by_id(tx: AsyncSession, job_id: int, *, lock: bool = False) -> GenerationJob | None:
    query = select(GenerationJob).where(GenerationJob.id == job_id)
    if lock:
        query = query.with_for_update()
    return (await tx.execute(query)).scalar_one_or_none()


async def event_seen(tx: AsyncSession, platform: str, event_id: str) -> bool:
    query = select(ProcessedEvent.id).where(ProcessedEvent.platform == platform, ProcessedEvent.event_id == event_id)
    return (await tx.execute(query)).first() is not None


async def all_passages(tx: AsyncSession, story_id: int) -> Sequence[Passage]:
    """Every passage of a story, whatever its status, in story order (for the archive)."""
    query = select(Passage).where(Passage.story_id == story_id).order_by(Passage.seq)
    return (await tx.execute(query)).scalars().all()


async def all_lore_entries(tx: AsyncSession, story_id: int) -> Sequence[LoreEntry]:
    """Every lore entry of a story, removed ones included (for the archive)."""
    query = select(LoreEntry).where(LoreEntry.story_id == story_id).order_by(LoreEntry.number)
    return (await tx.execute(query)).scalars().all()


async def branches(tx: AsyncSession, parent_ids: Sequence[int]) -> Sequence[Story]:
    """The stories branched from any of ``parent_ids`` (``/story branch``), oldest first."""
    query = select(Story).where(Story.parent_id.in_(parent_ids)).order_by(Story.id)
    return (await tx.execute(query)).scalars().all()


async def all_stories(tx: AsyncSession) -> Sequence[Story]:
    return (await tx.execute(select(Story).order_by(Story.id))).scalars().all()


async def canonical_texts(tx: AsyncSession) -> dict[int, list[str]]:
    """The canonical passages' texts of every story, by story id, in one query."""
    query = (
        select(Passage.story_id, Passage.text)
        .where(Passage.status == PassageStatus.CANONICAL)
        .order_by(Passage.story_id, Passage.seq)
    )
    texts: dict[int, list[str]] = {}
    for story_id, text in await tx.execute(query):
        texts.setdefault(story_id, []).append(text)
    return texts


async def vote_of(tx: AsyncSession, passage_id: int, voter_id: str) -> PassageVote | None:
    query = select(PassageVote).where(PassageVote.passage_id == passage_id, PassageVote.voter_id == voter_id)
    return (await tx.execute(query)).scalar_one_or_none()


async def vote_counts(tx: AsyncSession, passage_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Passage id -> (👍, 👎) for the passages that have votes; the others are not in the dict."""
    if not passage_ids:
        return {}
    ups = func.sum(case((PassageVote.value > 0, 1), else_=0))
    downs = func.sum(case((PassageVote.value < 0, 1), else_=0))
    query = (
        select(PassageVote.passage_id, ups, downs)
        .where(PassageVote.passage_id.in_(passage_ids))
        .group_by(PassageVote.passage_id)
    )
    return {passage_id: (int(up), int(down)) for passage_id, up, down in await tx.execute(query)}


# Ids per IN list: asyncpg takes at most 32,767 parameters in one statement.
IDS_PER_QUERY = 10_000


async def votes_of_passages(tx: AsyncSession, passage_ids: Sequence[int]) -> list[PassageVote]:
    """Every vote on these passages, by passage then voter (for the JSON of ``storybot stats``),
    read a bounded number of ids at a time, however many passages a community wrote."""
    votes: list[PassageVote] = []
    for start in range(0, len(passage_ids), IDS_PER_QUERY):
        query = (
            select(PassageVote)
            .where(PassageVote.passage_id.in_(passage_ids[start : start + IDS_PER_QUERY]))
            .order_by(PassageVote.passage_id, PassageVote.id)
        )
        votes.extend((await tx.execute(query)).scalars())
    return votes


async def bot_passages(
    tx: AsyncSession, *, channel_keys: Sequence[str] = (), since: datetime | None = None
) -> Sequence[tuple[Passage, Story]]:
    """Every bot passage, whatever became of it, with its story: in ``channel_keys`` (all when
    empty), written at or after ``since``; by story, then in story order."""
    query = (
        select(Passage, Story)
        .join(Story, Story.id == Passage.story_id)
        .where(Passage.author_kind == AuthorKind.BOT)
        .order_by(Passage.story_id, Passage.seq)
    )
    if channel_keys:
        query = query.where(Story.channel_key.in_(channel_keys))
    if since is not None:
        query = query.where(Passage.created_at >= since)
    return [(passage, story) for passage, story in await tx.execute(query)]


async def channel_words(tx: AsyncSession, scope: str) -> Sequence[ChannelWord]:
    """The word list entries a channel's moderators set, oldest first."""
    query = select(ChannelWord).where(ChannelWord.scope == scope).order_by(ChannelWord.id)
    return (await tx.execute(query)).scalars().all()


async def recent_actions(tx: AsyncSession, actor_id: str, action: str, since: datetime) -> int:
    """How many times ``actor_id`` did ``action`` (a line of the moderation log) since ``since``."""
    query = select(func.count()).where(
        ModerationEntry.actor_id == actor_id, ModerationEntry.action == action, ModerationEntry.created_at >= since
    )
    return int((await tx.execute(query)).scalar_one())


async def moderation_log(
    tx: AsyncSession, *, channel_key: str | None = None, story_id: int | None = None
) -> Sequence[ModerationEntry]:
    """The audit log, oldest first: of one channel (its threads included), of one story, or all."""
    query = select(ModerationEntry).order_by(ModerationEntry.id)
    if channel_key is not None:
        query = query.where(
            (ModerationEntry.channel_key == channel_key)
            | ModerationEntry.channel_key.startswith(channel_key + ":", autoescape=True)
        )
    if story_id is not None:
        query = query.where(ModerationEntry.story_id == story_id)
    return (await tx.execute(query)).scalars().all()


async def current_recap(tx: AsyncSession, story_id: int) -> StoryRecap | None:
    """The story's latest recap version (its text empty when it was cleared); None: never one."""
    query = select(StoryRecap).where(StoryRecap.story_id == story_id).order_by(StoryRecap.id.desc()).limit(1)
    return (await tx.execute(query)).scalar_one_or_none()


async def open_recap_job(tx: AsyncSession, story_id: int) -> GenerationJob | None:
    query = select(GenerationJob).where(
        GenerationJob.story_id == story_id,
        GenerationJob.status.in_(OPEN_JOB_STATUSES),
        GenerationJob.kind == JobKind.RECAP,
    )
    return (await tx.execute(query.limit(1))).scalar_one_or_none()
