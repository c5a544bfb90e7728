"""Content checks and the moderators' tools on Slack, end to end: the real Bolt app in HTTP mode
receives signed requests and talks to the mock Web API on loopback (``tests/fake_slack.py``); the
model is the fake OpenAI-compatible server (``tests/fake_openai.py``), the moderation service the
fake of ``tests/fake_moderation.py``.

A person's text the checks refuse is refused to that person alone, in one line, and nothing is
stored; a bot passage shows in Slack only as far as it passed, is written again once when it
fails, and is withheld (a notice in the channel) when it fails twice or cannot be checked;
``/story report`` reaches the moderators after its acknowledgement, ``hide`` takes a passage out
of the story, and a channel's own banned words bind its threads and no other channel.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import audit_command
from bot.generation.queue import CHECKED_OUT_NOTICE, CHECKS_DOWN_NOTICE
from tests import test_slack
from tests.conftest import read_rows
from tests.fake_moderation import FakeModeration, running_fake_moderation
from tests.fake_slack import BOT_TOKEN, SIGNING_SECRET, TEAM, Sent
from tests.test_slack import ALICE, BOB, CHANNEL, MOD, Slack, bot_passage, ephemerals, posts, shown, slack_config

fake = test_slack.fake  # the model, scripted per test
slack = test_slack.slack  # the running app and Slack's sides of it (reads tmp_path/storybot.toml)

MODS = "C0MODS"  # slack.moderators_channel, where a test names one
OTHER = "C0OTHER"
OPENING = "The keeper climbed the stairs."
# "shit" is in bot/safety/lists/general.txt: refused in a story rated general.
DIRTY = ["The lamp was cold.", " Then shit", " happened."]  # a first sentence that passes, a second that fails
CLEAN = ["The lamp was cold.", " Then the sea rose."]
REFUSED = "⚠️ That can't go in this story: "
MODERATORS_CHANNEL = f'[slack]\nmoderators_channel = "{MODS}"\n'
MODERATION_DOWN = '[safety]\ngeneral = ["words", "moderation"]\nmoderation_url = "{moderation}"\n'
CHECKS_NOT_ANSWERING = (
    "⚠️ The content checks are not answering right now, so nothing was changed; try again in a moment."
)


@pytest.fixture
def settings() -> str:
    """The app's storybot.toml (``{moderation}``: the moderation service's URL); a test sets it
    with ``pytest.mark.parametrize("settings", ...)``."""
    return ""


@pytest.fixture
async def moderation() -> AsyncIterator[FakeModeration]:
    """A moderation service that is down: every check answers HTTP 500."""
    async with running_fake_moderation() as server:
        server.status = 500
        yield server


@pytest.fixture
def settings_file(tmp_path: Path, settings: str, moderation: FakeModeration) -> None:
    (tmp_path / "storybot.toml").write_text(settings.format(moderation=moderation.url))


@pytest.fixture
def app(settings_file: None, slack: Slack) -> Slack:
    """The ``slack`` fixture's app on ``settings`` (the file is written before it starts)."""
    return slack


def acknowledged(sent: Sent) -> str:
    """What a slash command's acknowledgement showed the asker."""
    assert sent.status == 200, sent
    return shown(json.loads(sent.body))


async def started(slack: Slack, command: str, *, channel: str = CHANNEL) -> None:
    """``/story <command>`` by Alice, until its start is posted in ``channel``."""
    await slack.sender.command(command, user=ALICE, channel=channel)
    await slack.api.wait_for(
        lambda: [a for (where, _), a in slack.api.messages.items() if where == channel and "started" in shown(a)]
    )


def reached_slack(slack: Slack) -> str:
    """Everything the bot ever sent to Slack (every Web API call, every acknowledgement), case-folded."""
    acks = [json.dumps(body) for _, body, _ in slack.sender.replies]
    return "\n".join(slack.api.sent_texts() + acks).casefold()


