"""The bot's turns, live in the channel: one message edited as the passage grows.

A queue listener. Each bot turn gets a message when it starts; while the model writes, the
message is edited with the text so far, at most once per ``discord.stream_edit_interval_s``;
text past Discord's 2000 characters continues in a new message. The last edit shows the stored
passage (cleaned, attributed) with the Continue / Retry / Undo / End buttons; a turn taken over
from a dead process, or shown late for one, edits that process's message (``JobSpec.message_ref``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from adapters.discord_bot.buttons import passage_buttons
from adapters.discord_bot.render import (
    NO_PINGS,
    WITHDRAWN,
    WRITING,
    bot_footer,
    passage_messages,
    problem,
    streaming_messages,
)
from bot.generation.queue import TurnGone
from bot.results import Result
from bot.sessions import JobSpec

log = logging.getLogger(__name__)


class _LiveMessages:
    """The messages that show one bot turn, and the edits that keep them up to date."""

    def __init__(self, channel: discord.PartialMessageable, interval: float, message_ref: str | None) -> None:
        self.channel = channel
        self.interval = interval
        # A turn taken over from a dead process, or shown late for one, edits that process's messages.
        self.messages: list[discord.Message | discord.PartialMessage] = [
            channel.get_partial_message(int(part)) for part in (message_ref or "").split(",") if part.isdigit()
        ]
        self.shown: list[str | None] = [None] * len(self.messages)  # None: not known, edit it
        self.latest: str | None = None
        self.finished = False
        self.changed = asyncio.Event()
        self.editor: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()  # one show() at a time: sends and edits stay in order

    async def show(self, contents: list[str], view: discord.ui.View | None = None) -> None:
        """Make the channel show ``contents``: edit what changed, send what is new, drop the rest."""
        async with self.lock:
            for index, content in enumerate(contents):
                last = index == len(contents) - 1
                extra: dict[str, Any] = {"view": view} if last and view is not None else {}
                if index < len(self.messages) and (self.shown[index] != content or extra):
                    try:
                        await self.messages[index].edit(content=content, allowed_mentions=NO_PINGS, **extra)
                        self.shown[index] = content
                    except discord.NotFound:  # deleted by someone: this one and those after are sent anew
                        del self.messages[index:], self.shown[index:]
                if index == len(self.messages):
                    self.messages.append(await self.channel.send(content, allowed_mentions=NO_PINGS, **extra))
                    self.shown.append(content)
            for message in self.messages[len(contents) :]:
                try:
                    await message.delete()
                except discord.NotFound:  # already deleted by someone: as good
                    pass
            del self.messages[len(contents) :], self.shown[len(contents) :]

    @property
    def ref(self) -> str | None:
        """The messages that show the turn, as the job records them: their ids, comma-separated."""
        return ",".join(str(message.id) for message in self.messages) or None

    async def edit_loop(self) -> None:
        """Show the newest text, then rest ``interval``: at most one round of edits per interval."""
        while True:
            await self.changed.wait()
            self.changed.clear()
            if self.finished:
                return
            text, self.latest = self.latest, None
            if text:
                try:
                    await self.show(streaming_messages(text))
                except discord.HTTPException as error:  # a lost edit is fine: the final one fixes it
                    log.warning("could not update a streaming message: %s", error)
            await asyncio.sleep(self.interval)

    async def finish(self) -> None:
        """Stop streaming; waits for the edit round in flight (and its rest) to end."""
        self.finished = True
        self.changed.set()
        if self.editor is not None:
            await self.editor


class TurnStreamer:
    """Queue listener that shows the Discord channels' bot turns as they are written."""

    def __init__(self, client: discord.Client, interval: float) -> None:
        self.client = client
        self.interval = interval
        self._turns: dict[int, _LiveMessages] = {}

    def _channel(self, job: JobSpec) -> discord.PartialMessageable:
        ref = job.channel
        guild_id = int(ref.workspace) if ref.workspace else None
        return self.client.get_partial_messageable(int(ref.thread or ref.channel), guild_id=guild_id)

    def _live(self, job: JobSpec) -> _LiveMessages:
        live = self._turns.get(job.job_id)
        if live is None:
            live = self._turns[job.job_id] = _LiveMessages(self._channel(job), self.interval, job.message_ref)
        return live

    async def _start(self, job: JobSpec) -> _LiveMessages:
        live = self._live(job)
        if live.editor is None:
            live.editor = asyncio.create_task(live.edit_loop(), name=f"stream-{job.job_id}")
            await live.show([WRITING])
        return live

    async def turn_started(self, job: JobSpec) -> str | None:
        if job.channel.platform != "discord":
            return None
        return (await self._start(job)).ref

    async def turn_progress(self, job: JobSpec, text: str) -> str | None:
        if job.channel.platform != "discord":
            return None
        live = await self._start(job)
        live.latest = text
        live.changed.set()
        return live.ref

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        """Show the end; raises if Discord would not take it (the queue shows it again later)."""
        if job.channel.platform != "discord":
            return
        # A turn that started in another process, or before a restart, shows only its end here.
        live = self._turns.pop(job.job_id, None) or _LiveMessages(self._channel(job), self.interval, job.message_ref)
        await live.finish()
        try:
            if result is None:
                await live.show([WITHDRAWN])
            elif not result.ok:
                await live.show([problem(result.text)])
            elif result.passage is not None:
                passage = result.passage
                await live.show(passage_messages(passage, bot_footer(job, passage)), passage_buttons(passage.story_id))
        except (discord.NotFound, discord.Forbidden) as error:  # the channel is gone, or closed to the bot
            raise TurnGone(f"Discord answers {error.status} in {job.channel.key}") from error
