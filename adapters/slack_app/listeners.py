"""The Bolt app: ``/story``, the passage buttons and story-thread messages in; the core's results out.

Every listener acknowledges first (Slack wants an answer within 3 seconds), then does the work.
What identifies a delivery, so that a redelivered one is applied once (``event_id`` for the core):

- Events API: the envelope's ``event_id``, which Slack keeps on retries (``X-Slack-Retry-Num``).
- Slash commands and button clicks: Slack never retries these, but a proxy, a load balancer or a
  replayed request can deliver one twice. Their ``trigger_id`` is issued by Slack once per
  invocation and is covered by the request signature, so it names the invocation.

Who may do what is the core's business; this module only says who is a moderator (``People``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_app import render
from adapters.slack_app.messages import SLACK_ERRORS, Messages
from adapters.slack_app.people import People
from adapters.slack_app.streaming import PLATFORM, TurnStreamer
from bot import commands as c
from bot.app import App
from bot.identity import Actor, ChannelRef
from bot.results import Result

log = logging.getLogger(__name__)

BUTTON_COMMANDS: dict[str, type[c.Command]] = {
    "continue": c.Continue,
    "retry": c.Retry,
    "undo": c.Undo,
    "end": c.End,
}
THREAD_HINT = "The story is in this thread: every reply is a passage; mention the bot with a command, e.g. “@storybot status”."
PROBLEM = "Something went wrong on the bot's side; please try again."
NOT_IN_CHANNEL = "I can't post in this channel yet: invite me with /invite, then try again."


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One thing a person did in Slack, reduced to what the core and the replies need."""

    ref: ChannelRef
    user_id: str
    user_name: str
    event_id: str
    response_url: str | None = None


