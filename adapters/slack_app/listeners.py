"""The Bolt app: ``/story``, the passage buttons and story-thread messages in; the core's results out.

Stored, then acknowledged. Slack never delivers an acknowledged command or click again, so a
listener reads the fields it needs (one Slack would never send gets 400, see ``fields``), has the
core apply the command (the database transaction takes milliseconds), and only then lets Bolt
answer the request (the app runs with ``process_before_response``). A slash command's answer
for the asker alone (an error, a status) rides in the acknowledgement itself; what the channel
sees is posted right after. Slack's 3-second deadline still holds when the database is slow:
what is not stored within ``ACK_MARGIN_S`` is acknowledged with "working on it…" and answered
when it is done. Events are acknowledged the same way, after the passage is stored.

What identifies a delivery, so that a redelivered one is applied once (``event_id`` for the core):

- Events API: the envelope's ``event_id``, which Slack keeps on retries (``X-Slack-Retry-Num``).
- Slash commands and button clicks: Slack never retries these, but a proxy, a load balancer or a
  replayed request can deliver one twice. Their ``trigger_id`` is issued by Slack once per
  invocation and is covered by the request signature, so it names the invocation.

Who may do what is the core's business; this module only says who is a moderator (``People``).
A rating (``/story rate``, the 👍 / 👎 buttons) is answered to the voter first; its new counts
then show on the rated passage's own message, edited at most once per
``generation.stream_interval_s`` (``adapters.common.ratings``). A report (``/story report``) is
answered to the reporter first; its message for the moderators follows, in
``slack.moderators_channel`` when the config names one, else in the app's direct messages with
the story's starter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.common.ratings import CountEdits
from adapters.common.threads import StoryThread
from adapters.common.wording import PROBLEM, problem
from adapters.slack_app import render
from adapters.slack_app.fields import (
    Fields,
    MalformedRequest,
    optional_object,
    optional_text,
    required_object,
    required_text,
)
from adapters.slack_app.messages import SLACK_ERRORS, Messages
from adapters.slack_app.notices import SlackTurnNotices
from adapters.slack_app.people import People
from adapters.slack_app.streaming import PLATFORM, SlackStreamer
from bot import commands as c
from bot.app import App
from bot.identity import Actor, ChannelRef
from bot.results import ModeratorAlert, Result

log = logging.getLogger(__name__)

BUTTON_COMMANDS: dict[str, type[c.Command]] = {
    "continue": c.Continue,
    "retry": c.Retry,
    "undo": c.Undo,
    "end": c.End,
}
RATING_BUTTONS: dict[str, c.Vote] = {vote.value: vote for vote in c.Vote}  # 👍 / 👎 under a bot passage
THREAD_HINT = (
    "The story is in this thread: every reply is a passage; mention the bot with a command, e.g. “@storybot status”."
)
NOT_IN_CHANNEL = "I can't post in this channel yet: invite me with /invite, then try again."
NOT_OUR_BUTTON = problem("This button is not one the bot made. Type /story status.")
WORKING = "⏳ Working on it…"
# Slack wants an answer within 3 seconds; what the core has not stored by then is acknowledged
# as "working on it", with time to spare for the answer's trip back.
ACK_MARGIN_S = 2.0
SHOW_GRACE_S = 5.0  # how long close() lets replies being posted finish
# A story id as the bot writes it into a button: ASCII digits. str.isdigit() also takes "²", which
# int() refuses, and int() refuses more than 4300 digits.
STORY_ID = re.compile(r"[0-9]{1,18}")
RATING_VALUE = re.compile(r"(?P<story_id>[0-9]{1,18}):(?P<passage_id>[0-9]{1,18})")  # render.rating_value
# render.pick_value: the story, the passage its message shows, the alternative to pick.
PICK_VALUE = re.compile(r"(?P<story_id>[0-9]{1,18}):(?P<passage_id>[0-9]{1,18}):(?P<number>[0-9]{1,9})")
# render.ballot_value: the story, the turn whose vote it is, the candidate.
BALLOT_VALUE = re.compile(r"(?P<story_id>[0-9]{1,18}):(?P<job_id>[0-9]{1,18}):(?P<number>[0-9]{1,9})")


Ack = Callable[..., Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One thing a person did in Slack, reduced to what the core and the replies need."""

    ref: ChannelRef
    user_id: str
    user_name: str
    event_id: str
    response_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the core decided about one delivery, to acknowledge and show.

    ``delivery`` is where to show it (a story thread the command just opened, say), and
    ``thread`` that thread, to finish or take back once the asker has been answered.
    """

    result: Result
    delivery: Delivery
    thread: _Thread | None = None


class SlackStory:
    """The Bolt ``AsyncApp`` with its listeners, over the running core."""

    def __init__(self, core: App, client: AsyncWebClient, *, signing_secret: str, verify_requests: bool) -> None:
        settings = core.config.slack
        self.core = core
        self.messages = Messages(client)
        self.people = People(client, settings.user_cache_s)
        streamer = SlackStreamer(self.messages)
        core.queue.add_listener(streamer, shows=PLATFORM)
        self.counts = CountEdits(
            streamer.redraw, core.sessions.passage_view, core.config.generation.stream_interval_s, failures=SLACK_ERRORS
        )
        self.bot_user_id = ""
        self._showing: set[asyncio.Future[None]] = set()
        self.bolt = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            request_verification_enabled=verify_requests,
            logger=logging.getLogger("slack_bolt"),
            raise_error_for_unhandled_request=True,  # to _on_error: 200 and one line, not Bolt's 404
            process_before_response=True,  # the listener decides when to acknowledge: once stored
        )
        self.bolt.error(self._on_error)
        self.bolt.command("/story")(self._on_command)
        actions = "|".join([*BUTTON_COMMANDS, *RATING_BUTTONS, *render.PICK_BUTTONS, render.BALLOT_ACTION])
        self.bolt.action(re.compile(f"^{render.ACTION_PREFIX}({actions})$"))(self._on_button)
        self.bolt.event("message")(self._on_message)

    async def start(self) -> None:
        """Check the bot token and learn the bot's own user id (for ``@storybot`` commands); from
        then on, the round-robin turn calls can be posted."""
        identity = await self.bolt.client.auth_test()
        self.bot_user_id = str(identity.get("user_id") or "")
        log.info("signed in to Slack workspace %s as %s", identity.get("team"), identity.get("user"))
        self.core.reminders.add_listener(PLATFORM, SlackTurnNotices(self.messages))

    async def close(self) -> None:
        """Let the replies being posted and the pending count edits finish (briefly); bot turns are
        the queue's to wind down."""
        if self._showing:
            await asyncio.wait(set(self._showing), timeout=SHOW_GRACE_S)
        await self.counts.close()

    # ------------------------------------------------------------------ listeners

    async def _on_command(self, ack: Ack, body: dict[str, Any]) -> None:
        delivery = command_delivery(body, self.core.config.slack.mature_channels)
        text = optional_text(body, "text", "the slash command")
        await self._acknowledge(self._decide(delivery, render.plain_text(text)), ack, answer_in_ack=True)

    async def _on_button(self, ack: Ack, body: dict[str, Any]) -> None:
        delivery = button_delivery(body, self.core.config.slack.mature_channels)
        action = body["actions"][0]  # Bolt matched its action_id, so it is an object
        clicked = button_command(action["action_id"].removeprefix(render.ACTION_PREFIX), action.get("value"))
        if clicked is None:
            reply = Reply(Result(NOT_OUR_BUTTON, private=True), delivery)
            await self._acknowledge(_decided(reply), ack, answer_in_ack=False)
            return
        command, story_id = clicked
        await self._acknowledge(self._apply(delivery, command, story_id=story_id), ack, answer_in_ack=False)

    async def _on_message(self, body: dict[str, Any]) -> None:
        """A message: ``@storybot <command>`` anywhere, or a passage in a story's thread.

        Bolt acknowledges an event once this returns: after the passage is stored."""
        event = body["event"]  # Bolt matched its type, so it is an object
        if event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return  # edits, joins, other bots, the bot itself
        delivery = message_delivery(body, event, self.core.config.slack.mature_channels)
        text = optional_text(event, "text", "the message")
        mention = f"<@{self.bot_user_id}>"
        if self.bot_user_id and text.lstrip().startswith(mention):
            await self._acknowledge(self._decide(delivery, render.plain_text(text.lstrip()[len(mention) :])))
        elif delivery.ref.thread:
            await self._acknowledge(self._passage_in_thread(delivery, render.plain_text(text)))

    async def _on_error(self, error: Exception, response: BoltResponse | None) -> BoltResponse | None:
        """Bolt's error handler. A request Slack would never send, or one no listener handles, is the
        sender's business: one line and no traceback, with 400 (200 for an unhandled one: Bolt's 404
        would make Slack retry an event). Anything else is a bug, logged with its traceback, and
        answered 500: nothing was stored, and Slack sends an event again."""
        if isinstance(error, MalformedRequest):
            log.warning("rejected a malformed Slack request with 400: %s", error)
            return BoltResponse(status=400, body=f"{error}\n")
        if isinstance(error, BoltUnhandledRequestError):
            body = error.body
            log.info(
                "ignored a Slack request no listener handles (type %.40r, command %.40r)",
                body.get("type"),
                body.get("command"),
            )
            return BoltResponse(status=200, body="")
        log.error("a Slack request failed: %s", error, exc_info=error)
        return None

    # ------------------------------------------------------------------ acknowledging

    async def _acknowledge(
        self, deciding: Awaitable[Reply | None], ack: Ack | None = None, *, answer_in_ack: bool = False
    ) -> None:
        """Let the core decide (and store), acknowledge, then show the reply.

        ``ack`` None is an event: Bolt acknowledges it when this returns. With ``answer_in_ack``
        (a slash command) a reply for the asker alone is the acknowledgement's own text. Timed for
        the metrics until it returns: with ``process_before_response`` Bolt sends what ``ack`` set
        (or an event's 200) as the listener returns, right after.
        """
        acknowledgement = self.core.metrics.interaction(PLATFORM)
        await self._decide_and_acknowledge(deciding, ack, answer_in_ack)
        acknowledgement.told()

    async def _decide_and_acknowledge(
        self, deciding: Awaitable[Reply | None], ack: Ack | None, answer_in_ack: bool
    ) -> None:
        decision = asyncio.ensure_future(deciding)
        finished, _ = await asyncio.wait({decision}, timeout=ACK_MARGIN_S)
        if not finished:  # the database is slow: say so now, answer when it is done
            log.warning("a Slack request was not stored within %.1f s; acknowledged as working on it", ACK_MARGIN_S)
            if ack is not None:
                await (ack(text=WORKING) if answer_in_ack else ack())
            self._later(self._show_when_decided(decision))
            return
        reply = decision.result()  # (a failure here is an event's: Bolt answers 500 and Slack sends it again)
        if reply is None:
            if ack is not None:
                await ack()
            return
        result = reply.result
        if ack is not None and answer_in_ack and reply.thread is None and _fits_in_ack(result):
            text = result.text if result.ok else problem(result.text)
            self.counts.show(reply.delivery.ref, result)  # a rating's new counts, an interval from now
            await ack(text=render.fallback(text), blocks=render.text_blocks(text))
            self._alert(result)
            return
        if ack is not None:
            await ack()
        self._later(self._show(reply))

    async def _show_when_decided(self, decision: asyncio.Future[Reply | None]) -> None:
        reply = await decision
        if reply is not None:
            await self._show(reply)

    def _later(self, showing: Awaitable[None]) -> None:
        """Post a reply in the background, after the acknowledgement; close() waits for it."""
        task = asyncio.ensure_future(showing)
        self._showing.add(task)
        task.add_done_callback(self._shown)

    def _shown(self, task: asyncio.Future[None]) -> None:
        self._showing.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a Slack request failed after its acknowledgement", exc_info=error)

    # ------------------------------------------------------------------ applying commands

    async def _decide(self, delivery: Delivery, text: str) -> Reply:
        """Parse ``/story`` text with the shared grammar and apply it; bad input gets its one-line error."""
        try:
            command = c.parse(text)
        except c.ParseError as error:
            return Reply(Result.error(str(error)), delivery)
        return await self._apply(delivery, command)

    async def _passage_in_thread(self, delivery: Delivery, text: str) -> Reply | None:
        """A reply in a story's thread is a passage; in any other thread it is none of ours."""
        if await self.core.sessions.running_story_id(delivery.ref) is None:
            return None
        return await self._apply(delivery, c.Add(text))

    async def _apply(self, delivery: Delivery, command: c.Command, *, story_id: int | None = None) -> Reply:
        try:
            actor = await self.people.actor(delivery.ref.workspace, delivery.user_id, delivery.user_name)
            if isinstance(command, c.Start) and command.thread and not delivery.ref.thread:
                return await self._start_in_thread(delivery, actor, command)
            if isinstance(command, c.Branch):
                return await self._branch_in_thread(delivery, actor, command)
            result = await self.core.sessions.handle(
                delivery.ref, actor, command, event_id=delivery.event_id, story_id=story_id
            )
        except Exception:
            log.exception("/story %s failed in %s", command.name, delivery.ref.key)
            result = Result.error(PROBLEM)
        return Reply(result, delivery)

    async def _start_in_thread(self, delivery: Delivery, actor: Actor, command: c.Start) -> Reply:
        """``/story start thread:true``: a message in the channel opens the thread that holds the story."""
        # That message names the title: the checks judge it before anyone can see it.
        refusal = await self.core.sessions.refusal(delivery.ref, command)
        if refusal is not None:
            return Reply(Result.error(refusal), delivery)
        opening = f"📖 {actor.name} is starting “{command.title or 'a story'}” in this thread…"
        return await self._in_new_thread(delivery, opening, actor, command)

    async def _branch_in_thread(self, delivery: Delivery, actor: Actor, command: c.Branch) -> Reply:
        """``/story branch``: a message in the story's channel opens the branch's thread (under the
        channel when typed in a story's thread: Slack threads do not nest)."""
        source = await self.core.sessions.branch_source(delivery.ref)
        if source is None:  # the core says why (no story runs here)
            return Reply(await self.core.sessions.handle(delivery.ref, actor, command), delivery)
        in_channel = dataclasses.replace(delivery, ref=dataclasses.replace(delivery.ref, thread=""))
        opening = f"🌿 {actor.name} is branching “{source.title}” in this thread…"
        branch = dataclasses.replace(command, from_story_id=source.story_id)
        return await self._in_new_thread(in_channel, opening, actor, branch)

    async def _in_new_thread(
        self, delivery: Delivery, opening: str, actor: Actor, command: c.Start | c.Branch
    ) -> Reply:
        """Post ``opening`` in the channel; its replies are the thread the core puts the story in."""
        try:
            ts = await self.messages.post(delivery.ref, render.note_blocks(opening), opening)
        except SLACK_ERRORS as error:
            log.warning("cannot post in %s: %s", delivery.ref.key, error)
            return Reply(Result.error(NOT_IN_CHANNEL), delivery)
        thread = _Thread(self, delivery, ts)
        result = await thread.start(self.core.sessions, actor, command, delivery.event_id)
        return Reply(result, thread.delivery, thread)

    async def _show(self, reply: Reply) -> None:
        """The result in Slack's idiom: to the asker only, in the channel, or as a shared file."""
        if reply.thread is not None:
            await reply.thread.finish(reply.result)
            return
        result, delivery = reply.result, reply.delivery
        if result.duplicate:
            log.info("delivery %s was already applied; nothing to do", delivery.event_id)
            return
        self._alert(result)
        if not result.ok:
            await self._tell(delivery, problem(result.text))
        elif result.private:
            self.counts.show(delivery.ref, result)  # a rating's new counts, an interval from now
            await self._tell(delivery, result.text)
        elif result.attachment is not None:
            try:
                await self.messages.upload(delivery.ref, result.attachment, result.text)
            except SLACK_ERRORS as error:
                log.warning("file upload failed in %s: %s", delivery.ref.key, error)
                await self._tell(delivery, problem("Slack did not take the file; please try the export again."))
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
            await self._tell(delivery, problem(NOT_IN_CHANNEL))
            return None

    def _alert(self, result: Result) -> None:
        """A report's message for the moderators, sent beside the reply once the request is
        acknowledged (so it never delays the acknowledgement)."""
        if result.alert is not None:
            self._later(self._send_alert(result.alert))

    async def _send_alert(self, alert: ModeratorAlert) -> None:
        """To ``slack.moderators_channel``, else to the story's starter (the app's direct messages
        with them). A failure is logged: the reporter was answered, and the report is in the audit log."""
        to = self.core.config.slack.moderators_channel or alert.starter_id
        try:
            await self.messages.send_to(to, alert.text)
        except SLACK_ERRORS as error:
            log.warning("cannot send a report to the moderators in %s: %s", to, error)

    async def _tell(self, delivery: Delivery, text: str) -> None:
        try:
            await self.messages.tell(delivery.ref, delivery.user_id, text, delivery.response_url)
        except SLACK_ERRORS as error:
            log.warning("cannot reach %s in %s: %s", delivery.user_id, delivery.ref.key, error)


