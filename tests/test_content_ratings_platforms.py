"""Content ratings on each platform: what says a channel is for adults, end to end.

Discord: the channel's age-restricted (NSFW) flag as the client's cache holds it, kept current by
CHANNEL_UPDATE (a thread has its parent's); Slack: the channels listed in ``slack.mature_channels``;
the console: ``console.mature``. Elsewhere ``rating:mature`` is refused with the rules' one line,
and a mature story whose channel stops being age-restricted answers that it is paused.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from adapters.console import ConsoleChannel
from bot.app import open_app
from bot.config import Config
from tests import test_discord, test_slack
from tests.fake_discord import FakeDiscord
from tests.fake_openai import FakeOpenAI
from tests.test_discord import ALICE, BOB, discord_config, rows, running, served_model
from tests.test_slack import CHANNEL, Slack, ephemerals, posts

# The fixtures: Discord's fake server and served model; Slack's running app (HTTP mode) with its mock
# Web API, and its model (``fake`` to the ``slack`` fixture, so the Discord one has another name here).
discord = test_discord.fake
model_server = test_discord.model_server
slack = test_slack.slack
fake = test_slack.fake

NEEDS_ADULTS = "A story rated mature needs a channel for adults"
ADULTS = "C0ADULTS"  # the Slack channel slack.mature_channels lists


# ---------------------------------------------------------------------- Discord


async def test_discord_mature_needs_an_age_restricted_channel_and_pauses_when_unmarked(
    tmp_path: Path, discord: FakeDiscord, model_server: FakeOpenAI
) -> None:
    async with running(discord_config(tmp_path, discord, served_model(model_server)), discord):
        [(refused, private)] = await discord.answered(
            await discord.slash(ALICE, "start", title="Dark", rating="mature")
        )
        assert private and NEEDS_ADULTS in refused and "\n" not in refused

        await discord.set_nsfw(True)  # a moderator marks the channel age-restricted
        [(started, private)] = await discord.answered(
            await discord.slash(ALICE, "start", title="Dark", rating="mature", mode="free")
        )
        assert not private and "rated mature" in started
        [(added, _)] = await discord.answered(await discord.slash(BOB, "add", text="The door opened."))
        assert "The door opened." in added

        await discord.set_nsfw(False)  # ... and unmarks it: the next add is refused, the story paused
        [(paused, private)] = await discord.answered(await discord.slash(BOB, "add", text="Blood on the floor."))
        assert private and "is rated mature" in paused and "paused" in paused
    assert rows(tmp_path, "SELECT text FROM passages") == [("The door opened.",)]


async def test_discord_a_story_thread_is_for_adults_while_its_parent_channel_is(
    tmp_path: Path, discord: FakeDiscord, model_server: FakeOpenAI
) -> None:
    discord.nsfw.add(test_discord.CHANNEL_ID)  # age-restricted from the start (GUILD_CREATE says so)
    config = discord_config(tmp_path, discord, served_model(model_server), message_content_thread_turns="true")
    async with running(config, discord):
        start = await discord.slash(ALICE, "start", title="Night", rating="mature", thread=True, mode="free")
        [(shown, _)] = await discord.answered(start)
        [thread] = discord.threads
        thread_id = int(thread["id"])
        assert shown.endswith(f"The story is in <#{thread_id}>.") and "rated mature" in shown
        await discord.post(BOB, thread_id, "Bob walked the night shift alone.")  # a plain message: a passage
        await discord.until(lambda: rows(tmp_path, "SELECT id FROM passages"))

        await discord.set_nsfw(False)
        await discord.post(BOB, thread_id, "Something moved in the dark.")
        replies = await discord.until(
            lambda: [m for m in discord.channel_messages(thread_id) if "paused" in m["content"]]
        )
        assert "is rated mature" in replies[0]["content"]
        [(paused, private)] = await discord.answered(
            await discord.slash(ALICE, "add", channel=discord.channel(thread_id), text="She ran.")
        )
        assert private and "paused" in paused
    assert rows(tmp_path, "SELECT text FROM passages") == [("Bob walked the night shift alone.",)]


# ---------------------------------------------------------------------- Slack


@pytest.fixture
def mature_channel_listed(tmp_path: Path) -> None:
    """The config file the ``slack`` fixture's app reads lists ``ADULTS`` in slack.mature_channels."""
    (tmp_path / "storybot.toml").write_text(f'[slack]\nmature_channels = ["{ADULTS}"]\n')


@pytest.mark.usefixtures("mature_channel_listed")  # (before ``slack``, which reads the file)
async def test_slack_mature_only_in_a_listed_channel(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command('start "Dark" rating:mature mode:free', user=test_slack.ALICE, channel=CHANNEL)
    [refused] = await api.wait_for(lambda: ephemerals(slack, test_slack.ALICE))
    assert refused.startswith(f"⚠️ {NEEDS_ADULTS}") and "\n" not in refused

    await send.command('start "Dark" rating:mature mode:free', user=test_slack.ALICE, channel=ADULTS)
    await api.wait_for(lambda: [text for text in posts(api) if "rated mature" in text])
    await send.command("add The door opened.", user=test_slack.BOB, channel=ADULTS)
    await api.wait_for(lambda: [text for text in posts(api) if "The door opened." in text])
    assert ephemerals(slack, test_slack.BOB) == []  # nothing refused in the listed channel


# ---------------------------------------------------------------------- the console


async def console_says(config: Config, *lines: str) -> list[str]:
    """What the console prints for ``lines`` typed in order (a fresh app on ``config``'s database)."""
    out = io.StringIO()
    async with open_app(config) as app:
        console = ConsoleChannel(app, out=out, interactive=False)
        for line in lines:
            await console.handle_line(line)
    return out.getvalue().splitlines()


async def test_console_mature_only_when_the_config_says_it_is_for_adults(config: Config) -> None:
    start = '/story start "Dark" rating:mature mode:free'
    [refused] = await console_says(config, start)
    assert refused.startswith(f"! {NEEDS_ADULTS}")
    for_adults = dataclasses.replace(config, console=dataclasses.replace(config.console, mature=True))
    started, added = await console_says(for_adults, start, "The door opened.")
    assert "rated mature" in started and added == "Passage 1 added."
