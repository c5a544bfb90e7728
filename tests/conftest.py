"""Shared fixtures: a tiny real language model, real databases, and configs pointing at them.

Nothing here downloads anything: the model and its tokenizer are built from a few paragraphs,
saved with ``save_pretrained`` and loaded back through the product's own loading code.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.models import build_random_classifier, build_random_gpt2, build_random_llama
from bot.app import App, open_app
from bot.config import Config, load_config
from bot.jobs import JobSpec
from bot.results import Result
from bot.sessions import SessionManager
from storage.database import Database
from storage.models import utcnow
from tests.waiting import until

POSTGRES_ADMIN_URL = os.environ.get("STORYBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

CORPUS = """\
The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud.
She lit the wick and watched the beam sweep across the rocks. A ship answered with a horn.
In the village below, the baker was already awake. Flour drifted through the window light.
The dragon slept beneath the mountain for a thousand years. Nobody remembered its name.
When the storm came, the children ran to the harbour. The boats rocked against the ropes.
"Who goes there?" asked the guard. The traveller smiled and lowered her hood.
It was a dark and stormy night. The wind howled through the empty streets of the old town.
He opened the letter slowly. Inside was a map, a key, and a single word: remember.
"""


def _build_tiny_model(folder: Path) -> None:
    build_random_gpt2(folder, CORPUS.splitlines() * 4, vocab_size=400, n_positions=1024, n_embd=32, n_layer=2, n_head=2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    _build_tiny_model(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (grouped-query attention, rotary positions, tied embeddings: the shape of
    SmolLM2) with the same tokenizer. Its weights are drawn wider than Llama's default (0.02): with
    those, this small a model writes one token over and over whatever its context and positions,
    and no comparison of texts could catch a row decoded at the wrong positions."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_random_llama(
        folder,
        CORPUS.splitlines() * 4,
        vocab_size=400,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_theta=10000,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )
    return folder


CLASSIFIER_LABELS = ("toxic", "obscene", "threat")


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random multi-label BERT classifier (labels ``CLASSIFIER_LABELS``) with a window of
    64 positions, so that a paragraph already needs several windows."""
    folder = tmp_path_factory.mktemp("tiny-classifier")
    build_random_classifier(
        folder,
        CORPUS.splitlines() * 4,
        vocab_size=400,
        labels=CLASSIFIER_LABELS,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    return folder


def _run_blocking(coroutine_function: Callable[[], Awaitable[None]]) -> None:
    """Run admin SQL from sync fixtures, even when pytest-asyncio already runs a loop here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(coroutine_function())).result()


def _postgres_available() -> str | None:
    """None when the server answers, else why not."""
    import asyncpg

    async def ping() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=3)
        await connection.close()

    try:
        _run_blocking(ping)
    except Exception as error:  # any failure to connect means "skip", with the reason
        return f"no PostgreSQL server answers at {POSTGRES_ADMIN_URL}: {error}"
    return None


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    reason = _postgres_available()
    if reason:
        pytest.skip(reason)
    import asyncpg

    name = f"storybot_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    _run_blocking(lambda: admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://")
    _run_blocking(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_postgres(url: str) -> None:
    """Empty every table so each test starts from nothing (the schema stays)."""
    from sqlalchemy import text

    from storage.models import Base

    db = Database(url)
    try:
        await db.migrate()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await db.close()


def sqlite_url(folder: Path) -> str:
    """A fresh SQLite file in ``folder`` (created, with its schema, when the bot first opens it)."""
    return f"sqlite+aiosqlite:///{folder / 'stories.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test that takes this runs twice: on a fresh SQLite file and on PostgreSQL.

    Only for the tests of what the two do differently: the story rules and the archive in the
    database, claiming jobs (``SKIP LOCKED``), heartbeats, leases and takeovers, owed showings,
    migrations, processes that crash. A test that runs the model takes ``config``, on SQLite:
    the model writes the same whatever stores its passages, and twice only made it slower.
    """
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url = request.getfixturevalue("postgres_database")
    await _reset_postgres(url)
    yield url


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


async def read_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Read a bot's database directly (SQLite file or PostgreSQL), as an operator would check it
    beside the bot's processes, in a connection of its own."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


def make_config(tmp_path: Path, env: dict[str, str]) -> Config:
    """A real config loaded the way users load it: an (empty) file plus STORYBOT_* variables."""
    path = tmp_path / "storybot.toml"
    if not path.exists():
        path.write_text("")
    return load_config(path, env=env)


def tiny_model_env(database_url: str, model_dir: Path) -> dict[str, str]:
    """Settings for a quick bot on the tiny model: short passages, no streaming delay, no rate limit."""
    return {
        "STORYBOT_DATABASE_URL": database_url,
        "STORYBOT_MODEL_NAME": str(model_dir),
        "STORYBOT_MODEL_MAX_NEW_TOKENS": "16",
        "STORYBOT_MODEL_MIN_NEW_TOKENS": "4",
        "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
        "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0",
        "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
    }


@pytest.fixture
def config(tmp_path: Path, tiny_model_dir: Path) -> Config:
    """The tiny model on a fresh SQLite file: for tests of what the bot does with its model (the
    engine, the queue, turns end to end), which nothing in the database changes. A test whose
    outcome depends on the database takes ``config_on_each_database`` instead."""
    return make_config(tmp_path, tiny_model_env(sqlite_url(tmp_path), tiny_model_dir))


@pytest.fixture
def config_on_each_database(tmp_path: Path, tiny_model_dir: Path, database_url: str) -> Config:
    """``config`` on SQLite, then on PostgreSQL (see ``database_url``): for what the database
    decides, e.g. which process takes a turn back once its writer's lease has run out."""
    return make_config(tmp_path, tiny_model_env(database_url, tiny_model_dir))


class Clock:
    """A clock the test moves by hand, for turn timeouts and rate limits."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rules(config_on_each_database: Config, clock: Clock) -> AsyncIterator[SessionManager]:
    """The story rules on each real database, with no generation worker: queued bot turns stay queued."""
    db = Database(config_on_each_database.database.url)
    await db.migrate()
    try:
        yield SessionManager(db, config_on_each_database, clock=clock)
    finally:
        await db.close()


class TurnRecorder:
    """A queue listener that lets a test wait for the bot's turns to finish.

    ``finished`` holds each turn's latest outcome; ``outcomes`` all of them, in order (a turn
    that runs again, after its passage could not be stored, finishes twice).
    """

    def __init__(self) -> None:
        self.progress: dict[int, list[str]] = {}
        self.finished: dict[int, Result | None] = {}
        self.outcomes: dict[int, list[Result | None]] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._changed = asyncio.Event()

    def _event(self, job_id: int) -> asyncio.Event:
        return self._events.setdefault(job_id, asyncio.Event())

    async def turn_started(self, job: JobSpec) -> None:
        self.progress.setdefault(job.job_id, [])

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        self.progress.setdefault(job.job_id, []).append(text)

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        self.finished[job.job_id] = result
        self.outcomes.setdefault(job.job_id, []).append(result)
        self._event(job.job_id).set()
        self._changed.set()

    async def wait(self, job_id: int, timeout: float = 60) -> Result | None:
        await asyncio.wait_for(self._event(job_id).wait(), timeout)
        return self.finished[job_id]

    async def passage(self, job_id: int, timeout: float = 60) -> Result:
        """Until the turn's passage was stored, whatever outcomes came before it."""
        async with asyncio.timeout(timeout):
            while True:
                for result in self.outcomes.get(job_id, []):
                    if result is not None and result.passage is not None:
                        return result
                self._changed.clear()
                await self._changed.wait()

    async def writing(self, job_id: int, timeout: float = 60) -> None:
        """Until the bot's turn has streamed its first text: it is being written now."""
        await until(
            lambda: self.progress.get(job_id),
            f"bot turn {job_id} to stream its first text",
            timeout=timeout,
            every=0.01,
        )


@pytest.fixture
async def app(config: Config) -> AsyncIterator[tuple[App, TurnRecorder]]:
    """The whole core (database, rules, generation queue with the tiny model) and a turn recorder."""
    recorder = TurnRecorder()
    async with open_app(config) as running:
        running.queue.add_listener(recorder)
        yield running, recorder
