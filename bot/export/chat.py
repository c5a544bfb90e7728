"""The archive as chat commands see it: ``/story list``, ``show`` and ``export`` in one channel.

These commands change nothing, so ``SessionManager.handle`` runs them in a read transaction (a
long export never holds up other channels' writes); this service reads the channel's stories and
renders them, and the rule book never touches a file format.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.branches import branch_line
from bot.config import ExportConfig
from bot.export import ExportOptions, render
from bot.export.snapshot import load_story
from bot.export.summary import summary
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import Attachment, Result, UserError
from bot.share_links import archive_note
from storage import queries as q
from storage.models import Story, StoryStatus

ARCHIVE: Handlers[Archive] = Handlers()


class Archive:
    """A channel's stories, listed, summarised and exported as files."""

    def __init__(self, config: ExportConfig, public_url: str = "") -> None:
        self.config = config
        self.public_url = public_url  # web.public_url: an export's answer names the story's page there

    @ARCHIVE.handles(c.ListStories)
    async def _list(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.ListStories) -> Result:
        stories = await q.finished_stories(tx, channel.key)
        if not stories:
            return Result("No finished stories in this channel yet.", private=True)
        branches = await q.branches(tx, [s.id for s in stories])
        lines = []
        for s in stories:
            if s.finished_at:
                published = ", in the web archive" if s.published_at is not None else ""
                lines.append(f"#{s.id} “{s.title}” — rated {s.rating}, finished {s.finished_at:%Y-%m-%d}{published}")
                lines += [_branch_entry(b) for b in branches if b.parent_id == s.id]
        hint = "/story show <id> shows a story's opening; /story export <format> <id> downloads it."
        return Result("Finished stories:\n" + "\n".join(lines) + "\n" + hint, private=True)

    @ARCHIVE.handles(c.Export)
    async def _export(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Export) -> Result:
        story = await channel_story(tx, channel, cmd.story_id, doing="export")
        snapshot = await load_story(tx, story, language=self.config.language)
        options = ExportOptions(authors=cmd.authors, body=cmd.body, chapter_passages=self.config.chapter_passages)
        # Rendering a long story as EPUB takes a moment: keep it off the event loop.
        file = await asyncio.to_thread(render, snapshot, cmd.format, options)
        return Result(
            f"📎 “{story.title}” as {cmd.format} ({max(1, round(len(file.data) / 1024))} KB)."
            + archive_note(self.public_url, story),
            story_id=story.id,
            attachment=Attachment(file.filename, file.mime_type, file.data),
        )

    @ARCHIVE.handles(c.Show)
    async def _show(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Show) -> Result:
        story = await channel_story(tx, channel, cmd.story_id, doing="show")
        if story.status != StoryStatus.FINISHED:
            raise UserError(f"“{story.title}” is still being written; /story status shows where it stands.")
        snapshot = await load_story(tx, story, language=self.config.language)
        parent = await q.story_by_id(tx, story.parent_id) if story.parent_id is not None else None
        return Result(summary(snapshot, story.id, branch_line(story, parent)), private=True, story_id=story.id)


async def channel_story(
    tx: AsyncSession, channel: ChannelRef, story_id: int | None, *, doing: str, lock: bool = False
) -> Story:
    """Story ``story_id`` of this channel; without an id the running one, else the latest finished:
    what export, publish and share act on. ``doing`` names the action for the error when there is
    none; ``lock`` takes the row lock that serialises writers on PostgreSQL."""
    if story_id is not None:
        story = await q.story_by_id(tx, story_id, lock=lock)
        if story is None or story.channel_key != channel.key:
            raise UserError(f"Story #{story_id} is not in this channel's archive. See /story list.")
        return story
    story = await q.active_story(tx, channel.key, lock=lock)
    if story is None:
        latest = await q.finished_stories(tx, channel.key, limit=1)
        story = latest[0] if latest else None
        if story is not None and lock:
            await tx.refresh(story, with_for_update=True)
    if story is None:
        raise UserError(f'There is no story here to {doing} yet. Start one with /story start "Title".')
    return story


def _branch_entry(branch: Story) -> str:
    """A branch's line under its parent in ``/story list``."""
    state = f"finished {branch.finished_at:%Y-%m-%d}" if branch.finished_at else "still being written"
    return f"  ↳ #{branch.id} branched at passage {branch.branched_at} — {state}"
