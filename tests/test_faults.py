"""Fault injection: a database locked past every timeout, a worker killed or failing, bytes that
are not UTF-8, a second process on the same SQLite file, lengths past the model's context.

After each fault, every passage that was acknowledged is stored exactly once and the next bot
turn is written: the bot never stops writing for good.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.console import ConsoleChannel
from bot import commands as c
from bot.app import App, open_app
from bot.config import Config
from bot.generation.queue import NOT_STORED
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import Result
from bot.sessions import DATABASE_BUSY
from storage.models import GenerationJob, Passage
from tests.conftest import TurnRecorder, make_config, tiny_model_env
from tests.test_console import console_env, storybot_command
from tests.waiting import until

ALICE = Actor("u-alice", "Alice")
HERE = ChannelRef("console", "local", "faults")


@asynccontextmanager
async def locked(db_path: Path) -> AsyncIterator[threading.Event]:
    """Another program holds the SQLite file with ``BEGIN EXCLUSIVE`` until the event is set (or the block ends).

    Waiting for the lock must leave the event loop free: the bot may be inside a transaction.
    """
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(db_path, isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            held.set()
            release.wait(60)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert await asyncio.to_thread(held.wait, 10), "could not lock the database"
    try:
        yield release
    finally:
        release.set()
        await asyncio.to_thread(thread.join, 10)


def release_after(release: threading.Event, seconds: float) -> None:
    threading.Timer(seconds, release.set).start()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "faults.db"


def fault_config(tmp_path: Path, model_dir: Path, db_path: Path, **env: str) -> Config:
    """The tiny model on a SQLite file that gives up waiting quickly: 50 ms busy timeout, 0.3 s deadline."""
    return make_config(
        tmp_path,
        {
            **tiny_model_env(f"sqlite+aiosqlite:///{db_path}", model_dir),
            "STORYBOT_DATABASE_BUSY_TIMEOUT_MS": "50",
            "STORYBOT_DATABASE_WRITE_DEADLINE_S": "0.3",
            **{f"STORYBOT_{key.upper()}": value for key, value in env.items()},
        },
    )


async def bot_passages(app: App) -> list[str]:
    async with app.db.read() as tx:
        rows = await tx.execute(select(Passage.text).where(Passage.author_kind == "bot"))
        return list(rows.scalars())


async def count_passages(app: App) -> int:
    async with app.db.read() as tx:
        return int((await tx.execute(select(func.count()).select_from(Passage))).scalar_one())


@pytest.fixture
async def running(tmp_path: Path, tiny_model_dir: Path, db_path: Path) -> AsyncIterator[tuple[App, TurnRecorder]]:
    turns = TurnRecorder()
    async with open_app(fault_config(tmp_path, tiny_model_dir, db_path, generation_job_lease_s="1")) as app:
        app.queue.add_listener(turns)
        yield app, turns


async def start_story(app: App) -> None:
    result = await app.sessions.handle(HERE, ALICE, c.parse('/story start "Faults" mode:free'))
    assert result.ok, result.text


# ---------------------------------------------------------------------- people's writes


async def test_a_write_waits_out_a_lock_held_past_the_busy_timeout(
    tmp_path: Path, tiny_model_dir: Path, db_path: Path
) -> None:
    config = fault_config(tmp_path, tiny_model_dir, db_path, database_write_deadline_s="20")
    async with open_app(config) as app:
        await start_story(app)
        async with locked(db_path) as release:
            release_after(release, 1.0)  # 20 busy timeouts
            result = await app.sessions.handle(HERE, ALICE, c.Add("The lamp was cold."))
        assert result.ok, result.text
        assert await count_passages(app) == 1


async def test_past_the_deadline_the_person_is_told_the_bot_is_busy_and_nothing_changes(
    running: tuple[App, TurnRecorder], db_path: Path
) -> None:
    app, _ = running
    await start_story(app)
    async with locked(db_path):
        result = await app.sessions.handle(HERE, ALICE, c.Add("The lamp was cold."))
    assert (result.ok, result.text) == (False, DATABASE_BUSY)
    assert await count_passages(app) == 0
    again = await app.sessions.handle(HERE, ALICE, c.Add("The lamp was cold."))
    assert again.ok and await count_passages(app) == 1


# ---------------------------------------------------------------------- the worker


async def test_the_worker_survives_a_locked_database_and_writes_the_next_turn(
    running: tuple[App, TurnRecorder], db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, turns = running
    await start_story(app)
    async with locked(db_path):
        app.queue.wake()  # the worker looks at the job table, and finds it locked past every retry
        await until(lambda: app.queue.health().errors, "the worker to fail on the locked table", timeout=10, every=0.05)
        assert not app.queue.health().healthy
    failures = [r for r in caplog.records if r.name == "bot.generation.queue" and r.levelname == "ERROR"]
    assert len(failures) == 1, "the first failure is logged once, with its context"
    result = await app.sessions.handle(HERE, ALICE, c.Continue())
    assert result.job_id is not None
    assert (await turns.passage(result.job_id, timeout=30)).passage is not None
    health = app.queue.health()
    assert health.worker_running and health.healthy


async def test_a_passage_the_database_would_not_take_is_written_again(
    running: tuple[App, TurnRecorder], db_path: Path
) -> None:
    app, turns = running
    await start_story(app)
    holding: list[AbstractAsyncContextManager[threading.Event]] = []

    class LockWhenWriting(TurnRecorder):
        async def turn_started(self, job: JobSpec) -> None:
            if not holding:  # the first time only: the database is locked while the bot writes
                holding.append(locked(db_path))  # (kept: dropping it would let go of the lock)
                release_after(await holding[0].__aenter__(), 1.5)

    app.queue.add_listener(LockWhenWriting())
    result = await app.sessions.handle(HERE, ALICE, c.Continue())
    assert result.job_id is not None
    stored = (await turns.passage(result.job_id, timeout=30)).passage
    first = turns.outcomes[result.job_id][0]
    assert first is not None and (first.ok, first.text) == (False, NOT_STORED)
    assert stored is not None and await bot_passages(app) == [stored.text]


async def test_a_killed_worker_is_started_again(running: tuple[App, TurnRecorder]) -> None:
    app, turns = running
    await start_story(app)
    worker = app.queue._worker
    assert worker is not None
    worker.cancel()
    await asyncio.sleep(0.1)
    health = app.queue.health()
    assert health.restarts == 1 and health.worker_running
    result = await app.sessions.handle(HERE, ALICE, c.Continue())
    assert result.job_id is not None
    assert (await turns.passage(result.job_id, timeout=30)).passage is not None


class RefusingPlatform(TurnRecorder):
    """A platform that will not take the first showing of a turn (a network error, a 5xx)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        await super().turn_finished(job, result)
        if self.refused == 0:
            self.refused += 1
            raise ConnectionError("the platform did not answer")


