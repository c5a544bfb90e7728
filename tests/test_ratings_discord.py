"""Rating the bot's passages on Discord, end to end: the real discord.py client against the fake
Discord on loopback, the model an OpenAI-compatible fake that streams a passage long enough for
two messages (so the counts go on the second, the one with the credit line and the buttons).

One vote per person per passage, changed by voting again; each voter hears privately; the
passage's message shows the counts, edited at the streaming pace; a withdrawn passage's buttons
refuse and edit nothing; the buttons still work for a new client on the same database.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from tests import test_discord
from tests.fake_discord import FakeDiscord, user
from tests.fake_openai import FakeOpenAI
from tests.test_discord import (
    ALICE,
    BOB,
    CAROL,
    STREAM_INTERVAL,
    bot_turn,
    custom_ids,
    discord_config,
    rows,
    running,
    served_model,
)

fake = test_discord.fake  # the fixtures: the fake Discord, and a model that streams two messages' worth
model_server = test_discord.model_server
DAVE = user(4, "Dave")
WITHDRAWN = "⚠️ That passage was withdrawn (undone or retried away), so it can no longer be rated."


async def first_bot_passage(fake: FakeDiscord, tmp_path: Path) -> tuple[dict[str, Any], int, int]:
    """Alice starts a story; the bot's answer's last message (with the buttons), story and passage ids."""
    await fake.answered(await fake.slash(ALICE, "start", title="Tides", opening="The keeper climbed the stairs."))
    *_, last = await bot_turn(fake)
    [(story_id, passage_id)] = rows(tmp_path, "SELECT story_id, id FROM passages WHERE author_kind = 'bot'")
    return last, story_id, passage_id


async def click(fake: FakeDiscord, who: dict[str, Any], message: dict[str, Any], vote: str) -> tuple[str, bool]:
    """``who`` clicks 👍 (``up``) or 👎 (``down``) under ``message``; the one answer it gets."""
    [button] = [custom_id for custom_id in custom_ids(message) if custom_id.startswith(f"story:{vote}:")]
    [answer] = await fake.answered(await fake.press(who, message, button))
    return answer


def content(fake: FakeDiscord, message: dict[str, Any]) -> str:
    """The message as people see it now."""
    return str(fake.messages[int(message["id"])]["content"])


@pytest.fixture
def settings(tmp_path: Path, fake: FakeDiscord, model_server: FakeOpenAI) -> Config:
    """The bot on a SQLite file in ``tmp_path``, on the fake Discord, written by the scripted model."""
    return discord_config(tmp_path, fake, served_model(model_server))


async def test_anyone_rates_with_the_buttons_once_and_the_passage_shows_the_counts(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        last, story_id, passage_id = await first_bot_passage(fake, tmp_path)
        rows_of_buttons = [
            [b.get("emoji", {}).get("name") or b["label"] for b in r["components"]] for r in last["components"]
        ]
        assert rows_of_buttons == [["Continue", "Retry", "Undo", "End"], ["👍", "👎"]]
        assert custom_ids(last)[-2:] == [f"story:up:{story_id}:{passage_id}", f"story:down:{story_id}:{passage_id}"]
        assert content(fake, last).endswith("\n-# passage 2 · asked by Alice")
        edits_before = len(fake.edits_of(last["id"]))

        assert await click(fake, ALICE, last, "up") == ("You rated passage 2 👍 (👍 1 · 👎 0).", True)
        assert await click(fake, BOB, last, "up") == ("You rated passage 2 👍 (👍 2 · 👎 0).", True)
        assert await click(fake, BOB, last, "down") == ("You changed your rating of passage 2 👎 (👍 1 · 👎 1).", True)
        assert await click(fake, BOB, last, "down") == ("You already rated passage 2 👎 (👍 1 · 👎 1).", True)
        await fake.until(lambda: content(fake, last).endswith("-# passage 2 · asked by Alice · 👍 1 · 👎 1"))

        # The edits kept the streaming pace: a burst of clicks is one edit (or two), an interval apart.
        await asyncio.sleep(STREAM_INTERVAL * 2)
        count_edits = fake.edits_of(last["id"])[edits_before:]
        assert 1 <= len(count_edits) <= 2
        assert all(b.at - a.at >= STREAM_INTERVAL * 0.9 for a, b in itertools.pairwise(count_edits))
        final = count_edits[-1].json
        assert final["content"] == content(fake, last) and custom_ids(final) == custom_ids(last), "the buttons stay"
        assert not final["content"].startswith("**storybot:**"), "the passage's second message: its end"

        # /story rate as a slash command: the bot's last passage, or one by its number.
        [(answer, private)] = await fake.answered(await fake.slash(CAROL, "rate", vote="up"))
        assert (answer, private) == ("You rated passage 2 👍 (👍 2 · 👎 1).", True)
        [(refusal, private)] = await fake.answered(await fake.slash(DAVE, "rate", vote="down", passage=1))
        assert private and refusal == "⚠️ That passage is Alice's; only the bot's passages are rated."
        await fake.until(lambda: content(fake, last).endswith("· 👍 2 · 👎 1"))
        [(status, _)] = await fake.answered(await fake.slash(DAVE, "status"))
        assert "(👍 2 · 👎 1)" in status
    votes = rows(tmp_path, "SELECT voter_name, value FROM passage_votes ORDER BY voter_name")
    assert votes == [("Alice", 1), ("Bob", -1), ("Carol", 1)]


async def test_a_withdrawn_passages_buttons_refuse_and_edit_nothing(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        last, story_id, _ = await first_bot_passage(fake, tmp_path)
        await fake.answered(await fake.press(BOB, last, f"story:retry:{story_id}"))
        rewritten = (await bot_turn(fake, after=int(last["id"])))[-1]
        await fake.answered(await fake.press(ALICE, rewritten, f"story:undo:{story_id}"))
        edits = {message["id"]: len(fake.edits_of(message["id"])) for message in (last, rewritten)}

        assert await click(fake, CAROL, last, "up") == (WITHDRAWN, True)  # retried away
        assert await click(fake, CAROL, rewritten, "down") == (WITHDRAWN, True)  # undone
        await asyncio.sleep(STREAM_INTERVAL * 2)
        assert {message_id: len(fake.edits_of(message_id)) for message_id in edits} == edits
    assert rows(tmp_path, "SELECT COUNT(*) FROM passage_votes") == [(0,)]


async def test_the_buttons_work_for_a_new_client_on_the_same_database(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        last, _, _ = await first_bot_passage(fake, tmp_path)
    fake.guild_ready.clear()
    async with running(settings, fake):  # a restart: nothing of the first client is left
        assert await click(fake, BOB, last, "down") == ("You rated passage 2 👎 (👍 0 · 👎 1).", True)
        await fake.until(lambda: content(fake, last).endswith("-# passage 2 · asked by Alice · 👍 0 · 👎 1"))
