"""The bot's turns, live in Slack: one message, edited with ``chat.update`` as the passage grows.

The shared :class:`~adapters.common.streaming.TurnStreamer` over a Slack message. A turn's
message says "storybot is writing…", then shows the text so far as the queue hands it over
(``chat.update`` is rate limited to about 50 calls a minute, which ``generation.stream_interval_s``
keeps to), and when the turn ends it becomes the stored passage with its Continue / Retry / Undo /
End buttons. An update that fails while streaming is skipped (the next one carries newer text);
the end is what must arrive, and ``turn_finished`` returns only once it has (the queue then marks
the turn shown; if it raises, the turn is shown again later). A turn taken over from a dead
process, or shown late for one, edits that process's message (``JobSpec.message_ref``) rather
than leaving it behind. After a rating, ``redraw`` shows the passage in its message again as
the end showed it, with the new counts in its credit line.
"""

from __future__ import annotations

import logging

from adapters.common.streaming import TurnStreamer
from adapters.common.wording import WITHDRAWN, WRITING_PLACEHOLDER, bot_footer, problem
from adapters.slack_app import render
from adapters.slack_app.messages import SLACK_ERRORS, Messages
from bot.generation.queue import TurnGone
from bot.identity import ChannelRef
from bot.jobs import JobSpec
from bot.results import BOT_NAME, PassageView, Result

log = logging.getLogger(__name__)

PLATFORM = "slack"
# Refusals that no retry will change: the turn can no longer be shown there.
CHANNEL_GONE = frozenset({"channel_not_found", "is_archived", "not_in_channel", "channel_is_archived"})


def finished_passage(passage: PassageView) -> tuple[list[render.Block], str]:
    """A stored bot passage as its message shows it (the credit line with the counts, the
    buttons), and its notification text."""
    blocks = render.passage_blocks(passage, bot_footer(passage), with_buttons=True)
    return blocks, f"{passage.author_name}: {passage.text}"


def final_blocks(result: Result | None) -> tuple[list[render.Block], str]:
    """What a finished turn's message shows, and its notification text."""
    if result is None:
        return render.note_blocks(WITHDRAWN), WITHDRAWN
    if result.ok and result.ballot is not None:
        return render.ballot_blocks(result.ballot), f"{len(result.ballot.candidates)} candidates: vote"
    if not result.ok or result.passage is None:
        text = problem(result.text)
        return render.text_blocks(text), text
    return finished_passage(result.passage)


class _LiveTurn:
    """The message that shows one bot turn (``ts``: None until posted, or if it could not be)."""

    def __init__(self, job: JobSpec, messages: Messages) -> None:
        self.job = job
        self.messages = messages
        self.ts = job.message_ref

    async def begin(self) -> str | None:
        """Post "writing…", or turn the message of a turn taken over from a dead process back to it."""
        ref = self.job.channel
        blocks = render.note_blocks(WRITING_PLACEHOLDER)
        if self.ts is not None:
            try:
                await self.messages.update(ref, self.ts, blocks, WRITING_PLACEHOLDER)
                return self.ts
            except SLACK_ERRORS as error:
                if not _message_gone(error):  # a passing failure: the next edits still go there
                    log.warning("cannot update bot turn %d in %s: %s", self.job.job_id, ref.key, error)
                    return self.ts
        try:
            self.ts = await self.messages.post(ref, blocks, WRITING_PLACEHOLDER)
        except SLACK_ERRORS as error:
            log.warning("cannot post bot turn %d in %s: %s", self.job.job_id, ref.key, error)
            self.ts = None
        return self.ts

    async def progress(self, text: str) -> str | None:
        if self.ts is not None:
            blocks = [*render.text_blocks(text, byline=BOT_NAME), *render.note_blocks(WRITING_PLACEHOLDER)]
            try:
                await self.messages.update(self.job.channel, self.ts, blocks, text)
            except SLACK_ERRORS as error:  # the next update, or the final one, carries newer text
                log.warning("a streaming update of bot turn %d failed: %s", self.job.job_id, error)
        return self.ts

    async def end(self, result: Result | None) -> str | None:
        blocks, text = final_blocks(result)
        if self.ts is not None:
            try:
                await self.messages.update(self.job.channel, self.ts, blocks, text)
                return self.ts
            except SLACK_ERRORS as error:
                if not _message_gone(error):
                    raise
        try:
            # Its message was deleted, or never posted.
            self.ts = await self.messages.post(self.job.channel, blocks, text)
            return self.ts
        except SLACK_ERRORS as error:
            if _slack_error(error) in CHANNEL_GONE:
                raise TurnGone(f"Slack answers {_slack_error(error)} in {self.job.channel.key}") from error
            raise


def _slack_error(error: Exception) -> str | None:
    """The error code of a Web API refusal (``channel_not_found``…); None for a network failure."""
    response = getattr(error, "response", None)
    return response.get("error") if response is not None else None


def _message_gone(error: Exception) -> bool:
    """Slack says the message to edit is not there (deleted by someone): post a new one instead."""
    return _slack_error(error) in ("message_not_found", "cant_update_message")


class SlackStreamer(TurnStreamer):
    """Queue listener that shows Slack channels' bot turns as they are written."""

    def __init__(self, messages: Messages) -> None:
        super().__init__(PLATFORM)
        self.messages = messages

    def live_turn(self, job: JobSpec) -> _LiveTurn:
        return _LiveTurn(job, self.messages)

    async def redraw(self, ref: ChannelRef, message_ref: str, passage: PassageView) -> None:
        """Show the finished ``passage`` again (its new counts) in its message ``message_ref`` (a ts).
        Raises what the Web API raises."""
        await self.messages.update(ref, message_ref, *finished_passage(passage))
