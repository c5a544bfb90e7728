"""The Discord client: interactions and messages in, the core's results out.

Stored, then acknowledged: the command goes to the core first (with the interaction id as its
event id), and the interaction's response is its answer: in the channel for everyone, or only
for the asker when the result is private or an error. Discord wants a response within 3
seconds, so what the core has not stored within ``ACK_MARGIN_S`` is acknowledged with a
deferred "thinking…" reply, which the answer replaces once it is done. Who may do what is the
core's business; the client only says who is a moderator here (Manage Messages in the channel).
A rating is answered to the voter first; its new counts then show on the rated passage's own
message, edited at most once per ``generation.stream_interval_s`` (``adapters.common.ratings``).
A report's alert goes out after the answer (the acknowledgement never waits on it): to
``discord.moderators_channel`` when the config names one, else as a direct message to the
story's starter; one that cannot be sent is logged, and the report stays in the audit log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from typing import Any

import aiohttp
import discord
from discord import app_commands

from adapters.common.ratings import CountEdits
from adapters.common.threads import StoryThread
from adapters.common.wording import PROBLEM, problem
from adapters.discord_bot.buttons import BallotButton, PickButton, RatingButton, StoryButton
from adapters.discord_bot.notices import DiscordTurnNotices
from adapters.discord_bot.render import MESSAGE_LIMIT, NO_PINGS, passage_messages, split_message
from adapters.discord_bot.slash import StoryCommands
from adapters.discord_bot.streaming import PLATFORM, DiscordStreamer
from bot import commands as c
from bot.app import App
from bot.identity import Actor, ChannelRef
from bot.metrics import Acknowledgement
from bot.results import DEFAULT_TITLE, ModeratorAlert, Result

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100
# Discord wants a response within 3 seconds; what the core has not stored by then is answered
# with "thinking…" first, with time to spare for the response's trip.
ACK_MARGIN_S = 2.0
NOT_KEPT = "Your message could not be added to the story just now; please send it again."
# What an edit of a passage's counts meets in normal life: the message deleted, Discord's refusal
# or rate limit past discord.py's own retries, the network.
EDIT_FAILURES = (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError)
# What sending a report's alert meets besides: an id in the config (or a starter's) that is no number.
ALERT_FAILURES = (*EDIT_FAILURES, ValueError)


def _contents(result: Result) -> list[str]:
    """The messages that show a result: the passage it added (attributed) or its text."""
    if not result.ok:
        return split_message(problem(result.text), MESSAGE_LIMIT)
    if result.passage is not None and not result.private:  # (a rating's answer is its text, to the voter)
        return passage_messages(result.passage, result.text)
    return split_message(result.text or "Done.", MESSAGE_LIMIT)


class _Thread(StoryThread):
    """A public Discord thread under the channel, opened for the story."""

    def __init__(self, ref: ChannelRef, thread: discord.Thread) -> None:
        super().__init__(ref)
        self.thread = thread

    async def show(self, result: Result) -> None:
        for content in _contents(result):
            await self.thread.send(content, allowed_mentions=NO_PINGS)

    async def take_back(self, result: Result) -> None:
        await self.thread.delete()  # the asker hears why in the answer


class StoryClient(discord.Client):
    """One bot user serving every guild it is in; a thread is a channel of its own."""

    def __init__(self, app: App, *, sync: bool = False) -> None:
        settings = app.config.discord
        intents = discord.Intents.default()
        intents.message_content = settings.message_content_thread_turns
        super().__init__(intents=intents, allowed_mentions=NO_PINGS)
        self.app = app
        self.sync_commands = sync
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(StoryCommands())
        self.tree.on_error = self._command_error  # type: ignore[method-assign]  # discord.py's way to set the tree's handler
        streamer = DiscordStreamer(self)
        app.queue.add_listener(streamer, shows=PLATFORM)
        self.counts = CountEdits(
            streamer.redraw, app.sessions.passage_view, app.config.generation.stream_interval_s, failures=EDIT_FAILURES
        )

    # ------------------------------------------------------------------ start-up

    async def setup_hook(self) -> None:
        self.add_dynamic_items(StoryButton, RatingButton, PickButton, BallotButton)
        # Logged in by now: the round-robin turn calls can be sent from here on.
        self.app.reminders.add_listener(PLATFORM, DiscordTurnNotices(self))
        if self.sync_commands:
            await self._sync()

    async def _sync(self) -> None:
        guild_ids = self.app.config.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            log.info("registered /story globally (%d commands; Discord may take a while to show them)", len(synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(int(guild_id))
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            log.info("registered /story in guild %s", guild_id)

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s in %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        """Make the pending count edits (briefly) while the connection still stands, then close it."""
        await self.counts.close()
        await super().close()

    # ------------------------------------------------------------------ who and where

    @staticmethod
    def _ref(guild_id: int | None, channel: Any, channel_id: int | None) -> ChannelRef:
        """Where a command came from, with Discord's age restriction as the client's cache has it now
        (kept current by CHANNEL_UPDATE events): a thread is age-restricted when its parent channel
        is (``Thread.is_nsfw``); a channel the client cannot see (a DM, an uncached one) is not."""
        guild = str(guild_id or "")
        is_nsfw = getattr(channel, "is_nsfw", None)
        adults = bool(is_nsfw()) if callable(is_nsfw) else False
        if isinstance(channel, discord.Thread):
            return ChannelRef(PLATFORM, guild, str(channel.parent_id), str(channel.id), age_restricted=adults)
        return ChannelRef(PLATFORM, guild, str(channel_id), age_restricted=adults)

    @staticmethod
    def _actor(user: discord.abc.User, permissions: discord.Permissions) -> Actor:
        return Actor(str(user.id), user.display_name, is_moderator=permissions.manage_messages)

    # ------------------------------------------------------------------ interactions

    async def run_command(
        self, interaction: discord.Interaction[Any], command: c.Command, *, story_id: int | None = None
    ) -> None:
        acknowledgement = self.app.metrics.interaction(PLATFORM)
        deciding = asyncio.ensure_future(self._decide(interaction, command, story_id))
        finished, _ = await asyncio.wait({deciding}, timeout=ACK_MARGIN_S)
        if not finished:
            private = command.shows_privately
            await interaction.response.defer(ephemeral=private, thinking=True)
            acknowledgement.told()
        result = await deciding
        # A rating's new counts, on the passage's message: an interval from now (after the answer),
        # whatever becomes of the answer.
        self.counts.show(self._ref(interaction.guild_id, interaction.channel, interaction.channel_id), result)
        try:
            if finished:
                await self._answer(interaction, result, acknowledgement)
            else:
                await self._answer(interaction, result, acknowledgement, deferred_private=command.shows_privately)
        finally:  # the report is stored: its moderators hear of it even if the answer could not be shown
            if result.alert is not None:
                await self._alert(result.alert)

    async def _alert(self, alert: ModeratorAlert) -> None:
        """Send a report to the moderators' channel, or privately to the story's starter; never raises."""
        channel_id = self.app.config.discord.moderators_channel
        where = "the moderators' channel" if channel_id else "the story's starter"
        try:
            if channel_id:
                destination: discord.abc.Messageable = self.get_partial_messageable(int(channel_id))
            else:
                destination = await self.create_dm(discord.Object(int(alert.starter_id)))
            for content in split_message(alert.text, MESSAGE_LIMIT):
                await destination.send(content, allowed_mentions=NO_PINGS)
        except ALERT_FAILURES as error:
            log.warning("a report could not be sent to %s: %s", where, error)

    async def _decide(self, interaction: discord.Interaction[Any], command: c.Command, story_id: int | None) -> Result:
        """Have the core apply (and store) the command; a bug is the bot's problem, said plainly."""
        actor = self._actor(interaction.user, interaction.permissions)
        channel = self._ref(interaction.guild_id, interaction.channel, interaction.channel_id)
        event_id = str(interaction.id)
        try:
            if isinstance(command, c.Start) and command.thread:
                return await self._start_in_thread(interaction, actor, command, event_id)
            if isinstance(command, c.Branch):
                return await self._branch_in_thread(interaction, actor, command, channel, event_id)
            return await self.app.sessions.handle(channel, actor, command, event_id=event_id, story_id=story_id)
        except Exception:
            log.exception("/story %s failed", command.name)
            return Result.error(PROBLEM)

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        result: Result,
        acknowledgement: Acknowledgement,
        *,
        deferred_private: bool | None = None,
    ) -> None:
        """Respond with the result (the ``acknowledgement``), or replace the deferred reply with it;
        extra messages follow it."""
        private = result.private or not result.ok
        contents = _contents(result)
        files = (
            [discord.File(io.BytesIO(result.attachment.data), result.attachment.filename)] if result.attachment else []
        )
        first, *rest = contents
        extra: dict[str, Any] = {"files": files} if files else {}
        if deferred_private is None:
            await interaction.response.send_message(first, ephemeral=private, allowed_mentions=NO_PINGS, **extra)
            acknowledgement.told()
        elif private == deferred_private:
            edit: dict[str, Any] = {"attachments": files} if files else {}
            await interaction.edit_original_response(content=first, allowed_mentions=NO_PINGS, **edit)
        else:  # the deferred reply has the wrong visibility: replace it with new messages
            await interaction.delete_original_response()
            rest = contents
        for index, content in enumerate(rest):
            with_file = extra if deferred_private is not None and private != deferred_private and index == 0 else {}
            await interaction.followup.send(content, ephemeral=private, allowed_mentions=NO_PINGS, **with_file)

    async def _start_in_thread(
        self, interaction: discord.Interaction[Any], actor: Actor, command: c.Start, event_id: str
    ) -> Result:
        """``/story start thread:true``: a new public thread under this channel holds the story."""
        parent = interaction.channel
        if not isinstance(parent, discord.TextChannel):
            return Result.error("A story thread can only be made in a text channel; try thread:false here.")
        # The thread is named after the title: the checks judge it before anyone can see it.
        refusal = await self.app.sessions.refusal(self._ref(interaction.guild_id, parent, parent.id), command)
        if refusal is not None:
            return Result.error(refusal)
        return await self._in_new_thread(interaction, parent, command.title or DEFAULT_TITLE, actor, command, event_id)

    async def _branch_in_thread(
        self, interaction: discord.Interaction[Any], actor: Actor, command: c.Branch, here: ChannelRef, event_id: str
    ) -> Result:
        """``/story branch``: a new public thread under the story's channel (under a thread's
        parent when typed in one: threads do not nest) holds the branch."""
        source = await self.app.sessions.branch_source(here)
        if source is None:  # the core says why (no story runs here)
            return await self.app.sessions.handle(here, actor, command, event_id=event_id)
        channel = interaction.channel
        parent = channel.parent if isinstance(channel, discord.Thread) else channel
        if not isinstance(parent, discord.TextChannel):
            return Result.error("A branch's thread can only be made in a text channel.")
        branch = dataclasses.replace(command, from_story_id=source.story_id)
        return await self._in_new_thread(interaction, parent, source.title, actor, branch, event_id)

    async def _in_new_thread(
        self,
        interaction: discord.Interaction[Any],
        parent: discord.TextChannel,
        name: str,
        actor: Actor,
        command: c.Start | c.Branch,
        event_id: str,
    ) -> Result:
        """Open a public thread under ``parent`` and have the core put the story there; the thread
        is taken back when it did not start there."""
        opened = await parent.create_thread(name=name[:THREAD_NAME_LIMIT], type=discord.ChannelType.public_thread)
        thread = _Thread(self._ref(interaction.guild_id, opened, opened.id), opened)
        result = await thread.start(self.app.sessions, actor, command, event_id)
        if not await thread.finish(result):
            return result
        return Result(f"{result.text.splitlines()[0]} The story is in {opened.mention}.")

    async def reject(self, interaction: discord.Interaction[Any], text: str) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(problem(text), ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(problem(text), ephemeral=True, allowed_mentions=NO_PINGS)

    async def _command_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        """Errors discord.py meets before our command runs: unknown commands, bad option values."""
        if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
            text = "This command is not one the bot knows (it may be out of date). Type /story help."
        elif isinstance(error, app_commands.TransformerError):
            text = f"{error} Type /story help."
        else:
            log.error("/story failed", exc_info=error)
            text = PROBLEM
        await self.reject(interaction, " ".join(text.split()))

    # ------------------------------------------------------------------ plain messages in story threads

    async def on_message(self, message: discord.Message) -> None:
        """With ``message_content_thread_turns``, a message in a story's thread is a ``/story add``."""
        if not self.app.config.discord.message_content_thread_turns:
            return
        thread = message.channel
        text = message.content.strip()
        if message.author.bot or not isinstance(thread, discord.Thread) or not text or text.startswith("/"):
            return
        channel = self._ref(message.guild.id if message.guild else None, thread, thread.id)
        author = message.author
        permissions = (
            thread.permissions_for(author) if isinstance(author, discord.Member) else discord.Permissions.none()
        )
        try:
            if await self.app.sessions.running_story_id(channel) is None:
                return  # an ordinary thread, or its story has ended: not ours to answer
            result = await self.app.sessions.handle(
                channel, self._actor(author, permissions), c.Add(text), event_id=str(message.id)
            )
        except Exception:  # (a database locked past every retry, say): the writer must know it was not kept
            log.exception("a message in story thread %s failed", channel.key)
            result = Result.error(NOT_KEPT)
        if not result.ok:
            await message.reply(problem(result.text), mention_author=False, allowed_mentions=NO_PINGS)


class ShardedStoryClient(StoryClient, discord.AutoShardedClient):
    """The same bot over as many gateway connections (shards) as Discord recommends."""


def client_class(sharding: str) -> type[StoryClient]:
    return ShardedStoryClient if sharding == "auto" else StoryClient
