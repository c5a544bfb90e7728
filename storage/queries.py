"""The queries the story rules need, each a small function over one open transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    NUMBERED_PASSAGE_STATUSES,
    OPEN_JOB_STATUSES,
    AuthorKind,
    CandidateVote,
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
    SiteSecret,
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


async def open_job_counts(tx: AsyncSession) -> dict[str, int]:
    """How many jobs (recaps too) are open, by status: every open status, 0 when none is, for the
    health check and the metrics (the index on ``status`` answers it)."""
    query = (
        select(GenerationJob.status, func.count())
        .where(GenerationJob.status.in_(OPEN_JOB_STATUSES))
        .group_by(GenerationJob.status)
    )
    counts = {str(status): int(count) for status, count in (await tx.execute(query)).all()}
    return {str(status): counts.get(str(status), 0) for status in OPEN_JOB_STATUSES}


async def cancel_open_jobs(tx: AsyncSession, story_id: int, now: datetime, show_after: datetime) -> tuple[int, ...]:
    """Mark the story's open jobs (pending, running, voting) cancelled; returns their ids.

    A cancelled turn whose message was posted is owed a last showing ("withdrawn") from
    ``show_after``; one never shown anywhere owes nothing.
    """
    query = select(GenerationJob.id, GenerationJob.status).where(
        GenerationJob.story_id == story_id, GenerationJob.status.in_(OPEN_JOB_STATUSES)
    )
    found = (await tx.execute(query)).all()
    ids = tuple(job_id for job_id, _ in found)
    # Nobody is writing a turn whose candidates are out for a vote: its showing is owed at once.
    voting = [job_id for job_id, status in found if status == JobStatus.VOTING]
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
        if voting:
            owed_now = GenerationJob.id.in_(voting) & GenerationJob.shown_at.is_(None)
            await tx.execute(update(GenerationJob).where(owed_now).values(show_after=now))
        # A vote taken back with its turn: its candidates go with it (kept, as undone passages are).
        await tx.execute(
            update(Passage)
            .where(Passage.job_id.in_(ids), Passage.status == PassageStatus.CANDIDATE)
            .values(status=PassageStatus.UNDONE, changed_at=now)
        )
    return ids


async def candidates(tx: AsyncSession, job_id: int) -> Sequence[Passage]:
    """The passages a turn wrote for the channel's vote, as numbered in it (oldest first); none
    once the vote closed."""
    query = (
        select(Passage).where(Passage.job_id == job_id, Passage.status == PassageStatus.CANDIDATE).order_by(Passage.seq)
    )
    return (await tx.execute(query)).scalars().all()


async def candidate_votes(tx: AsyncSession, job_id: int) -> Sequence[CandidateVote]:
    """Everyone's vote in a turn's vote, in the order they were first cast."""
    query = select(CandidateVote).where(CandidateVote.job_id == job_id).order_by(CandidateVote.id)
    return (await tx.execute(query)).scalars().all()


async def open_votes(tx: AsyncSession) -> Sequence[GenerationJob]:
    """The jobs whose candidates are out for a vote (oldest first)."""
    query = select(GenerationJob).where(GenerationJob.status == JobStatus.VOTING).order_by(GenerationJob.id)
    return (await tx.execute(query)).scalars().all()


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
    holder: str | None = None,
    skip: Collection[int] = (),
) -> Sequence[GenerationJob]:
    """Take jobs of ``platforms`` that ended after ``ended_after`` and whose last showing is owed
    (but those in ``skip``: the caller is showing them now, and claiming would delay them a lease).

    Owed from their ``show_after`` (from the start when ``everything``: a process alone on its
    database knows every owed showing is a dead process's). A claimed job's ``show_after``
    moves to ``lease_until``, so no other process shows it meanwhile, and a showing that fails
    is tried again then; one that ended before ``ended_after`` is given up. A turn that another
    live chat process streamed (``claim_stream``) is left to it: only ``holder``'s own, or one
    whose streamer's claim ran out. A turn out for a vote is owed its ballot when a worker wrote it
    (``owe_showing_now``).
    """
    query = (
        select(GenerationJob)
        .join(Story, Story.id == GenerationJob.story_id)
        .where(
            GenerationJob.shown_at.is_(None),
            GenerationJob.show_after.is_not(None),
            or_(GenerationJob.status.not_in(OPEN_JOB_STATUSES), GenerationJob.status == JobStatus.VOTING),
            or_(GenerationJob.finished_at >= ended_after, GenerationJob.status == JobStatus.VOTING),
            or_(
                GenerationJob.streamed_by.is_(None),
                GenerationJob.streamed_by == holder,
                GenerationJob.streamed_until < now,
            ),
            Story.platform.in_(platforms),
        )
        .order_by(GenerationJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=GenerationJob)
    )
    if skip:
        query = query.where(GenerationJob.id.not_in(skip))
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


async def mark_ballot_shown(tx: AsyncSession, job_id: int, now: datetime) -> None:
    """The turn's candidates are shown for the vote: nothing is owed until the vote closes. If it
    closed while they were being shown, its winner may have been drawn before the ballot landed
    over it: the winner is owed again, now."""
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id, GenerationJob.status == JobStatus.VOTING)
        .values(show_after=None)
    )
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id, GenerationJob.status != JobStatus.VOTING)
        .values(shown_at=None, show_after=now)
    )


async def record_message(tx: AsyncSession, job_id: int, message_ref: str, now: datetime) -> bool:
    """The message(s) that show the turn. A turn withdrawn before any was posted was owed nothing
    (``cancel_open_jobs``); one posted since (it was being posted then) is owed its "withdrawn" now:
    True then."""
    reowed = await tx.execute(
        update(GenerationJob)
        .where(
            GenerationJob.id == job_id,
            GenerationJob.status == JobStatus.CANCELLED,
            GenerationJob.message_ref.is_(None),
            GenerationJob.shown_at.is_not(None),
        )
        .values(shown_at=None, show_after=now)
        .returning(GenerationJob.id)
    )
    owed = reowed.first() is not None
    await tx.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(message_ref=message_ref))
    return owed


# ---------------------------------------------------------------------- turns across processes
# A worker process writes a turn, a chat process shows it (bot/generation/relay.py).


async def relay_text(tx: AsyncSession, job_id: int, text: str) -> None:
    """The running turn's text so far, for the chat processes that show it."""
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id, GenerationJob.status == JobStatus.RUNNING)
        .values(partial_text=text)
    )