class _Thread(StoryThread):
    """A story's thread in Slack: the replies to an opening message the bot posts in the channel."""

    def __init__(self, story: SlackStory, delivery: Delivery, opening: str) -> None:
        self.delivery = dataclasses.replace(delivery, ref=dataclasses.replace(delivery.ref, thread=opening))
        super().__init__(self.delivery.ref)
        self.story = story
        self.channel = delivery.ref
        self.opening = opening

    async def show(self, result: Result) -> None:
        """The opening message becomes the story's first lines; the opening passage follows in the thread."""
        blocks = [*render.text_blocks(result.text), *render.note_blocks(THREAD_HINT)]
        await self.story.messages.update(self.channel, self.opening, blocks, result.text)
        if result.passage is not None:
            await self.story._show(Reply(dataclasses.replace(result, text=""), self.delivery))

    async def take_back(self, result: Result) -> None:
        await self.story.messages.delete(self.channel, self.opening)
        if not result.duplicate:  # (a delivery applied before was answered then)
            await self.story._tell(self.delivery, problem(result.text))


async def _decided(reply: Reply) -> Reply:
    return reply


def button_command(action: str, value: object) -> tuple[c.Command, int] | None:
    """The command a click on the button ``action`` asks for, with the story id from its value;
    None for a value the bot never wrote (it writes ASCII digits: ``render.buttons``)."""
    if not isinstance(value, str):
        return None
    if action in RATING_BUTTONS:
        rated = RATING_VALUE.fullmatch(value)
        if rated is None:
            return None
        return c.Rate(RATING_BUTTONS[action], passage_id=int(rated["passage_id"])), int(rated["story_id"])
    if action in render.PICK_BUTTONS:
        picked = PICK_VALUE.fullmatch(value)
        if picked is None:
            return None
        return c.Pick(int(picked["number"]), passage_id=int(picked["passage_id"])), int(picked["story_id"])
    if action == render.BALLOT_ACTION:
        voted = BALLOT_VALUE.fullmatch(value)
        if voted is None:
            return None
        return c.VoteFor(int(voted["number"]), job_id=int(voted["job_id"])), int(voted["story_id"])
    return (BUTTON_COMMANDS[action](), int(value)) if STORY_ID.fullmatch(value) else None


