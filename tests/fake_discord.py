"""A fake Discord on loopback: the gateway websocket and the REST routes the bot uses.

The real discord.py client connects to it (``discord.api_base_url`` / ``gateway_url``), so
tests exercise the real library end to end: IDENTIFY → READY → GUILD_CREATE, heartbeats,
INTERACTION_CREATE and MESSAGE_CREATE dispatches, interaction callbacks, webhook follow-ups and
edits, channel messages, threads, direct messages and command sync. Every REST request is
recorded with the time it arrived, so tests can check what users would see and how fast it came.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import serve
from tests.waiting import until

APP_ID = 1000  # the application and its bot user share an id, as on Discord
GUILD_ID = 2000
CHANNEL_ID = 3000
EPHEMERAL = 64
MANAGE_MESSAGES = 1 << 13
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 31) | (1 << 38)  # view, send, history, app cmds, threads
TIMESTAMP = "2024-01-01T00:00:00+00:00"
# The request's JSON, as the bot sent it (a message, a command list...): read as each route expects.
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
FILES = web.RequestKey("files", list)

BOT_USER = {
    "id": str(APP_ID),
    "username": "storybot",
    "discriminator": "0",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "flags": 0,
}


def user(user_id: int, name: str) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name.lower(),
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": False,
    }


@dataclass
class Request:
    method: str
    path: str  # without the /api/v10 prefix
    json: Any
    files: list[tuple[str, bytes]]
    at: float


@dataclass
class Answer:
    """What one interaction showed: its deferred (then edited) reply and its follow-ups."""

    acked_at: float | None = None
    flags: int = 0
    original: dict[str, Any] | None = None
    deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        shown = [] if self.deleted or self.original is None else [self.original]
        return shown + self.followups


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.answers: dict[str, Answer] = {}  # by interaction token
        self.threads: list[dict[str, Any]] = []
        self.nsfw: set[int] = set()  # the age-restricted channels (set_nsfw)
        self.people: dict[str, dict[str, Any]] = {}  # every user seen in an interaction, by id
        self.dm_channels: dict[str, str] = {}  # user id -> the id of the bot's DM channel with them
        self.closed_dms: set[str] = set()  # ids of the users who take no direct messages from the bot
        self.dispatched_at: dict[str, float] = {}  # interaction token -> when it was sent
        self.identified = asyncio.Event()
        self.guild_ready = asyncio.Event()
        self._ids = itertools.count(10_000)
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ server

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/gateway", self._gateway)
        api = "/api/v10"
        routes = [
            ("GET", "/gateway/bot", self._gateway_bot),
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._application),
            ("PUT", "/applications/{app}/commands", self._sync),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._sync),
            ("POST", "/interactions/{id}/{token}/callback", self._callback),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._webhook_edit),
            ("DELETE", "/webhooks/{app}/{token}/messages/{message}", self._webhook_delete),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("POST", "/channels/{channel}/messages", self._create_message),
            ("PATCH", "/channels/{channel}/messages/{message}", self._edit_message),
            ("DELETE", "/channels/{channel}/messages/{message}", self._delete_message),
            ("POST", "/channels/{channel}/threads", self._create_thread),
            ("DELETE", "/channels/{channel}", self._delete_channel),
            ("POST", "/users/@me/channels", self._open_dm),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, handler)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        body: Any = None
        files: list[tuple[str, bytes]] = []
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for name, value in form.items():
                if name == "payload_json":
                    body = json.loads(str(value))
                elif isinstance(value, web.FileField):
                    files.append((value.filename, value.file.read()))
        elif request.can_read_body:
            body = await request.json()
        request[BODY], request[FILES] = body, files
        self.requests.append(
            Request(request.method, request.path.removeprefix("/api/v10"), body, files, time.monotonic())
        )
        response = await handler(request)
        self._changed.set()
        return response

    async def until(self, condition: Callable[[], Any], timeout: float = 30) -> Any:
        """Wait until ``condition()`` is truthy (checked after every request); return its value."""
        return await until(condition, timeout=timeout, every=0.5, wake=self._changed)

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            if payload["op"] == 1:
                await socket.send_json({"op": 11})
            elif payload["op"] == 2:
                await self._identify(socket, payload["d"])
        return socket

    async def _identify(self, socket: web.WebSocketResponse, identify: dict[str, Any]) -> None:
        self.identified.set()
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": "fake-session",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
        }
        if "shard" in identify:
            ready["shard"] = identify["shard"]
        await self._send(socket, "READY", ready)
        await self._send(socket, "GUILD_CREATE", self._guild())
        self.guild_ready.set()

    async def _send(self, socket: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        await socket.send_json({"op": 0, "t": event, "s": next(self._seq), "d": data})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for socket in self._sockets:
            if not socket.closed:
                await self._send(socket, event, data)

    def _guild(self) -> dict[str, Any]:
        everyone = {
            "id": str(GUILD_ID),
            "name": "@everyone",
            "permissions": str(MEMBER_PERMISSIONS),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        channel = {
            "id": str(CHANNEL_ID),
            "type": 0,
            "guild_id": str(GUILD_ID),
            "name": "stories",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": CHANNEL_ID in self.nsfw,
            "parent_id": None,
            "rate_limit_per_user": 0,
        }
        bot_member = {"user": BOT_USER, "roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
        return {
            "id": str(GUILD_ID),
            "name": "Writers",
            "icon": None,
            "owner_id": "1",
            "roles": [everyone],
            "channels": [channel],
            "threads": [],
            "members": [bot_member],
            "member_count": 2,
            "emojis": [],
            "stickers": [],
            "features": [],
            "premium_tier": 0,
            "unavailable": False,
            "large": False,
            "joined_at": TIMESTAMP,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
        }

    # ------------------------------------------------------------------ what tests send

    def _member(self, who: dict[str, Any], permissions: int) -> dict[str, Any]:
        return {
            "user": who,
            "roles": [],
            "joined_at": TIMESTAMP,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(permissions),
            "nick": None,
            "avatar": None,
        }

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        who: dict[str, Any],
        channel: dict[str, Any],
        permissions: int,
        message: dict[str, Any] | None = None,
    ) -> str:
        self.people[who["id"]] = who
        interaction_id = next(self._ids)
        token = f"token-{interaction_id}"
        payload = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "token": token,
            "version": 1,
            "guild_id": str(GUILD_ID),
            "channel_id": channel["id"],
            "channel": channel,
            "data": data,
            "member": self._member(who, permissions),
            "app_permissions": str(MEMBER_PERMISSIONS | MANAGE_MESSAGES),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message
        self.answers[token] = Answer()
        self.dispatched_at[token] = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return token

    async def slash(
        self,
        who: dict[str, Any],
        *path: str,
        channel: dict[str, Any] | None = None,
        permissions: int = MEMBER_PERMISSIONS,
        **options: Any,
    ) -> str:
        """``/story <path...> option:value ...`` typed by ``who``; returns the interaction token."""
        values = [{"name": key, "type": _option_type(value), "value": value} for key, value in options.items()]
        node: dict[str, Any] = {"type": 1, "name": path[-1], "options": values}
        if len(path) == 2:
            node = {"type": 2, "name": path[0], "options": [node]}
        data = {"id": "900", "name": "story", "type": 1, "options": [node]}
        return await self._interact(2, data, who, channel or self.channel(), permissions)

    async def press(
        self, who: dict[str, Any], message: dict[str, Any], custom_id: str, permissions: int = MEMBER_PERMISSIONS
    ) -> str:
        """A click on the button ``custom_id`` under ``message`` (Discord only sends clicks on real buttons)."""
        buttons = [b["custom_id"] for row in message["components"] for b in row["components"]]
        assert custom_id in buttons, f"{custom_id} is not a button of this message: {buttons}"
        channel = self.channel(int(message["channel_id"]))
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, who, channel, permissions, message=message)

    async def post(self, who: dict[str, Any], channel_id: int, content: str) -> None:
        """Someone writes a plain message (MESSAGE_CREATE)."""
        message = self._message(channel_id, content, author=who)
        message["member"] = {"roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False, "flags": 0}
        await self.dispatch("MESSAGE_CREATE", message)

    def channel(self, channel_id: int = CHANNEL_ID) -> dict[str, Any]:
        """The channel object an interaction carries: the text channel or one of the threads."""
        for thread in self.threads:
            if int(thread["id"]) == channel_id:
                return thread
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(GUILD_ID),
            "name": "stories",
            "permission_overwrites": [],
            "nsfw": channel_id in self.nsfw,
            "parent_id": None,
            "position": 0,
        }

    async def set_nsfw(self, nsfw: bool, channel_id: int = CHANNEL_ID) -> None:
        """A moderator marks the channel age-restricted, or unmarks it: Discord sends CHANNEL_UPDATE."""
        (self.nsfw.add if nsfw else self.nsfw.discard)(channel_id)
        await self.dispatch("CHANNEL_UPDATE", self.channel(channel_id))

    # ------------------------------------------------------------------ what tests read

    def channel_messages(self, channel_id: int = CHANNEL_ID) -> list[dict[str, Any]]:
        """Messages the bot posted in a channel (not interaction replies), oldest first, as they are now."""
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == str(channel_id) and "x_interaction_reply" not in m and not m.get("deleted")
        ]

    def direct_messages(self, who: dict[str, Any]) -> list[dict[str, Any]]:
        """Messages the bot sent ``who`` privately (in its DM channel with them), oldest first."""
        channel_id = self.dm_channels.get(who["id"])
        return [] if channel_id is None else self.channel_messages(int(channel_id))

    def edits_of(self, message_id: str) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH" and r.path.endswith(f"/messages/{message_id}")]

    def assert_nothing_could_ping(self) -> None:
        """Every message payload the bot sent turned mentions off: nothing could ping anyone."""
        quiet = ({"parse": []}, {"parse": [], "replied_user": False})  # (a reply that does not ping its author)
        for request, message in self.message_payloads():
            assert message.get("allowed_mentions") in quiet, (request.method, request.path, message)

    def message_payloads(self) -> list[tuple[Request, dict[str, Any]]]:
        """Every request that creates or changes a message's content, with that message part."""
        found = []
        for request in self.requests:
            body = request.json
            if isinstance(body, dict) and request.path.endswith("/callback"):
                body = body.get("data") or {}
            if isinstance(body, dict) and "content" in body:
                found.append((request, body))
        return found

    def ack_delay(self, token: str) -> float:
        acked = self.answers[token].acked_at
        assert acked is not None, f"interaction {token} was never acknowledged"
        return acked - self.dispatched_at[token]

    def replies(self, token: str) -> list[tuple[str, bool]]:
        """(content, only the asker sees it) of each message an interaction's answer shows."""
        answer = self.answers[token]
        return [(m.get("content") or "", bool(m.get("flags", 0) & EPHEMERAL)) for m in answer.messages()]

    async def answered(self, token: str, count: int = 1, timeout: float = 30) -> list[tuple[str, bool]]:
        """Wait until the answer shows ``count`` messages with content; return them."""
        await self.until(lambda: len([c for c, _ in self.replies(token) if c]) >= count, timeout)
        return self.replies(token)

    # ------------------------------------------------------------------ REST handlers

    def _message(
        self,
        channel_id: int | str,
        content: str,
        *,
        author: dict[str, Any] = BOT_USER,
        flags: int = 0,
        components: list[Any] | None = None,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(GUILD_ID),
            "author": author,
            "content": content,
            "timestamp": TIMESTAMP,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": components or [],
        }
        self.messages[message_id] = message
        return message

    def _update(self, message: dict[str, Any], body: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
        for key in ("content", "components", "flags"):
            if key in body:
                message[key] = body[key]
        if files:
            message["attachments"] = [
                {
                    "id": str(next(self._ids)),
                    "filename": name,
                    "size": len(data),
                    "url": "http://127.0.0.1/x",
                    "proxy_url": "http://127.0.0.1/x",
                }
                for name, data in files
            ]
            message["files"] = files
        message["edited_timestamp"] = TIMESTAMP

    async def _me(self, request: web.Request) -> web.Response:
        return _json(BOT_USER)

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(APP_ID),
                "name": "storybot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user(1, "Owner"),
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
                "summary": "",
            }
        )

    async def _sync(self, request: web.Request) -> web.Response:
        commands = [
            {**command, "id": str(next(self._ids)), "application_id": str(APP_ID), "version": "1"}
            for command in request[BODY]
        ]
        return _json(commands)

    async def _callback(self, request: web.Request) -> web.Response:
        answer = self.answers[request.match_info["token"]]
        answer.acked_at = time.monotonic()
        body, data = request[BODY], request[BODY].get("data") or {}
        answer.flags = data.get("flags", 0)
        channel_id = CHANNEL_ID
        message = self._message(channel_id, data.get("content", ""), flags=answer.flags)
        message["x_interaction_reply"] = True
        self._update(message, data, request[FILES])
        answer.original = message
        return _json(
            {
                "interaction": {
                    "id": request.match_info["id"],
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": body["type"] == 5,
                    "response_message_ephemeral": bool(answer.flags & EPHEMERAL),
                },
                "resource": {"type": body["type"], "message": message},
            }
        )

    def _webhook_message(self, request: web.Request) -> dict[str, Any]:
        answer = self.answers[request.match_info["token"]]
        key = request.match_info["message"]
        if key == "@original":
            assert answer.original is not None and not answer.deleted
            return answer.original
        return next(m for m in answer.followups if m["id"] == key)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        message = self._webhook_message(request)
        self._update(message, request[BODY], request[FILES])
        return _json(message)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        self._webhook_message(request)
        self.answers[request.match_info["token"]].deleted = True
        return web.Response(status=204)

    async def _followup(self, request: web.Request) -> web.Response:
        body = request[BODY]
        message = self._message(CHANNEL_ID, "", flags=body.get("flags", 0))
        message["x_interaction_reply"] = True
        self._update(message, body, request[FILES])
        self.answers[request.match_info["token"]].followups.append(message)
        return _json(message)

    async def _create_message(self, request: web.Request) -> web.Response:
        if request.match_info["channel"] in {self.dm_channels.get(who) for who in self.closed_dms}:
            return _json({"message": "Cannot send messages to this user", "code": 50007}, status=403)
        message = self._message(request.match_info["channel"], "")
        self._update(message, request[BODY], request[FILES])
        return _json(message)

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self.messages[int(request.match_info["message"])]
        self._update(message, request[BODY], request[FILES])
        return _json(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        self.messages[int(request.match_info["message"])]["deleted"] = True
        return web.Response(status=204)

    async def _create_thread(self, request: web.Request) -> web.Response:
        thread_id = next(self._ids)
        thread = {
            "id": str(thread_id),
            "type": 11,
            "guild_id": str(GUILD_ID),
            "parent_id": request.match_info["channel"],
            "name": request[BODY]["name"],
            "owner_id": str(APP_ID),
            "rate_limit_per_user": 0,
            "flags": 0,
            "message_count": 0,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": TIMESTAMP,
                "locked": False,
            },
        }
        self.threads.append(thread)
        await self.dispatch("THREAD_CREATE", thread | {"newly_created": True})
        return _json(thread)

    async def _open_dm(self, request: web.Request) -> web.Response:
        """The bot's DM channel with a user (the same one each time), as ``create_dm`` asks for it."""
        recipient = str(request[BODY]["recipient_id"])
        channel_id = self.dm_channels.setdefault(recipient, str(next(self._ids)))
        who = self.people.get(recipient) or user(int(recipient), f"User{recipient}")
        return _json({"id": channel_id, "type": 1, "recipients": [who], "last_message_id": None})

    async def _delete_channel(self, request: web.Request) -> web.Response:
        return _json({"id": request.match_info["channel"], "type": 11})


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def _json(data: Any, status: int = 200) -> web.Response:
    """discord.py reads a body as JSON only when the content type is exactly application/json."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})
