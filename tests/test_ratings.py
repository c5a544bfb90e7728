"""Rating the bot's passages, on SQLite and PostgreSQL: one vote per person, changed by voting
again, counted on the passage and in /story status; nobody rates a withdrawn or a person's passage."""

from __future__ import annotations

from bot import commands as c
from bot.identity import Actor, ChannelRef
from bot.results import Votes
from bot.sessions import SessionManager
from tests.test_sessions import ALICE, BOB, CAROL, CHANNEL, run

DAVE = Actor("u-dave", "Dave")


async def bot_writes(rules: SessionManager, text: str) -> int:
    """The bot writes the story's pending turn, as the queue would: its passage's id."""
    [job] = await rules.claim_jobs(1)
    await rules.record_turn_message(job.job_id, f"msg-{job.job_id}")
    result = await rules.finish_job(job.job_id, text, {"model": "tiny"})
    assert result is not None and result.passage is not None
    return result.passage.id


async def story_with_a_bot_passage(rules: SessionManager) -> int:
    await run(rules, ALICE, '/story start "Rated" The lamp went out.')
    return await bot_writes(rules, "Something breathed in the dark.")


async def test_anyone_rates_the_bots_last_passage_once_and_may_change_it(rules: SessionManager) -> None:
    passage_id = await story_with_a_bot_passage(rules)
    first = await run(rules, BOB, "/story rate up")
    assert first.ok and first.private and "passage 2 👍" in first.text
    assert first.passage is not None and first.passage.id == passage_id
    assert first.passage.votes == Votes(up=1) and first.message_ref is not None
    again = await run(rules, BOB, "/story rate 👍")
    assert again.ok and "already rated" in again.text and again.passage is None  # nothing to redraw
    changed = await run(rules, BOB, "/story rate down")
    assert "changed your rating" in changed.text and changed.passage is not None
    assert changed.passage.votes == Votes(up=0, down=1)
    await run(rules, CAROL, "/story rate up")
    last = await run(rules, DAVE, "/story rate up 2")
    assert last.passage is not None and last.passage.votes == Votes(up=2, down=1)
    status = await run(rules, ALICE, "/story status")
    assert "(👍 2 · 👎 1)" in status.text


async def test_a_button_rates_exactly_its_passage(rules: SessionManager) -> None:
    first_id = await story_with_a_bot_passage(rules)
    await run(rules, ALICE, "/story add She lit a match.")
    await bot_writes(rules, "The match showed a face.")
    story_id = await rules.running_story_id(CHANNEL)
    result = await rules.handle(CHANNEL, BOB, c.Rate(c.Vote.DOWN, passage_id=first_id), story_id=story_id)
    assert result.ok and "passage 2 👎" in result.text


async def test_what_cannot_be_rated_is_refused_and_changes_nothing(rules: SessionManager) -> None:
    assert "No story is running" in (await run(rules, BOB, "/story rate up")).text
    await run(rules, ALICE, '/story start "Rated" The lamp went out.')
    nothing = await run(rules, BOB, "/story rate up")
    assert not nothing.ok and "nothing to rate" in nothing.text
    await bot_writes(rules, "Something breathed.")
    person = await run(rules, BOB, "/story rate up 1")
    assert not person.ok and "Alice's" in person.text and "only the bot's" in person.text
    beyond = await run(rules, BOB, "/story rate up 9")
    assert not beyond.ok and "no passage 9" in beyond.text
    assert (await run(rules, BOB, "/story rate up")).ok
    await run(rules, ALICE, "/story undo")
    withdrawn = await run(rules, BOB, "/story rate down 2")
    assert not withdrawn.ok and "no passage 2" in withdrawn.text
    other = await rules.handle(CHANNEL, BOB, c.Rate(c.Vote.UP, passage_id=10_000))
    assert not other.ok and "not part of the story" in other.text


async def test_a_passage_retried_away_keeps_its_votes_but_takes_no_more(rules: SessionManager) -> None:
    first_id = await story_with_a_bot_passage(rules)
    await run(rules, BOB, "/story rate down")
    await run(rules, BOB, "/story retry")
    await bot_writes(rules, "A second try.")
    stale = await rules.handle(CHANNEL, CAROL, c.Rate(c.Vote.UP, passage_id=first_id))
    assert not stale.ok and "withdrawn" in stale.text
    fresh = await run(rules, CAROL, "/story rate up")
    assert fresh.passage is not None and fresh.passage.votes == Votes(up=1)  # the new passage's own


async def test_a_rating_in_another_channel_never_reaches_this_story(rules: SessionManager) -> None:
    passage_id = await story_with_a_bot_passage(rules)
    elsewhere = ChannelRef("test", "guild", "other")
    await run(rules, BOB, '/story start "Other"', elsewhere)
    result = await rules.handle(elsewhere, BOB, c.Rate(c.Vote.UP, passage_id=passage_id))
    assert not result.ok and "not part of the story" in result.text
