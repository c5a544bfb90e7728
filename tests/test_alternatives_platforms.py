"""Browsing and picking the bot's alternatives on every platform, end to end: the real discord.py
client against the fake Discord, the real Bolt app against the mock Slack Web API (both with a
scripted model on loopback that writes a different passage each turn), and the real
``storybot console`` with the tiny model.

A retry's passage shows "2 / 2" and ◀ ▶; ◀ makes the first try the story's again and the same
message shows it, at once, with its own buttons; ``/story pick <n>`` does the same in text; a
button of a message that no longer shows the story's passage changes nothing; once someone has
written after the bot's passage, it can no longer be changed.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from adapters.discord_bot.streaming import CUT
from bot.alternatives import STALE
from bot.config import Config
from tests import test_discord, test_slack
from tests.fake_discord import FakeDiscord
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.test_console import run_console
from tests.test_discord import ALICE, BOB, CAROL, bot_turn, custom_ids, discord_config, rows, running, served_model
from tests.test_slack import CHANNEL, Slack, blocks_of, bot_passage, buttons, ephemerals, shown

discord_fake = test_discord.fake  # the fake Discord
slack = test_slack.slack  # the running Slack app and Slack's sides of it,
fake = test_slack.fake  # ... and its model
FIRST, SECOND, THIRD = "The door was locked.", "The door stood open.", "Beyond it the sea was loud."
WRITTEN_SINCE = "Someone has written since; only the bot's latest passage, while it is the last, can be changed."


def scripted(server: FakeOpenAI) -> None:
    """The model writes FIRST, SECOND, THIRD, then "Passage 4.", "Passage 5."…, one a turn."""
    turns = count(1)
    server.pieces = lambda body: [{1: FIRST, 2: SECOND, 3: THIRD}.get(n, f"Passage {n}.") for n in [next(turns)]]


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        scripted(server)
        server.max_model_len = 8192
        yield server


# ---------------------------------------------------------------------- Discord


def buttons_shown(message: dict[str, Any]) -> list[list[str]]:
    """Each row of buttons as people see them: the label or emoji, in brackets when greyed out."""
    return [
        [
            f"({b.get('emoji', {}).get('name') or b['label']})"
            if b.get("disabled")
            else b.get("emoji", {}).get("name") or b["label"]
            for b in row["components"]
        ]
        for row in message["components"]
    ]


def content(fake: FakeDiscord, message: dict[str, Any]) -> str:
    return str(fake.messages[int(message["id"])]["content"])


@pytest.fixture
def settings(tmp_path: Path, discord_fake: FakeDiscord, model: FakeOpenAI) -> Config:
    return discord_config(tmp_path, discord_fake, served_model(model))


async def test_discord_browses_and_picks_with_the_buttons_and_the_slash_command(
    tmp_path: Path, discord_fake: FakeDiscord, settings: Config
) -> None:
    fake = discord_fake
    async with running(settings, fake):
        await fake.answered(await fake.slash(ALICE, "start", title="Doors", opening="She reached the end of the hall."))
        [first] = await bot_turn(fake)
        assert buttons_shown(first) == [["Continue", "Retry", "Undo", "End"], ["👍", "👎"]]
        story_id = rows(tmp_path, "SELECT id FROM stories")[0][0]
        await fake.answered(await fake.press(BOB, first, f"story:retry:{story_id}"))
        [rewrite] = await bot_turn(fake, after=int(first["id"]))
        [(first_id,), (second_id,)] = rows(tmp_path, "SELECT id FROM passages WHERE author_kind = 'bot' ORDER BY seq")
        assert content(fake, rewrite) == f"**storybot:** {SECOND}\n-# passage 2 · 2 / 2 · rewritten at Bob's request"
        assert buttons_shown(rewrite) == [["Continue", "Retry", "Undo", "End"], ["◀", "(▶)", "👍", "👎"]]
        assert custom_ids(rewrite)[4:6] == [
            f"story:pick:{story_id}:{second_id}:1",
            f"story:pick:{story_id}:{second_id}:2",
        ]
        as_first_drawn = copy.deepcopy(rewrite)

        # ◀: the answer is Carol's; the message everyone sees now shows the first try, with its own buttons.
        [answer] = await fake.answered(await fake.press(CAROL, rewrite, f"story:pick:{story_id}:{second_id}:1"))
        assert answer == ("You picked alternative 1 of 2: it is passage 2 now.", True)
        await fake.until(lambda: FIRST in content(fake, rewrite))
        assert content(fake, rewrite) == f"**storybot:** {FIRST}\n-# passage 2 · 1 / 2 · asked by Alice"
        assert buttons_shown(rewrite) == [["Continue", "Retry", "Undo", "End"], ["(◀)", "▶", "👍", "👎"]]
        assert custom_ids(rewrite)[-1] == f"story:down:{story_id}:{first_id}", "👍 👎 rate the passage shown"

        # The ◀ as first drawn names a passage no longer the story's: it changes nothing.
        edits = len(fake.edits_of(rewrite["id"]))
        [(refusal, private)] = await fake.answered(
            await fake.press(BOB, as_first_drawn, f"story:pick:{story_id}:{second_id}:1")
        )
        assert private and refusal == f"⚠️ {STALE}"
        assert len(fake.edits_of(rewrite["id"])) == edits

        # ▶, then /story pick 1 in text: the same message follows.
        await fake.answered(await fake.press(CAROL, rewrite, f"story:pick:{story_id}:{first_id}:2"))
        await fake.until(lambda: SECOND in content(fake, rewrite))
        [answer] = await fake.answered(await fake.slash(BOB, "pick", number=1))
        assert answer == ("You picked alternative 1 of 2: it is passage 2 now.", True)
        await fake.until(lambda: FIRST in content(fake, rewrite))
        [(beyond, _)] = await fake.answered(await fake.slash(BOB, "pick", number=3))
        assert beyond == "⚠️ The bot's latest passage has 2 alternatives; pick one from 1 to 2."

        # Alice writes on (and the bot answers): the passage she built on stays.
        await fake.answered(await fake.slash(ALICE, "add", text="She stepped through."))
        await bot_turn(fake, after=int(rewrite["id"]))
        [(since, _)] = await fake.answered(await fake.press(CAROL, rewrite, f"story:pick:{story_id}:{first_id}:2"))
        assert since == f"⚠️ {WRITTEN_SINCE}"
    kept = rows(tmp_path, "SELECT text, status FROM passages WHERE author_kind = 'bot' ORDER BY seq")
    assert kept == [(FIRST, "canonical"), (SECOND, "superseded"), (THIRD, "canonical")]


# A passage too long for one Discord message (it takes two), streamed as a model streams.
LONG = " ".join(f"Wave {i} rolled in under the pier and broke on the rocks below." for i in range(40))


async def test_discord_alternatives_of_different_lengths_keep_their_turns_messages_and_live_buttons(
    tmp_path: Path, discord_fake: FakeDiscord, model: FakeOpenAI, settings: Config
) -> None:
    """A short first try, a long rewrite (two messages), then a short rewrite (one): each pick
    fills the messages of the turn that carries ◀ ▶, none deleted, the buttons always live under
    the last; a long one picked into a single message is cut to fit, pointing to /story status."""
    fake, turns = discord_fake, count(1)
    model.pieces = lambda body: {1: [FIRST], 2: [LONG[i : i + 120] for i in range(0, len(LONG), 120)]}.get(
        next(turns), [THIRD]
    )
    model.delay_s = 0.04

    def now(message: dict[str, Any]) -> dict[str, Any]:
        return fake.messages[int(message["id"])]

    async def press(message: dict[str, Any], custom_id: str, shows: str) -> None:
        """Carol clicks, is told what she picked, and the turn's last message says ``shows``."""
        [(answer, private)] = await fake.answered(await fake.press(CAROL, now(message), custom_id))
        assert private and answer.startswith("You picked alternative"), answer
        await fake.until(lambda: content(fake, message).endswith(shows))

    async with running(settings, fake):
        await fake.answered(await fake.slash(ALICE, "start", title="Waves", opening="She walked to the pier."))
        [first] = await bot_turn(fake)
        story_id = rows(tmp_path, "SELECT id FROM stories")[0][0]
        await fake.answered(await fake.press(BOB, first, f"story:retry:{story_id}"))
        head, tail = await bot_turn(fake, after=int(first["id"]))
        [(first_id,), (long_id,)] = rows(tmp_path, "SELECT id FROM passages WHERE author_kind = 'bot' ORDER BY seq")
        long_shown = (content(fake, head), content(fake, tail))
        assert long_shown[0].startswith(f"**storybot:** {LONG[:40]}")
        assert long_shown[1].endswith("\n-# passage 2 · 2 / 2 · rewritten at Bob's request")

        # Short, long back, short again: the same two messages, the credit line and buttons in the second.
        for _ in range(2):
            await press(tail, f"story:pick:{story_id}:{long_id}:1", "-# passage 2 · 1 / 2 · asked by Alice")
            assert (content(fake, head), content(fake, tail)) == (
                f"**storybot:** {FIRST}",
                "-# passage 2 · 1 / 2 · asked by Alice",
            )
            assert not now(head)["components"]
            assert buttons_shown(now(tail)) == [["Continue", "Retry", "Undo", "End"], ["(◀)", "▶", "👍", "👎"]]
            await press(tail, f"story:pick:{story_id}:{first_id}:2", "2 / 2 · rewritten at Bob's request")
            assert (content(fake, head), content(fake, tail)) == long_shown
            assert not now(head)["components"] and custom_ids(now(tail))[-1] == f"story:down:{story_id}:{long_id}"
        assert not any(now(m).get("deleted") for m in (head, tail))

        # A short rewrite takes one message; the long one picked into it is cut to fit, with a pointer.
        await press(tail, f"story:pick:{story_id}:{long_id}:1", "1 / 2 · asked by Alice")
        await fake.answered(await fake.press(BOB, now(tail), f"story:retry:{story_id}"))
        [third] = await bot_turn(fake, after=int(tail["id"]))
        third_id = rows(tmp_path, "SELECT id FROM passages WHERE author_kind = 'bot' ORDER BY seq")[-1][0]
        await press(third, f"story:pick:{story_id}:{third_id}:2", "-# passage 2 · 2 / 3 · rewritten at Bob's request")
        cut = content(fake, third)
        assert cut.startswith(f"**storybot:** {LONG[:40]}") and len(cut) <= 2000
        assert f"below.\n{CUT}\n-# passage 2" in cut
        assert buttons_shown(now(third))[1] == ["◀", "▶", "👍", "👎"]
        await press(third, f"story:pick:{story_id}:{long_id}:3", "3 / 3 · rewritten at Bob's request")
        assert content(fake, third) == f"**storybot:** {THIRD}\n-# passage 2 · 3 / 3 · rewritten at Bob's request"


