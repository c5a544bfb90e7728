"""A fake OpenAI-compatible model server on loopback: streams scripted text as server-sent
events from /v1/completions and /v1/chat/completions, answers /v1/models, and records every
request. The openai backend's tests and the Slack tests (whose bot turns come from it) share it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import serve

PIECES = ["The lamp", " was cold", ", and the sea", " was loud."]


@dataclass
class Answer:
    """How the fake answers one request: an error status, or a stream (maybe cut short)."""

    status: int = 200
    drop_after: int | None = None  # close the connection after this many text events
    stall_s: float = 0.0  # wait this long after the headers before the first event
    retry_after: str | None = None
    message: str = "scripted failure"


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible server: scripted answers, streamed text, every request recorded."""

    pieces: Callable[[dict[str, Any]], list[str]] = lambda body: PIECES
    answers: list[Answer] = field(default_factory=list)
    delay_s: float = 0.0  # between two pieces of a stream
    first_token_s: float = 0.0  # before the first piece, unless an Answer says otherwise (a busy server)
    max_model_len: int = 2048
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    disconnects: int = 0
    url: str = ""

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "served-model", "max_model_len": self.max_model_len}]}
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        answer = self.answers.pop(0) if self.answers else Answer()
        if answer.status != 200:
            headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
            error = {"error": {"message": f"{answer.message} {answer.status}", "type": "server_error"}}
            return web.json_response(error, status=answer.status, headers=headers)
        chat = request.path.endswith("/chat/completions")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._stall(request, answer.stall_s or self.first_token_s)
            for index, piece in enumerate(self.pieces(body)):
                if answer.drop_after == index:
                    assert request.transport is not None
                    request.transport.abort()  # the chunked body never completes
                    return response
                await response.write(_event(_chunk(piece, chat, None)))
                await asyncio.sleep(self.delay_s)
            await response.write(_event(_chunk("", chat, "stop")))
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            self.disconnects += 1
        finally:
            self.in_flight -= 1
        return response

    async def _stall(self, request: web.Request, seconds: float) -> None:
        """Send nothing for a while, as a busy server does before the first token; notice a hang-up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client hung up")
            await asyncio.sleep(0.02)


def _chunk(text: str, chat: bool, finish: str | None) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "served-model", "choices": [choice]}
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl-1", "object": "text_completion", "model": "served-model", "choices": [choice]}


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """The fake, listening on a free loopback port; ``server.url`` is its API root."""
    server = FakeOpenAI()
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_post("/v1/chat/completions", server.completions)
    runner, port = await serve(app)
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()
