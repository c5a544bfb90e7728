"""``storybot web``'s server: the archive's routes and the ops routes on one aiohttp site."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from adapters.web.app import archive_app
from adapters.web.ops import ops_routes
from bot.config import Config, ConfigError
from bot.library import open_library
from bot.metrics import Metrics

__all__ = ["run_web", "web_server"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def web_server(config: Config, *, host: str, port: int) -> AsyncIterator[int]:
    """Serve the archive on ``host:port`` (port 0: any free one) until exit; yields the port."""
    async with open_library(config) as library:
        metrics = Metrics()
        metrics.watch(library.db)  # no queue here: the database's health and figures alone
        runner = web.AppRunner(archive_app(library, ops_routes(library.db, None, metrics)), access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as error:
                raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
            bound = runner.addresses[0][1] if runner.addresses else port
            log.info("serving the web archive on http://%s:%d/", host, bound)
            yield bound
        finally:
            await runner.cleanup()


async def run_web(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the archive until cancelled (Ctrl-C); ``host`` and ``port`` default to ``[web]``'s."""
    async with web_server(config, host=host or config.web.host, port=config.web.port if port is None else port):
        await asyncio.Event().wait()
