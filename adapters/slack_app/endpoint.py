"""``POST /slack/events`` in HTTP mode: Bolt's request handling behind a gate for requests Slack
would never send; beside it the operators' routes (``adapters.web.ops``): ``GET /healthz`` and its
older name ``GET /readyz`` (200 once the database answers, the model can write and the generation
worker is healthy, 503 before), so a load balancer sends traffic to a fresh process only once it
is ready, and ``GET /metrics``.

Bolt turns the HTTP request into an ``AsyncBoltRequest`` (decoding the body, parsing it, reading
ids out of it) before anything checks the signature, and while routing it reads ``event`` and a
click's first action before any listener runs. A non-numeric ``X-Slack-Request-Timestamp``, a
body that is not UTF-8, a ``payload`` that is not a JSON object, an ``event`` that is not an
object, a click without ``actions``: each made Bolt or aiohttp raise, a 500 with a traceback in
the log. Such a request is the sender's mistake, not the bot's, so the gate answers 400 with one
warning line and hands Bolt only requests it can route. Like Bolt's parsing, the gate runs before
the signature check; it only reads, so an unsigned request learns nothing but that it is malformed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.slack_app.fields import MalformedRequest, required_object, required_text

__all__ = ["EVENTS_PATH", "events_app"]

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
# Seconds since 1970 in ASCII digits. Bolt's int() would crash on "abc" and on 5000 digits, and
# would take " 17", "1_7" and "١٧" (Arabic-Indic digits), none of which Slack sends.
TIMESTAMP = re.compile(r"[0-9]{1,12}")


def events_app(bolt: AsyncApp, ops: Iterable[web.RouteDef]) -> web.Application:
    """The aiohttp app that serves ``POST EVENTS_PATH`` with ``bolt``, and the ``ops`` routes."""

    async def events(request: web.Request) -> web.Response:
        try:
            bolt_request = await read_request(request)
        except MalformedRequest as error:
            log.warning("rejected a malformed Slack request with 400: %s", error)
            return web.Response(status=400, text=f"{error}\n")
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    app = web.Application()
    app.router.add_post(EVENTS_PATH, events)
    app.add_routes(ops)
    return app


async def read_request(request: web.Request) -> AsyncBoltRequest:
    """The request as Bolt sees it, once it is sure Bolt can route it; else ``MalformedRequest``."""
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if timestamp is not None and not TIMESTAMP.fullmatch(timestamp):
        raise MalformedRequest(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    try:
        # Slack signs the bytes of a UTF-8 body; no other charset could pass the signature check.
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8") from None
    try:
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]  # Bolt reads any mapping of headers; it names only dict
    except Exception as error:  # the constructor only parses ``text``: whatever it raises, the body caused
        raise MalformedRequest(f"Bolt cannot read the body ({type(error).__name__})") from None
    _check_routing(bolt_request.body)
    return bolt_request


def _check_routing(body: dict[str, Any]) -> None:
    """What Bolt reads while routing, before any listener runs: ``event``, a click's first action."""
    if "event" in body or body.get("type") == "event_callback":
        required_object(body, "event", "the request")
    if body.get("type") == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise MalformedRequest("the button click has no actions")
        required_text(actions[0], "action_id", "the button click's action")
