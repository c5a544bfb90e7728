"""Chat processes and generation workers apart, on the real PostgreSQL (127.0.0.1:5432).

``storybot discord|slack --no-worker`` is an app in the ``CHAT`` role, ``storybot worker`` one in the
``WORKER`` role: several of each, in this process, on one database (and one worker as a real
process, killed with SIGKILL). The model is the fake OpenAI-compatible server, which streams at a
pace the test sets, or the tiny local model; the platform is a ``TurnStreamer`` whose messages are
a list (what the Discord and Slack streamers share, over a platform that records what it shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from adapters.cli import main
from adapters.common.streaming import TurnStreamer
from bot import commands as c
from bot.app import App, Role, open_app
from bot.config import Config
from bot.health import check_health
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import Result
from tests.conftest import TurnRecorder, _reset_postgres, make_config, read_rows, sqlite_url, tiny_model_env
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.loopback import free_port
from tests.waiting import until

ALICE = Actor("u-alice", "Alice")
LEASE_S = 2.0  # a dead process's turns (and the turns a dead chat process showed) are taken up after this
PIECES = [f" The lamp number {n} was lit." for n in range(12)]


# ---------------------------------------------------------------------- the world


@pytest.fixture
async def pg_url(postgres_database: str) -> str:
    """The test run's PostgreSQL database, emptied (skipped with the reason when none answers)."""
    await _reset_postgres(postgres_database)
    return postgres_database


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    """The model server: twelve sentences, one every 0.1 s (a turn streams for over a second)."""
    async with running_fake_openai() as server:
        server.pieces = lambda body: PIECES
        server.delay_s = 0.1
        yield server


def openai_env(url: str, fake: FakeOpenAI, tmp_path: Path, *, lease_s: float = LEASE_S) -> dict[str, str]:
    return {
        "STORYBOT_DATABASE_URL": url,
        "STORYBOT_MODEL_BACKEND": "openai",
        "STORYBOT_MODEL_NAME": str(tmp_path / "no-local-model"),
        "STORYBOT_MODEL_MAX_NEW_TOKENS": "200",
        "STORYBOT_OPENAI_BASE_URL": fake.url,
        "STORYBOT_OPENAI_MODEL": "served-model",
        "STORYBOT_OPENAI_RETRY_BACKOFF_S": "0.01",
        "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0.05",
        "STORYBOT_GENERATION_JOB_LEASE_S": str(lease_s),
        "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
    }


def openai_config(url: str, fake: FakeOpenAI, tmp_path: Path, *, lease_s: float = LEASE_S) -> Config:
    return make_config(tmp_path, openai_env(url, fake, tmp_path, lease_s=lease_s))


@dataclass
class Message:
    """One message the platform shows: its texts, in order (the last is what people see)."""

    ref: str
    job_id: int
    shown: list[str] = field(default_factory=list)


class FakeLive:
    """A turn's message on the recording platform: "writing…" posts a message (or re-uses the
    one the job names, as the real streamers do), each text and the end edit it."""

    def __init__(self, platform: RecordingStreamer, job: JobSpec) -> None:
        self.platform, self.job = platform, job
        self.ref: str | None = job.message_ref

    def _message(self) -> Message:
        if self.ref is None:
            self.ref = f"{self.platform.name}-{len(self.platform.messages) + 1}"
            self.platform.posts.append(self.job.job_id)
        return self.platform.messages.setdefault(self.ref, Message(self.ref, self.job.job_id))

    async def begin(self) -> str | None:
        self._message().shown.append("writing…")
        self.platform.began.append((self.job.job_id, self.job.message_ref))
        return self.ref

    async def progress(self, text: str) -> str | None:
        self._message().shown.append(text)
        return self.ref

    async def end(self, result: Result | None) -> str | None:
        text = "withdrawn" if result is None else result.passage.text if result.passage is not None else result.text
        self._message().shown.append(f"END {text}")
        self.platform.ends.append((self.job.job_id, self.ref, result))
        self.platform.changed.set()
        return self.ref


