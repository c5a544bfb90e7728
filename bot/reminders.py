"""The stories' clocks: the background task that tells each round-robin story's channel whose turn
it is, reminds them once, and says when they were skipped (what is owed, and when, is
``bot.turns``), and that closes the votes on the bot's candidates whose time is up (``bot.votes``:
the winner is then shown through the queue's outbox).

It runs beside the generation queue in every bot process (``open_app`` starts and stops it) and
keeps nothing a crash could lose: what was said is on the story rows, claimed in the transaction
that decides it, so each notice is said once, by one process, across restarts. (A crash between
the claim and the platform's answer loses that one notice rather than say it twice.) It looks
again as soon as a command changed something or a bot turn ended, and otherwise every ``every_s``
seconds, for the reminders and skips that time alone brings.

Each platform says the notices of its stories through a ``TurnNotices`` listener it adds
(``add_listener``): a message that mentions that one person and lets nothing else ping. A notice
the platform would not take is given back and claimed again, later each time for that story;
one whose channel is gone for good (``TurnGone``) is not. Like the queue's worker, the task
survives its own errors (the first of a run logged with its traceback, then a growing pause), and
a supervisor starts it again should it end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Protocol

from bot.config import StoryConfig
from bot.failures import FIRST_BACKOFF_S, MAX_BACKOFF_S, FailureRun
from bot.generation.queue import TurnGone
from bot.jobs import JobSpec
from bot.results import Result
from bot.sessions import SessionManager
from bot.turns import TurnNotice, duration

log = logging.getLogger(__name__)

MAX_EVERY_S = 5.0  # the longest wait between looks at the stories
MAX_RETRY_S = 300.0  # a story whose notice the platform refused is tried again after at most this
STOP_GRACE_S = 5.0  # how long stop() lets notices being said finish


class TurnNotices(Protocol):
    """What a platform implements to say its stories' turn notices."""

    async def turn_notice(self, notice: TurnNotice) -> None:
        """Say ``notice`` in its channel: ``notice.to`` mentioned (pinged) and nothing else able to
        ping. Returns once the platform took it; raises ``TurnGone`` when its channel is gone for
        good, anything else when it may take it later."""


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` have passed. (Not ``wait_for``: on Python 3.11 it loses
    a cancellation that comes just as the event is set, and a killed task would carry on unseen.)"""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


def _every(story: StoryConfig) -> float:
    """How often to look: a tenth of the shortest time a notice waits for, at most ``MAX_EVERY_S``."""
    waits = [
        story.round_robin_timeout_s,
        story.vote_timeout_s,
        *([story.remind_after_s] if story.remind_after_s > 0 else []),
    ]
    return min(MAX_EVERY_S, min(waits) / 10)


class Reminders:
    """The supervised task that claims turn notices and hands them to the platforms' listeners.

    It is also a generation queue listener (``queue.add_listener``): a bot turn that ends begins a
    round-robin story's next round, whose first turn is called at once.
    """

    def __init__(self, rules: SessionManager, *, every_s: float | None = None) -> None:
        self.rules = rules
        self.every_s = every_s if every_s is not None else _every(rules.config.story)
        self.restarts = 0  # times the supervisor had to start the task again
        self._listeners: dict[str, TurnNotices] = {}
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self._saying: dict[int, asyncio.Task[None]] = {}  # story id -> its notice being said
        self._retry: dict[int, tuple[float, float]] = {}  # story id -> (when to try again, the wait after that)
        self._failures = FailureRun("the turn reminders task", log)
        rules.on_turns_changed(self.wake)

    def add_listener(self, platform: str, listener: TurnNotices) -> None:
        """``listener`` says the notices of ``platform``'s stories from now on (add it once the
        platform can send: notices are claimed for it from the next look)."""
        self._listeners[platform] = listener
        self.wake()

    def wake(self) -> None:
        """Something changed: look at the stories now rather than at the next tick."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        self._stopping = False
        self._stopped.clear()
        self._start_worker()

    async def stop(self) -> None:
        """Stop looking; notices being said get ``STOP_GRACE_S`` to finish, then are cancelled (and
        lost: they were claimed)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()  # the worker waits on it: let it see the stop at once
        tasks = [task for task in (self._worker, *self._saying.values()) if task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._worker = None

    # ------------------------------------------------------------------ the generation queue's news

    async def turn_started(self, job: JobSpec) -> None:
        return None

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        return None

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        self.wake()

    # ------------------------------------------------------------------ the task

    def _start_worker(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="turn-reminders")
        self._worker.add_done_callback(self._supervise)

    def _supervise(self, worker: asyncio.Task[None]) -> None:
        """The task ended: expected when stopping; otherwise say so and start it again."""
        if self._stopping or worker is not self._worker:
            return
        reason = "was cancelled" if worker.cancelled() else f"died: {worker.exception()!r}"
        self.restarts += 1
        log.error("the turn reminders task %s; starting it again (restart %d)", reason, self.restarts)
        self._start_worker()

    async def _work(self) -> None:
        """Wait for news or the next tick, then claim and hand out what is owed; survive every error."""
        backoff = FIRST_BACKOFF_S
        while not self._stopping:
            await _wait(self._wake, self.every_s)
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self.rules.close_due_votes()
                await self._call_turns()
            except Exception as error:
                self._failures.failed(error)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._failures.succeeded()
            backoff = FIRST_BACKOFF_S

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopping."""
        await _wait(self._stopped, seconds)

    async def _call_turns(self) -> None:
        """Claim what is owed on our platforms, but not for a story whose notice is being said or
        waits to be tried again; say each in a task of its own, so a slow platform holds up nothing."""
        if not self._listeners:
            return
        now = time.monotonic()
        waiting = {story for story, (at, _) in self._retry.items() if at > now} | set(self._saying)
        for notice in await self.rules.claim_turn_notices(list(self._listeners), skip=waiting):
            task = asyncio.create_task(self._say(notice), name=f"turn-notice-{notice.story_id}")
            self._saying[notice.story_id] = task
            task.add_done_callback(partial(self._said, notice.story_id))

    def _said(self, story_id: int, task: asyncio.Task[None]) -> None:
        self._saying.pop(story_id, None)

    async def _say(self, notice: TurnNotice) -> None:
        try:
            await self._listeners[notice.channel.platform].turn_notice(notice)
        except TurnGone as gone:
            log.warning("a turn notice of story %d cannot be said: %s", notice.story_id, gone)
        except Exception as error:
            await self._give_back(notice, error)
            return
        self._retry.pop(notice.story_id, None)

    async def _give_back(self, notice: TurnNotice, error: Exception) -> None:
        """The platform did not take it: owe it again, and try that story again a while later."""
        wait = self._retry.get(notice.story_id, (0.0, self.every_s))[1]
        self._retry[notice.story_id] = (time.monotonic() + wait, min(wait * 2, MAX_RETRY_S))
        log.warning(
            "a turn notice of story %d was not taken (%s); trying again in %s", notice.story_id, error, duration(wait)
        )
        try:
            await self.rules.release_turn_notice(notice)
        except Exception as failure:  # the database failed too: that one notice is lost
            log.warning("a turn notice of story %d could not be given back: %s", notice.story_id, failure)