async def stored(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    return await read_rows(f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}", sql)


# ---------------------------------------------------------------------- what people write


async def test_a_persons_text_with_a_banned_word_is_refused_to_them_and_nothing_is_stored(
    app: Slack, tmp_path: Path
) -> None:
    send = app.sender
    await started(app, f'start "Tides" mode:free {OPENING}')
    refusable = [
        "add The shit hit the fan.",
        "add The sh\u200bit hit the fan.",  # a zero-width space inside the word
        "add The \u0455hit hit the fan.",  # a Cyrillic look-alike of "s"
        "continue Then shit happened.",  # a direction
        "memory Everyone in town says shit.",
        "lore add harbour The harbour smells of shit.",
    ]
    for command in refusable:
        refusal = acknowledged(await send.command(command, user=BOB))
        assert refusal.startswith(REFUSED) and refusal.endswith(" Nothing was changed."), (command, refusal)
        assert "\n" not in refusal and "shit" not in refusal.casefold()
    await send.command("add We drove to Scunthorpe.", user=BOB)  # "cunt*" is listed, whole words only
    await app.api.wait_for(lambda: [text for text in posts(app.api) if "Passage 2 added." in text])

    assert await stored(tmp_path, "SELECT text FROM passages ORDER BY seq") == [
        (OPENING,),
        ("We drove to Scunthorpe.",),
    ]
    assert await stored(tmp_path, "SELECT memory FROM stories") == [("",)]
    assert await stored(tmp_path, "SELECT id FROM lore_entries") == []
    assert app.model.requests == []  # the refused direction asked the model for nothing
    assert app.api.of("chat.postEphemeral") == [] and "shit" not in "".join(posts(app.api)).casefold()


async def test_a_refused_title_opens_no_thread(app: Slack, tmp_path: Path) -> None:
    refusal = acknowledged(await app.sender.command('start "Shit Happens" thread:yes', user=ALICE))
    assert refusal.startswith(REFUSED)
    assert "shit happens" not in reached_slack(app).replace(refusal.casefold(), "")
    assert app.api.of("chat.postMessage") == []
    assert await stored(tmp_path, "SELECT title FROM stories") == []


# ---------------------------------------------------------------------- what the bot writes


async def test_a_streamed_passage_shows_only_what_passed_and_its_clean_second_attempt(app: Slack) -> None:
    attempts = [DIRTY, CLEAN]
    app.model.pieces = lambda body: attempts[min(len(app.model.requests), len(attempts)) - 1]
    app.model.delay_s = 0.2  # each piece streams on its own (generation.stream_interval_s is 0.05)
    await app.sender.command(f'start "Tides" {OPENING}', user=ALICE)
    ts, passage = await bot_passage(app.api, 1)
    assert shown(passage).startswith("*storybot:* The lamp was cold. Then the sea rose.")
    assert len(app.model.requests) == 2
    streamed = [shown(call.args) for call in app.api.of("chat.update") if call.args["ts"] == ts]
    assert any("The lamp was cold." in text and "is writing" in text for text in streamed)  # the sentence that passed
    assert "shit" not in reached_slack(app)


async def test_a_passage_written_twice_with_a_banned_word_is_withheld_with_a_notice(
    app: Slack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app.model.pieces = lambda body: DIRTY
    await app.sender.command(f'start "Tides" {OPENING}', user=ALICE)
    notice = CHECKED_OUT_NOTICE.format(rating="general")
    await app.api.wait_for(lambda: [text for text in posts(app.api) if text == f"⚠️ {notice}"])
    assert len(app.model.requests) == 2 and "shit" not in reached_slack(app)

    capsys.readouterr()
    await audit_command(
        slack_config(tmp_path, app.api, app.model), argparse.Namespace(channel=None, story=None, json=True)
    )
    [withheld] = [row for row in json.loads(capsys.readouterr().out) if row["action"] == "withheld"]
    assert withheld["channel"] == f"slack:{TEAM}:{CHANNEL}" and withheld["detail"].startswith("words: ")
    assert withheld["passage"]["status"] == "withheld"
    assert withheld["passage"]["text"] == "The lamp was cold. Then shit happened."
    status = acknowledged(await app.sender.command("status", user=BOB))
    assert "1 passage," in status and "shit" not in status


@pytest.mark.parametrize(
    ("settings", "accepted"),
    [(MODERATION_DOWN, False), (MODERATION_DOWN + 'human_when_down = "allow"\n', True)],
    ids=["a person's text refused", "a person's text allowed by safety.human_when_down"],
)
async def test_a_checker_outage_holds_the_bots_passage_back(
    app: Slack, moderation: FakeModeration, accepted: bool
) -> None:
    await started(app, "start mode:free")  # nothing written to check
    await app.sender.command("continue", user=ALICE)
    await app.api.wait_for(lambda: [text for text in posts(app.api) if text == f"⚠️ {CHECKS_DOWN_NOTICE}"])
    assert app.model.requests and moderation.requests  # written, and sent to the service that did not answer
    assert "lamp" not in reached_slack(app)  # (the fake model writes test_slack.PASSAGE)

    answer = await app.sender.command("add The door opened.", user=BOB)
    if accepted:
        assert answer.body == ""
        await app.api.wait_for(lambda: [text for text in posts(app.api) if "Passage 1 added." in text])
    else:
        assert acknowledged(answer) == CHECKS_NOT_ANSWERING


# ---------------------------------------------------------------------- the moderators' tools


@pytest.mark.parametrize(
    ("settings", "destination"),
    [(MODERATORS_CHANNEL, MODS), ("", ALICE)],
    ids=["to slack.moderators_channel", "else to the starter"],
)
async def test_a_report_reaches_the_moderators_after_its_acknowledgement(app: Slack, destination: str) -> None:
    api = app.api
    await started(app, f'start "Tides" mode:free <!here> {OPENING}')
    answer = acknowledged(await app.sender.command("report 1 spam", user=BOB))
    assert answer == "Thank you: passage 1 was reported to the story's moderators."
    [alert] = await api.wait_for(lambda: [c for c in api.of("chat.postMessage") if c.args["channel"] == destination])
    text = shown(alert.args)
    assert text.startswith("⚑ Someone reported passage 1 of “Tides”") and "Reason: spam" in text
    assert f"<!here> {OPENING}" in text and "/story hide 1" in text
    assert "<!here>" not in json.dumps(alert.args) and "&lt;!here&gt;" in alert.args["text"]  # pings nobody
    assert alert.args.get("link_names") in (False, "0", "false") and not alert.args.get("thread_ts")


@pytest.mark.parametrize("settings", [MODERATORS_CHANNEL], ids=["to slack.moderators_channel"])
async def test_a_report_slack_does_not_take_is_logged_and_the_reporter_answered_at_once(
    app: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    api = app.api
    await started(app, f'start "Tides" mode:free {OPENING}')
    api.hold = lambda method, args: method == "chat.postMessage" and args.get("channel") == MODS
    caplog.set_level(logging.INFO)
    answer = acknowledged(await app.sender.command("report 1", user=BOB))
    assert answer.startswith("Thank you")  # while the alert's post is still held: it never waited on it
    await api.wait_for(lambda: api.held)
    api.released.set()  # ... which Slack then refuses
    await api.wait_for(lambda: "cannot send a report to the moderators in C0MODS" in caplog.text)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "aiohttp.access"]
    assert [r.levelno for r in warnings] == [logging.WARNING] and warnings[0].exc_info is None
    assert all(secret not in caplog.text for secret in (BOT_TOKEN, SIGNING_SECRET))
    assert "rated general, 1 passage," in acknowledged(await app.sender.command("status", user=BOB))


async def test_a_hidden_passage_leaves_the_status_and_only_moderators_hide(app: Slack) -> None:
    send = app.sender
    await started(app, f'start "Tides" mode:free {OPENING}')
    await send.command("add The sea rose.", user=BOB)
    await app.api.wait_for(lambda: [text for text in posts(app.api) if "Passage 2 added." in text])

    refused = await send.command("hide 1", user=BOB)  # neither the starter nor an admin
    assert acknowledged(refused) == "⚠️ Only Alice (who started the story) or a moderator can hide a passage."
    await send.command("hide 1", user=MOD)
    await app.api.wait_for(lambda: [text for text in posts(app.api) if text.startswith("Morgan hid passage 1")])
    status = acknowledged(await send.command("status", user=BOB))
    assert "1. (hidden by a moderator)" in status and "2. Bob: The sea rose." in status
    assert "climbed" not in status


async def test_a_channels_banned_word_binds_its_threads_and_no_other_channel(app: Slack) -> None:
    api, send = app.api, app.sender
    await started(app, f'start "Tides" mode:free {OPENING}')
    await started(app, f'start "Elsewhere" mode:free {OPENING}', channel=OTHER)
    assert acknowledged(await send.command("words ban dragon", user=BOB)).startswith("⚠️ Only the channel's moderators")
    assert (
        acknowledged(await send.command("words ban dragon", user=MOD))
        == "Morgan banned a word in this channel's stories."
    )

    refusal = acknowledged(await send.command("add The dragon woke.", user=BOB))
    assert refusal.startswith(REFUSED) and "dragon" not in refusal

    await send.command('start thread:true mode:free "Night Watch"', user=ALICE)
    [thread] = await api.wait_for(
        lambda: [ts for (_, ts), a in api.messages.items() if "every reply is a passage" in shown(a)]
    )
    await send.message("The dragon slept.", user=BOB, channel=CHANNEL, thread_ts=thread, event_id="Ev0DRAGON")
    [told] = await api.wait_for(lambda: api.of("chat.postEphemeral"))
    assert told.args["thread_ts"] == thread and shown(told.args).startswith(REFUSED)

    refusals = ephemerals(app, BOB)
    await send.command("add The dragon woke.", user=BOB, channel=OTHER)
    await api.wait_for(lambda: [text for text in posts(api) if "*Bob:* The dragon woke.\nPassage 2 added." in text])
    assert ephemerals(app, BOB) == refusals  # nothing more was refused
