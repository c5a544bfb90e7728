"""The Discord adapter: ``/story`` as an app-command group, buttons, live streaming of bot turns.

``run_discord`` is what ``storybot discord`` runs. Platform code only: the story rules are the
core's (``bot.sessions``); this package turns interactions into commands and results into
messages in Discord's idiom.
"""

from __future__ import annotations

import logging

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord_bot.client import StoryClient, client_class
from adapters.web.ops import ops_server
from bot.app import Role, open_app
from bot.config import Config, ConfigError, DiscordConfig

__all__ = ["StoryClient", "configure_endpoints", "run_discord"]

log = logging.getLogger(__name__)


def configure_endpoints(settings: DiscordConfig) -> None:
    """Point discord.py at ``api_base_url`` and ``gateway_url`` (a proxy, or a test server).

    discord.py keeps both as class attributes, read for every request and every connection.
    """
    Route.BASE = settings.api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def _check(settings: DiscordConfig) -> None:
    if not settings.token.strip():
        raise ConfigError(
            "discord.token is empty: set STORYBOT_DISCORD_TOKEN to the bot token from the Discord developer portal."
        )
    bad = [guild for guild in settings.guild_ids if not guild.isdigit()]
    if bad:
        raise ConfigError(f"discord.guild_ids = {bad!r}: guild ids are numbers (Developer Mode → Copy Server ID).")


async def run_discord(config: Config, *, sync: bool = False, role: Role = Role.ALL) -> None:
    """Connect and serve until cancelled; ``sync`` registers /story with Discord first (and, with
    ``metrics.port``, /healthz and /metrics). ``Role.CHAT``: `storybot worker` processes write
    the bot's turns (``--no-worker``)."""
    settings = config.discord
    _check(settings)
    configure_endpoints(settings)
    async with open_app(config, role=role) as app, ops_server(app):
        client = client_class(settings.sharding)(app, sync=sync)
        async with client:
            try:
                await client.start(settings.token)
            except discord.LoginFailure as error:
                raise ConfigError(
                    "Discord refused discord.token; copy the bot token again from the developer portal."
                ) from error
            except aiohttp.ClientConnectionError as error:
                raise ConfigError(f"cannot reach Discord at discord.api_base_url / gateway_url: {error}") from error
            except discord.PrivilegedIntentsRequired as error:
                raise ConfigError(
                    "discord.message_content_thread_turns needs the Message Content intent: enable it for the bot "
                    "in the developer portal, or set it to false."
                ) from error
