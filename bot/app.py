"""Assemble the running core: database, story rules, generation queue. Every entry point uses it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Config
from bot.generation.backend import Backend
from bot.generation.queue import GenerationQueue
from bot.sessions import SessionManager
from storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class App:
    config: Config
    db: Database
    sessions: SessionManager
    queue: GenerationQueue


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
async def open_app(
    config: Config, *, backend_factory: Callable[[str], Backend] | None = None
) -> AsyncIterator[App]:
    """Migrate the database, start the queue; on exit stop the queue and close the database."""
    db = Database(config.database.url, echo=config.database.echo, busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        await db.migrate()
        sessions = SessionManager(db, config)
        queue = GenerationQueue(sessions, config, backend_factory or configured_backend_factory(config))
        await queue.start()
        try:
            yield App(config, db, sessions, queue)
        finally:
            await queue.stop()
    finally:
        await db.close()