def _fits_in_ack(result: Result) -> bool:
    """A reply for the asker alone that one message holds: the slash command's acknowledgement carries it."""
    if result.duplicate or result.attachment is not None or not (result.private or not result.ok):
        return False
    return len(render.batches(render.text_blocks(result.text))) == 1


# ---------------------------------------------------------------------- reading deliveries


def _channel(team: str, channel: str, thread: str, mature_channels: Collection[str]) -> ChannelRef:
    """Where a delivery came from. Slack says nothing of a channel's audience, so the config does:
    a channel listed in ``slack.mature_channels`` (and its threads) is for adults."""
    return ChannelRef(PLATFORM, team, channel, thread, age_restricted=channel in mature_channels)


def command_delivery(body: Fields, mature_channels: Collection[str]) -> Delivery:
    """Who ran ``/story`` where. Slack sends each required field with every command, so one missing
    is a malformed request (``MalformedRequest``: 400), not a ``KeyError`` after the acknowledgement."""
    where = "the slash command"
    ref = _channel(
        optional_text(body, "team_id", where),
        required_text(body, "channel_id", where),
        optional_text(body, "thread_ts", where),
        mature_channels,
    )
    return Delivery(
        ref,
        required_text(body, "user_id", where),
        optional_text(body, "user_name", where),
        required_text(body, "trigger_id", where),
        optional_text(body, "response_url", where) or None,
    )