async def owe_showing_now(tx: AsyncSession, job_id: int, now: datetime) -> bool:
    """A worker's turn ended (or its candidates are out for a vote) and no process of its own can
    show it: its showing is owed now, not once the writer's lease ran out. False if nothing is owed
    (shown already, or still running: its outcome was not stored)."""
    query = (
        update(GenerationJob)
        .where(
            GenerationJob.id == job_id,
            GenerationJob.status.not_in((JobStatus.PENDING, JobStatus.RUNNING)),
            GenerationJob.shown_at.is_(None),
        )
        .values(show_after=now, partial_text=None)
        .returning(GenerationJob.id)
    )
    return (await tx.execute(query)).first() is not None


async def claim_stream(
    tx: AsyncSession, job_id: int, holder: str, now: datetime, until: datetime
) -> tuple[str | None, str | None] | None:
    """Claim (or renew) the showing of a running turn for ``holder`` until ``until``; its text so
    far and message ref, or None when it is not running or another chat process's claim holds.
    Two claimants of one row queue on its lock: the second sees the first's claim."""
    query = (
        update(GenerationJob)
        .where(
            GenerationJob.id == job_id,
            GenerationJob.status == JobStatus.RUNNING,
            or_(
                GenerationJob.streamed_by.is_(None),
                GenerationJob.streamed_by == holder,
                GenerationJob.streamed_until < now,
            ),
        )
        .values(streamed_by=holder, streamed_until=until)
        .returning(GenerationJob.partial_text, GenerationJob.message_ref)
    )
    row = (await tx.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


async def keep_streams(tx: AsyncSession, job_ids: Sequence[int], holder: str, until: datetime) -> None:
    """``holder`` still shows these turns: its claims hold until ``until``."""
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id.in_(job_ids), GenerationJob.streamed_by == holder)
        .values(streamed_until=until)
    )


async def release_streams(tx: AsyncSession, job_ids: Sequence[int], holder: str) -> None:
    """``holder`` stops showing these turns: they are anyone's to show from their next news."""
    await tx.execute(
        update(GenerationJob)
        .where(GenerationJob.id.in_(job_ids), GenerationJob.streamed_by == holder)
        .values(streamed_by=None, streamed_until=None)
    )


async def passages_of_job(tx: AsyncSession, job_id: int) -> Sequence[Passage]:
    """Every passage a job wrote (several for a vote's candidates), in story order."""
    query = select(Passage).where(Passage.job_id == job_id).order_by(Passage.seq)
    return (await tx.execute(query)).scalars().all()


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


async def site_secret(tx: AsyncSession, name: str, fresh: str) -> str:
    """Site secret ``name``, stored as ``fresh`` when there is none yet. Of processes racing to make
    it, the first to commit wins and each of them reads that one (the others' inserts do nothing)."""
    query = select(SiteSecret.value).where(SiteSecret.name == name)
    value = (await tx.execute(query)).scalar_one_or_none()
    if value is None:
        insert = postgresql.insert if tx.get_bind().dialect.name == "postgresql" else sqlite.insert
        await tx.execute(insert(SiteSecret).values(name=name, value=fresh).on_conflict_do_nothing())
        value = (await tx.execute(query)).scalar_one()
    return value


async def share_key(tx: AsyncSession, story_id: int, fresh: str) -> str:
    """The story's share key, stored as ``fresh`` when it has none (never shared, or revoked). Of
    two asking at once, the first to commit wins and both read its key, so no link given out dies."""
    await tx.execute(update(Story).where(Story.id == story_id, Story.share_key.is_(None)).values(share_key=fresh))
    key = (await tx.execute(select(Story.share_key).where(Story.id == story_id))).scalar_one()
    assert key is not None, f"story {story_id} has no share key after one was stored"
    return key
