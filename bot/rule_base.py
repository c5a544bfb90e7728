"""What every rule needs: the channel's running story, who may moderate it, a passage by its
number. ``SessionManager`` (the story rules) and ``ModerationRules`` (the
moderators' commands) both build on it, so each of these is decided in one place."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.identity import Actor, ChannelRef
from bot.jobs import JobBook
from bot.results import UserError
from bot.safety.checks import Checks
from storage import queries as q
from storage.models import GenerationJob, JobStatus, Passage, Story


class StoryRules(JobBook):
    """The helpers of the rule book (see the module docstring)."""

    checks: Checks  # what people's and the bot's texts are judged by (``SessionManager`` sets it)

    async def _story(self, tx: AsyncSession, channel: ChannelRef, *, lock: bool = True) -> Story:
        story = await q.active_story(tx, channel.key, lock=lock)
        if story is None:
            raise UserError('No story is running in this channel. Start one with /story start "Title".')
        return story

    def _is_moderator(self, story: Story, actor: Actor) -> bool:
        """A platform moderator, or the person who started the story."""
        return actor.is_moderator or actor.user_id == story.starter_id

    def _require_moderator(self, story: Story, actor: Actor, action: str) -> None:
        if not self._is_moderator(story, actor):
            raise UserError(f"Only {story.starter_name} (who started the story) or a moderator can {action}.")

    def _check_length(self, text: str, limit: int, what: str) -> str:
        text = text.strip()
        if len(text) > limit:
            raise UserError(f"{what} is {len(text)} characters; the limit is {limit}. Shorten it and try again.")
        return text

    async def _numbered_passage(self, tx: AsyncSession, story: Story, number: int) -> Passage:
        """Passage ``number`` as ``/story status`` numbers them (hidden ones keep their numbers)."""
        passages = await q.numbered_passages(tx, story.id)
        if number > len(passages):
            raise UserError(f"The story has {len(passages)} passages; there is no passage {number}.")
        return passages[number - 1]

    async def _open_vote(self, tx: AsyncSession, story: Story) -> GenerationJob | None:
        """The story's bot turn whose candidates are out for the channel's vote, if one is
        (``bot.votes``): while it runs, nothing may come between them and the story."""
        job = await q.open_job(tx, story.id)
        return job if job is not None and job.status == JobStatus.VOTING else None

    async def _refuse_while_voting(self, tx: AsyncSession, story: Story, what: str) -> None:
        if await self._open_vote(tx, story) is not None:
            raise UserError(
                f"The channel is voting on the bot's candidates; {what} once the vote closes (/story vote <n>)."
            )

    async def _cancel_open_jobs(self, tx: AsyncSession, story_id: int) -> tuple[int, ...]:
        now = self.clock()
        return await q.cancel_open_jobs(tx, story_id, now, self._owed_from(now))
