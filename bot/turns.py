"""Round-robin turn order, in one place: whose turn it is, ``/story turn``, and what the bot owes a
channel about its turns.

A turn is computed, never ticked: ``stories.turn_index`` and ``turn_started_at`` say whose turn
began when (at the last passage, undo, leave or change of mode), and every
``story.round_robin_timeout_s`` that has passed since then skips one person. The rules, the
status, ``/story turn`` and the notices all read the same turn from those two columns, in
whichever process asks.

What the bot owes a channel follows from that turn and from what it last said of it
(``turn_called_id``, ``turn_called_at``, ``turn_call``):

- a **call** when the turn is someone's it has not called yet (after a passage, an undo, a leave,
  or a skip: "Alice was skipped; it's your turn"), mentioning that one person;
- one **reminder** ``story.remind_after_s`` into the turn (none when that would not come before
  the skip, and none for a turn called after its reminder's time: the call says how long is left);
- after a whole round of skips, one **quiet** notice that mentions nobody, then silence until
  someone writes: a story its people left is not pinged forever.

Nothing is owed while the bot writes its passage for the round. ``claim_turn_notices`` records
each notice in the transaction that decides it (the story row locked), so one process says it,
once, across restarts; a notice the platform would not take is given back
(``release_turn_notice``) and claimed again later. ``bot.reminders`` runs the claims on its own
schedule and hands the notices to the platforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.config import Config
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from storage import queries as q
from storage.database import Database
from storage.models import JobStatus, Participant, Story, StoryStatus, TurnCall, utcnow

TURNS: Handlers[TurnRules] = Handlers()

ROUND_ROBIN = c.Mode.ROUND_ROBIN.value
# What /story turn says of a story that takes no turns, by its mode.
_NO_TURNS = {
    c.Mode.ALTERNATE.value: "anyone may write, and the bot answers each passage (alternate mode)",
    c.Mode.FREE.value: "anyone may write, and /story continue asks the bot (free mode)",
}


@dataclass(frozen=True, slots=True)
class _Turn:
    """Whose turn it is: an index into the active participants, when that turn began, and how many
    turns were skipped to get there since the last passage (or undo, leave, change of mode)."""

    index: int
    began: datetime
    skipped: int


@dataclass(frozen=True, slots=True)
class Said:
    """What the bot last said of a story's turns: whose turn (None: nobody's, the quiet notice),
    when that turn began, and how far it went (a ``TurnCall``). None everywhere: nothing yet."""

    user_id: str | None
    turn_at: datetime | None
    call: str | None

    @classmethod
    def of(cls, story: Story) -> Said:
        return cls(story.turn_called_id, story.turn_called_at, story.turn_call)

    def put(self, story: Story) -> None:
        story.turn_called_id, story.turn_called_at, story.turn_call = self.user_id, self.turn_at, self.call


@dataclass(frozen=True, slots=True)
class TurnNotice:
    """One thing the bot says in a story's channel about its turns.

    ``to`` is the one person it mentions, which the platform turns into a ping of them alone
    (``<@id>``, the console's arrow) put before ``text``, which is addressed to them; None mentions
    nobody. ``text`` is plain: the platform escapes all of it, names and titles people chose
    included, so nothing in it can ping. ``said`` is what claiming it recorded, ``before`` what
    was recorded until then (put back if the platform would not take it).
    """

    story_id: int
    channel: ChannelRef
    to: Actor | None
    text: str
    said: Said
    before: Said


def duration(seconds: float) -> str:
    """``2 min 10 s``, ``45 s``, ``1 h 5 min``: a time to write, rounded up to the second."""
    hours, rest = divmod(max(1, math.ceil(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if secs and not hours:
        parts.append(f"{secs} s")
    return " ".join(parts)


def _names(names: Sequence[str]) -> str:
    """``Alice``, ``Alice and Bob``, ``Alice, Bob and Carol``, ``Alice, Bob and 2 others``."""
    if len(names) > 3:
        names = [*names[:2], f"{len(names) - 2} others"]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class TurnRules(StoryRules):
    """The rules about whose turn it is (see the module docstring)."""

    def __init__(self, db: Database, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(db, config, clock=clock)
        self._turn_listeners: list[Callable[[], None]] = []

    def on_turns_changed(self, callback: Callable[[], None]) -> None:
        """Register a callback run after every committed change (a passage, a join, a leave…):
        a turn may have moved, and its call is owed at once rather than at the next look."""
        self._turn_listeners.append(callback)

    def _turns_changed(self) -> None:
        for callback in self._turn_listeners:
            callback()

    # ------------------------------------------------------------------ whose turn

    @property
    def _timeout(self) -> timedelta:
        return timedelta(seconds=self.config.story.round_robin_timeout_s)

    def _turn_now(self, story: Story, people: Sequence[Participant]) -> _Turn:
        """Whose turn it is among ``people`` (at least one), one skipped per timeout passed."""
        elapsed = self.clock() - story.turn_started_at
        skipped = max(0, math.floor(elapsed / self._timeout))
        index = (story.turn_index + skipped) % len(people)
        return _Turn(index, story.turn_started_at + skipped * self._timeout, skipped)

    def _left(self, turn: _Turn) -> str:
        return duration((turn.began + self._timeout - self.clock()).total_seconds())

    @staticmethod
    def _after(people: Sequence[Participant], turn: _Turn) -> str:
        """What follows the turn, for the text in brackets: the next writer, or the bot's passage."""
        if len(people) == 1:
            return ""
        if turn.index == len(people) - 1:
            return "; then the bot writes"
        return f"; {people[turn.index + 1].name} is next"

    def _turn_text(self, story: Story, people: Sequence[Participant], asker: Actor | None = None) -> str:
        """Whose turn it is and how long they have ("your" turn to ``asker``); "" for a story that
        takes no turns."""
        if story.mode != ROUND_ROBIN:
            return ""
        if not people:
            return "Nobody has joined yet: type /story join."
        turn = self._turn_now(story, people)
        person = people[turn.index]
        whose = "your" if asker is not None and asker.user_id == person.user_id else f"{person.name}'s"
        return f"It's {whose} turn ({self._left(turn)} left{self._after(people, turn)})."

    async def _take_round_robin_turn(self, tx: AsyncSession, story: Story, actor: Actor) -> bool:
        """Check it is the actor's turn and pass the turn on; True when that ends the round, so the
        bot writes next. (The caller adds the passage and restarts the turn's clock.)"""
        people = list(await q.participants(tx, story.id))
        if not any(p.user_id == actor.user_id for p in people):
            raise UserError("This story takes turns: type /story join first.")
        turn = self._turn_now(story, people)
        person = people[turn.index]
        if person.user_id != actor.user_id:
            raise UserError(
                f"It's {person.name}'s turn (round-robin); it passes to the next person in {self._left(turn)} "
                "without a passage."
            )
        if await q.open_job(tx, story.id) is not None:
            raise UserError("The bot is writing its passage for this round; wait for it, then write.")
        story.turn_index = turn.index + 1
        if story.turn_index < len(people):
            return False
        story.turn_index = 0
        return True

    def _keep_turn_after_leaving(self, story: Story, people: Sequence[Participant], leaver: int) -> None:
        """``people[leaver]`` leaves: the turn stays with whoever holds it, its clock running on; a
        leaver's own turn passes to the next person, with a whole turn's time."""
        turn = self._turn_now(story, people)
        remaining = len(people) - 1
        index = turn.index - 1 if leaver < turn.index else turn.index
        story.turn_index = index % remaining if remaining else 0
        story.turn_started_at = self.clock() if leaver == turn.index else turn.began

    @TURNS.handles(c.Turn)
    async def _turn(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Turn) -> Result:
        story = await self._story(tx, channel, lock=False)
        people = list(await q.participants(tx, story.id))
        if story.mode != ROUND_ROBIN:
            text = f"Not a round-robin story: {_NO_TURNS[story.mode]}."
        elif people and (job := await q.open_job(tx, story.id)) is not None:
            first = people[story.turn_index % len(people)]
            doing = (
                "The channel is voting on the bot's candidates"
                if job.status == JobStatus.VOTING
                else ("The bot is writing its passage")
            )
            text = f"{doing} for this round; then it's {first.name}'s turn."
        else:
            text = self._turn_text(story, people, actor)
        return Result(text, private=True, story_id=story.id)

    # ------------------------------------------------------------------ what the bot owes the channel

    async def claim_turn_notices(self, platforms: Sequence[str], *, skip: Collection[int] = ()) -> list[TurnNotice]:
        """The notices owed in the round-robin stories of ``platforms`` (but those in ``skip``),
        each recorded as said: one read finds them, one short transaction per story claims one."""
        if not platforms:
            return []

        async def owing(tx: AsyncSession) -> list[int]:
            stories = await q.active_stories_in_mode(tx, ROUND_ROBIN, platforms)
            return [s.id for s in stories if s.id not in skip and await self._owed(tx, s) is not None]

        notices = []
        for story_id in await self.db.transaction(owing, write=False):
            notice = await self.db.transaction(partial(self._claim, story_id=story_id))
            if notice is not None:
                notices.append(notice)
        return notices

    async def release_turn_notice(self, notice: TurnNotice) -> None:
        """The platform did not take ``notice``: owe it again, unless something was said since."""

        async def give_back(tx: AsyncSession) -> None:
            story = await q.story_by_id(tx, notice.story_id, lock=True)
            if story is not None and Said.of(story) == notice.said:
                notice.before.put(story)

        await self.db.transaction(give_back)

    async def _claim(self, tx: AsyncSession, story_id: int) -> TurnNotice | None:
        story = await q.story_by_id(tx, story_id, lock=True)
        owed = await self._owed(tx, story) if story is not None else None
        if story is None or owed is None:
            return None  # said meanwhile (another process), or no longer owed
        said, person, text = owed
        before = Said.of(story)
        said.put(story)
        to = Actor(person.user_id, person.name) if person is not None else None
        channel = ChannelRef(story.platform, story.workspace, story.channel, story.thread)
        return TurnNotice(story.id, channel, to, text, said, before)

    async def _owed(self, tx: AsyncSession, story: Story) -> tuple[Said, Participant | None, str] | None:
        """What the bot owes the story's channel now: what to record, whom to mention, what to say."""
        if story.status != StoryStatus.ACTIVE or story.mode != ROUND_ROBIN:
            return None
        people = list(await q.participants(tx, story.id))
        # One person alone (the starter, just after an opening) needs no call to write next.
        if len(people) < 2 or await q.open_job(tx, story.id) is not None:
            return None
        turn, said = self._turn_now(story, people), Said.of(story)
        if turn.skipped >= len(people):
            quiet = Said(None, story.turn_started_at, TurnCall.QUIET)
            text = (
                f"Nobody has written in “{story.title}” for a whole round, so turns go on without calls until "
                "someone writes; /story turn says whose it is."
            )
            return None if said == quiet else (quiet, None, text)
        person = people[turn.index]
        if (said.user_id, said.turn_at) != (person.user_id, turn.began):
            call = TurnCall.REMINDED if self._reminder_due(turn) else TurnCall.CALLED
            text = f"it's your turn in “{story.title}” ({self._left(turn)} to write{self._after(people, turn)})."
            if skipped := self._skipped_since(story, people, turn, said):
                text = f"{_names(skipped)} {'was' if len(skipped) == 1 else 'were'} skipped; {text}"
            return Said(person.user_id, turn.began, call), person, text
        if said.call == TurnCall.CALLED and self._reminder_due(turn):
            text = f"a reminder: it's your turn in “{story.title}” ({self._left(turn)} left before you are skipped)."
            return Said(person.user_id, turn.began, TurnCall.REMINDED), person, text
        return None

    def _reminder_due(self, turn: _Turn) -> bool:
        remind = self.config.story.remind_after_s
        if not 0 < remind < self.config.story.round_robin_timeout_s:
            return False
        return self.clock() >= turn.began + timedelta(seconds=remind)

    def _skipped_since(self, story: Story, people: Sequence[Participant], turn: _Turn, said: Said) -> list[str]:
        """Who was skipped on the way to ``turn`` since the bot last called a turn of this stretch
        without a passage (all of them since the passage, when it called none of it)."""
        first = 0
        if said.call != TurnCall.QUIET and said.turn_at is not None and said.turn_at >= story.turn_started_at:
            first = round((said.turn_at - story.turn_started_at) / self._timeout)
        return [people[(story.turn_index + j) % len(people)].name for j in range(first, turn.skipped)]
