"""The bot's turns, live in a Discord channel: one message edited as the passage grows.

The shared :class:`~adapters.common.streaming.TurnStreamer` over Discord messages. A turn's
message says "writing…", then shows the text so far as the queue hands it over; text past
Discord's 2000 characters continues in a new message. The end shows the stored passage (cleaned,
attributed) with the Continue / Retry / Undo / End and 👍 / 👎 buttons. A turn taken over from a
dead process, or shown late for one, edits that process's messages (``JobSpec.message_ref``).
After a rating, ``redraw`` shows the passage's last message again as the end showed it, with
the new counts in its credit line; after a pick, the turn's messages show the alternative picked
(its "2 / 3" in the credit line, ◀ ▶ among the buttons). A turn that wrote candidates for a vote
ends showing them, a vote button each under the last message; its messages are recorded, and the
winner is drawn in them when the vote closes (the queue's outbox shows the turn's end again): in as
many as it needs, the spare ones deleted and the shorter set recorded, as no other redraw ever does.

The messages a turn recorded stay the turn's for good: every later redraw edits exactly them, so
none is ever deleted once a finished passage is in them (one deleted would answer the next edit
with NotFound, and the buttons would never move again). A passage shorter than its messages
leaves the spare ones a small placeholder, its credit line and buttons in the last one; one longer
(an alternative picked into a shorter one's messages) is cut to fit, pointing to /story status.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from adapters.common.streaming import TurnStreamer
from adapters.common.wording import problem
from adapters.discord_bot.buttons import ballot_buttons, passage_buttons
from adapters.discord_bot.render import (
    BODY_LIMIT,
    NO_PINGS,
    WITHDRAWN,
    WRITING,
    ballot_messages,
    bot_footer,
    passage_messages,
    small,
    split_message,
    streaming_messages,
    with_footer,
)
from bot.generation.queue import TurnGone
from bot.identity import ChannelRef
from bot.jobs import JobSpec
from bot.results import PassageView, Result

log = logging.getLogger(__name__)

PLATFORM = "discord"
SPARE = small("⋯")  # a message of the turn's that the passage shown does not fill
CUT = small("… the whole passage: /story status")  # under a passage cut to fit its turn's messages


def message_ids(message_ref: str | None) -> list[int]:
    """The ids of the messages that show a turn, as its job records them (comma-separated)."""
    return [int(part) for part in (message_ref or "").split(",") if part.isdigit()]


def finished_passage(passage: PassageView, count: int = 0) -> tuple[list[str], discord.ui.View]:
    """A stored bot passage as its messages show it: attributed and split, the credit line (with
    the counts) under the last message, which carries the buttons. With ``count``, in exactly that
    many messages: the spare ones say ``SPARE`` and the credit line has the last to itself, or the
    passage is cut at a sentence end to fit, ``CUT`` under it."""
    footer, bodies = bot_footer(passage), passage_messages(passage, "")
    if count and len(bodies) > count:
        end = split_message(bodies[count - 1], BODY_LIMIT - len(CUT) - 1)[0]
        bodies = [*bodies[: count - 1], f"{end}\n{CUT}"]
    if count > len(bodies):
        return [*bodies, *[SPARE] * (count - len(bodies) - 1), small(footer)], passage_buttons(passage)
    return with_footer(bodies, footer), passage_buttons(passage)


class _LiveMessages:
    """The messages that show one bot turn, and the edits that keep them up to date."""

    def __init__(self, channel: discord.PartialMessageable, job: JobSpec) -> None:
        self.channel = channel
        self.job = job
        # A turn taken over from a dead process, or shown late for one, edits that process's messages.
        self.messages: list[discord.Message | discord.PartialMessage] = [
            channel.get_partial_message(message_id) for message_id in message_ids(job.message_ref)
        ]
        self.shown: list[str | None] = [None] * len(self.messages)  # None: not known, edit it

    async def show(self, contents: list[str], view: discord.ui.View | None = None) -> None:
        """Make the channel show ``contents``: edit what changed, send what is new, drop the rest."""
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

    async def begin(self) -> str | None:
        await self._show_passing("its “writing…” note", [WRITING])
        return self.ref

    async def progress(self, text: str) -> str | None:
        await self._show_passing("the text so far", streaming_messages(text))
        return self.ref

    async def _show_passing(self, what: str, contents: list[str]) -> None:
        """Show ``contents`` while the turn is written; a failure is fine: the end fixes it."""
        try:
            await self.show(contents)
        except discord.HTTPException as error:
            log.warning("could not show %s of bot turn %d: %s", what, self.job.job_id, error)

    async def end(self, result: Result | None) -> str | None:
        try:
            if result is None:
                await self.show([WITHDRAWN])
            elif not result.ok:
                await self.show([problem(result.text)])
            elif result.ballot is not None:  # recorded: the winner is drawn in these messages
                await self.show(ballot_messages(result.ballot), ballot_buttons(result.ballot))
            elif result.passage is not None:  # in every message streamed (recorded, for redraws), or more
                needed = len(finished_passage(result.passage)[0])
                # A vote's winner needs fewer than its candidates took: the spare ones go, and the
                # queue records the shorter set (nothing was built on them: the vote just closed).
                count = needed if result.passage.elected is not None else max(needed, len(self.messages))
                await self.show(*finished_passage(result.passage, count))
        except (discord.NotFound, discord.Forbidden) as error:  # the channel is gone, or closed to the bot
            raise TurnGone(f"Discord answers {error.status} in {self.job.channel.key}") from error
        return self.ref


class DiscordStreamer(TurnStreamer):
    """Queue listener that shows the Discord channels' bot turns as they are written."""

    def __init__(self, client: discord.Client) -> None:
        super().__init__(PLATFORM)
        self.client = client

    def _channel(self, ref: ChannelRef) -> discord.PartialMessageable:
        guild_id = int(ref.workspace) if ref.workspace else None
        return self.client.get_partial_messageable(int(ref.thread or ref.channel), guild_id=guild_id)

    def live_turn(self, job: JobSpec) -> _LiveMessages:
        return _LiveMessages(self._channel(job.channel), job)

    async def redraw(self, ref: ChannelRef, message_ref: str, passage: PassageView) -> None:
        """Show the finished ``passage`` again in the messages of ``message_ref``, laid out as the
        end of its turn laid it out in them: its new counts in the last one (the credit line and
        the buttons). A passage with alternatives has each of the messages drawn, since they may
        have shown another one (a pick), which may have been shorter or longer: it fills them,
        cut to fit if need be, as ``finished_passage`` says (a new message would land below what
        came since). Raises what Discord raises."""
        ids = message_ids(message_ref)
        whole = passage.alternatives is not None
        if not ids or (not whole and len(ids) < len(finished_passage(passage)[0])):
            # The end spilled into a message the job never recorded, and its buttons are there.
            log.info("passage %d needs more messages than its turn recorded; it shows in /story status", passage.id)
            return
        contents, view = finished_passage(passage, len(ids))
        channel, last = self._channel(ref), len(ids) - 1
        for index in range(0 if whole else last, last):  # (the buttons only ever under the last)
            message = channel.get_partial_message(ids[index])
            await message.edit(content=contents[index], view=None, allowed_mentions=NO_PINGS)
        await channel.get_partial_message(ids[last]).edit(content=contents[last], view=view, allowed_mentions=NO_PINGS)
