"""``storybot worker``: a process that writes bot turns and nothing else (PostgreSQL).

It claims jobs from the shared job table (``FOR UPDATE SKIP LOCKED``), wakes on PostgreSQL
notifications when a chat process queues or cancels one, writes with the configured backend (the
local model, or an OpenAI-compatible server such as vLLM or llama.cpp's), and hands each turn's
text, as it grows, and its end to the chat processes that show it (``bot/generation/relay.py``).
It serves no platform: run it beside ``storybot discord|slack --no-worker``. With
``metrics.port`` it serves ``/healthz`` and ``/metrics`` like the chat processes.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.web.ops import ops_server
from bot.app import Role, open_app
from bot.config import Config

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


async def run_worker(config: Config) -> None:
    """Write bot turns until cancelled."""
    async with open_app(config, role=Role.WORKER) as app, ops_server(app):
        settings = app.config
        log.info(
            "writing bot turns with %s (%s backend), up to %d at once",
            settings.model.name,
            settings.model.backend,
            settings.generation.max_batch,
        )
        await asyncio.Event().wait()
