"""The generation engine: batching and prefix reuse never change the text; the queue is fair,
bounded, times out, and survives a killed process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bot import commands as c
from bot.app import open_app
from bot.config import Config
from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.local import LocalBackend
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import Result
from bot.sessions import SessionManager
from tests.conftest import TurnRecorder, make_config
from tests.test_console import storybot_command
from tests.waiting import until

GREEDY = Sampling(temperature=0, max_new_tokens=24, min_new_tokens=24, repetition_penalty=1.0)
STORY = [
    "The lighthouse keeper climbed the stairs at dusk.",
    "The lamp was cold, and the sea was loud.",
    "She lit the wick and watched the beam sweep across the rocks.",
    "A ship answered with a horn.",
]
ALICE = Actor("u-alice", "Alice")


def load_twice(model_dir: Path, folder: Path, quantize: str = "auto") -> tuple[LocalBackend, LocalBackend]:
    """The same model twice: with the per-channel prefix cache, and without it.

    In float32: the tests compare texts exactly, and bfloat16 may round a batch differently.
    """
    config = make_config(
        folder,
        {
            "STORYBOT_MODEL_NAME": str(model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_MODEL_DTYPE": "float32",
            "STORYBOT_MODEL_QUANTIZE": quantize,
        },
    )
    cached, plain = LocalBackend(config.model), LocalBackend(replace(config.model, prefix_cache_mb=0))
    cached.load()
    plain.load()
    return cached, plain


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalBackend, LocalBackend]:
    return load_twice(tiny_model_dir, tmp_path_factory.mktemp("engine"))


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


def test_requests_that_arrive_mid_batch_join_it_and_keep_their_text(
    backends: tuple[LocalBackend, LocalBackend],
) -> None:
    """A row that joins a running batch (shorter or longer than its cache) writes what it would alone."""
    _, backend = backends
    long = replace(GREEDY, max_new_tokens=40, min_new_tokens=40)
    prompts = {"first": STORY[0], "short": STORY[3], "long": "\n\n".join(STORY)}
    alone = {name: backend.generate([GenerationRequest(prompt, GREEDY)])[0] for name, prompt in prompts.items()}
    alone["first"] = backend.generate([GenerationRequest(prompts["first"], long)])[0]
    finished: list[tuple[str, str]] = []

    def request(name: str, sampling: Sampling = GREEDY) -> GenerationRequest:
        return GenerationRequest(prompts[name], sampling, on_done=lambda text: finished.append((name, text)))

    steps = 0

    def more() -> list[GenerationRequest]:
        nonlocal steps
        steps += 1
        return {3: [request("short")], 6: [request("long")]}.get(steps, [])

    assert backend.generate([request("first", long)], more) == [alone["first"]]
    assert finished == [("short", alone["short"]), ("long", alone["long"]), ("first", alone["first"])]


def test_rows_in_one_batch_keep_their_own_settings_and_leave_when_done(
    backends: tuple[LocalBackend, LocalBackend],
) -> None:
    _, backend = backends
    short = replace(GREEDY, max_new_tokens=4, min_new_tokens=4)
    sampled = Sampling(
        temperature=1.0,
        top_k=20,
        top_p=0.9,
        max_new_tokens=30,
        min_new_tokens=30,
        repetition_penalty=1.3,
        no_repeat_ngram_size=2,
    )
    alone_greedy = backend.generate([GenerationRequest(STORY[0], GREEDY)])[0]
    alone_short = backend.generate([GenerationRequest(STORY[1], short)])[0]
    streamed_short: list[str] = []
    batch = backend.generate(
        [
            GenerationRequest(STORY[0], GREEDY),
            GenerationRequest(STORY[1], short, on_text=streamed_short.append),
            GenerationRequest(STORY[2], sampled),
        ]
    )
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
    # Long turns: the first must still be writing while the channel asks for nine more.
    one_at_a_time = replace(
        config,
        generation=replace(config.generation, max_batch=1),
        model=replace(config.model, max_new_tokens=256, min_new_tokens=256),
    )
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
    assert "1 passage," in status.text


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
    process = subprocess.Popen(
        [*storybot_command(), "console"],
        stdin=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write('/story start "Crash" The storm rose.\n')
    process.stdin.flush()

    def alive() -> None:
        assert process.poll() is None, f"the console exited ({process.returncode}) before its bot turn ran"

    running = until(
        lambda: _job_status(db_path) == "running", "the bot turn to run", timeout=120, every=0.1, alive=alive
    )
    asyncio.run(running)
    process.send_signal(signal.SIGKILL)
    process.wait()

    config = make_config(
        tmp_path,
        {key: value for key, value in env.items() if key.startswith("STORYBOT_")}
        | {"STORYBOT_MODEL_MAX_NEW_TOKENS": "16", "STORYBOT_MODEL_MIN_NEW_TOKENS": "4"},
    )

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


async def test_a_short_turn_asked_mid_passage_is_not_held_back_by_a_long_one(config: Config) -> None:
    """Continuous batching: the second channel's turn joins the running batch and is stored first."""
    long_story, short_story = ChannelRef("t", "w", "long"), ChannelRef("t", "w", "short")
    finished: list[str] = []

    class Finishes(TurnRecorder):
        async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
            finished.append(job.channel.channel)
            await super().turn_finished(job, result)

    turns = Finishes()
    no_early_end = replace(config, model=replace(config.model, min_new_tokens=1024))  # length decides
    async with open_app(no_early_end) as app:
        app.queue.add_listener(turns)
        await _start_free_stories(app.sessions, [long_story, short_story])
        await app.sessions.handle(long_story, ALICE, c.parse("/story settings length:600"))
        await app.sessions.handle(short_story, ALICE, c.parse("/story settings length:16"))
        long_turn = await app.sessions.handle(long_story, ALICE, c.Continue())
        await turns.writing(long_turn.job_id)  # the long passage is being written
        short_turn = await app.sessions.handle(short_story, ALICE, c.Continue())
        short_result = await turns.wait(short_turn.job_id)
        long_result = await turns.wait(long_turn.job_id)
    assert finished == ["short", "long"]
    assert short_result is not None and short_result.ok and long_result is not None and long_result.ok
