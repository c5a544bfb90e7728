"""Round-robin turn calls on every platform: the real Discord client against the fake Discord, the
real Bolt app (HTTP mode) against the mock Slack Web API, and the console, with turns of a few
seconds. Each call and reminder mentions exactly the one person whose turn it is, and nothing
else in any message can ping: not the title, not the names people chose (``@everyone``,
``<@3>``, ``<!channel>``), not the notice that mentions nobody.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleChannel
from adapters.slack_app import slack_http_server
from adapters.slack_app.render import plain_text
from bot.app import open_app
from bot.config import Config
from tests import test_discord
from tests.fake_discord import CHANNEL_ID, FakeDiscord, user
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.fake_slack import FakeSlack, SignedSender, start_fake_slack
from tests.test_discord import discord_config, running, served_model
from tests.test_slack import Slack, blocks_of, ephemerals, slack_config
from tests.waiting import until

model_server = test_discord.model_server  # a model server; no round is finished here, so it never writes

TIMEOUT_S, REMIND_S = 3.0, 1.0  # story.round_robin_timeout_s and story.remind_after_s
TITLE = "Night <@&9> @here <!everyone>"
QUIET = "Nobody has written in “"
# Who each notice mentions, in order: Alice's call and reminder, Bob's call (Alice skipped) and
# reminder, then nobody: a whole round went by without a passage.
CALLED = ["Alice", "Alice", "Bob", "Bob", None]


def quick_turns(config: Config) -> Config:
    story = dataclasses.replace(config.story, round_robin_timeout_s=TIMEOUT_S, remind_after_s=REMIND_S)
    return dataclasses.replace(config, story=story)


def check_sequence(texts: list[str]) -> None:
    """The five notices, as the platform shows them with its mention taken off."""
    assert texts[0].startswith(f"it's your turn in “{TITLE}” (")
    assert texts[1].startswith(f"a reminder: it's your turn in “{TITLE}” (")
    assert " was skipped; it's your turn in “" in texts[2]
    assert texts[3].startswith("a reminder: ")
    assert texts[4].startswith(QUIET)


# ---------------------------------------------------------------------- Discord

PINGY_ALICE = user(1, "@everyone Alice <@3>")  # a display name that tries to ping
BOB = user(2, "Bob")
MENTION = re.compile(r"<@[!&]?\d+>|<#\d+>|@everyone|@here")  # what Discord would read as a mention


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


def channel_posts(fake: FakeDiscord) -> list[tuple[bool, dict[str, Any]]]:
    """Every message the bot sent, as its request's message part, marked True when it was posted in
    the channel: not an answer to an interaction, so here a turn notice."""
    path = f"/channels/{CHANNEL_ID}/messages"
    return [(request.method == "POST" and request.path == path, body) for request, body in fake.message_payloads()]


async def test_discord_calls_each_turn_mentioning_that_one_user_alone(
    tmp_path: Path, discord_fake: FakeDiscord, model_server: FakeOpenAI
) -> None:
    fake = discord_fake
    async with running(quick_turns(discord_config(tmp_path, fake, served_model(model_server))), fake):
        await fake.answered(await fake.slash(PINGY_ALICE, "start", title=TITLE, mode="round-robin"))
        await fake.answered(await fake.slash(BOB, "join"))
        [(whose, private)] = await fake.answered(await fake.slash(BOB, "turn"))
        assert private and re.fullmatch(r"It's @everyone Alice <@3>'s turn \(\d s left; Bob is next\)\.", whose)
        await fake.until(lambda: len([body for posted, body in channel_posts(fake) if posted]) >= 5, 30)
    notices = [body for posted, body in channel_posts(fake) if posted]
    assert len(notices) == 5
    people = {PINGY_ALICE["id"]: "Alice", BOB["id"]: "Bob"}
    called, texts = [], []
    for body in notices:
        content, allowed = body["content"], body["allowed_mentions"]
        lead = re.match(r"(<@(\d+)>), ", content)
        if lead is None:  # the notice that mentions nobody
            assert allowed == {"parse": []}
        else:
            assert allowed == {"parse": [], "users": [int(lead[2])]}  # that user alone: no roles, no @everyone
        assert MENTION.findall(content) == ([lead[1]] if lead else [])  # nothing else reads as a mention
        called.append(people[lead[2]] if lead else None)
        texts.append(content[lead.end() :] if lead else content)
    assert called == CALLED
    shown = [text.replace("\u200b", "").replace("\\", "") for text in texts]  # as people read them
    check_sequence(shown)
    assert shown[2].startswith("@everyone Alice <@3> was skipped;")  # her name as she chose it, inert
    quiet: tuple[dict[str, Any], ...] = ({"parse": []}, {"parse": [], "replied_user": False})
    assert all(body.get("allowed_mentions") in quiet for posted, body in channel_posts(fake) if not posted)


# ---------------------------------------------------------------------- Slack

ALICE_ID, BOB_ID = "U0ALICE", "U0BOB"
SLACK_MARKUP = re.compile(r"<[!@#][^>]*>|<https?:")  # a mention, a channel or a link, as Slack reads markup


@pytest.fixture
async def slack(tmp_path: Path) -> AsyncIterator[Slack]:
    api = FakeSlack(
        users={
            ALICE_ID: {"name": "alice", "profile": {"display_name": "<!channel> Alice @here"}},
            BOB_ID: {"name": "bob", "profile": {"display_name": "Bob"}},
        }
    )
    runner = await start_fake_slack(api)
    try:
        async with running_fake_openai() as model:
            config = quick_turns(slack_config(tmp_path, api, model))
            async with slack_http_server(config, host="127.0.0.1", port=0) as server:
                yield Slack(api, SignedSender(server.url, api.url), server, model)
    finally:
        await runner.cleanup()


def slack_notices(api: FakeSlack) -> list[dict[str, Any]]:
    """The bot's posts that are turn notices: a mention first, or the notice that mentions nobody."""
    found = []
    for call in api.of("chat.postMessage"):
        text = blocks_of(call.args)[0].get("text", {}).get("text", "")
        if text.startswith("<@") or text.startswith(QUIET):
            found.append(call.args)
    return found