class RecordingStreamer(TurnStreamer):
    """The ``test`` platform's shower: the real ``TurnStreamer`` over messages kept in a dict."""

    def __init__(self, name: str) -> None:
        super().__init__("test")
        self.name = name
        self.messages: dict[str, Message] = {}
        self.posts: list[int] = []  # the job of each message posted
        self.began: list[tuple[int, str | None]] = []  # (job, the message ref it was handed)
        self.ends: list[tuple[int, str | None, Result | None]] = []
        self.changed = asyncio.Event()

    def live_turn(self, job: JobSpec) -> FakeLive:
        return FakeLive(self, job)

    def texts(self, job_id: int) -> list[str]:
        """What this platform showed of the turn, in order."""
        return [text for message in self.messages.values() if message.job_id == job_id for text in message.shown]

    def ends_of(self, job_id: int) -> int:
        """How many times this platform showed the turn's end."""
        return sum(1 for job, _, _ in self.ends if job == job_id)

    async def end_of(self, job_id: int, timeout: float = 20) -> tuple[str | None, Result | None]:
        async def found() -> tuple[str | None, Result | None] | None:
            return next(((ref, result) for job, ref, result in self.ends if job == job_id), None)

        return await until(found, f"the end of bot turn {job_id} on {self.name}", timeout=timeout, wake=self.changed)


@contextlib.asynccontextmanager
async def chat(config: Config, name: str = "chat") -> AsyncIterator[tuple[App, RecordingStreamer]]:
    """A `--no-worker` chat process showing the ``test`` platform."""
    async with open_app(config, role=Role.CHAT) as app:
        shower = RecordingStreamer(name)
        app.queue.add_listener(shower, shows="test")
        yield app, shower


@contextlib.asynccontextmanager
async def worker(config: Config) -> AsyncIterator[tuple[App, TurnRecorder]]:
    """A `storybot worker` process, with a recorder of the turns it writes."""
    async with open_app(config, role=Role.WORKER) as app:
        turns = TurnRecorder()
        app.queue.add_listener(turns)
        yield app, turns


async def start_story(app: App, channel: str = "harbour") -> int:
    started = await app.sessions.handle(
        ChannelRef("test", "guild", channel), ALICE, c.parse('/story start "Lighthouse" The keeper climbed the stairs.')
    )
    assert started.ok and started.job_id is not None, started.text
    return started.job_id


async def job_row(url: str, job_id: int) -> tuple[object, ...]:
    rows = await read_rows(
        url, f"SELECT status, attempts, message_ref, shown_at IS NOT NULL FROM generation_jobs WHERE id = {job_id}"
    )
    return rows[0]


async def message_ref(url: str, job_id: int) -> object:
    return (await job_row(url, job_id))[2]


async def bot_passages(url: str, job_id: int) -> list[str]:
    rows = await read_rows(url, f"SELECT text FROM passages WHERE job_id = {job_id} AND author_kind = 'bot'")
    return [str(text) for (text,) in rows]


# ---------------------------------------------------------------------- the roles


