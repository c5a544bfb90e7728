"""What people are told holds across a killed process: the Slack app as a real subprocess.

Each test runs ``storybot slack --http`` as its own process (configured only by STORYBOT_*
variables) against the mock Slack Web API and a fake OpenAI-compatible server on loopback, kills
it with SIGKILL at the worst moment, and starts another. What a person was told ("got it": the
HTTP acknowledgement) must be in the database; a bot passage that was stored must end up shown,
once, in the message that said "storybot is writing…"; no such message is left behind. On
PostgreSQL a second process runs beside the first and is the survivor that finishes its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.slack_app.listeners import WORKING
from adapters.slack_app.render import plain_text
from tests.conftest import is_postgres
from tests.conftest import read_rows as rows
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.fake_slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SignedSender,
    start_fake_slack,
)
from tests.loopback import free_port
from tests.waiting import until

ALICE, BOB = "U0ALICE", "U0BOB"
PIECES = ["The lamp", " was cold", ", and the sea", " was loud."]
PASSAGE = "The lamp was cold, and the sea was loud."
LEASE_S = 1.0  # a dead process's turns and showings are taken up this long after it last beat
START_TIMEOUT_S = 60.0


@dataclass
class BotProcess:
    """One ``storybot slack --http`` process and where it answers."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last words, as a crash or an OOM kill."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class World:
    """Slack and the model, both fakes on loopback, and the settings every bot process gets."""

    api: FakeSlack
    model: FakeOpenAI
    env: dict[str, str]
    folder: Path
    bots: list[BotProcess] = field(default_factory=list)

    async def start_bot(self) -> BotProcess:
        port = free_port()
        log = self.folder / f"bot-{len(self.bots)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "slack", "--http", "--host", "127.0.0.1", "--port", str(port)],
                env={**os.environ, **self.env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        bot = BotProcess(process, port, log)
        self.bots.append(bot)
        await self._until_answering(bot)
        return bot

    async def _until_answering(self, bot: BotProcess) -> None:
        def alive() -> None:
            assert bot.process.poll() is None, f"the bot exited at start:\n{bot.tail()}"

        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{bot.port}/healthz") as response:
                        return response.status == 200
                return False

            await until(
                healthy,
                "the bot to answer /healthz",
                timeout=START_TIMEOUT_S,
                every=0.05,
                alive=alive,
                details=bot.tail,
            )

    def sender(self, bot: BotProcess) -> SignedSender:
        return SignedSender(bot.events_url, self.api.url)


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    api = FakeSlack(
        users={
            ALICE: {"name": "alice", "profile": {"display_name": "Alice"}},
            BOB: {"name": "bob", "profile": {"display_name": "Bob"}},
        }
    )
    runner = await start_fake_slack(api)
    async with running_fake_openai() as model:
        model.pieces = lambda body: PIECES
        env = {
            "STORYBOT_DATABASE_URL": database_url,
            "STORYBOT_MODEL_BACKEND": "openai",
            "STORYBOT_MODEL_NAME": str(tmp_path / "no-local-model"),
            "STORYBOT_MODEL_MAX_NEW_TOKENS": "16",
            "STORYBOT_OPENAI_BASE_URL": model.url,
            "STORYBOT_OPENAI_MODEL": "served-model",
            "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0.05",
            "STORYBOT_GENERATION_JOB_LEASE_S": str(LEASE_S),
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
            "STORYBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
            "STORYBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "STORYBOT_SLACK_API_BASE_URL": f"{api.url}/api/",
            "STORYBOT_LOGGING_LEVEL": "INFO",
        }
        world = World(api, model, env, tmp_path)
        try:
            yield world
        finally:
            for bot in world.bots:
                bot.kill()
            api.released.set()
            await runner.cleanup()


def shown(args: dict[str, Any]) -> str:
    blocks = args.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    parts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    parts += [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    return plain_text("\n".join(parts))


def is_final(method: str, args: dict[str, Any]) -> bool:
    """The edit that turns "writing…" into the passage: the one that brings the buttons."""
    return method == "chat.update" and "story_continue" in json.dumps(args)


def writing_messages(api: FakeSlack) -> list[tuple[str, str]]:
    """Messages that say the bot is writing, as they look now: (channel, ts)."""
    return [key for key, args in api.messages.items() if "is writing" in shown(args)]


# ---------------------------------------------------------------------- the tests


async def test_every_acknowledged_passage_survives_a_sigkill(world: World, database_url: str) -> None:
    first = await world.start_bot()
    # On PostgreSQL a second process shares the load, as behind a load balancer; SQLite serves one.
    second = await world.start_bot() if is_postgres(database_url) else first
    senders = [world.sender(first), world.sender(second)]
    channels = [f"C0CRASH{i:02d}" for i in range(10)]
    for index, channel in enumerate(channels):
        sent = await senders[index % 2].command(
            'start "Crash" mode:free', user=ALICE, channel=channel, trigger_id=f"start-{channel}"
        )
        assert sent.status == 200, first.tail()
    texts = [(n, i, channel, f"Passage {n} in {channel}.") for n in range(4) for i, channel in enumerate(channels)]
    answers = await asyncio.gather(
        *(
            senders[(n + i) % 2].command(f"add {text}", user=BOB, channel=channel, trigger_id=f"add-{n}-{channel}")
            for n, i, channel, text in texts
        )
    )
    first.kill()  # the moment the last "got it" is out
    # An add is acknowledged once stored (an empty 200). Only on a machine so loaded that storing
    # one takes past the 2 s margin does Slack get "Working on it…" first, which promises nothing
    # yet; then the add may die with the process, but is never stored twice.
    assert all(a.status == 200 and a.body in ("", WORKING) for a in answers), first.tail()
    acknowledged = {text for (*_, text), a in zip(texts, answers, strict=True) if a.body == ""}
    assert acknowledged, "every add waited past the margin: the machine is too loaded for this test to mean anything"
    stored = [row[0] for row in await rows(database_url, "SELECT text FROM passages WHERE author_kind = 'human'")]
    assert acknowledged <= set(stored) <= {text for *_, text in texts} and len(stored) == len(set(stored))


async def test_a_passage_stored_but_not_shown_is_shown_by_the_next_process_exactly_once(
    world: World, database_url: str
) -> None:
    api = world.api
    api.hold = is_final  # the passage is stored; the edit that would show it never lands
    first = await world.start_bot()
    assert (await world.sender(first).command('start "Lamp" The keeper climbed.', user=ALICE)).status == 200
    [held] = await api.wait_for(lambda: api.held)
    channel, ts = held.args["channel"], held.args["ts"]
    assert await rows(database_url, "SELECT text FROM passages WHERE author_kind = 'bot'") == [(PASSAGE,)]
    first.kill()
    api.hold = None
    posted_before = len(api.of("chat.postMessage"))

    await world.start_bot()
    finals = await api.wait_for(lambda: [c for c in api.of("chat.update") if is_final(c.method, c.args)])
    await asyncio.sleep(3 * LEASE_S)  # time for a second showing, were there to be one
    finals = [c for c in api.of("chat.update") if is_final(c.method, c.args)]
    assert len(finals) == 1 and (finals[0].args["channel"], finals[0].args["ts"]) == (channel, ts)
    assert shown(api.messages[(channel, ts)]).startswith(f"*storybot:* {PASSAGE}")
    assert len(api.of("chat.postMessage")) == posted_before  # the same message, not a new one
    assert await rows(database_url, "SELECT count(*) FROM generation_jobs WHERE shown_at IS NULL") == [(0,)]


async def test_a_turn_cut_off_by_a_sigkill_is_finished_in_the_message_it_began(world: World, database_url: str) -> None:
    api, model = world.api, world.model
    words = [f" Word{i}" for i in range(16)]
    model.pieces = lambda body: [*words, "."]
    model.delay_s = 0.5  # a turn of about eight seconds: the kill lands mid-way
    first = await world.start_bot()
    assert (await world.sender(first).command('start "Night" The night was long.', user=ALICE)).status == 200
    await api.wait_for(lambda: writing_messages(api) and model.in_flight)
    [(channel, ts)] = writing_messages(api)

    async def recorded() -> bool:  # (the message is posted beside the writing, then recorded with the turn)
        return await rows(database_url, "SELECT message_ref FROM generation_jobs") == [(ts,)]

    await until(recorded, "the turn's message to be recorded with it")
    if is_postgres(database_url):
        await world.start_bot()  # a survivor, running when the writer dies: it takes the turn over
        first.kill()
    else:
        first.kill()
        await world.start_bot()  # SQLite: the next process takes the turn up at its start

    final = await api.wait_for(lambda: [c for c in api.of("chat.update") if is_final(c.method, c.args)], timeout=30)
    assert (final[0].args["channel"], final[0].args["ts"]) == (channel, ts)
    assert "".join(words).strip() + "." in shown(api.messages[(channel, ts)])
    assert writing_messages(api) == []  # no "storybot is writing…" left behind anywhere
    assert len([c for c in api.of("chat.postMessage") if "is writing" in shown(c.args)]) == 1
