"""Round-robin turn notices in Slack: the one kind of message that pings someone.

Everything else the bot sends is escaped and pings nobody (``render``, ``messages.NO_PINGS``). A
turn notice starts with ``<@U…>``, the one person whose turn it is, and the rest of it (names and
titles people chose included) is escaped like any other text, posted with ``link_names`` off and
``verbatim`` sections: nothing else in it can become ``<!here>``, ``<!channel>`` or a mention.
"""

from __future__ import annotations

import re

from slack_sdk.errors import SlackApiError

from adapters.slack_app import render
from adapters.slack_app.messages import Messages
from adapters.slack_app.streaming import CHANNEL_GONE
from bot.generation.queue import TurnGone
from bot.turns import TurnNotice

SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,30}")  # a Slack user id, as the app hands it to the core


def notice_blocks(notice: TurnNotice) -> list[render.Block]:
    """Sections showing the notice: its one person's mention, then its text, escaped."""
    to = notice.to
    if to is None:
        lead = ""
    elif SLACK_USER.fullmatch(to.user_id):
        lead = f"<@{to.user_id}>, "
    else:  # (never from Slack itself): named, not pinged
        lead = f"{render.escape(to.name)}, "
    pieces = render.split_text(notice.text, render.SECTION_LIMIT - len(lead))
    texts = [(lead if index == 0 else "") + render.escape(piece) for index, piece in enumerate(pieces)]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}} for text in texts]


class SlackTurnNotices:
    """Says the Slack stories' turn notices (a ``bot.reminders.TurnNotices`` listener)."""

    def __init__(self, messages: Messages) -> None:
        self.messages = messages

    async def turn_notice(self, notice: TurnNotice) -> None:
        # The notification's plain text names the person; the mention in the blocks pings them.
        plain = f"{notice.to.name}, {notice.text}" if notice.to is not None else notice.text
        try:
            await self.messages.post(notice.channel, notice_blocks(notice), plain)
        except SlackApiError as error:
            if error.response.get("error") in CHANNEL_GONE:
                raise TurnGone(f"Slack answers {error.response.get('error')} in {notice.channel.key}") from error
            raise
