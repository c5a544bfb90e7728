"""The Slack adapter: ``/story`` as a slash command, Block Kit buttons, live streaming of bot turns.

``run_slack`` is what ``storybot slack`` runs: Socket Mode by default (an outgoing websocket, no
public URL needed; ``slack.app_token`` + ``slack.bot_token``), or HTTP mode with ``--http``
(Slack posts commands, button clicks and events to ``POST /slack/events``; every request's
signature is checked with ``slack.signing_secret``, and one Slack would never send gets 400, see
``endpoint``). Platform code only: the story rules are the core's (``bot.sessions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_app.endpoint import EVENTS_PATH, events_app
from adapters.slack_app.listeners import SlackStory
from adapters.slack_app.messages import SLACK_ERRORS
from adapters.web.ops import HEALTH_PATH, ops_routes, ops_server
from bot.app import Role, open_app
from bot.config import Config, ConfigError, SlackConfig

__all__ = ["EVENTS_PATH", "SlackServer", "run_slack", "slack_app", "slack_http_server"]

log = logging.getLogger(__name__)


def _require(settings: SlackConfig, *names: str) -> None:
    for name in names:
        if not getattr(settings, name).strip():
            raise ConfigError(
                f"slack.{name} is empty: set STORYBOT_SLACK_{name.upper()} (from your app's page at api.slack.com/apps)."
            )


def web_client(settings: SlackConfig) -> AsyncWebClient:
    """The Web API client: ``api_base_url``, and a wait-and-retry on 429 (``Retry-After``)."""
    base = settings.api_base_url if settings.api_base_url.endswith("/") else settings.api_base_url + "/"
    client = AsyncWebClient(token=settings.bot_token, base_url=base)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=settings.rate_limit_retries))
    return client


@asynccontextmanager
async def slack_app(config: Config, *, http: bool, role: Role = Role.ALL) -> AsyncIterator[SlackStory]:
    """The core plus the Bolt app, signed in to Slack (and, with ``metrics.port``, /healthz and
    /metrics there); closed on exit. ``Role.CHAT``: `storybot worker` processes write the bot's
    turns (``--no-worker``)."""
    settings = config.slack
    _require(settings, "bot_token", "signing_secret" if http else "app_token")
    async with open_app(config, role=role) as core, ops_server(core):
        story = SlackStory(core, web_client(settings), signing_secret=settings.signing_secret, verify_requests=http)
        try:
            await story.start()
        except SlackApiError as error:
            raise ConfigError(
                f"Slack refused slack.bot_token ({error.response.get('error')}); copy the Bot User OAuth Token again."
            ) from error
        except SLACK_ERRORS as error:
            raise ConfigError(f"cannot reach Slack at slack.api_base_url = {settings.api_base_url}: {error}") from error
        try:
            yield story
        finally:
            await story.close()


@dataclass
class SlackServer:
    """A running HTTP-mode app: where it listens."""

    story: SlackStory
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{EVENTS_PATH}"


@asynccontextmanager
async def slack_http_server(
    config: Config, *, host: str, port: int, role: Role = Role.ALL
) -> AsyncIterator[SlackServer]:
    """Serve ``POST /slack/events`` on ``host:port`` (port 0: any free port) until exit."""
    async with slack_app(config, http=True, role=role) as story:
        core = story.core
        runner = web.AppRunner(events_app(story.bolt, ops_routes(core.db, core.queue, core.metrics)))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            try:
                await site.start()
            except OSError as error:  # not a database problem, whatever the CLI would guess
                raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
            bound = runner.addresses[0][1] if runner.addresses else port
            log.info("listening for Slack on http://%s:%d%s (health: %s)", host, bound, EVENTS_PATH, HEALTH_PATH)
            yield SlackServer(story, host, bound)
        finally:
            await runner.cleanup()


async def run_slack(
    config: Config, *, http: bool = False, host: str = "0.0.0.0", port: int = 3000, role: Role = Role.ALL
) -> None:
    """Serve Slack until cancelled: HTTP mode with ``http``, else Socket Mode."""
    if http:
        async with slack_http_server(config, host=host, port=port, role=role):
            await asyncio.Event().wait()
        return
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    async with slack_app(config, http=False, role=role) as story:
        try:
            # The SDK retries a refused connection forever; ask once first, to fail with a clear line.
            await story.bolt.client.apps_connections_open(app_token=config.slack.app_token)
        except SlackApiError as error:
            raise ConfigError(
                f"Slack refused slack.app_token ({error.response.get('error')}); make an app-level token "
                "with the connections:write scope."
            ) from error
        handler = AsyncSocketModeHandler(story.bolt, config.slack.app_token)
        try:
            await handler.start_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