def button_delivery(body: Fields, mature_channels: Collection[str]) -> Delivery:
    """Who clicked a passage button, under which message; a required field missing is a malformed request."""
    where = "the button click"
    user = required_object(body, "user", where)
    container = optional_object(body, "container", where)
    thread = optional_text(container, "thread_ts", "the button click's container")
    if thread == optional_text(container, "message_ts", "the button click's container"):
        thread = ""  # a channel-level passage that people replied to: not a story thread
    team = optional_text(optional_object(body, "team", where), "id", "the button click's team")
    channel = required_object(body, "channel", where)
    ref = _channel(
        team or optional_text(user, "team_id", "the button click's user"),
        required_text(channel, "id", "the button click's channel"),
        thread,
        mature_channels,
    )
    return Delivery(
        ref,
        required_text(user, "id", "the button click's user"),
        optional_text(user, "username", "the button click's user"),
        required_text(body, "trigger_id", where),
        optional_text(body, "response_url", where) or None,
    )


def message_delivery(body: Fields, event: Fields, mature_channels: Collection[str]) -> Delivery:
    """Who wrote a message where, and the envelope's ``event_id`` (kept on Slack's retries); a required
    field missing is a malformed request, which Bolt has already acknowledged, so it is only logged."""
    where = "the message event"
    ref = _channel(
        optional_text(body, "team_id", "the event"),
        required_text(event, "channel", where),
        optional_text(event, "thread_ts", where),
        mature_channels,
    )
    return Delivery(ref, required_text(event, "user", where), "", required_text(body, "event_id", "the event"))
