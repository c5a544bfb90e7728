"""The generation jobs' side of the story database: what the queue claims, beats, finishes and shows.

A bot turn is a ``GenerationJob`` row. The rules (``bot.sessions``) create and cancel jobs inside
their own transactions; the queue (``bot.generation.queue``) works them through this book, one
short transaction per step: claim (a ``JobSpec`` snapshot of what the prompt needs), heartbeat,
finish or fail (each at most once, and only while the job still runs), requeue what a dead
process left running, and the outbox: recording and marking the message that shows a turn, and
handing out the turns no live process showed.

On PostgreSQL several processes share the table, and a commit that queues or cancels jobs says so
on ``JOBS_CHANNEL`` (``storage.notify``) for the workers; a worker's turns reach the chat process
that shows them through the row (its text so far, who shows it) and ``TURNS_CHANNEL``
(``bot.generation.relay``).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.context import LoreItem, StorySnapshot
from bot.identity import Actor, ChannelRef
from bot.results import BOT_NAME, Alternatives, Ballot, Candidate, Election, PassageView, Result, Votes
from bot.safety.checker import Standard, Verdict
from bot.story_settings import StorySettings
from storage import queries as q
from storage.database import Database
from storage.models import (
    OPEN_JOB_STATUSES,
    AuthorKind,
    CandidateVote,
    ContentRating,
    GenerationJob,
    JobStatus,
    ModerationAction,
    ModerationEntry,
    Passage,
    PassageStatus,
    Story,
    StoryRecap,
    StoryStatus,
    WordRule,
    utcnow,
)

# Re-exported: adapters compare JobSpec.kind with it, and adapters never import storage.
from storage.models import JobKind as JobKind
from storage.notify import JOBS_CHANNEL, TURNS_CHANNEL, notify

BOT_ID = "bot"
# What became of the candidates a vote settled (a moderator may have hidden the winner since);
# not the ones the checks withheld, which were never voted on.
_VOTED_ON = (PassageStatus.CANONICAL, PassageStatus.SUPERSEDED, PassageStatus.HIDDEN)
OWED_FOR = timedelta(days=1)  # a turn no process could show for this long is given up
TURN_STARTED, TURN_PROGRESS, TURN_ENDED = "started", "progress", "ended"


def jobs_news(cancelled: Sequence[int]) -> str:
    """A ``JOBS_CHANNEL`` payload: jobs to claim, and the ids of those cancelled (to stop)."""
    return json.dumps({"cancelled": list(cancelled)})


def cancelled_in(payload: str) -> tuple[int, ...] | None:
    """The jobs a ``JOBS_CHANNEL`` payload says were cancelled; None when it cannot be read
    (then every running turn is checked)."""
    try:
        return tuple(int(job_id) for job_id in json.loads(payload)["cancelled"])
    except (ValueError, TypeError, KeyError):
        return None


@dataclass(frozen=True, slots=True)
class TurnNews:
    """A ``TURNS_CHANNEL`` payload: which turn, what happened (started, progress, ended), and its
    platform, so that only the processes that show that platform look at the row."""

    job_id: int
    event: str
    platform: str

    def payload(self) -> str:
        return json.dumps({"job": self.job_id, "event": self.event, "platform": self.platform})

    @classmethod
    def parse(cls, payload: str) -> TurnNews | None:
        try:
            found = json.loads(payload)
            return cls(int(found["job"]), str(found["event"]), str(found["platform"]))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class StreamClaim:
    """A running turn this chat process shows (``JobBook.claim_turn_stream``): its text so far
    and recorded message ref, and its ``JobSpec`` when asked for."""

    text: str | None
    message_ref: str | None
    spec: JobSpec | None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a worker needs to write one bot turn, read in one transaction."""

    job_id: int
    story_id: int
    channel: ChannelRef
    kind: str
    requested_by: str
    story: StorySnapshot
    settings: StorySettings
    speaker_names: tuple[str, ...]  # people in the story: the model must not write as them
    message_ref: str | None = None  # the platform message that shows this turn, once one was posted
    standard: Standard = field(default_factory=Standard)  # what the passage is checked against before it is shown
    passage_seqs: tuple[int, ...] = ()  # each of ``story.passages``' ``seq``: what a recap says it covers
    candidates: int = 1  # passages to write for the channel's vote (1: the turn's passage, no vote)


