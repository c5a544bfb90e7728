"""The channel votes on the bot's next passage: ``/story settings candidates:<2-4>``.

Why: in a group, one person's retry replaces what the others may have liked; a vote lets the
channel choose together. A turn of a story with ``candidates`` above 1 writes that many passages
in one batch (the queue: the same prompt, so the prefix cache makes the extra rows cost little
more than their decoding), stores them as ``candidate`` passages and opens the vote
(``JobBook.open_vote``: the job waits in ``voting``, an open job, so people's passages wait for it
as they wait for a turn being written).

``/story vote <n>`` (the buttons under the candidates) records one vote per person and turn,
changed by voting again. The vote closes when every participant of the story has voted, or at
``story.vote_timeout_s`` (``close_due_votes``, run by the reminders' task): the most votes win,
ties go to the earliest candidate; the winner becomes the story's passage, the others its
alternatives (◀ ▶ browse them, ``/story pick`` picks one). Closing ends the job and leaves its
showing owed (``show_after`` now), so whichever process runs the platform redraws the turn's
messages with the winner, through the queue's outbox, however the vote closed.

A turn taken back while its vote runs (``/story undo``, ``end``, a stricter rating) takes its
candidates with it (``storage.queries.cancel_open_jobs``).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.feedback.signals import VOTED
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.jobs import count_votes
from bot.results import Election, Result, UserError
from bot.rule_base import StoryRules
from bot.turns import duration
from storage import queries as q
from storage.models import CandidateVote, GenerationJob, JobStatus, Passage, PassageStatus, Story

log = logging.getLogger(__name__)

VOTES: Handlers[VoteRules] = Handlers()

NO_VOTE = (
    "No vote is open in this story. With /story settings candidates:2 (up to 4) the bot writes candidates to vote on."
)
CLOSED = "That vote has closed, so its buttons change nothing now; the story's passage is the one that won."


class VoteRules(StoryRules):
    """The rules of the channel's vote on the bot's candidates (see the module docstring)."""

    @VOTES.handles(c.VoteFor)
    async def _vote(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.VoteFor) -> Result:
        """Anyone in the channel may vote, once (voting again changes the vote); the vote closes
        early once every participant of the story has voted."""
        story = await self._story(tx, channel)
        job = await self._open_vote(tx, story)
        if job is None:
            raise UserError(CLOSED if cmd.job_id is not None else NO_VOTE)
        if cmd.job_id is not None and cmd.job_id != job.id:
            raise UserError(CLOSED)
        candidates = await q.candidates(tx, job.id)
        if not 1 <= cmd.number <= len(candidates):
            raise UserError(f"There are {len(candidates)} candidates; vote for one from 1 to {len(candidates)}.")
        chosen = candidates[cmd.number - 1]
        votes = list(await q.candidate_votes(tx, job.id))
        mine = next((v for v in votes if v.voter_id == actor.user_id), None)
        now = self.clock()
        if mine is not None and mine.passage_id == chosen.id:
            said = f"You already voted for candidate {cmd.number}; each person votes once (you may change it)."
        elif mine is not None:
            before = next(n for n, p in enumerate(candidates, 1) if p.id == mine.passage_id)
            mine.passage_id, mine.voter_name, mine.changed_at = chosen.id, actor.name, now
            said = f"You changed your vote from candidate {before} to {cmd.number}."
        else:
            mine = CandidateVote(
                job_id=job.id, passage_id=chosen.id, voter_id=actor.user_id, voter_name=actor.name, created_at=now
            )
            tx.add(mine)
            votes.append(mine)
            said = f"You voted for candidate {cmd.number}."
        await tx.flush()
        people, voters = {p.user_id for p in await q.participants(tx, story.id)}, {v.voter_id for v in votes}
        waiting = people - voters
        if self._closes(job, people, voters):
            number, election = await self._close_vote(tx, story, job)
            why = "Everyone has voted" if not waiting else "The vote's time is up"
            return Result(
                f"{said} {why}: candidate {number} won, {election}.",
                private=True,
                story_id=story.id,
                turn_ended=job.id,
            )
        left = f"{len(waiting)} of {len(people)} participants have not voted yet" if people else "nobody takes part yet"
        return Result(
            f"{said} The vote closes when all have voted or in time ({left}).", private=True, story_id=story.id
        )

    async def _open_turn_line(self, tx: AsyncSession, job: GenerationJob) -> str:
        """What ``/story status`` says of the story's open bot turn: being written, or out for a vote."""
        if job.status != JobStatus.VOTING or job.vote_closes_at is None:
            return "The bot is writing."
        count, voted = len(await q.candidates(tx, job.id)), len(await q.candidate_votes(tx, job.id))
        left = duration((job.vote_closes_at - self.clock()).total_seconds())
        return f"The channel is voting on the bot's {count} candidates: {voted} voted so far; it closes in {left} at the latest."

    async def _withdraw_vote(self, tx: AsyncSession, story: Story, job: GenerationJob, actor: Actor) -> Result:
        """``/story undo`` while the channel votes takes back the bot's turn: its candidates and the
        vote (who asked for the turn, the starter or a moderator)."""
        if job.requested_by_id != actor.user_id and not self._is_moderator(story, actor):
            raise UserError(
                f"The bot's candidates were asked for by {job.requested_by_name}; only they, the starter or a "
                "moderator can withdraw them."
            )
        cancelled = await self._cancel_open_jobs(tx, story.id)
        return Result(
            "Withdrew the bot's candidates; the vote is off.",
            story_id=story.id,
            cancelled_job_ids=cancelled,
            turn_ended=job.id,
        )

    async def _close_vote(self, tx: AsyncSession, story: Story, job: GenerationJob) -> tuple[int, Election]:
        """Make the winner the story's passage and the other candidates its alternatives; end the
        job, its showing owed at once. Returns the winner's number among the candidates and the count."""
        candidates = await q.candidates(tx, job.id)
        winner, election = count_votes(candidates, await q.candidate_votes(tx, job.id))
        now = self.clock()
        if job.replaces_passage_id is not None:  # a retry's vote: the old passage steps aside now
            replaced = await tx.get(Passage, job.replaces_passage_id)
            if replaced is not None and replaced.status == PassageStatus.CANONICAL:
                replaced.status, replaced.changed_at = PassageStatus.SUPERSEDED, now
                replaced.changed_by_id = job.requested_by_id  # retried away, as finish_job has it
        for passage in candidates:
            passage.status = PassageStatus.CANONICAL if passage is winner else PassageStatus.SUPERSEDED
            passage.changed_by_id, passage.changed_at = VOTED, now  # (the others: outvoted, not retried)
        job.status, job.finished_at, job.show_after = JobStatus.DONE, now, now
        story.turn_started_at = now  # the round after the bot's turn starts now, as after a passage
        await tx.flush()
        return candidates.index(winner) + 1, election

    def _closes(self, job: GenerationJob, people: set[str], voters: set[str]) -> bool:
        """Whether ``job``'s vote should close now: its time is up, or everyone who takes part in
        the story (``people``) has voted (someone who had not may have left since the last vote)."""
        if job.vote_closes_at is not None and job.vote_closes_at <= self.clock():
            return True
        return bool(people) and people <= voters

    async def _due(self, tx: AsyncSession, job: GenerationJob) -> bool:
        """``_closes``, with the story's participants and the votes read now."""
        people = {p.user_id for p in await q.participants(tx, job.story_id)}
        return self._closes(job, people, {v.voter_id for v in await q.candidate_votes(tx, job.id)})

    async def close_due_votes(self) -> int:
        """Close every vote that is due (``_due``), one short transaction each; returns how many
        closed. Their showings are owed, and the queue is told to look."""

        async def due(tx: AsyncSession) -> list[int]:
            return [job.id for job in await q.open_votes(tx) if await self._due(tx, job)]

        closed = 0
        for job_id in await self.db.transaction(due, write=False):

            async def close(tx: AsyncSession, job_id: int = job_id) -> bool:
                job = await q.job_by_id(tx, job_id, lock=True)
                if job is None or job.status != JobStatus.VOTING or not await self._due(tx, job):
                    return False  # closed by a last vote meanwhile, or taken back
                story = await q.story_by_id(tx, job.story_id, lock=True)
                assert story is not None
                await self._close_vote(tx, story, job)
                return True

            try:
                closed += await self.db.transaction(close)
            except Exception:  # that vote only: the others, and the turn notices after them, go on
                log.exception("could not close the vote of bot turn %d", job_id)
        if closed:
            self._notify_showings()
        return closed