# ---------------------------------------------------------------------- Slack


def pick_buttons(args: dict[str, Any]) -> dict[str, str]:
    """◀ / ▶ under a Slack passage: action -> value."""
    return {b["action_id"]: b["value"] for b in buttons(args) if b["action_id"] in ("story_older", "story_newer")}


async def test_slack_browses_and_picks_with_the_buttons_and_the_slash_command(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    scripted(slack.model)
    await send.command('start "Doors" She reached the end of the hall.', user=test_slack.ALICE)
    ts, first = await bot_passage(api, 1)
    assert pick_buttons(first) == {}
    story_id = buttons(first)[0]["value"]
    await send.click("retry", story_id, user=test_slack.BOB, channel=CHANNEL, message_ts=ts)
    ts2, rewrite = await bot_passage(api, 2)
    assert shown(rewrite).endswith(f"{SECOND}\npassage 2 · 2 / 2 · rewritten at Bob's request")
    [older] = pick_buttons(rewrite).items()
    assert older[0] == "story_older" and older[1].startswith(f"{story_id}:") and older[1].endswith(":1")
    [actions] = [block for block in blocks_of(rewrite) if block["type"] == "actions"]
    assert len({e["action_id"] for e in actions["elements"]}) == len(actions["elements"])

    assert (
        await click(slack, test_slack.MOD, "older", older[1], ts2)
        == "You picked alternative 1 of 2: it is passage 2 now."
    )
    await api.wait_for(lambda: FIRST in shown(api.messages[(CHANNEL, ts2)]))
    now = api.messages[(CHANNEL, ts2)]
    assert shown(now).endswith(f"{FIRST}\npassage 2 · 1 / 2 · asked by Alice")
    assert list(pick_buttons(now)) == ["story_newer"]

    # The ◀ as first drawn changes nothing; /story pick in text picks, answered in the acknowledgement.
    updates = len(api.of("chat.update"))
    assert await click(slack, test_slack.BOB, "older", older[1], ts2) == f"⚠️ {STALE}"
    assert len(api.of("chat.update")) == updates
    picked = await send.command("pick 2", user=test_slack.ALICE)
    assert shown(json.loads(picked.body)) == "You picked alternative 2 of 2: it is passage 2 now."
    await api.wait_for(lambda: SECOND in shown(api.messages[(CHANNEL, ts2)]))
    assert pick_buttons(api.messages[(CHANNEL, ts2)]) == {"story_older": older[1]}

    # Alice writes on (and the bot answers): the passage she built on stays.
    await send.command("add She stepped through.", user=test_slack.ALICE)
    await bot_passage(api, 3)
    assert await click(slack, test_slack.BOB, "older", older[1], ts2) == f"⚠️ {WRITTEN_SINCE}"
    assert SECOND in shown(api.messages[(CHANNEL, ts2)])


async def click(slack: Slack, user: str, action: str, value: str, ts: str) -> str:
    """``user`` clicks ``action`` under the message ``ts``: what they alone are shown for it."""
    seen = len(ephemerals(slack, user))
    await slack.sender.click(action, value, user=user, channel=CHANNEL, message_ts=ts)
    shown_to: list[str] = await slack.api.wait_for(lambda: ephemerals(slack, user)[seen:])
    return shown_to[0]


# ---------------------------------------------------------------------- console


def test_the_console_prints_the_alternative_picked(tmp_path: Path, tiny_model_dir: Path) -> None:
    script = "\n".join(
        [
            '/story start "Doors" mode:free',
            "She reached the end of the hall.",
            "/story continue",
            "/story retry",
            "/story pick 1",
            "/story pick 3",
            "She stepped through.",
            "/story pick 2",
        ]
    )
    done = run_console(tmp_path, tiny_model_dir, script + "\n")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "console.db") as db:
        tries = db.execute("SELECT text, status FROM passages WHERE author_kind = 'bot' ORDER BY seq").fetchall()
    assert [status for _, status in tries] == ["canonical", "superseded"]
    first = tries[0][0]
    out = done.stdout
    assert f"You picked alternative 1 of 2: it is passage 2 now.\n\nstorybot ▸ {first}\n" in out
    assert "! The bot's latest passage has 2 alternatives; pick one from 1 to 2." in out
    assert f"! {WRITTEN_SINCE}" in out
    assert out.count("storybot ▸ ") == 3  # the turn, its retry, and the one picked
