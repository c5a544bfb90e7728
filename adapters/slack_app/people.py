"""Who is clicking and typing: a person's display name and whether they moderate the workspace.

Slack's payloads carry a user id and a legacy username only, so names and roles come from
``users.info``. Workspace admins and owners are moderators (the story's starter gets the same
rights from the core). Answers are remembered for ``slack.user_cache_s`` so that a busy story
does not call ``users.info`` for every passage.
"""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.identity import Actor

log = logging.getLogger(__name__)


def _name(user: dict[str, object], fallback: str) -> str:
    profile = user.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    for candidate in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return fallback


class People:
    """``users.info``, cached: user id -> the :class:`Actor` the core sees."""

    def __init__(self, client: AsyncWebClient, ttl_s: float) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._known: dict[tuple[str, str], tuple[float, Actor]] = {}

    async def actor(self, team_id: str, user_id: str, fallback_name: str) -> Actor:
        """The person, as a moderator when they are a workspace admin or owner.

        If Slack cannot say (an error, a missing scope), the person is an ordinary member under
        the name the payload gave: no one gains rights from a failure.
        """
        key = (team_id, user_id)
        cached = self._known.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError as error:
            log.warning("users.info failed for %s: %s", user_id, error.response.get("error"))
            return Actor(user_id, fallback_name or user_id)
        user = response.get("user") or {}
        moderator = any(bool(user.get(flag)) for flag in ("is_admin", "is_owner", "is_primary_owner"))
        actor = Actor(user_id, _name(user, fallback_name or user_id), is_moderator=moderator)
        self._known[key] = (time.monotonic(), actor)
        return actor
