"""A bot turn, live on a chat platform: "writing…", then the text so far, then the end.

The generation queue paces a turn's text (its one throttle, ``generation.stream_interval_s``:
the newest text, an interval after the listeners were done with the last one) and tells every
listener a turn's start, progress and end. A :class:`TurnStreamer` is the
listener for one platform: per turn it keeps the platform's :class:`LiveTurn` (the messages that
show it) and shows each event as it comes, with no pace of its own. A slow platform delays only
that turn's next text, which then comes newest-only.

Order, per turn: "writing…" first (whichever of start and progress comes first shows it, the
other waits for it), then the texts one at a time, then the end; the queue tells the end only
once the start and the last progress are done. A turn shown late (its process died, or this one
restarted) gets only its end, in the messages the job names (``JobSpec.message_ref``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Protocol

from bot.jobs import JobSpec
from bot.results import Result

__all__ = ["LiveTurn", "TurnStreamer"]


class LiveTurn(Protocol):
    """The messages that show one bot turn on a platform; each call returns once it is shown."""

    async def begin(self) -> str | None:
        """Show that the bot is writing, in the job's messages if it names any; returns the ref of
        the messages that show the turn. A platform failure is logged, not raised: the text and
        the end can still be shown."""

    async def progress(self, text: str) -> str | None:
        """Show the text so far; returns the ref of the messages that show the turn. A platform
        failure is logged, not raised: the next text, or the end, shows newer text anyway."""

    async def end(self, result: Result | None) -> str | None:
        """Show the end: ``result`` with the stored passage, the candidates for a vote, or an
        error; None when withdrawn. Returns the ref of the messages that show it. Raises
        ``TurnGone`` when it can never be shown, anything else to be shown again later."""


class _Turn:
    """One turn being shown by this process, and its "writing…" once it was asked for."""

    def __init__(self, live: LiveTurn) -> None:
        self.live = live
        self._begun: asyncio.Future[str | None] | None = None

    async def begin(self) -> str | None:
        """Show "writing…" once, however many ask; the others wait for it (a cancelled asker
        does not stop it)."""
        if self._begun is None:
            self._begun = asyncio.ensure_future(self.live.begin())
        return await asyncio.shield(self._begun)


class TurnStreamer(ABC):
    """Queue listener that shows one platform's bot turns as they are written."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self._turns: dict[int, _Turn] = {}

    @abstractmethod
    def live_turn(self, job: JobSpec) -> LiveTurn:
        """The messages that will show ``job``'s turn (none sent yet)."""

    def _turn(self, job: JobSpec) -> _Turn:
        turn = self._turns.get(job.job_id)
        if turn is None:
            turn = self._turns[job.job_id] = _Turn(self.live_turn(job))
        return turn

    async def turn_started(self, job: JobSpec) -> str | None:
        if job.channel.platform != self.platform:
            return None
        return await self._turn(job).begin()

    async def turn_progress(self, job: JobSpec, text: str) -> str | None:
        if job.channel.platform != self.platform:
            return None
        turn = self._turn(job)
        await turn.begin()
        return await turn.live.progress(text)

    async def turn_finished(self, job: JobSpec, result: Result | None) -> str | None:
        """Show the end; raises if the platform would not take it (the queue shows it again later)."""
        if job.channel.platform != self.platform:
            return None
        # A turn that started in another process, or before a restart, shows only its end here.
        turn = self._turns.pop(job.job_id, None)
        live = turn.live if turn is not None else self.live_turn(job)
        return await live.end(result)
