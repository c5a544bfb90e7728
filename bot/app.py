"""Assemble the running core: database, story rules, generation queue. Every entry point uses it."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Config
from bot.generation.backend import Backend
from bot.generation.queue import GenerationQueue
from bot.reminders import Reminders
from bot.sessions import SessionManager
from storage.database import Database, DatabaseBusy, DatabaseUnavailable

# The errors opening the app or a transaction may raise, for the adapters to answer (they meet
# the core here and never import storage/).
__all__ = [
    "App",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "configured_backend_factory",
    "migrated_database",
    "open_app",
    "open_database",
]

log = logging.getLogger(__name__)


@dataclass
class App:
    config: Config
    db: Database
    sessions: SessionManager
    queue: GenerationQueue
    reminders: Reminders  # the round-robin turn calls; each platform adds its listener


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


@asynccontextmanager
async def open_app(config: Config, *, backend_factory: Callable[[str], Backend] | None = None) -> AsyncIterator[App]:
    """Migrate the database, start the queue and the turn reminders; on exit stop them and close the
    database.

    On SQLite the process holds the file's process lock throughout: a second bot process on
    the same file refuses to start (``DatabaseUnavailable``) instead of re-running our turns.
    """
    db = open_database(config)
    try:
        with db.process_lock():
            await db.migrate()
            sessions = SessionManager(db, config)
            queue = GenerationQueue(
                sessions, config, backend_factory or configured_backend_factory(config), sessions.checks
            )
            sessions.limit_passage_length(queue.longest_passage)
            sessions.preview_prompts_with(queue.preview)
            reminders = Reminders(sessions)
            queue.add_listener(reminders)  # a bot turn's end begins the next round: its first turn is called
            await queue.start()
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
                yield App(config, db, sessions, queue, reminders)
            finally:
                checks_loading.cancel()
                await queue.stop()  # first: a turn cut short now runs again at the next start
                await reminders.stop()
                await sessions.checks.close()
    finally:
        await db.close()