async def test_a_turn_the_platform_would_not_show_is_shown_again_later(running: tuple[App, TurnRecorder]) -> None:
    app, _ = running
    platform = RefusingPlatform()
    app.queue.add_listener(platform, shows=HERE.platform)
    await start_story(app)
    result = await app.sessions.handle(HERE, ALICE, c.Continue())
    assert result.job_id is not None
    await until(  # the lease is 1 s: owed again a second after the refusal
        lambda: len(platform.outcomes.get(result.job_id, [])) >= 2, "a second showing", timeout=30, every=0.05
    )
    first, again = platform.outcomes[result.job_id]
    assert first is not None and again is not None and first.passage == again.passage

    async def shown_at() -> object:
        async with app.db.read() as tx:
            job = await tx.get(GenerationJob, result.job_id)
            return job.shown_at if job is not None else None

    await until(shown_at, "the turn to be marked shown (once turn_finished has returned)", timeout=10, every=0.05)
    await asyncio.sleep(1.5)
    assert len(platform.outcomes[result.job_id]) == 2  # shown, so owed no more


# ---------------------------------------------------------------------- lengths past the context


async def test_a_length_past_the_models_context_is_cut_to_fit(
    tmp_path: Path, tiny_model_dir: Path, db_path: Path
) -> None:
    """The tiny model holds 1,024 tokens; asking for 1,024 new ones used to run off its positions."""
    config = fault_config(tmp_path, tiny_model_dir, db_path, model_max_new_tokens="1024", model_min_new_tokens="1024")
    turns = TurnRecorder()
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        await start_story(app)
        await app.sessions.handle(HERE, ALICE, c.Add("The keeper climbed the stairs at dusk. " * 40))
        result = await app.sessions.handle(HERE, ALICE, c.Continue())
        assert result.job_id is not None
        assert (await turns.passage(result.job_id, timeout=120)).passage is not None


