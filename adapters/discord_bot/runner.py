"""What commands and buttons need from the client, without importing it (no import cycle)."""

from __future__ import annotations

from typing import Any, Protocol

import discord

from bot import commands as c


class CommandRunner(Protocol):
    """Implemented by ``client.StoryClient``; reached as ``interaction.client``."""

    async def run_command(
        self, interaction: discord.Interaction[Any], command: c.Command, *, story_id: int | None = None
    ) -> None:
        """Acknowledge at once, apply ``command`` through the core, then show the result."""

    async def reject(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Answer with a one-line error only the asker sees; nothing changes."""
