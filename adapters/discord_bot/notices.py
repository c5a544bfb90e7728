"""Round-robin turn notices in a Discord channel: the one kind of message that pings someone.

Everything else the bot sends pings nobody (``render.NO_PINGS``). A turn notice mentions the one
person whose turn it is, ``<@id>`` first, and its ``allowed_mentions`` names that user alone: no
@everyone or @here, no roles, no reply ping. The rest of its text, names and titles people chose
included, is made inert, so nothing in it pings or even shows as a mention.
"""

from __future__ import annotations

import re

import discord

from adapters.discord_bot.render import MESSAGE_LIMIT, NO_PINGS, split_message
from bot.generation.queue import TurnGone
from bot.turns import TurnNotice

SNOWFLAKE = re.compile(r"[0-9]{1,20}")  # a Discord user id, as the client hands it to the core


def inert(text: str) -> str:
    """``text`` as written, with nothing Discord would read as markup or a mention (``@everyone``,
    ``<@123>``, ``<#1>``, ``<@&2>``): a zero-width space breaks each of them."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text)).replace("<", "<\u200b")


def notice_message(notice: TurnNotice) -> tuple[str, discord.AllowedMentions]:
    """The notice's text, and the mentions it may ping: its one person's, or nobody's."""
    to = notice.to
    if to is None:
        return inert(notice.text), NO_PINGS
    if not SNOWFLAKE.fullmatch(to.user_id):  # (never from Discord itself): named, not pinged
        return f"{inert(to.name)}, {inert(notice.text)}", NO_PINGS
    only_them = discord.AllowedMentions(
        everyone=False, users=[discord.Object(int(to.user_id))], roles=False, replied_user=False
    )
    return f"<@{to.user_id}>, {inert(notice.text)}", only_them


class DiscordTurnNotices:
    """Says the Discord stories' turn notices (a ``bot.reminders.TurnNotices`` listener)."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def turn_notice(self, notice: TurnNotice) -> None:
        ref = notice.channel
        channel = self.client.get_partial_messageable(
            int(ref.thread or ref.channel), guild_id=int(ref.workspace) if ref.workspace else None
        )
        content, mentions = notice_message(notice)
        try:
            # The mention leads the first message; a notice long enough to spill pings nobody after it.
            for index, piece in enumerate(split_message(content, MESSAGE_LIMIT)):
                await channel.send(piece, allowed_mentions=mentions if index == 0 else NO_PINGS)
        except (discord.NotFound, discord.Forbidden) as error:  # the channel is gone, or closed to the bot
            raise TurnGone(f"Discord answers {error.status} in {ref.key}") from error
