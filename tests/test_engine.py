"""The generation engine: batching and prefix reuse never change the text; the queue is fair,
bounded, times out, and survives a killed process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot import commands as c
from bot.app import open_app
from bot.config import Config
from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.local import LocalBackend
from bot.identity import Actor, ChannelRef
from bot.sessions import JobSpec, SessionManager
from tests.conftest import TurnRecorder, make_config
from tests.test_console import storybot_command

GREEDY = Sampling(temperature=0, max_new_tokens=24, min_new_tokens=24, repetition_penalty=1.0)
STORY = [
    "The lighthouse keeper climbed the stairs at dusk.",
    "The lamp was cold, and the sea was loud.",
    "She lit the wick and watched the beam sweep across the rocks.",
    "A ship answered with a horn.",
]
ALICE = Actor("u-alice", "Alice")


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalBackend, LocalBackend]:
    """The same model twice: with the per-channel prefix cache, and without it."""
    config = make_config(tmp_path_factory.mktemp("engine"), {"STORYBOT_MODEL_NAME": str(tiny_model_dir),
                                                             "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true"})
    cached, plain = LocalBackend(config.model), LocalBackend(replace(config.model, prefix_cache_mb=0))
    cached.load()
    plain.load()
    return cached, plain


def test_prefix_cache_reuses_the_story_and_never_changes_the_text(backends: tuple[LocalBackend, LocalBackend]) -> None:
    cached, plain = backends
    decoder = cached._decoder
    assert decoder is not None and decoder.prefix_cache is not None
    hits_before = decoder.prefix_cache.hits
    for turn in range(1, len(STORY) + 1):
        prompt = "\n\n".join(STORY[:turn]) + "\n\n"
        with_cache = cached.generate([GenerationRequest(prompt, GREEDY, cache_key="channel-1")])
        without = plain.generate([GenerationRequest(prompt, GREEDY)])
        assert with_cache == without
    assert decoder.prefix_cache.hits - hits_before == len(STORY) - 1


def test_rows_in_one_batch_keep_their_own_settings_and_leave_when_done(backends: tuple[LocalBackend, LocalBackend]) -> None:
    _, backend = backends
    short = replace(GREEDY, max_new_tokens=4, min_new_tokens=4)
    sampled = Sampling(temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=30, min_new_tokens=30,
                       repetition_penalty=1.3, no_repeat_ngram_size=2)
    alone_greedy = backend.generate([GenerationRequest(STORY[0], GREEDY)])[0]
    alone_short = backend.generate([GenerationRequest(STORY[1], short)])[0]
    streamed_short: list[str] = []
    batch = backend.generate([
        GenerationRequest(STORY[0], GREEDY),
        GenerationRequest(STORY[1], short, on_text=streamed_short.append),
        GenerationRequest(STORY[2], sampled),
    ])
    assert batch[0] == alone_greedy and batch[1] == alone_short
    # The short row streamed at most its 4 tokens' worth of updates, then left the batch.
    assert len(streamed_short) <= 4 and streamed_short[-1] == alone_short


async def _start_free_stories(sessions: SessionManager, channels: list[ChannelRef]) -> None:
    for channel in channels:
        await sessions.handle(channel, ALICE, c.parse('/story start "Fair" mode:free It began.'))


class _StartOrder(TurnRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    async def turn_started(self, job: JobSpec) -> None:
        self.order.append(job.channel.channel)
        await super().turn_started(job)


async def test_a_busy_channel_cannot_starve_another(config: Config) -> None:
    one_at_a_time = replace(config, generation=replace(config.generation, max_batch=1))
    busy, quiet = ChannelRef("t", "w", "busy"), ChannelRef("t", "w", "quiet")
    turns = _StartOrder()
    async with open_app(one_at_a_time) as app:
        app.queue.add_listener(turns)
        await _start_free_stories(app.sessions, [busy, quiet])
        spam = [await app.sessions.handle(busy, ALICE, c.Continue()) for _ in range(10)]
        assert sum(r.ok for r in spam) == 1
        assert all("already writing" in r.text for r in spam[1:])
        asked = await app.sessions.handle(quiet, ALICE, c.Continue())
        await turns.wait(spam[0].job_id)
        again = await app.sessions.handle(busy, ALICE, c.Continue())
        await turns.wait(asked.job_id)
        await turns.wait(again.job_id)
    assert turns.order == ["busy", "quiet", "busy"]


async def test_a_full_queue_says_busy_and_drops_nothing(config: Config) -> None:
    small = replace(config, generation=replace(config.generation, max_pending=1))
    first, second = ChannelRef("t", "w", "a"), ChannelRef("t", "w", "b")
    async with open_app(small) as app:
        await app.queue.stop()  # hold the worker so jobs stay pending
        await app.sessions.handle(first, ALICE, c.parse('/story start "A" It began.'))
        await app.sessions.handle(second, ALICE, c.parse('/story start "B" mode:free'))
        refused = await app.sessions.handle(second, ALICE, c.Continue())
        assert not refused.ok and "busy" in refused.text
        kept = await app.sessions.handle(second, ALICE, c.Add("A passage while the bot is busy."))
        assert kept.ok and kept.passage is not None
        status = await app.sessions.handle(second, ALICE, c.Status())
        assert "A passage while the bot is busy." in status.text


async def test_a_turn_that_takes_too_long_is_abandoned_with_a_clear_error(config: Config) -> None:
    slow = replace(
        config,
        model=replace(config.model, max_new_tokens=900, min_new_tokens=900),
        generation=replace(config.generation, job_timeout_s=0.3),
    )
    turns = TurnRecorder()
    async with open_app(slow) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(ChannelRef("t", "w", "slow"), ALICE, c.parse('/story start "S" Go.'))
        result = await turns.wait(started.job_id)
        assert result is not None and not result.ok and "too long" in result.text
        status = await app.sessions.handle(ChannelRef("t", "w", "slow"), ALICE, c.Status())
    assert "1 passages" in status.text


def test_a_killed_process_reruns_its_turn_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SIGKILL the bot mid-generation; the next start writes that turn, and only once."""
    db_path = tmp_path / "killed.db"
    env = {
        **os.environ,
        "STORYBOT_DATABASE_URL": f"sqlite:///{db_path}",
        "STORYBOT_MODEL_NAME": str(tiny_model_dir),
        "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
        "STORYBOT_MODEL_MAX_NEW_TOKENS": "900",
        "STORYBOT_MODEL_MIN_NEW_TOKENS": "900",
    }
    process = subprocess.Popen([*storybot_command(), "console"], stdin=subprocess.PIPE, env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    assert process.stdin is not None
    process.stdin.write('/story start "Crash" The storm rose.\n')
    process.stdin.flush()
    deadline = time.monotonic() + 120
    while _job_status(db_path) != "running":
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()

    config = make_config(tmp_path, {key: value for key, value in env.items() if key.startswith("STORYBOT_")}
                         | {"STORYBOT_MODEL_MAX_NEW_TOKENS": "16", "STORYBOT_MODEL_MIN_NEW_TOKENS": "4"})

    async def restart() -> None:
        turns = TurnRecorder()
        async with open_app(config) as app:
            app.queue.add_listener(turns)
            result = await turns.wait(1)
            assert result is not None and result.ok

    asyncio.run(restart())
    with sqlite3.connect(db_path) as db:
        bot_passages = db.execute("SELECT COUNT(*) FROM passages WHERE author_kind = 'bot'").fetchone()[0]
        job = db.execute("SELECT status, attempts FROM generation_jobs").fetchall()
    assert bot_passages == 1 and job == [("done", 2)]


def _job_status(db_path: Path) -> str | None:
    if not db_path.exists():
        return None
    try:
        with sqlite3.connect(db_path) as db:
            row = db.execute("SELECT status FROM generation_jobs ORDER BY id LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # the schema is still being created
        return None
    return row[0] if row else None


async def test_turns_asked_for_a_moment_apart_share_one_batch(config: Config) -> None:
    """The batch window lets a burst of requests (commits a few ms apart) run together."""
    first, second = ChannelRef("t", "w", "one"), ChannelRef("t", "w", "two")
    events: list[str] = []

    class Events(TurnRecorder):
        async def turn_started(self, job: JobSpec) -> None:
            events.append(f"start {job.channel.channel}")
            await super().turn_started(job)

        async def turn_finished(self, job: JobSpec, result: object) -> None:
            events.append(f"finish {job.channel.channel}")
            await super().turn_finished(job, result)  # type: ignore[arg-type]

    turns = Events()
    # A wide window, so a slow test machine cannot push the second request past it.
    windowed = replace(config, generation=replace(config.generation, batch_window_ms=600))
    async with open_app(windowed) as app:
        app.queue.add_listener(turns)
        await _start_free_stories(app.sessions, [first, second])
        asked = await app.sessions.handle(first, ALICE, c.Continue())
        await asyncio.sleep(0.02)
        also = await app.sessions.handle(second, ALICE, c.Continue())
        await turns.wait(asked.job_id)
        await turns.wait(also.job_id)
    assert events[:2] == ["start one", "start two"]
