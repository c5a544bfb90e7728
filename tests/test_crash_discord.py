"""Crashes of the Discord bot, as real processes: ``storybot discord`` killed with SIGKILL mid-turn.

Each test runs the bot as a subprocess (``python -m adapters.cli discord``), configured only by
STORYBOT_* variables and pointed at the fake Discord and the fake OpenAI-compatible model
server, which run here in the test process. A process is killed at a chosen moment of a bot
turn; another process (on SQLite: started after the kill on the same file; on PostgreSQL: a
survivor, running beside the one that dies) must finish what users see: the turn's passage,
with its buttons, in the very message the dead process posted, and no "writing…" message left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import is_postgres
from tests.conftest import read_rows as rows
from tests.fake_discord import BODY, CHANNEL_ID, FakeDiscord, user
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.waiting import until

REPO = Path(__file__).resolve().parents[1]
ALICE = user(1, "Alice")
LEASE_S = 2.0  # generation.job_lease_s: a dead process's turns are taken over this long after it was last heard
STREAM_INTERVAL_S = 0.25  # generation.stream_interval_s: the pace of a streaming passage's edits
PASSAGE = (
    "The lamp flickered once and went dark. Below, the sea kept counting the rocks. "
    "Nobody on the pier saw the ship turn back."
)
FOOTER = "-# passage 2 · asked by Alice"  # the opening is passage 1, the bot's answer passage 2
WRITING = "is writing"  # in the placeholder ("storybot is writing…") and in the streaming footer


def pieces(size: int) -> Callable[[dict[str, Any]], list[str]]:
    return lambda body: [PASSAGE[i : i + size] for i in range(0, len(PASSAGE), size)]


# ------------------------------------------------------------------ the fakes


class CrashDiscord(FakeDiscord):
    """The fake Discord, able to hold the edit that would show a finished passage.

    A held edit is never applied: it stands for a request the dying process sent that Discord
    never got. ``released`` lets its handler end (with an error) so the server can stop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold_final_edits = False
        self.held: list[str] = []  # ids of the messages whose final edit was held
        self.released = asyncio.Event()
        self.identifies = 0

    async def _identify(self, socket: web.WebSocketResponse, identify: dict[str, Any]) -> None:
        self.identifies += 1
        await super()._identify(socket, identify)

    async def _edit_message(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if self.hold_final_edits and isinstance(body, dict) and "components" in body:
            self.held.append(request.match_info["message"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 60)
            return web.Response(status=503)
        return await super()._edit_message(request)

    # What users see, as the fake holds it now.

    def bot_messages(self) -> list[dict[str, Any]]:
        """Every message the bot shows (channel messages and interaction replies), oldest first."""
        return [m for m in self.messages.values() if m["author"]["id"] == "1000" and not m.get("deleted")]

    def posts(self) -> list[Any]:
        """The requests that posted a new message in the channel (each bot turn posts one)."""
        return [r for r in self.requests if r.method == "POST" and r.path == f"/channels/{CHANNEL_ID}/messages"]

    def final_edits(self, message_id: str, since: float = 0.0) -> list[Any]:
        """Edits of ``message_id`` that arrived after ``since`` and gave it the passage's buttons."""
        return [r for r in self.edits_of(message_id) if r.at > since and "components" in (r.json or {})]


@pytest.fixture
async def fake() -> AsyncIterator[CrashDiscord]:
    server = CrashDiscord()
    await server.start()
    try:
        yield server
    finally:
        server.released.set()
        await server.stop()
    server.assert_nothing_could_ping()


@pytest.fixture
async def model_server() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.max_model_len = 8192
        yield server


# ------------------------------------------------------------------ the bot processes


class BotProcess:
    """``storybot discord`` as a real process; its log (stdout and stderr) goes to a file."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        config = folder / "storybot.toml"
        config.touch()
        base = {key: value for key, value in os.environ.items() if not key.startswith("STORYBOT_")}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "--config", str(config), "discord"],
                env={**base, **env, "PYTHONUNBUFFERED": "1"},
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when the machine or the OOM killer takes it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"<no log: {error}>"
        return f"----- {self.name} (exit {self.proc.poll()}) -----\n{text[-chars:]}"


class Bots:
    """The test's bot processes: started, waited for, killed; their logs for failure messages."""

    def __init__(self, folder: Path, fake: CrashDiscord, env: dict[str, str]) -> None:
        self.folder, self.fake, self.env = folder, fake, env
        self.all: list[BotProcess] = []
        self.expected_dead: set[str] = set()

    def logs(self) -> str:
        return "\n".join(bot.tail() for bot in self.all)

    async def until(self, condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        """Poll ``condition`` until it is truthy; fail with the bots' logs if it is not in time,
        or at once if a bot process that should be alive has died."""
        return await until(
            condition,
            what,
            timeout=timeout,
            every=0.05,
            alive=lambda: self.check_alive(f"waiting for {what}"),
            details=self.logs,
        )

    def check_alive(self, doing: str) -> None:
        for bot in self.all:
            if bot.name not in self.expected_dead and bot.proc.poll() is not None:
                raise AssertionError(f"{bot.name} died while {doing}\n{self.logs()}")

    async def start(self, name: str) -> BotProcess:
        """Start a process and wait until it is connected to the fake gateway (READY sent)."""
        connected = self.fake.identifies
        bot = BotProcess(name, self.env, self.folder)
        self.all.append(bot)
        await self.until(lambda: self.fake.identifies > connected, f"{name} to connect", timeout=30)
        return bot

    def kill(self, bot: BotProcess) -> float:
        self.expected_dead.add(bot.name)
        bot.kill()
        return time.monotonic()

    def kill_all(self) -> None:
        for bot in self.all:
            with contextlib.suppress(Exception):
                self.expected_dead.add(bot.name)
                bot.kill()


@pytest.fixture
def bots(tmp_path: Path, fake: CrashDiscord, model_server: FakeOpenAI, database_url: str) -> Iterator[Bots]:
    env = {
        "STORYBOT_DATABASE_URL": database_url,
        "STORYBOT_GENERATION_STREAM_INTERVAL_S": str(STREAM_INTERVAL_S),
        "STORYBOT_GENERATION_JOB_LEASE_S": str(LEASE_S),
        "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
        "STORYBOT_DISCORD_TOKEN": "not-a-real-token",
        "STORYBOT_DISCORD_API_BASE_URL": fake.api_base_url,
        "STORYBOT_DISCORD_GATEWAY_URL": fake.gateway_url,
        "STORYBOT_MODEL_BACKEND": "openai",
        "STORYBOT_MODEL_NAME": "served-model",
        "STORYBOT_MODEL_MAX_NEW_TOKENS": "1024",
        "STORYBOT_OPENAI_BASE_URL": model_server.url,
        "STORYBOT_OPENAI_RETRIES": "0",
    }
    running = Bots(tmp_path, fake, env)
    try:
        yield running
    finally:
        running.kill_all()  # before the fakes stop: a live bot would reconnect to a closed gateway
        fake.released.set()


JOB = "SELECT id, status, message_ref, shown_at IS NOT NULL, attempts FROM generation_jobs"
BOT_PASSAGES = "SELECT text FROM passages WHERE author_kind = 'bot'"


def expected_final(passage: str) -> str:
    return f"**storybot:** {passage}\n{FOOTER}"


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [button["custom_id"] for row in message["components"] for button in row["components"]]


async def passage_buttons(database_url: str) -> list[str]:
    """The custom ids under the bot's passage: its story's four actions, then 👍 and 👎 on the passage."""
    [(story_id, passage_id)] = await rows(database_url, "SELECT story_id, id FROM passages WHERE author_kind = 'bot'")
    actions = [f"story:{action}:{story_id}" for action in ("continue", "retry", "undo", "end")]
    return [*actions, f"story:up:{story_id}:{passage_id}", f"story:down:{story_id}:{passage_id}"]


async def start_story(fake: CrashDiscord, bots: Bots) -> None:
    """Alice starts a story; her opening is stored, and the bot's turn is queued."""
    token = await fake.slash(ALICE, "start", title="The Lighthouse", opening="The keeper climbed the stairs.")
    await bots.until(lambda: [c for c, _ in fake.replies(token) if c], "the answer to /story start")


async def quiet(bots: Bots, seconds: float) -> None:
    """Let time pass (a lease or so) so a second, unwanted showing would have had time to come."""
    await asyncio.sleep(seconds)
    bots.check_alive("the test waited")


# ------------------------------------------------------------------ tests


async def test_a_passage_stored_but_not_shown_is_shown_once_in_the_dead_process_message(
    fake: CrashDiscord, model_server: FakeOpenAI, bots: Bots, database_url: str
) -> None:
    model_server.pieces = pieces(12)
    model_server.delay_s = 0.02
    fake.hold_final_edits = True  # the edit that would show the stored passage never reaches Discord
    first = await bots.start("first")
    await start_story(fake, bots)

    # The passage is written and stored; the final edit of the "writing…" message is in flight.
    [held] = await bots.until(lambda: fake.held, "the final edit of the first process (held)")
    [(job_id, status, message_ref, shown, _)] = await rows(database_url, JOB)
    assert (status, message_ref, shown) == ("done", held, False), bots.logs()
    [(stored,)] = await rows(database_url, BOT_PASSAGES)
    [post] = fake.posts()  # the first process's one "writing…" message, showing streamed text now
    assert [m["id"] for m in fake.channel_messages()] == [held]
    assert WRITING in fake.messages[int(held)]["content"] and not fake.messages[int(held)]["components"]

    fake.hold_final_edits = False
    if is_postgres(database_url):  # a survivor is running when the first process dies
        second = await bots.start("second")
        killed_at = bots.kill(first)
    else:  # one process per SQLite file: the next one starts after the crash
        killed_at = bots.kill(first)
        second = await bots.start("second")
    fake.released.set()  # the held request's connection is gone with its process; never applied

    message = fake.messages[int(held)]
    await bots.until(lambda: message["components"], f"{second.name} to show the passage in message {held}")
    await bots.until(
        lambda: rows(database_url, f"SELECT 1 FROM generation_jobs WHERE id = {job_id} AND shown_at IS NOT NULL"),
        "the turn to be marked shown",
    )
    await quiet(bots, LEASE_S + 1)

    # Users see the dead process's message turned into the passage, by exactly one edit.
    assert message["content"] == expected_final(stored), bots.logs()
    assert custom_ids(message) == await passage_buttons(database_url)
    [final] = fake.final_edits(held, since=killed_at)
    assert final.json["content"] == expected_final(stored)
    assert fake.posts() == [post], "no new message was posted for the turn"
    assert not [m for m in fake.bot_messages() if WRITING in m["content"]], fake.bot_messages()
    # ...and the passage was neither written again nor stored twice.
    assert len(model_server.requests) == 1
    assert await rows(database_url, BOT_PASSAGES) == [(stored,)]
    assert await rows(database_url, JOB) == [(job_id, "done", held, True, 1)]


async def test_a_turn_cut_off_while_writing_is_finished_in_the_dead_process_message(
    fake: CrashDiscord, model_server: FakeOpenAI, bots: Bots, database_url: str
) -> None:
    model_server.pieces = pieces(5)
    model_server.delay_s = 0.5  # the first process writes for ~12 s: it dies long before the end
    first = await bots.start("first")
    await start_story(fake, bots)

    # The first process is streaming the passage into its "writing…" message, recorded as the turn's.
    def streaming() -> dict[str, Any] | None:
        posted = fake.channel_messages()
        return posted[0] if posted and posted[0]["content"].startswith("**storybot:** The") else None

    writing = await bots.until(streaming, "the first process to stream text into its message")
    mid = writing["id"]
    await bots.until(
        lambda: rows(database_url, f"SELECT 1 FROM generation_jobs WHERE status = 'running' AND message_ref = '{mid}'"),
        "the turn's message to be recorded",
    )
    assert WRITING in writing["content"] and not writing["components"]

    if is_postgres(database_url):  # the survivor takes the turn over once the lease has run out
        second = await bots.start("second")
        assert not writing["components"] and len(model_server.requests) == 1, "the first process is still writing"
        killed_at = bots.kill(first)
        model_server.delay_s = 0.02
    else:  # the next process on the SQLite file runs the interrupted turn again at once
        killed_at = bots.kill(first)
        model_server.delay_s = 0.02
        second = await bots.start("second")

    await bots.until(lambda: writing["components"], f"{second.name} to finish the turn in message {mid}")
    await quiet(bots, LEASE_S + 1)

    [(stored,)] = await rows(database_url, BOT_PASSAGES)
    assert stored == PASSAGE
    assert writing["content"] == expected_final(stored), bots.logs()
    assert custom_ids(writing) == await passage_buttons(database_url)
    # One message shows the turn: the dead process's, finished by one edit; none says "writing…".
    assert [r.path for r in fake.posts()] == [f"/channels/{CHANNEL_ID}/messages"], "no second message for the turn"
    assert [m["id"] for m in fake.channel_messages()] == [mid]
    assert len(fake.final_edits(mid, since=killed_at)) == 1
    assert not [m for m in fake.bot_messages() if WRITING in m["content"]], fake.bot_messages()
    assert len(model_server.requests) == 2, "the takeover wrote the passage again"
    [(_, status, message_ref, shown, attempts)] = await rows(database_url, JOB)
    assert (status, message_ref, shown, attempts) == ("done", mid, True, 2)


LONG_PASSAGE = " ".join(f"Wave {i} rolled in under the beam and broke on the rocks below." for i in range(45))


async def test_a_long_turn_cut_off_while_writing_leaves_no_writing_message_behind(
    fake: CrashDiscord, model_server: FakeOpenAI, bots: Bots, database_url: str
) -> None:
    # Enough text at once to fill two messages, then the rest slowly: the first process dies
    # while the turn is shown in two messages.
    head = 1950
    model_server.pieces = lambda body: (
        [LONG_PASSAGE[:head]] + [LONG_PASSAGE[i : i + 40] for i in range(head, len(LONG_PASSAGE), 40)]
    )
    model_server.delay_s = 0.5
    first = await bots.start("first")
    await start_story(fake, bots)

    two = await bots.until(
        lambda: len(fake.channel_messages()) == 2 and fake.channel_messages(),
        "the first process to stream into two messages",
    )
    mid, spill = two[0]["id"], two[1]["id"]
    await bots.until(  # (recorded once the streamed text that sent the second message is shown)
        lambda: rows(
            database_url, f"SELECT 1 FROM generation_jobs WHERE status = 'running' AND message_ref = '{mid},{spill}'"
        ),
        "both of the turn's messages to be recorded",
    )
    if is_postgres(database_url):
        second = await bots.start("second")
        killed_at = bots.kill(first)
        model_server.delay_s = 0.01
    else:
        killed_at = bots.kill(first)
        model_server.delay_s = 0.01
        second = await bots.start("second")

    await bots.until(
        lambda: [m for m in fake.channel_messages() if m["components"]], f"{second.name} to finish the turn"
    )
    await quiet(bots, LEASE_S + 1)

    [(stored,)] = await rows(database_url, BOT_PASSAGES)
    shown = fake.channel_messages()
    assert not [m["id"] for m in shown if WRITING in m["content"]], [(m["id"], m["content"][-60:]) for m in shown]
    assert len(shown) == 2 and shown[0]["id"] == mid, [m["id"] for m in shown]
    assert sum(len(fake.final_edits(m["id"], since=killed_at)) for m in shown) <= 1
    assert shown[-1]["content"].endswith(FOOTER) and stored == LONG_PASSAGE
