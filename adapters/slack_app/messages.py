"""Sending to Slack: posts, edits, ephemeral notes and file uploads, all through one Web API client.

Every message goes out with ``link_names`` off and ``parse`` ``none`` and with escaped text
(see ``render``), so nothing the bot sends can ping anyone. A message in a story thread is sent
with that thread's ``thread_ts``. Rate limits are the client's business: it carries the SDK's
rate-limit retry handler, which waits the ``Retry-After`` Slack names and tries again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypedDict

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack_app import render
from bot.identity import ChannelRef
from bot.results import Attachment

log = logging.getLogger(__name__)

# What a failed Web API call raises: Slack said no, or Slack could not be reached.
SLACK_ERRORS = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError)


class _NoPings(TypedDict):
    link_names: bool
    parse: str
    unfurl_links: bool
    unfurl_media: bool


NO_PINGS: _NoPings = {"link_names": False, "parse": "none", "unfurl_links": False, "unfurl_media": False}


def _thread(ref: ChannelRef) -> str | None:
    """The story thread's ``thread_ts``; None (which the SDK leaves out) for a channel's own story."""
    return ref.thread or None


class Messages:
    """The bot's voice in Slack channels."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(self, ref: ChannelRef, blocks: list[render.Block], text: str) -> str:
        """Post in the channel (or its story thread); returns the new message's ``ts``.

        Blocks past one message's limit continue in further messages; the first one's ts is returned.
        """
        return await self._post(ref.channel, _thread(ref), blocks, text)

    async def send_to(self, conversation: str, text: str) -> None:
        """Post ``text`` to a conversation no story lives in: a channel id, or a user id, which
        posts in the app's direct messages with that person (a report for the moderators)."""
        await self._post(conversation, None, render.text_blocks(text), text)

    async def _post(self, channel: str, thread_ts: str | None, blocks: list[render.Block], text: str) -> str:
        first = ""
        for batch in render.batches(blocks):
            response = await self.client.chat_postMessage(
                channel=channel, blocks=batch, text=render.fallback(text), thread_ts=thread_ts, **NO_PINGS
            )
            first = first or str(response["ts"])
        return first

    async def update(self, ref: ChannelRef, ts: str, blocks: list[render.Block], text: str) -> None:
        """Replace a message the bot posted (a streaming passage, a thread's opening line)."""
        await self.client.chat_update(
            channel=ref.channel,
            ts=ts,
            blocks=blocks[: render.BLOCKS_PER_MESSAGE],
            text=render.fallback(text),
            link_names=False,
            parse="none",
        )

    async def delete(self, ref: ChannelRef, ts: str) -> None:
        await self.client.chat_delete(channel=ref.channel, ts=ts)

    async def tell(self, ref: ChannelRef, user_id: str, text: str, response_url: str | None = None) -> None:
        """Show ``text`` to one person only.

        ``chat.postEphemeral`` first; where the bot cannot post (not invited to a private channel,
        a direct message) the interaction's ``response_url`` still reaches the person.
        """
        blocks = render.text_blocks(text)
        try:
            for batch in render.batches(blocks):
                await self.client.chat_postEphemeral(
                    channel=ref.channel,
                    user=user_id,
                    blocks=batch,
                    text=render.fallback(text),
                    thread_ts=_thread(ref),
                    **NO_PINGS,
                )
            return
        except SLACK_ERRORS as error:
            if not response_url:
                raise
            log.info("chat.postEphemeral failed (%s); answering through the response_url", error)
        webhook = AsyncWebhookClient(response_url)
        await webhook.send(
            text=render.fallback(text),
            blocks=blocks[: render.BLOCKS_PER_MESSAGE],
            response_type="ephemeral",
            replace_original=False,
        )

    async def upload(self, ref: ChannelRef, attachment: Attachment, comment: str) -> None:
        """Share a file in the channel (files upload v2: get a URL, upload, complete)."""
        await self.client.files_upload_v2(
            channel=ref.channel,
            content=attachment.data,
            filename=attachment.filename,
            title=attachment.filename,
            initial_comment=render.fallback(comment),
            thread_ts=_thread(ref),
        )