def test_the_split_roles_refuse_sqlite_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite serves one process, so neither half alone can run on it: exit 2 and one line."""
    monkeypatch.setenv("STORYBOT_DATABASE_URL", sqlite_url(tmp_path))
    monkeypatch.setenv("STORYBOT_DISCORD_TOKEN", "a-token")
    config_file = tmp_path / "storybot.toml"
    config_file.write_text("")
    for command in (["worker"], ["discord", "--no-worker"]):
        assert main(["--config", str(config_file), *command]) == 2
        said = capsys.readouterr().err.strip()
        assert "\n" not in said and "PostgreSQL" in said and "SQLite" in said, said


async def test_a_chat_process_claims_nothing_and_a_worker_needs_no_platform(
    pg_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = openai_config(pg_url, fake, tmp_path)
    async with chat(config) as (front, shower):
        job_id = await start_story(front)
        await asyncio.sleep(1.0)  # woken by its own command, and swept since: it still writes nothing
        assert (await job_row(pg_url, job_id))[0] == "pending"
        assert fake.requests == []
        health = await check_health(front.db, front.queue)
        assert health.healthy and health.model is None  # the model is not a chat process's job
        assert health.worker is not None and health.worker.tokens_written == 0

        async with worker(config) as (back, turns):
            assert back.queue.shower("test") is None  # no platform here
            result = await turns.passage(job_id, timeout=20)
            assert result.passage is not None
            ref, shown = await shower.end_of(job_id)
        assert shown is not None and shown.passage is not None and shown.passage.text == result.passage.text
        assert await job_row(pg_url, job_id) == ("done", 1, ref, True)
        assert not front.queue.health().turns_running


async def test_two_workers_share_the_jobs_and_write_each_once(
    pg_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """SKIP LOCKED claims: two workers (two turns at a time each) on many channels' turns, with the
    tiny local model; each turn is written by one of them, once."""
    env = {**tiny_model_env(pg_url, tiny_model_dir), "STORYBOT_GENERATION_MAX_BATCH": "2"}
    config = make_config(tmp_path, env)
    async with chat(config) as (front, shower), worker(config) as (_first, one), worker(config) as (_second, two):
        jobs = [await start_story(front, f"channel-{n}") for n in range(12)]
        for job_id in jobs:
            await shower.end_of(job_id, timeout=30)
    written_by = [set(one.finished), set(two.finished)]
    assert written_by[0] | written_by[1] == set(jobs) and not written_by[0] & written_by[1]
    assert all(written_by), "both workers wrote turns"
    for job_id in jobs:
        assert len(await bot_passages(pg_url, job_id)) == 1
        assert (await job_row(pg_url, job_id))[:2] == ("done", 1)
    assert sorted(shower.posts) == sorted(jobs)  # one message each


async def test_a_worker_wakes_on_a_notification_not_its_heartbeat(
    pg_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    """A worker beating every 150 s starts a turn queued in another process within a second, and
    stops one cancelled there within a second too."""
    slow_beat = openai_config(pg_url, fake, tmp_path, lease_s=600)
    async with chat(slow_beat) as (front, shower), worker(slow_beat) as (_back, turns):
        await asyncio.sleep(0.5)  # its first look at the table is over: from now on it waits for news
        asked = time.monotonic()
        job_id = await start_story(front)
        await until(lambda: job_id in turns.progress, "the worker to start the turn", timeout=5, every=0.01)
        assert time.monotonic() - asked < 1.0
        await turns.writing(job_id, timeout=5)
        await until(lambda: message_ref(pg_url, job_id), "the chat process to record its message", timeout=5)
        undone = time.monotonic()
        assert (await front.sessions.handle(ChannelRef("test", "guild", "harbour"), ALICE, c.Undo())).ok
        assert await turns.wait(job_id, timeout=5) is None  # withdrawn, not written to the end
        assert time.monotonic() - undone < 1.0
        _, shown = await shower.end_of(job_id)
    assert shown is None
    assert await bot_passages(pg_url, job_id) == []


# ---------------------------------------------------------------------- streaming across processes


async def test_a_workers_turn_streams_to_the_chat_process_that_shows_it(
    pg_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = openai_config(pg_url, fake, tmp_path)
    async with chat(config) as (front, shower), worker(config) as (_back, turns):
        job_id = await start_story(front)
        ref, shown = await shower.end_of(job_id)
        written = await turns.passage(job_id)
    assert shower.posts == [job_id] and ref is not None  # "writing…" posted once, then edited
    texts = shower.messages[ref].shown
    assert texts[0] == "writing…" and texts[-1] == f"END {written.passage.text}"  # type: ignore[union-attr]
    growing = texts[1:-1]
    assert growing, "the text streamed before the end"
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(growing))
    assert shown is not None and shown.passage is not None and shown.passage.id == written.passage.id  # type: ignore[union-attr]
    assert await job_row(pg_url, job_id) == ("done", 1, ref, True)  # the message recorded; shown


async def test_of_two_chat_processes_one_shows_the_turn(pg_url: str, fake: FakeOpenAI, tmp_path: Path) -> None:
    """Both hear the news; the turn's showing is claimed in its row, so one posts "writing…",
    streams, and shows the end; the other shows nothing."""
    config = openai_config(pg_url, fake, tmp_path)
    async with (
        chat(config, "first") as (_, first),
        chat(config, "second") as (front, second),
        worker(config) as (_back, turns),
    ):
        job_ids = [await start_story(front, f"channel-{n}") for n in range(4)]
        for job_id in job_ids:
            await turns.passage(job_id)
            await until(lambda job_id=job_id: first.ends_of(job_id) + second.ends_of(job_id), timeout=20)
        await asyncio.sleep(0.5)  # any second showing would come now
    for job_id in job_ids:
        showers = [shower for shower in (first, second) if job_id in shower.posts]
        assert len(showers) == 1, f"turn {job_id} was posted by {[s.name for s in showers]}"
        assert first.ends_of(job_id) + second.ends_of(job_id) == 1
        assert showers[0].ends_of(job_id) == 1  # the one that streamed it shows its end
        assert (await job_row(pg_url, job_id))[3] is True


async def test_a_chat_process_restarted_mid_turn_shows_the_end_in_the_recorded_message(
    pg_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.pieces = lambda body: PIECES * 3  # a turn of about four seconds
    config = openai_config(pg_url, fake, tmp_path)
    async with worker(config) as (_back, turns):
        async with chat(config, "before") as (front, before):
            job_id = await start_story(front)
            await until(lambda: len(before.texts(job_id)) >= 3, "the first chat process to stream", timeout=20)
        posted = next(iter(before.messages))
        assert (await job_row(pg_url, job_id))[:3] == ("running", 1, posted)  # stopped while the worker writes
        async with chat(config, "after") as (_, after):
            ref, shown = await after.end_of(job_id)
            written = await turns.passage(job_id)
    assert after.posts == []  # nothing new posted: the restarted process edits the recorded message
    assert after.began == [(job_id, posted)]
    assert ref == posted and shown is not None and shown.passage is not None
    assert shown.passage.text == written.passage.text  # type: ignore[union-attr]
    assert await job_row(pg_url, job_id) == ("done", 1, posted, True)


# ---------------------------------------------------------------------- a worker killed mid-turn


async def test_a_worker_killed_mid_turn_is_taken_over_and_written_once(
    pg_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    """A real `storybot worker` process writes the turn and streams it to the chat process; killed
    with SIGKILL, its turn is run again by the other worker once its lease is over, and the story
    gets one passage, shown in the message the first one's stream posted."""
    fake.pieces = lambda body: PIECES * 4  # about five seconds
    port = free_port()
    env = {**openai_env(pg_url, fake, tmp_path, lease_s=1.0), "STORYBOT_METRICS_PORT": str(port)}
    config = make_config(tmp_path, env)
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "worker"],
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        async with chat(config) as (front, shower):
            await until_healthy(port, process, log)
            job_id = await start_story(front)
            await until(lambda: len(shower.texts(job_id)) >= 3, "the worker process to stream", timeout=20)
            async with worker(config) as (_back, turns):
                await asyncio.sleep(1.5)  # past the lease: a live worker's turn is never taken
                assert job_id not in turns.progress
                process.kill()
                process.wait(timeout=10)
                written = await turns.passage(job_id, timeout=25)
                ref, shown = await shower.end_of(job_id, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert await bot_passages(pg_url, job_id) == [written.passage.text]  # type: ignore[union-attr]
    assert await job_row(pg_url, job_id) == ("done", 2, ref, True)
    assert shower.posts == [job_id]  # one message, from the first worker's stream to the end
    assert shown is not None and shown.passage is not None and shown.passage.id == written.passage.id  # type: ignore[union-attr]


async def until_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    def alive() -> None:
        assert process.poll() is None, f"the worker exited:\n{log.read_text(errors='replace')[-3000:]}"

    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
            return False

        await until(healthy, "the worker to answer /healthz", timeout=60, every=0.05, alive=alive)