async def test_a_length_the_model_cannot_hold_is_refused_with_its_limit(running: tuple[App, TurnRecorder]) -> None:
    app, _ = running
    await start_story(app)
    assert await app.queue.warm_up() is None
    refused = await app.sessions.handle(HERE, ALICE, c.parse("/story settings length:1000"))
    assert not refused.ok
    assert refused.text.startswith("length can be at most 960 with ")
    assert "\n" not in refused.text
    assert (await app.sessions.handle(HERE, ALICE, c.parse("/story settings length:960"))).ok


# ---------------------------------------------------------------------- the console


async def test_the_console_reports_a_locked_database_and_reads_the_next_line(
    running: tuple[App, TurnRecorder], db_path: Path
) -> None:
    app, _ = running
    out = io.StringIO()
    console = ConsoleChannel(app, out=out, interactive=False)
    await console.handle_line('/story start "Faults" mode:free')
    async with locked(db_path):
        script = io.StringIO("The lamp was cold.\n")
        await console.run(script)
    await console.run(io.StringIO("The sea was loud.\n/story status\n"))
    text = out.getvalue()
    assert f"! {DATABASE_BUSY}" in text
    assert "“Faults” — free mode, rated general, 1 passage" in text
    assert await count_passages(app) == 1


def test_bytes_that_are_not_utf8_cost_nothing_but_themselves(tmp_path: Path, tiny_model_dir: Path) -> None:
    script = (
        b'/story start "Bad \x1b[2J\x07bytes" mode:free\n'
        b"invalid \xff\xfe here\n"
        b"/as \xff\n"
        b"The lamp \x1b]0;pwned\x07was cold.\n"
        b"/story status\n"
    )
    done = subprocess.run(
        [*storybot_command(), "console"],
        input=script,
        capture_output=True,
        env=console_env(tmp_path, tiny_model_dir),
        cwd=tmp_path,
        timeout=240,
        check=False,  # the exit status is asserted below, after the output that explains it
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err
    assert "invalid \ufffd\ufffd here" in out
    assert "(now writing as \ufffd)" in out
    assert "\ufffd: The lamp ]0;pwnedwas cold." in out
    assert "“Bad [2Jbytes” — free mode, rated general, 2 passages" in out
    assert "\x1b" not in out and "\x07" not in out


def test_a_second_process_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = console_env(tmp_path, tiny_model_dir)
    first = subprocess.Popen(
        [*storybot_command(), "console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdin is not None
        assert first.stdout.readline().startswith("storybot console")  # serving now
        second = subprocess.run(
            [*storybot_command(), "console"],
            input="/story start Two\n",
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,  # it must fail: the exit status is asserted below
        )
        assert second.returncode == 1
        assert second.stdout == ""
        [line] = second.stderr.strip().splitlines()
        assert line.startswith(f"storybot: another storybot process (pid {first.pid}) is already serving ")
        out, err = first.communicate('/story start "One" mode:free\nThe lamp was cold.\n/story status\n', timeout=120)
        assert first.returncode == 0, err
        assert "“One” — free mode, rated general, 1 passage" in out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
