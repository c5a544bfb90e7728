"""``/story branch`` on Slack and Discord (their fake servers on loopback) and in the console: the
branch opens a new thread under the story's channel (in the console a new console channel), and
what is written in the branch stays out of the parent and the other way round."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tests.fake_discord import CHANNEL_ID, FakeDiscord
from tests.fake_slack import BOT_USER
from tests.test_console import run_console
from tests.test_discord import ALICE as DISCORD_ALICE
from tests.test_discord import BOB as DISCORD_BOB
from tests.test_discord import discord_config, local_model, rows, running
from tests.test_discord import fake as discord_fake  # noqa: F401  # a fixture (``fake`` here is Slack's model)
from tests.test_slack import ALICE as SLACK_ALICE
from tests.test_slack import BOB as SLACK_BOB
from tests.test_slack import CHANNEL as SLACK_CHANNEL
from tests.test_slack import Slack, ephemerals, shown
from tests.test_slack import fake as fake
from tests.test_slack import slack as slack

CONSOLE_CHANNEL = "desk"
STORY_TEXTS = "SELECT s.id, p.text FROM passages p JOIN stories s ON s.id = p.story_id ORDER BY s.id, p.seq"


async def test_slack_branches_into_a_new_thread_under_the_channel(slack: Slack, tmp_path: Path) -> None:
    api, send = slack.api, slack.sender
    await send.command('start mode:free "Tide" The tide was out.', user=SLACK_ALICE, trigger_id="trigger-start")
    await api.wait_for(lambda: [a for a in api.messages.values() if "The tide was out." in shown(a)])
    await send.command("branch", user=SLACK_BOB, trigger_id="trigger-branch")
    [thread] = await api.wait_for(
        lambda: [ts for (_, ts), a in api.messages.items() if "Bob branched “Tide” (story #1) at passage 1" in shown(a)]
    )
    await send.message(
        "The tide came in fast.", user=SLACK_BOB, channel=SLACK_CHANNEL, thread_ts=thread, event_id="Ev0BRANCH"
    )
    await api.wait_for(lambda: [a for a in api.messages.values() if "The tide came in fast." in shown(a)])
    await send.command("add The tide stayed out.", user=SLACK_ALICE, trigger_id="trigger-add")
    await api.wait_for(lambda: [a for a in api.messages.values() if "The tide stayed out." in shown(a)])
    await send.message(
        f"<@{BOT_USER}> status", user=SLACK_BOB, channel=SLACK_CHANNEL, thread_ts=thread, event_id="Ev0STATUS"
    )
    [status] = await api.wait_for(lambda: ephemerals(slack, SLACK_BOB))
    assert "Branched from “Tide” (story #1) at passage 1." in status
    assert rows(tmp_path, STORY_TEXTS) == [
        (1, "The tide was out."),
        (1, "The tide stayed out."),
        (2, "The tide was out."),
        (2, "The tide came in fast."),
    ]


async def test_discord_branches_into_a_new_thread_under_the_channel(
    tmp_path: Path,
    discord_fake: FakeDiscord,  # noqa: F811  # the fixture imported above
    tiny_model_dir: Path,
) -> None:
    fake = discord_fake
    async with running(discord_config(tmp_path, fake, local_model(tiny_model_dir)), fake):
        await fake.answered(
            await fake.slash(DISCORD_ALICE, "start", title="Harbour", mode="free", opening="The tide came in.")
        )
        await fake.answered(await fake.slash(DISCORD_BOB, "add", text="The boats rose."))
        await fake.answered(await fake.slash(DISCORD_BOB, "add", text="A bell rang."))
        [(shown, private)] = await fake.answered(await fake.slash(DISCORD_BOB, "branch", passage=2))
        [thread] = fake.threads
        thread_id = int(thread["id"])
        assert not private and shown.startswith("🌿 Bob branched “Harbour” (story #1) at passage 2")
        assert shown.endswith(f"The story is in <#{thread_id}>.")
        assert thread["name"] == "Harbour" and thread["parent_id"] == str(CHANNEL_ID)
        await fake.until(lambda: fake.channel_messages(thread_id))
        assert "Bob branched “Harbour”" in fake.channel_messages(thread_id)[0]["content"]
        in_thread = fake.channel(thread_id)
        await fake.answered(await fake.slash(DISCORD_BOB, "add", text="The boats sank.", channel=in_thread))
        await fake.answered(await fake.slash(DISCORD_ALICE, "add", text="The boats sailed out."))
        [(status, _)] = await fake.answered(await fake.slash(DISCORD_BOB, "status", channel=in_thread))
        assert "Branched from “Harbour” (story #1) at passage 2." in status
    assert rows(tmp_path, "SELECT id, thread, parent_id FROM stories ORDER BY id") == [
        (1, "", None),
        (2, str(thread_id), 1),
    ]
    assert rows(tmp_path, STORY_TEXTS) == [
        (1, "The tide came in."),
        (1, "The boats rose."),
        (1, "A bell rang."),
        (1, "The boats sailed out."),
        (2, "The tide came in."),
        (2, "The boats rose."),
        (2, "The boats sank."),
    ]


def test_the_console_branches_into_a_new_console_channel_and_switches_there(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    script = "\n".join(
        (
            '/story start "Dunes" mode:free The wind rose.',
            "The sand moved.",
            "/story branch 1",
            "The wind fell.",
            "/story status",
            "/channel CHANNEL",
            "The dunes walked.",
        )
    ).replace("CHANNEL", CONSOLE_CHANNEL)
    done = run_console(tmp_path, tiny_model_dir, script + "\n", STORYBOT_CONSOLE_CHANNEL=CONSOLE_CHANNEL)
    assert done.returncode == 0, done.stderr
    assert (
        f"(now in console channel {CONSOLE_CHANNEL}-branch-1: /story commands apply to the branch; "
        f"/channel {CONSOLE_CHANNEL} goes back)"
    ) in done.stdout
    assert "Branched from “Dunes” (story #1) at passage 1." in done.stdout
    with contextlib.closing(sqlite3.connect(tmp_path / "console.db")) as db:
        assert db.execute(STORY_TEXTS).fetchall() == [
            (1, "The wind rose."),
            (1, "The sand moved."),
            (1, "The dunes walked."),
            (2, "The wind rose."),
            (2, "The wind fell."),
        ]
