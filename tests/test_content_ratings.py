"""Content ratings in the rule book, on SQLite and PostgreSQL: a story is general, teen or mature;
mature only where the platform says the channel is for adults, and paused when it stops saying so."""

from __future__ import annotations

from dataclasses import replace

from bot import commands as c
from bot.sessions import SessionManager
from tests.test_sessions import ALICE, BOB, CHANNEL, run

ADULTS = replace(CHANNEL, age_restricted=True)


async def test_a_story_is_rated_general_unless_its_start_says_otherwise(rules: SessionManager) -> None:
    started = await run(rules, ALICE, '/story start "Plain" mode:free')
    assert "rated general" in started.text
    assert "rated general" in (await run(rules, BOB, "/story status")).text
    await run(rules, ALICE, "/story end")
    teen = await run(rules, ALICE, '/story start "Edgy" rating:teen mode:free')
    assert teen.ok and "rated teen" in teen.text
    assert "rated teen" in (await run(rules, BOB, "/story status")).text


async def test_mature_needs_a_channel_for_adults(rules: SessionManager) -> None:
    refused = await run(rules, ALICE, '/story start "Dark" rating:mature')
    assert not refused.ok and "needs a channel for adults" in refused.text
    assert "No story is running" in (await run(rules, BOB, "/story status")).text  # nothing was started
    started = await run(rules, ALICE, '/story start "Dark" rating:mature mode:free', ADULTS)
    assert started.ok and "rated mature" in started.text


async def test_a_mature_story_pauses_when_its_channel_stops_being_for_adults(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Dark" rating:mature mode:free', ADULTS)
    assert (await run(rules, ALICE, "/story add The door opened.", ADULTS)).ok
    paused = await run(rules, ALICE, "/story add Blood on the floor.")  # the channel is not age-restricted now
    assert not paused.ok and "paused" in paused.text and "/story end" in paused.text
    for command in ("/story continue", "/story rate up", "/story memory She is afraid."):
        assert "paused" in (await run(rules, BOB, command)).text
    status = await run(rules, BOB, "/story status")  # looking is allowed
    assert status.ok and "Blood" not in status.text and "The door opened." in status.text
    assert (await run(rules, ALICE, "/story add Blood on the floor.", ADULTS)).ok  # back for adults: it goes on
    assert (await run(rules, ALICE, "/story end")).ok  # ending is allowed anywhere


async def test_the_rating_is_read_as_people_type_it() -> None:
    assert c.parse("/story start rating:M Dark night.").rating == c.ContentRating.MATURE
    assert c.parse('/story start "X" rating:Teen').rating == c.ContentRating.TEEN
