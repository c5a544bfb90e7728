"""A fake of OpenAI's moderation endpoint on loopback: ``POST /v1/moderations``.

It answers as OpenAI does (``results[0]`` with ``flagged``, every category in ``categories`` and
``category_scores``), flagging a text that contains one of the scripted trigger words in that
word's categories; it can instead answer an HTTP error, hang, or send a body that is no
moderation result. Every request is recorded, headers included. Its own module, beside
``tests.fake_openai``: that one streams completions, this one answers one JSON object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import serve

CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
FLAGGED_SCORE = 0.91
CLEAR_SCORE = 0.0004
HANG_LIMIT_S = 30.0  # a hanging answer ends by itself at the latest after this long


@dataclass
class FakeModeration:
    """The endpoint: ``triggers`` maps a word (any case) to the categories it flags."""

    triggers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    status: int = 200  # anything else: that error, with OpenAI's error body
    hang: bool = False  # answer nothing until the client hangs up
    raw: str | None = None  # answer this body (status 200, JSON content type) instead
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def moderations(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.hang:
            await _until_hung_up(request)
            return web.Response(status=504)
        if self.status != 200:
            error = {"error": {"message": "scripted failure", "type": "server_error"}}
            return web.json_response(error, status=self.status)
        if self.raw is not None:
            return web.Response(text=self.raw, content_type="application/json")
        text = str(body.get("input", "")).casefold()
        flagged = {
            category for word, categories in self.triggers.items() if word.casefold() in text for category in categories
        }
        result = {
            "flagged": bool(flagged),
            "categories": {category: category in flagged for category in CATEGORIES},
            "category_scores": {
                category: FLAGGED_SCORE if category in flagged else CLEAR_SCORE for category in CATEGORIES
            },
        }
        model = body.get("model", "omni-moderation-latest")
        return web.json_response({"id": "modr-1", "model": model, "results": [result]})


async def _until_hung_up(request: web.Request) -> None:
    deadline = time.monotonic() + HANG_LIMIT_S
    while time.monotonic() < deadline:
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_fake_moderation() -> AsyncIterator[FakeModeration]:
    """The fake, listening on a free loopback port; ``server.url`` is its API root (…/v1)."""
    server = FakeModeration()
    app = web.Application()
    app.router.add_post("/v1/moderations", server.moderations)
    runner, port = await serve(app)
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()