def count_votes(candidates: Sequence[Passage], votes: Sequence[CandidateVote]) -> tuple[Passage, Election]:
    """The candidate that wins a vote, and its count: the most votes; of those tied, the earliest
    (``candidates`` in their order). With no votes at all, the first candidate stands."""
    counts = {p.id: 0 for p in candidates}
    for vote in votes:
        if vote.passage_id in counts:
            counts[vote.passage_id] += 1
    winner = max(candidates, key=lambda p: counts[p.id])  # (max keeps the first of equals)
    return winner, Election(counts[winner.id], sum(counts.values()))


class JobBook:
    """The job lifecycle, as the generation queue calls it; the rule book (``SessionManager``)
    extends it, since its commands create and cancel the jobs and share database, config and clock."""

    def __init__(self, db: Database, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        # Who this process is, in the rows it claims to show (``streamed_by``): for operators too.
        self.holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._job_listeners: list[Callable[[], None]] = []
        self._showing_listeners: list[Callable[[], None]] = []

    def on_jobs_changed(self, callback: Callable[[], None]) -> None:
        """Register a callback run after a commit that created or cancelled a bot turn."""
        self._job_listeners.append(callback)

    def on_showings_owed(self, callback: Callable[[], None]) -> None:
        """Register a callback run after a commit that ended a turn outside the queue (a vote
        closed): its last showing is owed now, by whichever process shows its platform."""
        self._showing_listeners.append(callback)

    def _notify_jobs(self) -> None:
        for callback in self._job_listeners:
            callback()

    def _notify_showings(self) -> None:
        for callback in self._showing_listeners:
            callback()

    async def _announce_jobs(self, tx: AsyncSession, cancelled: Sequence[int] = ()) -> None:
        """Tell the other processes' workers, when ``tx`` commits, that jobs wait or were cancelled
        (PostgreSQL; this process's own queue is woken by ``_notify_jobs``)."""
        await notify(tx, JOBS_CHANNEL, jobs_news(cancelled))

    def story_settings(self, story: Story) -> StorySettings:
        """The story's generation settings: the config's defaults, overridden per story."""
        return StorySettings.of(self.config.model, story.settings)

    def _owed_from(self, ended: datetime) -> datetime:
        """When an ended turn that its own process has not shown yet may be shown by any process:
        once the writer's lease has run out, it is as good as dead."""
        return ended + timedelta(seconds=self.config.generation.job_lease_s)

    async def _view(self, tx: AsyncSession, passage: Passage) -> PassageView:
        counts = await q.vote_counts(tx, [passage.id])
        job = await q.job_by_id(tx, passage.job_id) if passage.job_id is not None else None
        return PassageView(
            id=passage.id,
            story_id=passage.story_id,
            seq=passage.seq,
            number=await q.passage_number(tx, passage.story_id, passage.seq),
            author_kind=passage.author_kind,
            author_name=passage.author_name,
            text=passage.text,
            votes=Votes(*counts.get(passage.id, (0, 0))),
            asked_by=job.requested_by_name if job is not None else None,
            rewrite=job is not None and job.kind == JobKind.RETRY,
            alternatives=await self._alternatives(tx, passage),
            elected=await self._election(tx, passage, job),
        )

    async def _election(self, tx: AsyncSession, passage: Passage, job: GenerationJob | None) -> Election | None:
        """The count that made ``passage`` its turn's winner; None unless it won a closed vote."""
        if job is None or job.candidates < 2 or job.status != JobStatus.DONE:
            return None
        passages = [p for p in await q.passages_of_job(tx, job.id) if p.status in _VOTED_ON]
        if len(passages) < 2:
            return None
        winner, election = count_votes(passages, await q.candidate_votes(tx, job.id))
        return election if winner.id == passage.id else None

    async def _alternatives(self, tx: AsyncSession, passage: Passage) -> Alternatives | None:
        """Where a bot passage stands among its alternatives; None for a person's, or one with none."""
        if passage.author_kind != AuthorKind.BOT:
            return None
        ids = [p.id for p in await q.alternatives(tx, passage)]
        if len(ids) < 2 or passage.id not in ids:
            return None
        last = await q.last_canonical_passage(tx, passage.story_id)
        return Alternatives(ids.index(passage.id) + 1, len(ids), browsable=last is not None and last.id == passage.id)

    async def _message_showing(self, tx: AsyncSession, passage: Passage) -> str | None:
        """The message(s) that show ``passage`` with its buttons, as its turn recorded them. Each
        retry shows its passage in a new message, which then carries ◀ ▶ and shows whichever of the
        alternatives is picked: for a passage with alternatives, that is the newest one's turn's."""
        found = await q.alternatives(tx, passage) if passage.author_kind == AuthorKind.BOT else []
        newest = found[-1] if found else passage
        job = await q.job_by_id(tx, newest.job_id) if newest.job_id is not None else None
        return job.message_ref if job is not None else None

    async def passage_view(self, passage_id: int) -> PassageView | None:
        """A passage as people see it now (its current counts), for a redraw; None if it is gone.
        One picked away since (a superseded alternative) is seen as the one picked over it: its
        message (the newest alternative's) shows that one now, and a late redraw must not undo the pick."""

        async def read(tx: AsyncSession) -> PassageView | None:
            passage = await tx.get(Passage, passage_id)
            if passage is not None and passage.status == PassageStatus.SUPERSEDED:
                found = await q.alternatives(tx, passage)
                passage = next((p for p in found if p.status == PassageStatus.CANONICAL), passage)
            return await self._view(tx, passage) if passage is not None else None

        return await self.db.transaction(read, write=False)

    async def requeue_interrupted_jobs(self, *, at_start: bool = False) -> int:
        """Running jobs whose process died go back to pending; returns how many.

        A job's process is dead when its heartbeat is older than ``generation.job_lease_s``.
        SQLite serves a single process, so when it starts every running job is an orphan and
        runs again at once; on PostgreSQL other live processes may be writing theirs.
        """
        everything = at_start and self.db.is_sqlite
        stale_before = None if everything else self.clock() - timedelta(seconds=self.config.generation.job_lease_s)

        async def requeue(tx: AsyncSession) -> int:
            count = await q.requeue_running_jobs(tx, stale_before)
            if count:
                await self._announce_jobs(tx)
            return count

        return await self.db.transaction(requeue)

    async def keep_jobs_alive(self, job_ids: list[int]) -> None:
        """Refresh the heartbeat of the jobs this process is writing."""
        if job_ids:
            await self.db.transaction(lambda tx: q.beat(tx, job_ids, self.clock()))

    async def claim_jobs(self, limit: int) -> list[JobSpec]:
        """Take up to ``limit`` pending jobs and snapshot what their prompts need."""

        async def claim(tx: AsyncSession) -> list[JobSpec]:
            jobs = await q.claim_pending_jobs(tx, limit, self.clock())
            return [await self._job_spec(tx, job) for job in jobs]

        return await self.db.transaction(claim)

    async def _job_spec(self, tx: AsyncSession, job: GenerationJob) -> JobSpec:
        story = await q.story_by_id(tx, job.story_id)
        assert story is not None
        return await self._turn_spec(tx, story, job)

    async def _turn_spec(self, tx: AsyncSession, story: Story, job: GenerationJob | None) -> JobSpec:
        """What writing a turn of ``story`` needs, as it stands now: ``job``'s, or with None the
        turn a plain ``/story continue`` would queue (no direction; job id 0), which is what
        ``/story context`` shows when no turn is open."""
        replaced = job.replaces_passage_id if job is not None else None
        numbered = await q.numbered_passages(tx, story.id)
        kept = [
            (number, p)
            for number, p in enumerate(numbered, 1)
            if p.status == PassageStatus.CANONICAL and p.id != replaced
        ]
        passages = [p for _, p in kept]
        lore = tuple(LoreItem(tuple(e.keys), e.text, e.number) for e in await q.lore_entries(tx, story.id))
        people = await q.participants(tx, story.id, active_only=False)
        recap = await q.current_recap(tx, story.id)
        covered = recap.covers_up_to if recap is not None and recap.text else 0
        snapshot = StorySnapshot(
            title=story.title,
            genre=story.genre,
            memory=story.memory,
            note=story.note,
            passages=tuple(p.text for p in passages),
            lore=lore,
            direction=job.direction if job is not None else None,
            numbers=tuple(number for number, _ in kept),
            recap=recap.text if recap is not None else "",
            recap_covers=sum(1 for p in passages if p.seq <= covered),
        )
        channel = ChannelRef(story.platform, story.workspace, story.channel, story.thread)
        return JobSpec(
            job_id=job.id if job is not None else 0,
            story_id=story.id,
            channel=channel,
            kind=job.kind if job is not None else JobKind.CONTINUE,
            requested_by=job.requested_by_name if job is not None else "",
            story=snapshot,
            settings=self.story_settings(story),
            speaker_names=tuple(sorted({p.name for p in people} | {p.author_name for p in passages})),
            message_ref=job.message_ref if job is not None else None,
            standard=await self._standard(tx, channel, story.rating),
            passage_seqs=tuple(p.seq for p in passages),
            candidates=job.candidates if job is not None else 1,
        )

    async def queue_recap(self, story_id: int, up_to_seq: int) -> bool:
        """Queue a recap of the story up to passage ``up_to_seq`` (a low-priority job: claimed only
        when no turn waits), unless one is open or the current recap covers it; True if queued."""

        async def add(tx: AsyncSession) -> bool:
            story = await q.story_by_id(tx, story_id, lock=True)
            if story is None or story.status != StoryStatus.ACTIVE or await q.open_recap_job(tx, story_id) is not None:
                return False
            recap = await q.current_recap(tx, story_id)
            if recap is not None and recap.text and recap.covers_up_to >= up_to_seq:
                return False
            tx.add(
                GenerationJob(
                    story_id=story_id,
                    channel_key=ChannelRef(story.platform, story.workspace, story.channel, story.thread).key,
                    kind=JobKind.RECAP,
                    requested_by_id=BOT_ID,
                    requested_by_name=BOT_NAME,
                    created_at=self.clock(),
                )
            )
            await self._announce_jobs(tx)
            return True

        queued = await self.db.transaction(add)
        if queued:
            self._notify_jobs()
        return queued

    async def finish_recap(self, job_id: int, text: str | None, covers_up_to: int) -> bool:
        """End a recap job, storing ``text`` as the story's new recap (None: nothing to store, or
        the checks stopped it). A recap is never shown in the channel, so it is owed no showing.
        False when the job was cancelled meanwhile (an undo, the story's end): nothing is stored."""

        async def store(tx: AsyncSession) -> bool:
            job = await q.job_by_id(tx, job_id, lock=True)
            if job is None or job.status != JobStatus.RUNNING:
                return False
            now = self.clock()
            job.status, job.finished_at, job.shown_at = (JobStatus.DONE if text else JobStatus.FAILED), now, now
            if text:
                tx.add(
                    StoryRecap(
                        story_id=job.story_id,
                        text=text,
                        covers_up_to=covers_up_to,
                        author_kind=AuthorKind.BOT,
                        author_id=BOT_ID,
                        author_name=BOT_NAME,
                        created_at=now,
                    )
                )
            return bool(text)

        return await self.db.transaction(store)

    async def _standard(self, tx: AsyncSession, channel: ChannelRef, rating: str) -> Standard:
        """What a story's texts are checked against: its rating and its channel's word list."""
        words = await q.channel_words(tx, channel.channel_key)
        return Standard(
            ContentRating(rating),
            banned=tuple(w.entry for w in words if w.rule == WordRule.BAN),
            allowed=tuple(w.entry for w in words if w.rule == WordRule.ALLOW),
        )

    async def finish_job(
        self, job_id: int, text: str, generation: dict[str, object], refused: Sequence[tuple[str, Verdict]] = ()
    ) -> Result | None:
        """Store the bot's passage for a running job, exactly once.

        Returns None when the job was cancelled meanwhile (undo, end, retry): its text is dropped.
        """

        async def store(tx: AsyncSession) -> Result | None:
            if (running := await self._running_turn(tx, job_id)) is None:
                return None
            job, story = running
            now = self.clock()
            for refused_text, verdict in refused:  # other candidates of the turn, stopped by the checks
                await self._withhold(tx, job, refused_text, generation, verdict)
            replaced = None
            if job.replaces_passage_id is not None:
                replaced = await tx.get(Passage, job.replaces_passage_id)
                if replaced is not None and replaced.status == PassageStatus.CANONICAL:
                    replaced.status = PassageStatus.SUPERSEDED
                    replaced.changed_by_id, replaced.changed_at = job.requested_by_id, now
            passage = self._bot_passage(
                job, text, await q.next_seq(tx, story.id), generation, replaces_id=replaced.id if replaced else None
            )
            tx.add(passage)
            job.status, job.finished_at, job.show_after = JobStatus.DONE, now, self._owed_from(now)
            story.turn_started_at = now
            await tx.flush()
            return Result("", story_id=story.id, passage=await self._view(tx, passage))

        return await self.db.transaction(store)

    async def open_vote(
        self,
        job_id: int,
        texts: Sequence[str],
        generation: dict[str, object],
        refused: Sequence[tuple[str, Verdict]] = (),
    ) -> Result | None:
        """Store the candidates a running job wrote and open the channel's vote on them, until
        ``story.vote_timeout_s`` from now or every participant has voted (``bot.votes``).

        The candidates take their places in the story's order now, so nothing can come between
        them and the story (a person's passage waits for the vote); none is numbered or read by
        the model until one wins. The first rewrites what the job rewrites, the others link to it
        (``replaces_id``): after the vote they are the winner's alternatives. A retry's old
        passage stays the story's while the vote runs. None when the job was cancelled meanwhile.
        """

        async def store(tx: AsyncSession) -> Result | None:
            if (running := await self._running_turn(tx, job_id)) is None:
                return None
            job, story = running
            now = self.clock()
            for refused_text, verdict in refused:  # candidates the checks stopped: kept for moderators
                await self._withhold(tx, job, refused_text, generation, verdict)
            seq = await q.next_seq(tx, story.id)
            stored: list[Passage] = []
            for index, text in enumerate(texts):
                passage = self._bot_passage(
                    job,
                    text,
                    seq + index,
                    generation,
                    status=PassageStatus.CANDIDATE,
                    replaces_id=stored[0].id if stored else job.replaces_passage_id,
                )
                tx.add(passage)
                await tx.flush()
                stored.append(passage)
            job.status = JobStatus.VOTING
            job.vote_closes_at = now + timedelta(seconds=self.config.story.vote_timeout_s)
            # Owed until shown, as an ended turn is: a process that dies first, or a platform that
            # refuses it, leaves the ballot to the next sweep (``mark_ballot_shown`` settles it).
            job.show_after = self._owed_from(now)
            return Result("", story_id=story.id, ballot=await self._ballot(tx, job))

        return await self.db.transaction(store)

    async def _ballot(self, tx: AsyncSession, job: GenerationJob) -> Ballot:
        """The open vote on a turn's candidates, as the channel is shown it."""
        assert job.vote_closes_at is not None
        return Ballot(
            job_id=job.id,
            story_id=job.story_id,
            candidates=tuple(Candidate(n, p.id, p.text) for n, p in enumerate(await q.candidates(tx, job.id), 1)),
            closes_at=job.vote_closes_at,
            electorate=len(await q.participants(tx, job.story_id)),
        )

    async def _running_turn(self, tx: AsyncSession, job_id: int) -> tuple[GenerationJob, Story] | None:
        """The job, locked, and its story, locked (where its passages take their places), while the
        job still runs; None once it ended or was cancelled, so its outcome is stored at most once."""
        job = await q.job_by_id(tx, job_id, lock=True)
        if job is None or job.status != JobStatus.RUNNING:
            return None
        story = await q.story_by_id(tx, job.story_id, lock=True)
        assert story is not None
        return job, story

    def _bot_passage(
        self, job: GenerationJob, text: str, seq: int, generation: dict[str, object], **fields: Any
    ) -> Passage:
        """A passage ``job`` wrote, credited to the bot and to whoever asked for the turn; ``fields``:
        its status and what it rewrites, where they differ from a plain story passage's."""
        return Passage(
            story_id=job.story_id,
            seq=seq,
            author_kind=AuthorKind.BOT,
            author_id=BOT_ID,
            author_name=BOT_NAME,
            text=text,
            job_id=job.id,
            requested_by_id=job.requested_by_id,
            direction=job.direction,
            generation=generation,
            created_at=self.clock(),
            **fields,
        )

    def _audit(
        self,
        tx: AsyncSession,
        channel_key: str,
        actor: Actor,
        action: ModerationAction,
        detail: str = "",
        *,
        story_id: int | None = None,
        passage_id: int | None = None,
    ) -> None:
        """Add a line to the audit log, in the transaction of the action it records."""
        tx.add(
            ModerationEntry(
                channel_key=channel_key,
                story_id=story_id,
                passage_id=passage_id,
                action=action,
                actor_id=actor.user_id,
                actor_name=actor.name,
                detail=detail,
                created_at=self.clock(),
            )
        )

    async def _withhold(
        self, tx: AsyncSession, job: GenerationJob, text: str, generation: dict[str, object], verdict: Verdict
    ) -> None:
        """Keep a text of ``job``'s that the content checks stopped: ``withheld`` (never shown,
        exported or read by the model) with the verdict, for moderators, and a line in the audit log."""
        check = {"checker": verdict.checker, "reason": verdict.reason, "found": list(verdict.found)}
        passage = self._bot_passage(
            job,
            text,
            await q.next_seq(tx, job.story_id),
            {**generation, "check": check},
            status=PassageStatus.WITHHELD,
        )
        tx.add(passage)
        await tx.flush()
        self._audit(
            tx,
            job.channel_key,
            Actor(BOT_ID, BOT_NAME),
            ModerationAction.WITHHELD,
            f"{verdict.checker}: {verdict.reason}",
            story_id=job.story_id,
            passage_id=passage.id,
        )

    async def withhold_job(
        self,
        job_id: int,
        text: str,
        generation: dict[str, object],
        verdict: Verdict,
        notice: str,
        refused: Sequence[tuple[str, Verdict]] = (),
    ) -> Result | None:
        """End a job whose passage the content checks stopped: the text is kept (``_withhold``), as
        are ``refused``, other candidates of the turn they stopped; the channel gets ``notice``.
        None when the job was cancelled meanwhile."""

        async def record(tx: AsyncSession) -> Result | None:
            if (running := await self._running_turn(tx, job_id)) is None:  # (the story locked: its next place)
                return None
            job, story = running
            now = self.clock()
            story.turn_started_at = now  # the round after the bot's turn starts now, as after a passage
            for refused_text, refused_verdict in ((text, verdict), *refused):
                await self._withhold(tx, job, refused_text, generation, refused_verdict)
            job.status, job.finished_at, job.error, job.show_after = JobStatus.FAILED, now, notice, self._owed_from(now)
            return Result(notice, ok=False, story_id=job.story_id)

        return await self.db.transaction(record)

    async def fail_job(self, job_id: int, error: str) -> Result | None:
        """Record that a job could not be written; returns the one-line error to show, or None if cancelled."""

        async def record(tx: AsyncSession) -> Result | None:
            job = await q.job_by_id(tx, job_id, lock=True)
            if job is None or job.status != JobStatus.RUNNING:
                return None
            now = self.clock()
            job.status, job.finished_at, job.error, job.show_after = JobStatus.FAILED, now, error, self._owed_from(now)
            story = await q.story_by_id(tx, job.story_id, lock=True)
            if story is not None:  # the next round's first turn starts now, not when the bot was asked
                story.turn_started_at = now
            return Result(error, ok=False, story_id=job.story_id)

        return await self.db.transaction(record)

    # ------------------------------------------------------------------ showing turns (the outbox)

    async def record_turn_message(self, job_id: int, message_ref: str) -> bool:
        """Remember which platform message shows the turn, for whoever shows it next. True when the
        turn was withdrawn while that message was being posted: its "withdrawn" is owed now."""
        return await self.db.transaction(lambda tx: q.record_message(tx, job_id, message_ref, self.clock()))

    async def mark_turn_shown(self, job_id: int) -> None:
        """The ended turn is shown on its platform (a turn still open is not: it will end later)."""
        await self.db.transaction(lambda tx: q.mark_shown(tx, job_id, self.clock()))

    async def mark_ballot_shown(self, job_id: int) -> None:
        """The turn's candidates are shown for the vote; its winner is owed once the vote closes."""
        await self.db.transaction(lambda tx: q.mark_ballot_shown(tx, job_id, self.clock()))

    async def claim_owed_showings(
        self, platforms: Sequence[str], limit: int, *, at_start: bool = False, skip: Collection[int] = ()
    ) -> list[tuple[JobSpec, Result | None]]:
        """Ended turns of ``platforms`` that no process has shown: each with what to show.

        That is the stored passage, the error, or None for a withdrawn turn. At the start of a
        process alone on its database (SQLite), every owed showing is a dead process's, so all
        are taken at once; otherwise only those whose writer's lease has run out.
        """

        async def claim(tx: AsyncSession) -> list[tuple[JobSpec, Result | None]]:
            now, everything = self.clock(), at_start and self.db.is_sqlite
            lease_until, ended_after = self._owed_from(now), now - OWED_FOR
            jobs = await q.claim_owed_showings(
                tx,
                platforms,
                limit,
                now,
                lease_until,
                ended_after,
                everything=everything,
                holder=self.holder,
                skip=skip,
            )
            return [(await self._job_spec(tx, job), await self._ending(tx, job)) for job in jobs]

        return await self.db.transaction(claim)

    async def _ending(self, tx: AsyncSession, job: GenerationJob) -> Result | None:
        """What an ended job shows: as ``finish_job`` and ``fail_job`` returned it, except that a
        passage undone or rewritten since (through another process) shows as withdrawn, and the
        newest of several alternatives shows the one picked since (its message carries ◀ ▶). A turn
        out for a vote (a worker wrote it: ``owe_showing_now``) shows its ballot."""
        if job.status == JobStatus.VOTING:
            return Result("", story_id=job.story_id, ballot=await self._ballot(tx, job))
        if job.status == JobStatus.FAILED:
            return Result(job.error or "The bot could not write its passage.", ok=False, story_id=job.story_id)
        passage = await q.passage_of_job(tx, job.id) if job.status == JobStatus.DONE else None
        if passage is not None and passage.status == PassageStatus.SUPERSEDED:
            found = await q.alternatives(tx, passage)
            if found[-1].id == passage.id:
                passage = next((p for p in found if p.status == PassageStatus.CANONICAL), passage)
        if passage is None or passage.status != PassageStatus.CANONICAL:
            return None
        return Result("", story_id=job.story_id, passage=await self._view(tx, passage))

    # ------------------------------------------------------------------ turns across processes

    async def relay_turn(self, job: JobSpec, event: str, text: str | None) -> None:
        """A turn this worker writes for a chat process to show began or grew: the text so far
        (if any) goes into its row, and the news to the chat processes."""

        async def relay(tx: AsyncSession) -> None:
            if text is not None:
                await q.relay_text(tx, job.job_id, text)
            await notify(tx, TURNS_CHANNEL, TurnNews(job.job_id, event, job.channel.platform).payload())

        await self.db.transaction(relay)

    async def owe_showing_now(self, job: JobSpec) -> None:
        """A turn this worker wrote ended (or is out for a vote), and no process of its own shows
        its platform: its showing is owed now, and the chat processes are told to look."""

        async def owe(tx: AsyncSession) -> None:
            if await q.owe_showing_now(tx, job.job_id, self.clock()):
                await notify(tx, TURNS_CHANNEL, TurnNews(job.job_id, TURN_ENDED, job.channel.platform).payload())

        await self.db.transaction(owe)

    def _stream_lease(self) -> datetime:
        return self._owed_from(self.clock())

    async def claim_turn_stream(self, job_id: int, *, with_spec: bool) -> StreamClaim | None:
        """Claim (or renew) the showing of a running turn that a worker writes, for this process
        until ``generation.job_lease_s`` from now; None when it is not running or another chat
        process shows it. ``with_spec``: read its ``JobSpec`` too (the first time)."""

        async def claim(tx: AsyncSession) -> StreamClaim | None:
            found = await q.claim_stream(tx, job_id, self.holder, self.clock(), self._stream_lease())
            if found is None:
                return None
            job = await q.job_by_id(tx, job_id) if with_spec else None
            return StreamClaim(*found, spec=await self._job_spec(tx, job) if job is not None else None)

        return await self.db.transaction(claim)

    async def keep_streams_alive(self, job_ids: list[int]) -> None:
        """Renew this process's claims on the turns it shows while they are written."""
        if job_ids:
            await self.db.transaction(lambda tx: q.keep_streams(tx, job_ids, self.holder, self._stream_lease()))

    async def release_streams(self, job_ids: list[int]) -> None:
        """This process stops: another may show these turns from their next news."""
        if job_ids:
            await self.db.transaction(lambda tx: q.release_streams(tx, job_ids, self.holder))

    async def job_is_open(self, job_id: int) -> bool:
        async def is_open(tx: AsyncSession) -> bool:
            job = await q.job_by_id(tx, job_id)
            return job is not None and job.status in OPEN_JOB_STATUSES

        return await self.db.transaction(is_open, write=False)
