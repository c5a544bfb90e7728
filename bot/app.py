"""Assemble the running core: database, story rules, generation queue. Every entry point uses it."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from bot.config import Config, ConfigError
from bot.generation.backend import Backend
from bot.generation.queue import GenerationQueue
from bot.generation.relay import TurnFollower, TurnRelay
from bot.jobs import cancelled_in
from bot.metrics import Metrics
from bot.reminders import Reminders
from bot.sessions import SessionManager
from storage.database import Database, DatabaseBusy, DatabaseUnavailable
from storage.notify import JOBS_CHANNEL, TURNS_CHANNEL, Listener, listener_for

# The errors opening the app or a transaction may raise, for the adapters to answer, and the
# database's type, for the ones that serve it (they meet the core here and never import storage/).
__all__ = [
    "App",
    "Database",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "Role",
    "configured_backend_factory",
    "migrated_database",
    "open_app",
    "open_database",
]

log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a bot process does. One process does everything (``ALL``, the default and SQLite's
    only choice); on PostgreSQL the chat side and the writing may run in processes of their own,
    as many of each as the load needs."""

    ALL = "all"  # talks to its platform and writes the bot's turns
    CHAT = "chat"  # `storybot discord|slack --no-worker`: talks and shows; workers write
    WORKER = "worker"  # `storybot worker`: writes the turns, for the chat processes to show


@dataclass
class App:
    config: Config
    db: Database
    sessions: SessionManager
    queue: GenerationQueue
    reminders: Reminders  # the round-robin turn calls; each platform adds its listener
    metrics: Metrics  # for /metrics (adapters/web/ops.py); the adapters time their acknowledgements on it


def open_database(config: Config) -> Database:
    """The configured database, for every command that needs one."""
    settings = config.database
    return Database(
        settings.url,
        echo=settings.echo,
        busy_timeout_ms=settings.busy_timeout_ms,
        deadline_s=settings.write_deadline_s,
    )


@asynccontextmanager
async def migrated_database(config: Config) -> AsyncIterator[Database]:
    """The configured database, migrated, for a command that reads or writes it and exits
    (``storybot export``, ``stats``, ``finetune``…): no process lock, no queue."""
    db = open_database(config)
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()


def configured_backend_factory(config: Config) -> Callable[[str], Backend]:
    """Model name -> the backend ``model.backend`` chooses: this process, or an OpenAI-compatible server."""

    def make(model_name: str) -> Backend:
        # Imported here: torch and transformers take seconds to import, and commands such as
        # `storybot migrate` never need them.
        if config.model.backend == "openai":
            from bot.generation.openai_backend import OpenAIBackend

            return OpenAIBackend(config, model_name)
        from bot.generation.local import LocalBackend

        return LocalBackend(config.model, model_name)

    return make


def _listen(db: Database, queue: GenerationQueue, role: Role) -> tuple[Listener | None, TurnFollower | None]:
    """On PostgreSQL, what the other processes' notifications do here: a process that writes
    wakes for jobs queued or cancelled anywhere; a worker relays its turns to the chat processes;
    a process that shows turns follows the turns workers write. Nothing on SQLite."""
    listener = listener_for(db)
    if listener is None:
        return None, None
    if role is not Role.CHAT:
        listener.subscribe(JOBS_CHANNEL, lambda news: queue.wake(cancelled=cancelled_in(news)), missed=queue.wake)
    if role is Role.WORKER:
        queue.add_listener(TurnRelay(queue))
        return listener, None
    follower = TurnFollower(queue)
    queue.follow(follower)
    listener.subscribe(TURNS_CHANNEL, follower.heard, missed=queue.show_owed_soon)
    return listener, follower


@asynccontextmanager
async def open_app(
    config: Config, *, role: Role = Role.ALL, backend_factory: Callable[[str], Backend] | None = None
) -> AsyncIterator[App]:
    """Migrate the database, start the queue and the turn reminders; on exit stop them and close the
    database.

    On SQLite the process holds the file's process lock throughout: a second bot process on
    the same file refuses to start (``DatabaseUnavailable``) instead of re-running our turns.
    A ``role`` other than ``ALL`` needs PostgreSQL (``ConfigError`` on SQLite): a chat process
    (``CHAT``) claims no job and loads no model; a worker (``WORKER``) serves no platform, so it
    neither calls turns nor closes votes (the chat processes do).
    """
    db = open_database(config)
    try:
        if role is not Role.ALL and db.is_sqlite:
            raise ConfigError(
                "`storybot worker` and `--no-worker` need PostgreSQL, and database.url is SQLite, which serves "
                "one process: run one `storybot console|discord|slack` (it writes its own turns), or set "
                "database.url to a PostgreSQL server"
            )
        with db.process_lock():
            await db.migrate()
            sessions = SessionManager(db, config)
            queue = GenerationQueue(
                sessions,
                config,
                backend_factory or configured_backend_factory(config),
                sessions.checks,
                claims=role is not Role.CHAT,
            )
            sessions.limit_passage_length(queue.longest_passage)
            sessions.preview_prompts_with(queue.preview)
            reminders = Reminders(sessions)
            if role is not Role.WORKER:
                queue.add_listener(reminders)  # a bot turn's end begins the next round: its first turn is called
            metrics = Metrics()
            metrics.watch(db, queue)  # (a listener too, before any platform's)
            listener, follower = _listen(db, queue, role)
            if listener is not None:
                await listener.start()  # (before the queue: a job queued from now on wakes it)
            await queue.start()
            if role is not Role.WORKER:
                reminders.start()
            # What is set up by now (torch, transformers, the app) lives as long as the process:
            # out of the collector's sight, full collections set off while the model loads in its
            # thread stop holding the event loop for 100-200 ms each. Once per process: a second
            # app in the same process (the tests) would only freeze the first one's garbage.
            if not gc.get_freeze_count():
                gc.freeze()
            # A classifier check loads its model in the background too, beside the writer's.
            checks_loading = asyncio.create_task(sessions.checks.warm_up(), name="checks-warm-up")
            try:
                yield App(config, db, sessions, queue, reminders, metrics)
            finally:
                checks_loading.cancel()
                if listener is not None:
                    await listener.stop()
                if follower is not None:
                    await follower.stop()  # (gives back the turns it shows: another process shows them on)
                await queue.stop()  # a turn cut short now runs again at the next start
                await reminders.stop()
                await sessions.checks.close()
    finally:
        await db.close()