async def test_slack_calls_each_turn_mentioning_that_one_user_alone(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command(f'start "{TITLE}" mode:round-robin', user=ALICE_ID)
    await send.command("join", user=BOB_ID)
    await send.command("turn", user=BOB_ID)
    [whose] = await api.wait_for(lambda: ephemerals(slack, BOB_ID))
    assert re.fullmatch(r"It's <!channel> Alice @here's turn \(\d s left; Bob is next\)\.", whose)
    await api.wait_for(lambda: len(slack_notices(api)) >= 5, timeout=30)
    notices = slack_notices(api)
    assert len(notices) == 5
    people = {ALICE_ID: "Alice", BOB_ID: "Bob"}
    called, texts = [], []
    for args in notices:
        [section] = blocks_of(args)
        text = section["text"]["text"]
        lead = re.match(r"(<@(U[0-9A-Z]+)>), ", text)
        assert SLACK_MARKUP.findall(text) == ([lead[1]] if lead else [])  # the one mention, nothing else
        assert section["text"]["verbatim"] is True and args.get("link_names") in (False, "0", "false")
        assert not SLACK_MARKUP.search(args["text"])  # the notification's own text pings nobody either
        called.append(people[lead[2]] if lead else None)
        texts.append(plain_text(text[lead.end() :] if lead else text))
    assert called == CALLED
    check_sequence(texts)
    assert texts[2].startswith("<!channel> Alice @here was skipped;")  # her name as she chose it, escaped


# ---------------------------------------------------------------------- the console


async def test_the_console_calls_each_turn_once_across_a_restart(config: Config) -> None:
    config = quick_turns(config)
    first = io.StringIO()
    async with open_app(config) as app:
        console = ConsoleChannel(app, out=first, interactive=False)
        lines = (
            "/as Alice",
            '/story start "Rounds" mode:free',
            "/as Bob",
            "/story join",
            "/as Alice",
            "/story settings mode:rr",
        )
        for line in (*lines, "/story turn"):  # (both joined before turns begin: the calls are known in full)
            await console.handle_line(line)
        await until(lambda: "→ Bob, " in first.getvalue(), timeout=30)
    out = first.getvalue()
    assert re.search(r"^It's your turn \(\d s left; Bob is next\)\.$", out, re.MULTILINE)  # /story turn
    said = [line for line in out.splitlines() if line.startswith("→ ")]
    assert len(said) == 3
    assert re.fullmatch(r"→ Alice, it's your turn in “Rounds” \(\d s to write; Bob is next\)\.", said[0])
    assert re.fullmatch(
        r"→ Alice, a reminder: it's your turn in “Rounds” \(\d s left before you are skipped\)\.", said[1]
    )
    assert re.fullmatch(
        r"→ Bob, Alice was skipped; it's your turn in “Rounds” \(\d s to write; then the bot writes\)\.", said[2]
    )

    again = io.StringIO()  # the bot restarts: what was said is not said again
    async with open_app(config) as app:
        ConsoleChannel(app, out=again, interactive=False)
        await until(lambda: QUIET in again.getvalue(), timeout=30)
        await asyncio.sleep(0.5)  # a few more looks
    said = again.getvalue().splitlines()
    assert said[-1].startswith(QUIET) and [line for line in said if line.startswith(QUIET)] == [said[-1]]
    # Bob's reminder, unless the restart took so long that his turn ran out meanwhile; nothing before it.
    assert len(said) <= 2 and all(re.fullmatch(r"→ Bob, a reminder: .*", line) for line in said[:-1])
