"""Who may put a story in the web archive, and who may read it there.

A story is private until published: ``/story publish`` (its starter or a moderator) lists it in
the archive for anyone to read (once it is finished: the archive lists finished stories only),
with or without who wrote each passage (``publish_authors``, as an export made without authors),
and ``/story unpublish`` takes it out again. ``/story share``
gives anyone who asks a signed link that opens one story whether it is published or not
(``bot.share_links``); ``/story share revoke`` (starter or moderator) stops every link made so
far. Each acts on a story of this channel: the one named by id, else the running one, else the
latest finished (as ``/story export`` picks it). Every change is a line in the audit log, in its
own transaction. What the archive shows of a story is what its exports show: never a hidden or
withheld passage (``bot.export.snapshot.load_story``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.export.chat import channel_story
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from bot.share_links import absolute, link_secret, new_share_key, share_path, share_token, story_path
from storage import queries as q
from storage.models import ContentRating, ModerationAction, Story, StoryStatus

PUBLISHING: Handlers[PublishingRules] = Handlers()

WITHOUT_AUTHORS = "without authors"  # the audit line's detail when the archive leaves them out


def _named(story: Story) -> str:
    return f"“{story.title}” (story #{story.id})"


def _authors(authors: bool) -> str:
    return "with who wrote each passage" if authors else "without who wrote each passage"


class PublishingRules(StoryRules):
    """``/story publish``, ``unpublish`` and ``share``: the archive's side of a story."""

    def _link(self, path: str) -> str:
        """``path`` as people reach it, or the path alone when ``web.public_url`` is not set."""
        return absolute(self.config.web.public_url, path)

    @PUBLISHING.handles(c.Publish)
    async def _publish(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Publish) -> Result:
        story = await channel_story(tx, channel, cmd.story_id, doing="publish", lock=True)
        self._require_moderator(story, actor, "publish the story")
        if story.rating == ContentRating.MATURE:
            raise UserError(
                f"{_named(story)} is rated mature, and the web archive asks nobody's age, so it cannot be "
                f"published; /story share {story.id} gives this channel's people a link to read it."
            )
        detail = "" if cmd.authors else WITHOUT_AUTHORS
        where = f" {self._link(story_path(story.id))}" if self.config.web.public_url else ""
        if story.published_at is not None:
            if story.publish_authors == cmd.authors:
                raise UserError(f"{_named(story)} is already published; /story unpublish {story.id} takes it out.")
            story.publish_authors = cmd.authors
            self._audit(tx, story.channel_key, actor, ModerationAction.PUBLISHED, detail, story_id=story.id)
            return Result(
                f"📚 {actor.name} changed how the archive shows {_named(story)}: now {_authors(cmd.authors)}.{where}",
                story_id=story.id,
            )
        story.published_at, story.published_by_id, story.publish_authors = self.clock(), actor.user_id, cmd.authors
        self._audit(tx, story.channel_key, actor, ModerationAction.PUBLISHED, detail, story_id=story.id)
        anonymous = "" if cmd.authors else f", {_authors(False)}"
        if story.status == StoryStatus.FINISHED:
            said = f" in the archive{anonymous}: anyone can read it there"
        else:  # the archive lists finished stories only
            said = f"{anonymous}: once it is finished, anyone can read it in the archive"
        return Result(f"📚 {actor.name} published {_named(story)}{said}.{where}", story_id=story.id)

    @PUBLISHING.handles(c.Unpublish)
    async def _unpublish(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Unpublish) -> Result:
        story = await channel_story(tx, channel, cmd.story_id, doing="unpublish", lock=True)
        self._require_moderator(story, actor, "unpublish the story")
        if story.published_at is None:
            raise UserError(f"{_named(story)} is not published; /story publish {story.id} lists it in the archive.")
        story.published_at, story.published_by_id = None, None
        self._audit(tx, story.channel_key, actor, ModerationAction.UNPUBLISHED, story_id=story.id)
        shared = (
            f" Links made with /story share still open it; /story share {story.id} revoke stops them."
            if story.share_key is not None
            else ""
        )
        return Result(f"{actor.name} took {_named(story)} out of the archive.{shared}", story_id=story.id)

    @PUBLISHING.handles(c.Share)
    async def _share(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Share) -> Result:
        story = await channel_story(tx, channel, cmd.story_id, doing="share", lock=True)
        if cmd.revoke:
            return self._revoke(tx, story, actor)
        fresh = new_share_key()
        key = await q.share_key(tx, story.id, fresh)
        if key == fresh:
            self._audit(tx, story.channel_key, actor, ModerationAction.SHARED, story_id=story.id)
        path = share_path(story.id, share_token(await link_secret(tx, self.config.web.secret), story.id, key))
        until = f"It works until {story.starter_name} or a moderator types /story share {story.id} revoke."
        if not self.config.web.public_url:
            return Result(
                f"🔗 {_named(story)} opens at {path} on the web archive, for whoever has that link, published or "
                f"not; web.public_url is not set, so the bot cannot give the whole address. {until}",
                private=True,
                story_id=story.id,
            )
        return Result(
            f"🔗 A link that opens {_named(story)} to whoever you give it, published or not: {self._link(path)}\n"
            + until,
            private=True,
            story_id=story.id,
        )

    def _revoke(self, tx: AsyncSession, story: Story, actor: Actor) -> Result:
        self._require_moderator(story, actor, "revoke its share links")
        if story.share_key is None:
            raise UserError(f"{_named(story)} has no share links to revoke.")
        story.share_key = None
        self._audit(tx, story.channel_key, actor, ModerationAction.UNSHARED, story_id=story.id)
        return Result(
            f"Every share link of {_named(story)} stopped working; /story share {story.id} makes a new one.",
            private=True,
            story_id=story.id,
        )