class SlackStory:
    """The Bolt ``AsyncApp`` with its listeners, over the running core."""

    def __init__(self, core: App, client: AsyncWebClient, *, signing_secret: str, verify_requests: bool) -> None:
        settings = core.config.slack
        self.core = core
        self.messages = Messages(client)
        self.people = People(client, settings.user_cache_s)
        self.streamer = TurnStreamer(self.messages, settings.stream_update_interval_s)
        core.queue.add_listener(self.streamer)
        self.bot_user_id = ""
        self.bolt = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            request_verification_enabled=verify_requests,
            logger=logging.getLogger("slack_bolt"),
        )
        self.bolt.command("/story")(self._on_command)
        self.bolt.action(re.compile(f"^{render.ACTION_PREFIX}({'|'.join(BUTTON_COMMANDS)})$"))(self._on_button)
        self.bolt.event("message")(self._on_message)

    async def start(self) -> None:
        """Check the bot token and learn the bot's own user id (for ``@storybot`` commands)."""
        identity = await self.bolt.client.auth_test()
        self.bot_user_id = str(identity.get("user_id") or "")
        log.info("signed in to Slack workspace %s as %s", identity.get("team"), identity.get("user"))

    async def close(self) -> None:
        await self.streamer.close()

    # ------------------------------------------------------------------ listeners

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        ref = ChannelRef(PLATFORM, body.get("team_id", ""), body["channel_id"], body.get("thread_ts") or "")
        delivery = Delivery(ref, body["user_id"], body.get("user_name", ""), body["trigger_id"], body.get("response_url"))
        await self._run(delivery, render.plain_text(body.get("text", "")))

    async def _on_button(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        container = body.get("container") or {}
        thread = container.get("thread_ts") or ""
        if thread == container.get("message_ts"):
            thread = ""  # a channel-level passage that people replied to: not a story thread
        team = (body.get("team") or {}).get("id") or body["user"].get("team_id", "")
        ref = ChannelRef(PLATFORM, team, body["channel"]["id"], thread)
        user = body["user"]
        delivery = Delivery(ref, user["id"], user.get("username", ""), body["trigger_id"], body.get("response_url"))
        command = BUTTON_COMMANDS[action["action_id"].removeprefix(render.ACTION_PREFIX)]()
        value = str(action.get("value", ""))
        if not value.isdigit():
            await self._tell(delivery, "⚠️ This button is not one the bot made. Type /story status.")
            return
        await self._apply(delivery, command, story_id=int(value))

    async def _on_message(self, body: dict[str, Any]) -> None:
        """A message: ``@storybot <command>`` anywhere, or a passage in a story's thread."""
        event = body["event"]
        if event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return  # edits, joins, other bots, the bot itself
        text = str(event.get("text", ""))
        ref = ChannelRef(PLATFORM, body.get("team_id", ""), event["channel"], event.get("thread_ts") or "")
        delivery = Delivery(ref, event["user"], "", body["event_id"])
        mention = f"<@{self.bot_user_id}>"
        if self.bot_user_id and text.lstrip().startswith(mention):
            await self._run(delivery, render.plain_text(text.lstrip()[len(mention) :]))
        elif ref.thread and await self.core.sessions.running_story_id(ref) is not None:
            await self._apply(delivery, c.Add(render.plain_text(text)))

    # ------------------------------------------------------------------ applying commands

    async def _run(self, delivery: Delivery, text: str) -> None:
        """Parse ``/story`` text with the shared grammar and apply it; bad input gets its one-line error."""
        try:
            command = c.parse(text)
        except c.ParseError as error:
            await self._tell(delivery, f"⚠️ {error}")
            return
        await self._apply(delivery, command)

    async def _apply(self, delivery: Delivery, command: c.Command, *, story_id: int | None = None) -> None:
        try:
            actor = await self.people.actor(delivery.ref.workspace, delivery.user_id, delivery.user_name)
            if isinstance(command, c.Start) and command.thread and not delivery.ref.thread:
                await self._start_in_thread(delivery, actor, command)
                return
            result = await self.core.sessions.handle(
                delivery.ref, actor, command, event_id=delivery.event_id, story_id=story_id
            )
            await self._show(delivery, result)
        except Exception:
            log.exception("/story %s failed in %s", command.name, delivery.ref.key)
            await self._tell(delivery, f"⚠️ {PROBLEM}")

    async def _start_in_thread(self, delivery: Delivery, actor: Actor, command: c.Start) -> None:
        """``/story start thread:true``: a message in the channel opens the thread that holds the story."""
        opening = f"📖 {actor.name} is starting “{command.title or 'a story'}” in this thread…"
        parent = await self._post(delivery, render.note_blocks(opening), opening)
        if parent is None:
            return
        thread = dataclasses.replace(delivery, ref=dataclasses.replace(delivery.ref, thread=parent))
        result = await self.core.sessions.handle(thread.ref, actor, command, event_id=delivery.event_id)
        if not result.ok or result.duplicate:
            await self.messages.delete(delivery.ref, parent)
            if not result.duplicate:
                await self._tell(delivery, f"⚠️ {result.text}")
            return
        blocks = [*render.text_blocks(result.text), *render.note_blocks(THREAD_HINT)]
        await self.messages.update(delivery.ref, parent, blocks, result.text)
        if result.passage is not None:
            await self._show(thread, dataclasses.replace(result, text=""))

    async def _show(self, delivery: Delivery, result: Result) -> None:
        """The result in Slack's idiom: to the asker only, in the channel, or as a shared file."""
        if result.duplicate:
            log.info("delivery %s was already applied; nothing to do", delivery.event_id)
            return
        if not result.ok:
            await self._tell(delivery, f"⚠️ {result.text}")
        elif result.private:
            await self._tell(delivery, result.text)
        elif result.attachment is not None:
            try:
                await self.messages.upload(delivery.ref, result.attachment, result.text)
            except SLACK_ERRORS as error:
                log.warning("file upload failed in %s: %s", delivery.ref.key, error)
                await self._tell(delivery, "⚠️ Slack did not take the file; please try the export again.")
        elif result.passage is not None:
            passage = result.passage
            blocks = render.passage_blocks(passage, result.text, with_buttons=passage.by_bot)
            await self._post(delivery, blocks, f"{passage.author_name}: {passage.text}")
        else:
            await self._post(delivery, render.text_blocks(result.text), result.text)

    async def _post(self, delivery: Delivery, blocks: list[render.Block], text: str) -> str | None:
        """Post in the channel; if Slack refuses (the bot is not a member), tell the asker why."""
        try:
            return await self.messages.post(delivery.ref, blocks, text)
        except SLACK_ERRORS as error:
            log.warning("cannot post in %s: %s", delivery.ref.key, error)
            await self._tell(delivery, f"⚠️ {NOT_IN_CHANNEL}")
            return None

    async def _tell(self, delivery: Delivery, text: str) -> None:
        try:
            await self.messages.tell(delivery.ref, delivery.user_id, text, delivery.response_url)
        except SLACK_ERRORS as error:
            log.warning("cannot reach %s in %s: %s", delivery.user_id, delivery.ref.key, error)
