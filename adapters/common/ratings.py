"""The 👍/👎 counts on a rated passage's own message, edited at the pace of a streaming passage.

A rating is answered privately to the person who voted (by the adapter, first); the counts
everyone sees are in the passage's credit line (``wording.bot_footer``), so the message that
shows the passage is edited to show them. People click in bursts, and each edit is a platform
call with a rate limit (Slack allows about 50 ``chat.update`` a minute), so the edits of one
message keep the pace of a streaming passage (``generation.stream_interval_s``): an edit goes out
an interval after the first rating that needs it, showing the latest counts then, and the next
one no sooner than an interval after it ended. A burst of clicks is one edit with its final counts.
The counts are read from the database when the edit goes out (``fresh``), not taken from the
answers: answers finish in any order, and another process may have taken votes meanwhile.

A pick (``/story pick``, the ◀ ▶ buttons) redraws the same message with another alternative in it
(``Result.picked``): that edit goes out at once, since the picker is looking at it and its
buttons name the passage it shows; edits that follow it keep the pace.

An edit that fails (the message was deleted, the platform said no, the network) is logged and
dropped: the vote is stored and ``/story status`` shows it, and the next rating redraws anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.identity import ChannelRef
from bot.results import PassageView, Result

__all__ = ["CountEdits", "Redraw"]

log = logging.getLogger(__name__)

# A platform's way to show ``passage`` anew in the message(s) ``message_ref`` of ``channel``, as the
# end of its turn showed it (text, credit line, buttons), with the counts the view carries.
Redraw = Callable[[ChannelRef, str, PassageView], Awaitable[None]]
# The passage as stored now (by id), or None when it cannot be read.
Fresh = Callable[[int], Awaitable[PassageView | None]]
CLOSE_GRACE_S = 5.0  # how long close() lets the last edits finish


class CountEdits:
    """The pending count edits of one platform's messages, at most one per message per interval."""

    def __init__(
        self, redraw: Redraw, fresh: Fresh, interval_s: float, *, failures: tuple[type[BaseException], ...] = ()
    ) -> None:
        """``failures`` are the errors the platform's edits meet in normal life (logged in one line);
        anything else is a bug, logged with its traceback. Neither reaches the person who voted."""
        self.redraw = redraw
        self.fresh = fresh
        self.interval_s = interval_s
        self.failures = failures
        self._latest: dict[tuple[str, str], tuple[ChannelRef, PassageView]] = {}
        self._editing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._closing = asyncio.Event()

    def show(self, channel: ChannelRef, result: Result) -> None:
        """If ``result`` is a rating that changed the counts, or a pick, have its passage's message
        show them (or it).

        Returns at once: the edit comes later, so the adapter answers the voter first.
        """
        if not result.ok or result.passage is None or not result.message_ref or self._closing.is_set():
            return
        key = (channel.key, result.message_ref)
        self._latest[key] = (channel, result.passage)
        if key not in self._editing:
            self._editing[key] = asyncio.ensure_future(self._edit_while_rated(key, at_once=result.picked))

    async def _edit_while_rated(self, key: tuple[str, str], *, at_once: bool) -> None:
        """Edit the message an interval after its first new counts (at once for a pick), then again
        an interval after each edit for as long as new counts came meanwhile."""
        try:
            if not at_once:
                await self._pause()
            while (latest := self._latest.pop(key, None)) is not None:
                await self._edit(key[1], *latest)
                await self._pause()
        finally:
            del self._editing[key]

    async def _pause(self) -> None:
        """An interval, cut short by ``close``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.interval_s)

    async def _edit(self, message_ref: str, channel: ChannelRef, passage: PassageView) -> None:
        try:
            passage = await self.fresh(passage.id) or passage
            await self.redraw(channel, message_ref, passage)
        except self.failures as error:
            log.warning("could not show the new counts of passage %d in %s: %s", passage.id, channel.key, error)
        except Exception:
            log.exception("showing the new counts of passage %d in %s failed", passage.id, channel.key)

    async def close(self) -> None:
        """Make the pending edits now (briefly), then stop taking new ones."""
        self._closing.set()
        editing = set(self._editing.values())
        if not editing:
            return
        _, late = await asyncio.wait(editing, timeout=CLOSE_GRACE_S)
        for task in late:
            task.cancel()
