"""``/story start thread:true`` and ``/story branch``: a story in a thread of its own, the same
flow on every platform.

The platform opens the thread (a Discord thread, or the Slack message whose replies make one),
the core starts the story there, stored with the delivery's event id, and the thread then shows
the story's first lines, or is taken back when the story did not start in it: the rules refused
it, or the delivery was applied before (its story lives in the thread opened the first time).
Slack tells the asker between the two steps (``start``, then ``finish`` after the
acknowledgement); Discord does both before it answers.

A branch's thread opens under the channel the story runs in: typed in a story's thread, under
that thread's channel (neither platform nests threads). The command carries the story it copies
(``Branch.from_story_id``, the one running where it was typed), since the thread holds none yet.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot import commands as c
from bot.identity import Actor, ChannelRef
from bot.results import Result
from bot.sessions import SessionManager

__all__ = ["StoryThread"]


class StoryThread(ABC):
    """A thread just opened for a story; the platform says how it shows and takes back."""

    def __init__(self, ref: ChannelRef) -> None:
        self.ref = ref

    async def start(self, sessions: SessionManager, actor: Actor, command: c.Start | c.Branch, event_id: str) -> Result:
        """Have the core start the story (or the branch) in this thread (and store it)."""
        return await sessions.handle(self.ref, actor, command, event_id=event_id)

    async def finish(self, result: Result) -> bool:
        """Show the story's first lines in the thread, or take the thread back; True when the
        story lives in the thread."""
        if result.ok and not result.duplicate:
            await self.show(result)
            return True
        await self.take_back(result)
        return False

    @abstractmethod
    async def show(self, result: Result) -> None:
        """The story started here: show its first lines (the start, the opening passage)."""

    @abstractmethod
    async def take_back(self, result: Result) -> None:
        """The story did not start here: remove the thread, and say why if there is a reason."""
