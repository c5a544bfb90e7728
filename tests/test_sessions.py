"""The story rules, on SQLite and PostgreSQL: modes, permissions, limits, and nothing lost."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot import commands as c
from bot.identity import Actor, ChannelRef
from bot.sessions import SessionManager
from storage.models import GenerationJob, JobStatus, Passage, PassageStatus, Story
from tests.conftest import Clock

CHANNEL = ChannelRef("test", "guild", "general")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")
CAROL = Actor("u-carol", "Carol")
MOD = Actor("u-mod", "Mo", is_moderator=True)


async def run(rules: SessionManager, actor: Actor, text: str, channel: ChannelRef = CHANNEL):
    return await rules.handle(channel, actor, c.parse(text))


async def passages(rules: SessionManager, *statuses: str) -> list[Passage]:
    async with rules.db.read() as tx:
        query = select(Passage).order_by(Passage.seq)
        if statuses:
            query = query.where(Passage.status.in_(statuses))
        return list((await tx.execute(query)).scalars())


async def texts(rules: SessionManager) -> list[str]:
    return [p.text for p in await passages(rules, PassageStatus.CANONICAL)]


async def jobs(rules: SessionManager) -> list[GenerationJob]:
    async with rules.db.read() as tx:
        return list((await tx.execute(select(GenerationJob).order_by(GenerationJob.id))).scalars())


# ---------------------------------------------------------------------- start and end


async def test_start_creates_one_story_per_channel(rules: SessionManager) -> None:
    first = await run(rules, ALICE, '/story start "The Long Night" genre:horror mode:free')
    assert first.ok and "The Long Night" in first.text and "free" in first.text
    second = await run(rules, BOB, '/story start "Another"')
    assert not second.ok and "already running" in second.text and second.private
    async with rules.db.read() as tx:
        stories = list((await tx.execute(select(Story))).scalars())
    assert [s.title for s in stories] == ["The Long Night"]


async def test_a_thread_is_its_own_channel(rules: SessionManager) -> None:
    thread = ChannelRef("test", "guild", "general", thread="t1")
    assert (await run(rules, ALICE, '/story start "Main" mode:free')).ok
    assert (await run(rules, ALICE, '/story start "Side" mode:free', thread)).ok
    await run(rules, ALICE, "/story add In the thread.", thread)
    await run(rules, ALICE, "/story add In the channel.")
    status = await run(rules, ALICE, "/story status", thread)
    assert "Side" in status.text and "In the thread." in status.text and "In the channel." not in status.text


async def test_opening_text_is_the_first_passage_and_the_bot_answers_in_alternate_mode(rules: SessionManager) -> None:
    result = await run(rules, ALICE, '/story start "Night" It was a dark and stormy night.')
    assert result.passage is not None and result.passage.text == "It was a dark and stormy night."
    assert result.job_id is not None
    assert [j.status for j in await jobs(rules)] == [JobStatus.PENDING]


async def test_concurrent_starts_on_one_channel_give_exactly_one_story(rules: SessionManager) -> None:
    people = [Actor(f"u{i}", f"P{i}") for i in range(8)]
    results = await asyncio.gather(*(run(rules, p, f'/story start "Story {i}"') for i, p in enumerate(people)))
    assert sum(r.ok for r in results) == 1
    assert all("already running" in r.text for r in results if not r.ok)


async def test_only_the_starter_or_a_moderator_can_end(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free')
    refused = await run(rules, BOB, "/story end")
    assert not refused.ok and "Alice" in refused.text
    assert (await run(rules, MOD, "/story end")).ok
    listing = await run(rules, BOB, "/story list")
    assert "Night" in listing.text
    after = await run(rules, BOB, "/story add Too late.")
    assert not after.ok and "/story start" in after.text


async def test_ending_cancels_the_pending_bot_turn(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" Once upon a time.')
    ended = await run(rules, ALICE, "/story end")
    assert ended.ok and ended.cancelled_job_ids
    assert [j.status for j in await jobs(rules)] == [JobStatus.CANCELLED]


async def test_a_new_story_can_start_after_the_last_one_ended(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "One" mode:free')
    await run(rules, ALICE, "/story end")
    assert (await run(rules, BOB, '/story start "Two" mode:free')).ok


# ---------------------------------------------------------------------- modes


async def test_free_mode_anyone_writes_and_the_bot_waits_to_be_asked(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Free" mode:free')
    for actor, text in [(ALICE, "One."), (BOB, "Two."), (BOB, "Three.")]:
        result = await run(rules, actor, f"/story add {text}")
        assert result.ok and result.job_id is None
    assert await texts(rules) == ["One.", "Two.", "Three."]
    asked = await run(rules, CAROL, "/story continue toward the sea")
    assert asked.ok and asked.job_id is not None
    again = await run(rules, BOB, "/story continue")
    assert not again.ok and "already writing" in again.text
    assert [(j.kind, j.direction) for j in await jobs(rules)] == [("continue", "toward the sea")]


async def test_alternate_mode_queues_one_bot_turn_for_passages_written_meanwhile(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Alt"')
    first = await run(rules, ALICE, "/story add Alice writes.")
    second = await run(rules, BOB, "/story add Bob writes too.")
    assert first.job_id is not None and second.job_id is None
    assert await texts(rules) == ["Alice writes.", "Bob writes too."]
    assert len(await jobs(rules)) == 1


async def test_round_robin_takes_turns_in_join_order_and_the_bot_after_each_round(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Rounds" mode:round-robin')
    outsider = await run(rules, BOB, "/story add Me first!")
    assert not outsider.ok and "/story join" in outsider.text
    joined = await run(rules, BOB, "/story join")
    assert "Turn order: Alice, Bob" in joined.text
    early = await run(rules, BOB, "/story add Out of turn.")
    assert not early.ok and "Alice's turn" in early.text
    assert (await run(rules, ALICE, "/story add Alice begins.")).job_id is None
    end_of_round = await run(rules, BOB, "/story add Bob follows.")
    assert end_of_round.ok and end_of_round.job_id is not None
    waiting = await run(rules, ALICE, "/story add Too soon.")
    assert not waiting.ok and "bot is writing" in waiting.text
    assert await texts(rules) == ["Alice begins.", "Bob follows."]


async def test_round_robin_skips_someone_who_does_not_write_in_time(rules: SessionManager, clock: Clock) -> None:
    await run(rules, ALICE, '/story start "Rounds" mode:rr')
    await run(rules, BOB, "/story join")
    await run(rules, CAROL, "/story join")
    assert not (await run(rules, BOB, "/story add Waiting.")).ok
    clock.advance(rules.config.story.round_robin_timeout_s + 1)
    assert (await run(rules, BOB, "/story add Alice was away.")).ok
    status = await run(rules, ALICE, "/story status")
    assert "Carol's turn" in status.text


async def test_leaving_passes_the_turn_on(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Rounds" mode:round-robin')
    await run(rules, BOB, "/story join")
    await run(rules, ALICE, "/story add Alice writes.")
    assert "Bob's turn" in (await run(rules, ALICE, "/story status")).text
    assert (await run(rules, BOB, "/story leave")).ok
    assert "Alice's turn" in (await run(rules, ALICE, "/story status")).text
    assert not (await run(rules, BOB, "/story leave")).ok
    rejoined = await run(rules, BOB, "/story join")
    assert "Turn order: Alice, Bob" in rejoined.text


# ---------------------------------------------------------------------- undo and permissions


async def test_undo_marks_the_last_passage_and_keeps_it(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "U" mode:free')
    await run(rules, ALICE, "/story add Keep me.")
    await run(rules, BOB, "/story add Bob's line.")
    refused = await run(rules, CAROL, "/story undo")
    assert not refused.ok and "Bob" in refused.text
    assert await texts(rules) == ["Keep me.", "Bob's line."]
    assert (await run(rules, BOB, "/story undo")).ok
    assert await texts(rules) == ["Keep me."]
    undone = await passages(rules, PassageStatus.UNDONE)
    assert [(p.text, p.changed_by_id) for p in undone] == [("Bob's line.", BOB.user_id)]


@pytest.mark.parametrize("who", [ALICE, MOD], ids=["starter", "moderator"])
async def test_starter_and_moderators_may_undo_anyone(rules: SessionManager, who: Actor) -> None:
    await run(rules, ALICE, '/story start "U" mode:free')
    await run(rules, BOB, "/story add Bob's line.")
    assert (await run(rules, who, "/story undo")).ok
    assert await texts(rules) == []


async def test_undo_with_nothing_written(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "U" mode:free')
    result = await run(rules, ALICE, "/story undo")
    assert not result.ok and "nothing to undo" in result.text


async def test_undo_cancels_the_bot_turn_it_would_answer(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "U"')
    added = await run(rules, BOB, "/story add A mistake.")
    undone = await run(rules, BOB, "/story undo")
    assert undone.cancelled_job_ids == (added.job_id,)


async def test_a_turn_withdrawn_while_it_is_written_is_never_stored(rules: SessionManager) -> None:
    """The database's side of an undo mid-turn, on each database (test_bot_turns runs the model
    through it on SQLite): the claimed job is cancelled, and the text that comes late is dropped."""
    started = await run(rules, ALICE, '/story start "Undo" Once.')
    [job] = await rules.claim_jobs(1)
    assert job.job_id == started.job_id
    undone = await run(rules, ALICE, "/story undo")
    assert undone.ok and undone.cancelled_job_ids == (job.job_id,)
    assert await rules.finish_job(job.job_id, "Too late.", {"model": "tiny"}) is None
    assert [p.status for p in await passages(rules)] == [PassageStatus.UNDONE]
    assert [j.status for j in await jobs(rules)] == [JobStatus.CANCELLED]


async def test_retry_needs_a_bot_passage_last(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "R" mode:free')
    await run(rules, ALICE, "/story add Human line.")
    result = await run(rules, ALICE, "/story retry")
    assert not result.ok and "Alice's" in result.text and "/story continue" in result.text


async def test_settings_are_for_the_starter_and_moderators(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "S" mode:free')
    shown = await run(rules, BOB, "/story settings")
    assert shown.ok and shown.private and "temperature:" in shown.text
    refused = await run(rules, BOB, "/story settings temperature:1.5")
    assert not refused.ok
    changed = await run(rules, MOD, "/story settings temperature:1.5 length:64 mode:alternate")
    assert changed.ok and "temperature:1.5" in changed.text and "length:64" in changed.text
    assert "mode:alternate" in changed.text
    bad_model = await run(rules, ALICE, "/story settings model:gpt-huge")
    assert not bad_model.ok and rules.config.model.name in bad_model.text
    assert "temperature:1.5" in (await run(rules, BOB, "/story settings")).text


# ---------------------------------------------------------------------- memory, note, lore


async def test_memory_and_note_show_set_and_clear(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "M" mode:free')
    assert "(empty)" in (await run(rules, BOB, "/story memory")).text
    assert (await run(rules, BOB, "/story memory The hero is afraid of water.")).ok
    assert "afraid of water" in (await run(rules, ALICE, "/story memory")).text
    assert (await run(rules, BOB, "/story note Gothic, slow, dread.")).ok
    assert "Gothic" in (await run(rules, ALICE, "/story note")).text
    assert (await run(rules, BOB, "/story memory clear")).text == "Memory cleared."
    too_long = "x" * (rules.config.story.max_note_chars + 1)
    result = await run(rules, BOB, f"/story note {too_long}")
    assert not result.ok and str(rules.config.story.max_note_chars) in result.text
    assert "Gothic" in (await run(rules, ALICE, "/story note")).text


async def test_lore_add_list_remove(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "L" mode:free')
    added = await run(rules, BOB, "/story lore add dragon,wyrm The dragon sleeps under the hill.")
    assert added.ok and "#1" in added.text
    await run(rules, ALICE, "/story lore add castle The castle has no doors.")
    listing = await run(rules, CAROL, "/story lore list")
    assert "#1 [dragon, wyrm]" in listing.text and "#2 [castle]" in listing.text
    refused = await run(rules, CAROL, "/story lore remove 1")
    assert not refused.ok
    assert (await run(rules, BOB, "/story lore remove 1")).ok
    assert "#1" not in (await run(rules, CAROL, "/story lore list")).text
    missing = await run(rules, ALICE, "/story lore remove 9")
    assert not missing.ok and "#9" in missing.text


# ---------------------------------------------------------------------- limits and delivery


async def test_passage_over_the_length_limit_is_refused_and_changes_nothing(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Limits" mode:free')
    limit = rules.config.story.max_passage_chars
    result = await run(rules, ALICE, "/story add " + "a" * (limit + 1))
    assert not result.ok and str(limit) in result.text and "\n" not in result.text
    assert await texts(rules) == []


async def test_rate_limit_per_person(rules: SessionManager, clock: Clock) -> None:
    from dataclasses import replace

    rules.config = replace(rules.config, story=replace(rules.config.story, passages_per_minute=2))
    await run(rules, ALICE, '/story start "Fast" mode:free')
    assert (await run(rules, ALICE, "/story add One.")).ok
    assert (await run(rules, ALICE, "/story add Two.")).ok
    slow = await run(rules, ALICE, "/story add Three.")
    assert not slow.ok and "Slow down" in slow.text
    assert (await run(rules, BOB, "/story add Bob is not limited by Alice.")).ok
    clock.advance(61)
    assert (await run(rules, ALICE, "/story add Three.")).ok
    assert await texts(rules) == ["One.", "Two.", "Bob is not limited by Alice.", "Three."]


async def test_a_redelivered_event_is_applied_once(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Events" mode:free')
    first = await rules.handle(CHANNEL, ALICE, c.Add("Only once."), event_id="evt-1")
    again = await rules.handle(CHANNEL, ALICE, c.Add("Only once."), event_id="evt-1")
    assert first.ok and not first.duplicate
    assert again.duplicate
    assert await texts(rules) == ["Only once."]


async def test_a_refused_command_does_not_burn_its_event_id(rules: SessionManager) -> None:
    refused = await rules.handle(CHANNEL, ALICE, c.Add("No story yet."), event_id="evt-2")
    assert not refused.ok
    await run(rules, ALICE, '/story start "Events" mode:free')
    retried = await rules.handle(CHANNEL, ALICE, c.Add("Now there is."), event_id="evt-2")
    assert retried.ok and not retried.duplicate


async def test_many_simultaneous_adds_are_all_kept_in_one_order(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Crowd" mode:free')
    people = [Actor(f"u{i}", f"Writer {i}") for i in range(24)]
    results = await asyncio.gather(*(run(rules, p, f"/story add Line from {p.name}.") for p in people))
    assert all(r.ok for r in results)
    stored = await passages(rules)
    assert sorted(p.text for p in stored) == sorted(f"Line from {p.name}." for p in people)
    assert [p.seq for p in stored] == list(range(1, len(people) + 1))
    # Each writer was told the place their passage took in the story.
    assert sorted(r.passage.number for r in results if r.passage) == list(range(1, len(people) + 1))


async def test_word_counts_in_status_and_at_the_end_read_chinese_by_character(rules: SessionManager) -> None:
    """Chinese puts no spaces between words: each character counts, as in the exports."""
    await run(rules, ALICE, '/story start "灯塔" mode:free')
    await run(rules, ALICE, "/story add 灯塔守护者 climbed the stairs.")
    assert "1 passage, 8 words" in (await run(rules, ALICE, "/story status")).text
    assert "1 passage, 8 words" in (await run(rules, ALICE, "/story end")).text


async def test_status_tells_whose_turn_and_what_was_written(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Status" mode:round-robin')
    await run(rules, BOB, "/story join")
    for actor, line in [(ALICE, "First line here."), (BOB, "Second line.")]:
        await run(rules, actor, f"/story add {line}")
    status = await run(rules, CAROL, "/story status")
    assert status.private
    assert "2 passages, 5 words" in status.text
    assert "Contributors: Alice, Bob." in status.text
    assert "1. Alice: First line here." in status.text
    assert "The bot is writing." in status.text


async def test_help(rules: SessionManager) -> None:
    full = await run(rules, ALICE, "/story help")
    assert full.private and "/story add" in full.text and "/story lore" in full.text
    one = await run(rules, ALICE, "/story help undo")
    assert one.text.startswith("/story undo")


async def test_a_button_of_an_ended_story_changes_nothing(rules: SessionManager) -> None:
    started = await run(rules, ALICE, '/story start "Old" mode:free')
    await run(rules, ALICE, "/story add The old story.")
    await run(rules, ALICE, "/story end")
    await run(rules, ALICE, '/story start "New" mode:free')
    await run(rules, ALICE, "/story add The new story.")
    stale = await rules.handle(CHANNEL, ALICE, c.Undo(), story_id=started.story_id)
    assert not stale.ok and "ended" in stale.text
    assert await texts(rules) == ["The old story.", "The new story."]
