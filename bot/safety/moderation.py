"""The moderation checker: an OpenAI-compatible ``/moderations`` endpoint judges each text.

Choices this module makes:

- The endpoint is ``safety.moderation_url`` (else ``openai.base_url``) + ``/moderations``, with
  ``safety.moderation_api_key`` (else ``openai.api_key``) as a Bearer token and
  ``safety.moderation_model`` named only when set: a self-hosted server running a moderation
  model, or OpenAI's own service, with the same settings the openai backend already has.
- The service flags categories (``harassment``, ``violence/graphic``, ...); a story's rating may
  allow some (``safety.moderation_allow_teen``, ``moderation_allow_mature``; a general story
  none). A text fails when any other category is flagged, and the reason names those
  categories, the surest first: the service's names are no offending words.
- Anything but a well-formed answer within ``safety.timeout_s`` (an HTTP error, no connection, a
  timeout, a body that is no moderation result) is ``CheckerDown`` with one line: the status or
  what happened, never the key (the service's own error text is left out too: OpenAI's repeats
  part of a wrong key).
- One aiohttp session for every check, opened on the first (it needs the running loop), closed
  by ``close``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.config import OpenAIConfig, SafetyConfig
from bot.safety.checker import CheckerDown, Standard, Verdict
from storage.models import ContentRating

__all__ = ["ModerationChecker"]

log = logging.getLogger(__name__)


class ModerationChecker:
    """Refuses a text the moderation service flags in a category the story's rating does not allow."""

    name = "moderation"

    def __init__(
        self,
        url: str,
        *,
        api_key: str = "",
        model: str = "",
        allowed: Mapping[ContentRating, tuple[str, ...]] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/") + "/moderations"
        self.model = model
        self.allowed = dict(allowed or {})
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, safety: SafetyConfig, openai: OpenAIConfig) -> ModerationChecker:
        return cls(
            safety.moderation_url or openai.base_url,
            api_key=safety.moderation_api_key or openai.api_key,
            model=safety.moderation_model,
            allowed={
                ContentRating.TEEN: safety.moderation_allow_teen,
                ContentRating.MATURE: safety.moderation_allow_mature,
            },
            timeout_s=safety.timeout_s,
        )

    async def check(self, text: str, standard: Standard) -> Verdict:
        result = await self._moderate(text)
        allowed = self.allowed.get(standard.rating, ())
        flagged = [name for name, value in result["categories"].items() if value is True and name not in allowed]
        if not flagged:
            return Verdict.PASS
        scores = result.get("category_scores")
        if isinstance(scores, dict):
            flagged.sort(key=lambda name: -_number(scores.get(name)))
        log.info("the moderation service flagged a text: %s", ", ".join(flagged))
        return Verdict(
            False,
            self.name,
            f"the moderation service flagged it ({', '.join(flagged)}) for a story rated {standard.rating.value}",
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _moderate(self, text: str) -> dict[str, Any]:
        """The service's ``results[0]`` for ``text``, checked for the fields ``check`` reads."""
        body: dict[str, str] = {"input": text}
        if self.model:
            body["model"] = self.model
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.post(self.url, json=body) as response:
                if response.status != 200:
                    raise CheckerDown(
                        f"the moderation service answered HTTP {response.status} {response.reason or ''}".strip()
                    )
                raw = await response.read()
        except TimeoutError:
            raise CheckerDown(f"the moderation service did not answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as error:
            raise CheckerDown(f"the moderation service cannot be reached ({type(error).__name__})") from None
        try:
            result = json.loads(raw)["results"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            result = None
        if (
            not isinstance(result, dict)
            or not isinstance(result.get("flagged"), bool)
            or not isinstance(result.get("categories"), dict)
        ):
            raise CheckerDown("the moderation service's answer is not a moderation result")
        return result


def _number(value: object) -> float:
    """A category's score, or 0 when the service gave none."""
    return float(value) if isinstance(value, (int, float)) else 0.0
