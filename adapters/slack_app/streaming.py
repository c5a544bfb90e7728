"""The bot's turns, live in Slack: one message, edited with ``chat.update`` as the passage grows.

A queue listener. Each Slack bot turn gets its own task, so a slow or rate-limited Slack never
holds up the generation queue or other channels: the task posts "storybot is writing…", then
shows the newest text at most once per ``slack.stream_update_interval_s`` (``chat.update`` is
rate limited to about 50 calls a minute), and when the turn ends replaces the message with the
stored passage and its Continue / Retry / Undo / End buttons. An edit that fails while streaming
is skipped (the next one carries the newer text); the final edit is what must arrive, and
``turn_finished`` returns only once it has (the queue then marks the turn shown; if it raises,
the turn is shown again later). A turn taken over from a dead process, or shown late for one,
edits that process's message (``JobSpec.message_ref``) rather than leaving it behind.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.slack_app import render
from adapters.slack_app.messages import SLACK_ERRORS, Messages
from bot.generation.queue import TurnGone
from bot.results import Result
from bot.sessions import BOT_NAME, JobSpec

log = logging.getLogger(__name__)

PLATFORM = "slack"
WRITING = f"✍️ {BOT_NAME} is writing…"
WITHDRAWN = f"{BOT_NAME}'s turn was withdrawn."
# Refusals that no retry will change: the turn can no longer be shown there.
CHANNEL_GONE = frozenset({"channel_not_found", "is_archived", "not_in_channel", "channel_is_archived"})


def footer(job: JobSpec, number: int) -> str:
    """Who asked for the bot's passage: the credit line under it."""
    if job.kind == "retry":
        return f"passage {number} · rewritten at {job.requested_by}'s request"
    return f"passage {number} · asked by {job.requested_by}"


def final_blocks(job: JobSpec, result: Result | None) -> tuple[list[render.Block], str]:
    """What a finished turn's message shows, and its notification text."""
    if result is None:
        return render.note_blocks(WITHDRAWN), WITHDRAWN
    if not result.ok or result.passage is None:
        text = f"⚠️ {result.text}"
        return render.text_blocks(text), text
    passage = result.passage
    blocks = render.passage_blocks(passage, footer(job, passage.number), with_buttons=True)
    return blocks, f"{passage.author_name}: {passage.text}"


class _LiveTurn:
    """One bot turn's message and the task that keeps it up to date."""

    def __init__(self, job: JobSpec, messages: Messages, interval: float) -> None:
        self.job = job
        self.messages = messages
        self.interval = interval
        self.latest: str | None = None
        self.changed = asyncio.Event()
        self.done = asyncio.Event()
        self.result: Result | None = None
        self.posted: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Show "writing…" and the text so far, then the end; raises if the end could not be shown."""
        ts = self.job.message_ref
        try:
            if not self.done.is_set():  # (a turn shown late, for a dead process, is only its end)
                ts = await self._writing(ts)
                self.posted.set_result(ts)
                await self._stream(ts)
        finally:
            if not self.posted.done():
                self.posted.set_result(ts)
        blocks, text = final_blocks(self.job, self.result)
        if ts is not None:
            try:
                await self.messages.update(self.job.channel, ts, blocks, text)
                return
            except SLACK_ERRORS as error:
                if not _message_gone(error):
                    raise
        try:
            await self.messages.post(self.job.channel, blocks, text)  # its message was deleted, or never posted
        except SLACK_ERRORS as error:
            if _slack_error(error) in CHANNEL_GONE:
                raise TurnGone(f"Slack answers {_slack_error(error)} in {self.job.channel.key}") from error
            raise

    async def _writing(self, ts: str | None) -> str | None:
        """Post "writing…", or turn the message of a turn taken over from a dead process back to it."""
        ref = self.job.channel
        blocks = render.note_blocks(WRITING)
        if ts is not None:
            try:
                await self.messages.update(ref, ts, blocks, WRITING)
                return ts
            except SLACK_ERRORS as error:
                if not _message_gone(error):  # a passing failure: the next edits still go there
                    log.warning("cannot update bot turn %d in %s: %s", self.job.job_id, ref.key, error)
                    return ts
        try:
            return await self.messages.post(ref, blocks, WRITING)
        except SLACK_ERRORS as error:
            log.warning("cannot post bot turn %d in %s: %s", self.job.job_id, ref.key, error)
            return None

    async def _stream(self, ts: str | None) -> None:
        while not self.done.is_set():
            await self._next_change()
            text, self.latest = self.latest, None
            if text and ts is not None and not self.done.is_set():
                blocks = [*render.text_blocks(text, byline=BOT_NAME), *render.note_blocks(WRITING)]
                try:
                    await self.messages.update(self.job.channel, ts, blocks, text)
                except SLACK_ERRORS as error:  # the next edit, or the final one, carries newer text
                    log.warning("a streaming update of bot turn %d failed: %s", self.job.job_id, error)
                await self._rest()

    async def _next_change(self) -> None:
        """Wait for new text or the end of the turn."""
        waiters = [asyncio.ensure_future(self.changed.wait()), asyncio.ensure_future(self.done.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.changed.clear()

    async def _rest(self) -> None:
        """Keep to the update rate, but stop resting as soon as the turn ends."""
        try:
            await asyncio.wait_for(self.done.wait(), self.interval)
        except TimeoutError:
            pass


def _slack_error(error: Exception) -> str | None:
    """The error code of a Web API refusal (``channel_not_found``…); None for a network failure."""
    response = getattr(error, "response", None)
    return response.get("error") if response is not None else None


def _message_gone(error: Exception) -> bool:
    """Slack says the message to edit is not there (deleted by someone): post a new one instead."""
    return _slack_error(error) in ("message_not_found", "cant_update_message")


class TurnStreamer:
    """Queue listener that shows Slack channels' bot turns as they are written."""

    def __init__(self, messages: Messages, interval: float) -> None:
        self.messages = messages
        self.interval = interval
        self._turns: dict[int, _LiveTurn] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _live(self, job: JobSpec) -> _LiveTurn:
        live = self._turns.get(job.job_id)
        if live is None:
            live = self._turns[job.job_id] = _LiveTurn(job, self.messages, self.interval)
            live.task = asyncio.create_task(live.run(), name=f"slack-turn-{job.job_id}")
            self._tasks.add(live.task)
            live.task.add_done_callback(self._tasks.discard)
        return live

    async def turn_started(self, job: JobSpec) -> str | None:
        if job.channel.platform != PLATFORM:
            return None
        return await asyncio.shield(self._live(job).posted)

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        if job.channel.platform == PLATFORM:
            live = self._live(job)
            live.latest = text
            live.changed.set()

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        if job.channel.platform != PLATFORM:
            return
        # A turn that started in another process, or before a restart, begins here: its task
        # has not run yet, so it sees the turn ended and shows only the end.
        live = self._live(job)
        del self._turns[job.job_id]
        live.result = result
        live.done.set()
        assert live.task is not None
        await asyncio.shield(live.task)

    async def close(self) -> None:
        """Let the turns being shown finish their last edit (briefly), then stop."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for task in set(self._tasks):
            task.cancel()
