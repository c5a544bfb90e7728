"""Slack's side of the wire, on loopback: a mock Web API and a sender of signed requests.

``FakeSlack`` answers the Web API methods the bot uses (``auth.test``, ``chat.*``,
``users.info``, files upload v2, response URLs), records every call with its arguments, keeps
each message's latest content, and can answer a method with 429 and a ``Retry-After``.
It also serves Socket Mode: ``apps.connections.open`` hands out a websocket on which the test
pushes envelopes (``push``) and reads the app's acknowledgements. ``SignedSender`` posts what Slack posts to an app in HTTP mode: slash commands, block actions and
Events API callbacks, signed with the v0 scheme (HMAC-SHA256 of ``v0:<timestamp>:<body>``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.loopback import serve
from tests.waiting import until

BOT_TOKEN = "xoxb-test-not-a-real-token"
APP_TOKEN = "xapp-test-not-a-real-token"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM = "T0TEAM"
BOT_USER = "U0BOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float


@dataclass
class FakeSlack:
    """A mock Slack Web API: every call recorded, messages kept, 429s on request."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (channel, ts) -> latest args
    uploads: dict[str, bytes] = field(default_factory=dict)
    rate_limited: dict[str, list[int]] = field(default_factory=dict)  # method -> Retry-After of coming 429s
    refused: dict[str, str] = field(default_factory=dict)  # method -> the error Slack answers it with
    acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode acknowledgements
    # Calls to leave unanswered, as a Slack that is slow at the worst moment would: ``hold``
    # picks them (method, args); they are recorded in ``held``, never applied, and answered with
    # an error only once ``released`` is set.
    hold: Callable[[str, dict[str, Any]], bool] | None = None
    held: list[Call] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def limit(self, method: str, *retry_after: int) -> None:
        """Answer the next calls of ``method`` with 429, one per ``Retry-After`` given."""
        self.rate_limited.setdefault(method, []).extend(retry_after)

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Until ``check()`` is truthy (the bot works after acknowledging); a timeout lists the calls so far."""
        return await until(check, timeout=timeout, details=lambda: f"calls so far: {[c.method for c in self.calls]}")

    # ------------------------------------------------------------------ the Web API

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(await request.post())
        token = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.rate_limited.get(method):
            retry_after = self.rate_limited[method].pop(0)
            self.calls.append(Call(method + " (429)", args, time.monotonic()))
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)}
            )
        if self.hold is not None and self.hold(method, args):
            self.held.append(Call(method, args, time.monotonic()))
            await self.released.wait()
            return web.json_response({"ok": False, "error": "request_timeout"})
        self.calls.append(Call(method, args, time.monotonic()))
        if method in self.refused:
            return web.json_response({"ok": False, "error": self.refused[method]})
        return web.json_response(self._answer(method, args))

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "team": "Test",
                "team_id": TEAM,
                "user": "storybot",
                "user_id": BOT_USER,
                "bot_id": "B0BOT",
                "url": "https://test.slack.com/",
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"}
        if method == "users.info":
            user = self.users.get(args["user"], {"name": args["user"].lower()})
            return {"ok": True, "user": {"id": args["user"], **user}}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            self.messages[(args["channel"], ts)] = args
            return {"ok": True, "channel": args["channel"], "ts": ts, "message": {"ts": ts}}
        if method == "chat.update":
            key = (args["channel"], args["ts"])
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = {**self.messages[key], **args}
            return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
        if method == "chat.delete":
            self.messages.pop((args["channel"], args["ts"]), None)
            return {"ok": True}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):06d}"
            return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = json.loads(args["files"]) if isinstance(args["files"], str) else args["files"]
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}
        return {"ok": False, "error": "unknown_method"}

    async def upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        self.calls.append(Call("upload", {"file_id": request.match_info["file_id"]}, time.monotonic()))
        return web.Response(text="OK - uploaded")

    async def respond(self, request: web.Request) -> web.Response:
        self.calls.append(Call("response_url", await request.json(), time.monotonic()))
        return web.Response(text="ok")

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """A Socket Mode connection: say hello, then record every acknowledgement the app sends."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0APP"}})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
        return ws

    async def push(self, envelope_type: str, payload: dict[str, Any], envelope_id: str) -> None:
        """Send an envelope to the connected app, as Slack does in Socket Mode."""
        socket = await self.wait_for(lambda: self._sockets and self._sockets[-1])
        await socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": envelope_type,
                "payload": payload,
                "accepts_response_payload": envelope_type != "events_api",
            }
        )

    def sent_texts(self) -> list[str]:
        """Every string the bot sent to Slack, anywhere in any call's arguments."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                found.append(value)
                if value[:1] in "[{":
                    try:
                        walk(json.loads(value))
                    except ValueError:
                        pass
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        for call in self.calls:
            walk(call.args)
        return found


async def start_fake_slack(fake: FakeSlack) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/api/{method}", fake.api)
    app.router.add_post("/upload/{file_id}", fake.upload)
    app.router.add_post("/respond/{id}", fake.respond)
    app.router.add_get("/socket", fake.socket)
    runner, port = await serve(app)
    fake.url = f"http://127.0.0.1:{port}"
    return runner


# ---------------------------------------------------------------------- signed requests


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Sent:
    status: int
    seconds: float
    body: str


@dataclass
class SignedSender:
    """Posts to the app as Slack does, signed with ``secret``."""

    url: str
    response_base: str
    secret: str = SIGNING_SECRET
    # What acknowledgements said to whom: (user, the body as JSON, when), for a reply in the ack itself.
    replies: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(
        self,
        body: bytes,
        content_type: str,
        *,
        age_s: float = 0,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        timestamp: str | None = None,
    ) -> Sent:
        """Post ``body`` signed as Slack signs it; ``timestamp`` (signed too) replaces the current time."""
        timestamp = timestamp if timestamp is not None else str(int(time.time() - age_s))
        signed = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature(secret or self.secret, timestamp, body),
            **(headers or {}),
        }
        start = time.monotonic()
        async with aiohttp.ClientSession() as session, session.post(self.url, data=body, headers=signed) as response:
            text = await response.text()
        return Sent(response.status, time.monotonic() - start, text)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def command_fields(
        self, text: str, *, user: str, channel: str = "C0STORY", trigger_id: str | None = None
    ) -> dict[str, str]:
        """A ``/story`` slash command's fields as Slack sends them (``&``, ``<``, ``>`` as entities)."""
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM,
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "stories",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/story",
            "text": escaped,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": f"{self.response_base}/respond/{self.next_id('r')}",
            "trigger_id": trigger_id or self.next_id("trigger-"),
        }

    async def command(
        self, text: str, *, user: str, channel: str = "C0STORY", trigger_id: str | None = None, **options: Any
    ) -> Sent:
        fields = self.command_fields(text, user=user, channel=channel, trigger_id=trigger_id)
        body = urllib.parse.urlencode(fields).encode()
        sent = await self.send(body, "application/x-www-form-urlencoded", **options)
        if sent.status == 200 and sent.body:
            self.replies.append((user, _reply(sent.body), time.monotonic()))
        return sent

    async def click(
        self, action: str, value: str, *, user: str, channel: str, message_ts: str, thread_ts: str | None = None
    ) -> Sent:
        """A Block Kit button click (``block_actions``) on the bot's message ``message_ts``."""
        payload = self.click_payload(
            action, value, user=user, channel=channel, message_ts=message_ts, thread_ts=thread_ts
        )
        return await self.interact(json.dumps(payload))

    def click_payload(
        self, action: str, value: str, *, user: str, channel: str, message_ts: str, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """A button click's ``payload`` as Slack sends it, for ``interact`` (as is, or altered)."""
        container = {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False}
        if thread_ts:
            container["thread_ts"] = thread_ts
        return {
            "type": "block_actions",
            "api_app_id": "A0APP",
            "token": "legacy-verification-token",
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "team": {"id": TEAM, "domain": "test"},
            "channel": {"id": channel, "name": "stories"},
            "container": container,
            "trigger_id": self.next_id("trigger-"),
            "response_url": f"{self.response_base}/respond/{self.next_id('r')}",
            "message": {"type": "message", "ts": message_ts, **({"thread_ts": thread_ts} if thread_ts else {})},
            "actions": [
                {
                    "type": "button",
                    "action_id": f"story_{action}",
                    "block_id": f"story-{value}",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }

    async def interact(self, payload: str, **options: Any) -> Sent:
        """An interactive request: its ``payload`` form field, normally JSON."""
        body = urllib.parse.urlencode({"payload": payload}).encode()
        return await self.send(body, "application/x-www-form-urlencoded", **options)

    async def message(
        self, text: str, *, user: str, channel: str, thread_ts: str | None, event_id: str, retry_num: int | None = None
    ) -> Sent:
        """An Events API ``message`` callback; a retry carries the same ``event_id`` and ``X-Slack-Retry-Num``."""
        envelope = self.message_envelope(text, user=user, channel=channel, thread_ts=thread_ts, event_id=event_id)
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        return await self.send(json.dumps(envelope).encode(), "application/json", headers=headers)

    def message_envelope(
        self, text: str, *, user: str, channel: str, thread_ts: str | None, event_id: str
    ) -> dict[str, Any]:
        """The Events API envelope of a ``message`` event, as Slack sends it."""
        event = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": f"{time.time():.6f}",
            "channel_type": "channel",
            "event_ts": f"{time.time():.6f}",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM,
            "api_app_id": "A0APP",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }


def _reply(body: str) -> dict[str, Any]:
    """An acknowledgement's body as a message: Bolt sends JSON for blocks or a response type, and a
    text alone (``ack(text=...)``, e.g. "Working on it…") as plain text."""
    try:
        reply = json.loads(body)
    except json.JSONDecodeError:
        return {"text": body}
    return reply if isinstance(reply, dict) else {"text": body}
