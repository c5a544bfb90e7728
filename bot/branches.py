"""``/story branch``: a new story that shares a running one up to one of its passages.

The platform opens a place for the branch first (a thread under the channel, a new console
channel) and the command names the story it branches from (``Branch.from_story_id``, the story
running where it was typed): the rule then copies, in one transaction, what the parent holds up
to that passage — its canonical passages (authors, kinds and generation records as they are),
memory, note, lore (not removed entries), settings, mode, rating and participants — into a new
story in that place. Nothing of the parent changes, and nothing links them afterwards but
``stories.parent_id`` and ``branched_at``: each goes on alone.

The parent's texts were judged by the content checks already, so nothing is judged again; the
branch keeps the parent's rating, so a mature parent branches only into a channel for adults.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from storage import queries as q
from storage.models import ContentRating, LoreEntry, Participant, Passage, PassageStatus, Story, StoryStatus

BRANCHES: Handlers[BranchRules] = Handlers()


@dataclass(frozen=True, slots=True)
class BranchSource:
    """The story a branch typed in a channel copies: what the platform needs before it opens
    the branch's place (its id for the command, its title for a thread's name)."""

    story_id: int
    title: str


def branch_line(story: Story, parent: Story | None) -> str | None:
    """“Branched from “Parent” (story #3) at passage 12.”, or None for a story started afresh."""
    if story.parent_id is None:
        return None
    title = f"“{parent.title}” (story #{story.parent_id})" if parent is not None else f"story #{story.parent_id}"
    return f"Branched from {title} at passage {story.branched_at}."


class BranchRules(StoryRules):
    """``/story branch``, and what other rules say of a branch's parent."""

    async def branch_source(self, channel: ChannelRef) -> BranchSource | None:
        """The story running in ``channel``, which a branch typed there copies (None: none runs)."""

        async def read(tx: AsyncSession) -> BranchSource | None:
            story = await q.active_story(tx, channel.key)
            return BranchSource(story.id, story.title) if story is not None else None

        return await self.db.transaction(read, write=False)

    async def _branch_line(self, tx: AsyncSession, story: Story) -> str | None:
        parent = await q.story_by_id(tx, story.parent_id) if story.parent_id is not None else None
        return branch_line(story, parent)

    @BRANCHES.handles(c.Branch)
    async def _branch(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Branch) -> Result:
        """Create the branch in ``channel`` (the place the platform opened for it)."""
        if cmd.from_story_id is None:
            await self._story(tx, channel, lock=False)  # says so when no story runs here
            raise UserError("A branch needs a place of its own; this platform cannot open one here.")
        parent = await q.story_by_id(tx, cmd.from_story_id, lock=True)
        if parent is None or parent.status != StoryStatus.ACTIVE:
            raise UserError("That story has ended, so it cannot be branched now. Type /story status.")
        if await q.active_story(tx, channel.key) is not None:
            raise UserError("A story is already running here; branch from the channel where the story runs.")
        if parent.rating == ContentRating.MATURE and not channel.age_restricted:
            raise UserError(f"“{parent.title}” is rated mature, so its branches need a channel for adults too.")
        numbered = await q.numbered_passages(tx, parent.id)
        number = len(numbered) if cmd.number is None else cmd.number
        if number > len(numbered):
            raise UserError(f"The story has {len(numbered)} passages; there is no passage {number}.")
        branch = self._copy_story(parent, channel, actor, number)
        tx.add(branch)
        await tx.flush()
        kept = [p for p in numbered[:number] if p.status == PassageStatus.CANONICAL]
        tx.add_all(self._copy_passage(branch, seq, p) for seq, p in enumerate(kept, start=1))
        tx.add_all(
            LoreEntry(
                story_id=branch.id,
                number=e.number,
                keys=list(e.keys),
                text=e.text,
                author_id=e.author_id,
                created_at=e.created_at,
            )
            for e in await q.lore_entries(tx, parent.id)
        )
        tx.add_all(Participant.like(branch.id, p) for p in await q.participants(tx, parent.id, active_only=False))
        await tx.flush()
        return Result(
            f"🌿 {actor.name} branched “{parent.title}” (story #{parent.id}) at passage {number}: story "
            f"#{branch.id} goes on from here with {len(kept)} passages, and the original goes on untouched.",
            story_id=branch.id,
        )

    def _copy_story(self, parent: Story, channel: ChannelRef, actor: Actor, number: int) -> Story:
        """The branch's row: the parent's story settings, in ``channel``, started by ``actor``."""
        now = self.clock()
        return Story(
            channel_key=channel.key,
            platform=channel.platform,
            workspace=channel.workspace,
            channel=channel.channel,
            thread=channel.thread,
            title=parent.title,
            genre=parent.genre,
            mode=parent.mode,
            rating=parent.rating,
            starter_id=actor.user_id,
            starter_name=actor.name,
            memory=parent.memory,
            note=parent.note,
            settings=dict(parent.settings or {}),
            turn_index=parent.turn_index,
            turn_started_at=now,
            created_at=now,
            parent_id=parent.id,
            branched_at=number,
        )

    @staticmethod
    def _copy_passage(branch: Story, seq: int, passage: Passage) -> Passage:
        return Passage(
            story_id=branch.id,
            seq=seq,
            author_kind=passage.author_kind,
            author_id=passage.author_id,
            author_name=passage.author_name,
            text=passage.text,
            requested_by_id=passage.requested_by_id,
            direction=passage.direction,
            generation=dict(passage.generation) if passage.generation is not None else None,
            created_at=passage.created_at,
            changed_by_id=passage.changed_by_id,
            changed_at=passage.changed_at,
        )
