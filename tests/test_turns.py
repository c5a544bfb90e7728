"""Round-robin turns in the rule book, on SQLite and PostgreSQL: ``/story turn``, and which call,
reminder or skip notice the bot owes a channel when (on the test's own clock); then the task that
hands those notices to a platform, with a platform that refuses one and a task that is killed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from bot import commands as c
from bot.generation.queue import TurnGone
from bot.identity import Actor, ChannelRef
from bot.reminders import Reminders
from bot.sessions import SessionManager
from bot.turns import TurnNotice
from tests.conftest import Clock
from tests.waiting import until

CHANNEL = ChannelRef("test", "guild", "general")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")
CAROL = Actor("u-carol", "Carol")
TIMEOUT, REMIND = 600, 300  # the config's defaults: story.round_robin_timeout_s, story.remind_after_s


async def run(rules: SessionManager, actor: Actor, text: str) -> str:
    result = await rules.handle(CHANNEL, actor, c.parse(text))
    assert result.ok, result.text
    return result.text


async def owed(rules: SessionManager, platforms: tuple[str, ...] = ("test",)) -> list[tuple[str | None, str]]:
    """Claim what the bot owes now: (whom it mentions, what it says to them) for each notice."""
    return [(n.to.name if n.to else None, n.text) for n in await rules.claim_turn_notices(platforms)]


async def rounds(rules: SessionManager, *joiners: Actor) -> None:
    """Alice starts “Rounds” in round-robin mode; ``joiners`` join in order."""
    await run(rules, ALICE, '/story start "Rounds" mode:round-robin')
    for person in joiners:
        await run(rules, person, "/story join")


def with_reminder(rules: SessionManager, remind_after_s: float) -> SessionManager:
    """The same rule book on the same database, with another ``story.remind_after_s``."""
    story = dataclasses.replace(rules.config.story, remind_after_s=remind_after_s)
    return SessionManager(rules.db, dataclasses.replace(rules.config, story=story), clock=rules.clock)


# ---------------------------------------------------------------------- /story turn


async def test_turn_says_whose_turn_it_is_how_long_they_have_and_who_is_next(
    rules: SessionManager, clock: Clock
) -> None:
    assert (rules.config.story.round_robin_timeout_s, rules.config.story.remind_after_s) == (TIMEOUT, REMIND)
    await rounds(rules, BOB, CAROL)
    answer = await rules.handle(CHANNEL, BOB, c.Turn())
    assert answer.private and answer.text == "It's Alice's turn (10 min left; Bob is next)."
    clock.advance(130)
    assert await run(rules, ALICE, "/story turn") == "It's your turn (7 min 50 s left; Bob is next)."
    await run(rules, ALICE, "/story add Alice begins.")
    await run(rules, BOB, "/story add Bob follows.")
    assert await run(rules, BOB, "/story turn") == "It's Carol's turn (10 min left; then the bot writes)."
    await run(rules, CAROL, "/story add Carol ends the round.")
    assert (
        await run(rules, BOB, "/story turn") == "The bot is writing its passage for this round; then it's Alice's turn."
    )


async def test_turn_in_a_story_without_turns_or_without_people(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Loose" mode:free')
    assert await run(rules, BOB, "/story turn") == (
        "Not a round-robin story: anyone may write, and /story continue asks the bot (free mode)."
    )
    await run(rules, ALICE, "/story settings mode:alternate")
    assert await run(rules, BOB, "/story turn") == (
        "Not a round-robin story: anyone may write, and the bot answers each passage (alternate mode)."
    )
    await run(rules, ALICE, "/story settings mode:round-robin")
    await run(rules, ALICE, "/story leave")
    assert await run(rules, BOB, "/story turn") == "Nobody has joined yet: type /story join."
    await run(rules, ALICE, "/story end")
    refused = await rules.handle(CHANNEL, BOB, c.Turn())
    assert not refused.ok and "No story is running" in refused.text


async def test_a_turn_stays_where_it_is_when_someone_else_leaves(rules: SessionManager, clock: Clock) -> None:
    await rounds(rules, BOB, CAROL)
    clock.advance(TIMEOUT + 1)  # Alice was skipped: Bob's turn, with 9 min 59 s left
    await run(rules, CAROL, "/story leave")
    assert await run(rules, ALICE, "/story turn") == "It's Bob's turn (9 min 59 s left; then the bot writes)."
    await run(rules, BOB, "/story leave")  # his own turn: it passes on, with a whole turn's time
    assert await run(rules, ALICE, "/story turn") == "It's your turn (10 min left)."


# ---------------------------------------------------------------------- what the bot owes, and when


async def test_joining_leaves_the_turn_with_whoever_holds_it(rules: SessionManager, clock: Clock) -> None:
    await rounds(rules, BOB)
    clock.advance(TIMEOUT * 2 + 10)  # Alice, then Bob skipped: Alice's turn again
    assert await run(rules, BOB, "/story turn") == "It's Alice's turn (9 min 50 s left; Bob is next)."
    await run(rules, CAROL, "/story join")
    assert await run(rules, BOB, "/story turn") == "It's Alice's turn (9 min 50 s left; Bob is next)."


async def test_one_person_alone_is_not_called(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Alone" mode:round-robin The lamp was lit.')
    assert await owed(rules) == []


async def test_a_turn_is_called_once_reminded_once_then_skipped_and_a_deserted_story_goes_quiet(
    rules: SessionManager, clock: Clock
) -> None:
    await rounds(rules, BOB)
    assert await owed(rules) == [("Alice", "it's your turn in “Rounds” (10 min to write; Bob is next).")]
    assert await owed(rules) == []
    clock.advance(REMIND - 1)
    assert await owed(rules) == []
    clock.advance(1)
    assert await owed(rules) == [
        ("Alice", "a reminder: it's your turn in “Rounds” (5 min left before you are skipped).")
    ]
    assert await owed(rules) == []
    clock.advance(TIMEOUT - REMIND)
    assert await owed(rules) == [
        ("Bob", "Alice was skipped; it's your turn in “Rounds” (10 min to write; then the bot writes).")
    ]
    clock.advance(TIMEOUT)  # Bob let his turn pass too: a whole round without a passage
    assert await owed(rules) == [
        (
            None,
            "Nobody has written in “Rounds” for a whole round, so turns go on without calls until someone "
            "writes; /story turn says whose it is.",
        )
    ]
    clock.advance(10 * TIMEOUT)
    assert await owed(rules) == []  # nobody is pinged again and again in a story its people left
    await run(rules, ALICE, "/story add Alice is back.")  # (her turn again, twelve skips on)
    assert await owed(rules) == [("Bob", "it's your turn in “Rounds” (10 min to write; then the bot writes).")]


async def test_a_passage_or_an_undo_calls_the_next_turn_at_once_and_the_bot_s_turn_owes_nothing(
    rules: SessionManager,
) -> None:
    await rounds(rules, BOB, CAROL)
    assert [to for to, _ in await owed(rules)] == ["Alice"]
    await run(rules, ALICE, "/story add Alice begins.")
    assert await owed(rules) == [("Bob", "it's your turn in “Rounds” (10 min to write; Carol is next).")]
    await run(rules, ALICE, "/story undo")  # her passage withdrawn: her turn again
    assert await owed(rules) == [("Alice", "it's your turn in “Rounds” (10 min to write; Bob is next).")]
    for person in (ALICE, BOB):
        await run(rules, person, f"/story add {person.name} writes.")
        assert [to for to, _ in await owed(rules)] == [{"Alice": "Bob", "Bob": "Carol"}[person.name]]
    await run(rules, CAROL, "/story add Carol ends the round.")
    assert await owed(rules) == []  # the bot writes now: nobody's turn


async def test_a_turn_called_late_is_not_reminded_at_once_and_several_skips_are_named(
    rules: SessionManager, clock: Clock
) -> None:
    await rounds(rules, BOB, CAROL)
    clock.advance(REMIND + 100)  # (the bot was down): past the reminder's time
    assert await owed(rules) == [("Alice", "it's your turn in “Rounds” (3 min 20 s to write; Bob is next).")]
    clock.advance(REMIND - 101)
    assert await owed(rules) == []  # the call said how long she has: no reminder a minute later
    clock.advance(TIMEOUT + 2)  # Alice, then Bob, let their turns pass while nobody looked
    assert await owed(rules) == [
        ("Carol", "Alice and Bob were skipped; it's your turn in “Rounds” (9 min 59 s to write; then the bot writes).")
    ]


@pytest.mark.parametrize("remind_after_s", [0, TIMEOUT, TIMEOUT + 1])
async def test_no_reminder_when_it_is_off_or_would_not_come_before_the_skip(
    rules: SessionManager, clock: Clock, remind_after_s: float
) -> None:
    rules = with_reminder(rules, remind_after_s)
    await rounds(rules, BOB)
    assert [to for to, _ in await owed(rules)] == ["Alice"]
    clock.advance(TIMEOUT - 1)
    assert await owed(rules) == []
    clock.advance(1)
    assert [to for to, _ in await owed(rules)] == ["Bob"]


async def test_a_notice_is_claimed_once_across_processes_and_owed_again_when_given_back(
    rules: SessionManager, clock: Clock
) -> None:
    other = SessionManager(rules.db, rules.config, clock=clock)  # another process, or this one restarted
    await rounds(rules, BOB)
    [alice_called] = await rules.claim_turn_notices(["test"])
    assert await owed(other) == []
    await rules.release_turn_notice(alice_called)  # the platform did not take it
    assert await owed(other) == [("Alice", alice_called.text)]
    await run(rules, ALICE, "/story add Alice writes.")
    [bob_called] = await other.claim_turn_notices(["test"])
    await rules.release_turn_notice(alice_called)  # too late: something was said since
    assert bob_called.to == BOB and await owed(rules) == []


async def test_only_the_stories_of_the_platforms_asked_for(rules: SessionManager) -> None:
    await rounds(rules, BOB)
    assert await owed(rules, ("discord", "slack")) == []
    assert await owed(rules, ()) == []
    [(to, _)] = await owed(rules, ("slack", "test"))
    assert to == "Alice"


# ---------------------------------------------------------------------- the task that says them


class Platform:
    """A platform's side of the notices (``TurnNotices``): what it was told to say, refusing the
    first ``refuse`` of them as a platform having a bad moment would."""

    def __init__(self, refuse: int = 0, gone: bool = False) -> None:
        self.said: list[TurnNotice] = []
        self.tried = 0
        self.refused = 0
        self.refuse = refuse
        self.gone = gone

    async def turn_notice(self, notice: TurnNotice) -> None:
        self.tried += 1
        if self.gone:
            raise TurnGone("the channel was deleted")
        if self.refused < self.refuse:
            self.refused += 1
            raise ConnectionError("the platform did not answer")
        self.said.append(notice)

    def texts(self) -> list[tuple[str | None, str]]:
        return [(n.to.name if n.to else None, n.text) for n in self.said]


@pytest.fixture
async def reminders(rules: SessionManager) -> AsyncIterator[Reminders]:
    task = Reminders(rules, every_s=0.02)
    task.start()
    yield task
    await task.stop()


async def test_the_task_says_each_notice_once_and_a_refused_one_again_later(
    rules: SessionManager, clock: Clock, reminders: Reminders
) -> None:
    platform = Platform(refuse=1)
    reminders.add_listener("test", platform)
    await rounds(rules, BOB)
    await until(lambda: platform.said, "Alice's call, once the platform takes it")
    assert platform.refused == 1
    clock.advance(REMIND)
    await until(lambda: len(platform.said) == 2, "Alice's reminder")
    await asyncio.sleep(0.2)  # a few more looks: nothing new is owed
    assert [to for to, _ in platform.texts()] == ["Alice", "Alice"]
    assert platform.texts()[1][1].startswith("a reminder:")


async def test_a_killed_task_is_started_again_and_a_channel_gone_is_not_tried_again(
    rules: SessionManager, clock: Clock, reminders: Reminders
) -> None:
    gone = Platform(gone=True)
    reminders.add_listener("test", gone)
    worker = reminders._worker
    assert worker is not None
    worker.cancel()
    await until(lambda: reminders.restarts == 1 and reminders.running, "the task to be started again")
    await rounds(rules, BOB)
    await until(lambda: gone.tried, "Alice's call, to a channel that is gone")
    await asyncio.sleep(0.2)  # a few more looks
    assert gone.tried == 1 and await owed(rules) == []  # said, as far as anyone can: not owed again
    platform = Platform()
    reminders.add_listener("test", platform)
    clock.advance(REMIND)
    await until(lambda: platform.said, "Alice's reminder")
    assert [to for to, _ in platform.texts()] == ["Alice"]
