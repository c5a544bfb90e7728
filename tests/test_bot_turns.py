"""The bot's turns end to end: the real queue, the tiny real model, a real database."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot import commands as c
from bot.app import App, open_app
from bot.config import Config
from bot.identity import Actor, ChannelRef
from storage.models import GenerationJob, JobStatus, Passage, PassageStatus, Story, utcnow
from tests.conftest import TurnRecorder

CHANNEL = ChannelRef("test", "guild", "tavern")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")


async def stored(app: App) -> list[Passage]:
    async with app.db.read() as tx:
        return list((await tx.execute(select(Passage).order_by(Passage.seq))).scalars())


def restarted(config: Config) -> Config:
    """The config of the process that starts next, with a short job lease: on PostgreSQL the
    turn a crashed process was writing runs again once its lease (60 s by default) is over."""
    return replace(config, generation=replace(config.generation, job_lease_s=0.5))


async def test_the_bot_answers_a_human_passage(app: tuple[App, TurnRecorder]) -> None:
    running, turns = app
    started = await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Tavern" The door creaked open.'))
    result = await turns.wait(started.job_id)
    assert result is not None and result.ok and result.passage is not None
    assert result.passage.by_bot and result.passage.text and result.passage.number == 2
    passages = await stored(running)
    assert [(p.author_kind, p.status) for p in passages] == [("human", "canonical"), ("bot", "canonical")]
    assert passages[1].requested_by_id == ALICE.user_id
    assert passages[1].generation["temperature"] == running.config.model.temperature
    # Streaming delivered growing text before the final passage.
    assert turns.progress[started.job_id]


async def test_retry_replaces_the_bot_passage_and_keeps_the_old_one(app: tuple[App, TurnRecorder]) -> None:
    running, turns = app
    started = await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Tavern" A stranger arrived.'))
    first = await turns.wait(started.job_id)
    retry = await running.sessions.handle(CHANNEL, BOB, c.Retry())
    assert retry.ok
    second = await turns.wait(retry.job_id)
    assert second is not None and second.passage is not None
    passages = {p.id: p for p in await stored(running)}
    old, new = passages[first.passage.id], passages[second.passage.id]
    assert old.status == PassageStatus.SUPERSEDED and new.status == PassageStatus.CANONICAL
    assert new.replaces_id == old.id
    status = await running.sessions.handle(CHANNEL, ALICE, c.Status())
    assert "2 passages" in status.text


async def test_continue_with_a_direction_reaches_the_bot(app: tuple[App, TurnRecorder]) -> None:
    running, turns = app
    await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Free" mode:free It was late.'))
    asked = await running.sessions.handle(CHANNEL, BOB, c.parse("/story continue the ship arrives"))
    result = await turns.wait(asked.job_id)
    assert result is not None and result.ok
    bot_passage = (await stored(running))[-1]
    assert bot_passage.direction == "the ship arrives" and bot_passage.author_kind == "bot"


async def test_undo_while_the_bot_writes_drops_its_passage(config: Config, tmp_path: Path) -> None:
    """A turn withdrawn mid-generation never lands, however late the model finishes."""
    slow = replace(config, model=replace(config.model, max_new_tokens=200, min_new_tokens=200))
    turns = TurnRecorder()
    async with open_app(slow) as running:
        running.queue.add_listener(turns)
        started = await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Undo" Once.'))
        await turns.writing(started.job_id)
        assert (await running.sessions.handle(CHANNEL, ALICE, c.Undo())).ok
        assert await turns.wait(started.job_id) is None
        assert [p.status for p in await stored(running)] == [PassageStatus.UNDONE]


async def test_an_unloadable_model_is_one_clear_line_in_the_channel(config: Config, tmp_path: Path) -> None:
    missing = replace(config, model=replace(config.model, name=str(tmp_path / "no-such-model")))
    turns = TurnRecorder()
    async with open_app(missing) as running:
        running.queue.add_listener(turns)
        started = await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "X" Hello there.'))
        result = await turns.wait(started.job_id)
    assert result is not None and not result.ok
    assert "\n" not in result.text and "STORYBOT_MODEL_NAME" in result.text
    # The human passage is kept, and the story goes on without the bot.
    async with open_app(missing) as running:
        status = await running.sessions.handle(CHANNEL, ALICE, c.Status())
    assert "Hello there." in status.text


# Which process writes a turn after a crash or a restart is the database's to decide (SQLite: the
# one process, at its start; PostgreSQL: any, once the writer's lease has run out): the tests of it
# take ``config_on_each_database``. The others run the model on SQLite only (``config``).


async def test_a_restart_loses_nothing_and_reruns_an_interrupted_turn(config_on_each_database: Config) -> None:
    async with open_app(config_on_each_database) as first:
        turns = TurnRecorder()
        first.queue.add_listener(turns)
        await first.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Restart" mode:free'))
        for line in ["One.", "Two.", "Three."]:
            assert (await first.sessions.handle(CHANNEL, BOB, c.Add(line))).ok
        await first.sessions.handle(CHANNEL, ALICE, c.Memory("Remember the lighthouse."))
        asked = await first.sessions.handle(CHANNEL, ALICE, c.Continue())
        await turns.wait(asked.job_id)
        # Simulate a crash mid-turn: a job left "running" as a killed process leaves it.
        async with first.db.write() as tx:
            await tx.execute(
                update(GenerationJob).where(GenerationJob.id == asked.job_id).values(status=JobStatus.RUNNING)
            )
            await tx.execute(update(Passage).where(Passage.job_id == asked.job_id).values(status="undone"))

    turns = TurnRecorder()
    async with open_app(restarted(config_on_each_database)) as second:
        second.queue.add_listener(turns)
        rerun = await turns.wait(asked.job_id)
        assert rerun is not None and rerun.ok
        texts = [p.text for p in await stored(second) if p.status == PassageStatus.CANONICAL]
        assert texts[:3] == ["One.", "Two.", "Three."] and len(texts) == 4
        memory = await second.sessions.handle(CHANNEL, ALICE, c.Memory(None))
        assert "lighthouse" in memory.text
        async with second.db.read() as tx:
            job = (await tx.execute(select(GenerationJob).where(GenerationJob.id == asked.job_id))).scalar_one()
        assert job.status == JobStatus.DONE and job.attempts == 2


async def test_stopping_mid_turn_withdraws_nothing_and_the_turn_runs_at_the_next_start(
    config_on_each_database: Config, caplog: pytest.LogCaptureFixture
) -> None:
    long_turns = replace(
        config_on_each_database, model=replace(config_on_each_database.model, max_new_tokens=900, min_new_tokens=900)
    )
    turns = TurnRecorder()
    async with open_app(long_turns) as first:
        first.queue.add_listener(turns)
        asked = await first.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Stop" The storm rose.'))
        await turns.writing(asked.job_id)
    assert asked.job_id not in turns.finished  # not shown as withdrawn: it was interrupted, not undone
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing cut off mid-transaction

    async with open_app(restarted(config_on_each_database)) as second:
        again = TurnRecorder()
        second.queue.add_listener(again)
        rerun = await again.wait(asked.job_id)
        assert rerun is not None and rerun.ok
        assert [p.author_kind for p in await stored(second)] == ["human", "bot"]


async def test_a_turn_whose_process_died_is_taken_back_when_its_lease_runs_out(config_on_each_database: Config) -> None:
    """Another process claimed a turn and died: once its heartbeat is older than the lease, a
    live process writes the turn, once."""
    short_lease = replace(
        config_on_each_database, generation=replace(config_on_each_database.generation, job_lease_s=0.4)
    )
    turns = TurnRecorder()
    async with open_app(short_lease) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Orphan" mode:free It began.'))
        now = utcnow()
        async with app.db.write() as tx:  # what the dead process left: a running job, last heard of now
            story = (await tx.execute(select(Story).where(Story.id == started.story_id))).scalar_one()
            job = GenerationJob(
                story_id=story.id,
                channel_key=story.channel_key,
                kind="continue",
                requested_by_id=ALICE.user_id,
                requested_by_name=ALICE.name,
                status=JobStatus.RUNNING,
                attempts=1,
                created_at=now,
                started_at=now,
                heartbeat_at=now,
            )
            tx.add(job)
            await tx.flush()
            job_id = job.id
        result = await turns.wait(job_id, timeout=30)
        assert result is not None and result.ok
        assert [p.author_kind for p in await stored(app)] == ["human", "bot"]


async def test_a_process_that_starts_leaves_a_live_processs_turn_alone(config_on_each_database: Config) -> None:
    if config_on_each_database.database.url.startswith("sqlite"):
        pytest.skip("SQLite serves one process: when it starts, every running turn is an orphan")
    long_turns = replace(
        config_on_each_database, model=replace(config_on_each_database.model, max_new_tokens=400, min_new_tokens=400)
    )
    turns, others = TurnRecorder(), TurnRecorder()
    async with open_app(long_turns) as first:
        first.queue.add_listener(turns)
        asked = await first.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Two" The storm rose.'))
        await turns.writing(asked.job_id)  # the first process is writing the bot's turn
        async with open_app(config_on_each_database) as second:  # e.g. a rolling deploy starts the next process
            second.queue.add_listener(others)
            result = await turns.wait(asked.job_id)
        assert result is not None and result.ok
        async with first.db.read() as tx:
            job = (await tx.execute(select(GenerationJob).where(GenerationJob.id == asked.job_id))).scalar_one()
        assert job.attempts == 1 and asked.job_id not in others.finished
        assert [p.author_kind for p in await stored(first)] == ["human", "bot"]


async def test_the_event_loop_stays_free_while_the_model_writes(config: Config) -> None:
    slow = replace(config, model=replace(config.model, max_new_tokens=200, min_new_tokens=200))
    turns = TurnRecorder()
    async with open_app(slow) as running:
        running.queue.add_listener(turns)
        started = await running.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Busy" Go.'))
        await turns.writing(started.job_id)
        # Other commands are answered promptly while generation runs.
        began = time.monotonic()
        status = await running.sessions.handle(CHANNEL, BOB, c.Status())
        assert status.ok and "The bot is writing." in status.text
        assert time.monotonic() - began < 1.0
        await turns.wait(started.job_id)


async def test_stories_on_two_models_both_get_their_turns_from_the_one_model_thread(
    config: Config, tiny_llama_dir: Path
) -> None:
    """Both models load and write on the process's one model thread; while one model's channels
    keep asking, the other's turns still come, taking turns with them."""
    two_models = replace(
        config,
        model=replace(config.model, allowed=(str(tiny_llama_dir),), max_new_tokens=48, min_new_tokens=48),
    )
    channels = [ChannelRef("test", "guild", f"room-{i}") for i in range(4)]
    turns = TurnRecorder()
    async with open_app(two_models) as running:
        running.queue.add_listener(turns)
        for index, channel in enumerate(channels):
            await running.sessions.handle(channel, ALICE, c.parse(f'/story start "Room {index}" mode:free'))
            if index % 2:
                await running.sessions.handle(channel, ALICE, c.parse(f"/story settings model:{tiny_llama_dir}"))
            await running.sessions.handle(channel, ALICE, c.Add("The door creaked open."))
        for _ in range(2):  # two rounds: each model's channels ask while the other writes
            asked = [await running.sessions.handle(channel, ALICE, c.Continue()) for channel in channels]
            results = [await turns.wait(result.job_id, timeout=120) for result in asked]
            assert all(result is not None and result.ok and result.passage for result in results)
        stories = {p.generation["model"] for p in await stored(running) if p.author_kind == "bot"}
    assert stories == {str(config.model.name), str(tiny_llama_dir)}
