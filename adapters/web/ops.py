"""``GET /healthz`` and ``GET /metrics``, for whoever runs the bot, the same on every server of the
product: the web archive's, Slack's HTTP mode's, and (with ``metrics.port``) a small server of
their own in ``storybot discord`` and ``storybot slack`` (``ops_server``).

``/healthz`` is ``bot.health``'s verdict as JSON: 200 when healthy, 503 otherwise (``/readyz``,
the name Slack's HTTP mode gave its load balancer check first, answers the same). ``/metrics`` is
``bot.metrics`` in the Prometheus text format. A process without a generation queue (the web
archive) passes ``queue=None``: its health is the database's, and its model part says the model
is not its job.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.app import App, Database
from bot.config import ConfigError
from bot.generation.queue import GenerationQueue
from bot.health import check_health
from bot.metrics import Metrics

__all__ = ["HEALTH_PATH", "METRICS_PATH", "READY_PATH", "ops_routes", "ops_server"]

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
NO_STORE = {"Cache-Control": "no-store"}  # a proxy must never answer a health check from its cache


def ops_routes(db: Database, queue: GenerationQueue | None, metrics: Metrics) -> list[web.RouteDef]:
    """The routes, over the process's database, its queue (None: it has none) and its metrics
    (``Metrics.watch`` must have been given the same database and queue)."""

    async def health(request: web.Request) -> web.Response:
        now = await check_health(db, queue)
        return web.json_response(now.as_dict(), status=200 if now.healthy else 503, headers=NO_STORE)

    async def exposition(request: web.Request) -> web.Response:
        body = await metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})

    return [web.get(HEALTH_PATH, health), web.get(READY_PATH, health), web.get(METRICS_PATH, exposition)]


@asynccontextmanager
async def ops_server(app: App) -> AsyncIterator[int | None]:
    """With ``metrics.port`` set, serve ``app``'s ops routes on ``metrics.host:port`` until exit;
    yields the port (None: not set, nothing served)."""
    settings = app.config.metrics
    if not settings.port:
        yield None
        return
    server = web.Application()
    server.add_routes(ops_routes(app.db, app.queue, app.metrics))
    runner = web.AppRunner(server, access_log=None)  # a scrape every few seconds is no news
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as error:
            raise ConfigError(
                f"metrics.port: cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
            ) from error
        log.info("serving %s and %s on http://%s:%d", HEALTH_PATH, METRICS_PATH, settings.host, settings.port)
        yield settings.port
    finally:
        await runner.cleanup()
