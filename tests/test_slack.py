"""The Slack app end to end: the real Bolt app, started by the product's own entry code in HTTP
mode, receives signed requests as Slack sends them and talks to a mock Slack Web API on loopback.

Bot turns come from the ``openai`` backend and a fake OpenAI-compatible server (also on
loopback), so each test decides what "the model" writes: streamed in pieces, slowly, or with
text that tries to ping the channel. Nothing reaches Slack or the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.slack_app import SlackServer, run_slack, slack_http_server
from adapters.slack_app.render import SECTION_LIMIT, plain_text, split_text
from bot.config import Config, ConfigError
from tests.conftest import make_config
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    Sent,
    SignedSender,
    start_fake_slack,
)

CHANNEL = "C0STORY"
ALICE, BOB, MOD = "U0ALICE", "U0BOB", "U0MOD"
PIECES = ["The lamp", " was cold", ", and the sea", " was loud."]
PASSAGE = "The lamp was cold, and the sea was loud."


@dataclass
class Slack:
    """One running app and Slack's two sides of it."""

    api: FakeSlack
    sender: SignedSender
    server: SlackServer
    model: FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


@pytest.fixture
async def slack(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[Slack]:
    api = FakeSlack(
        users={
            ALICE: {"name": "alice", "profile": {"display_name": "Alice"}},
            BOB: {"name": "bob", "profile": {"display_name": "Bob"}},
            MOD: {"name": "mod", "profile": {"real_name": "Morgan"}, "is_admin": True},
        }
    )
    runner = await start_fake_slack(api)
    fake.pieces = lambda body: PIECES
    fake.delay_s = 0.05
    try:
        async with slack_http_server(slack_config(tmp_path, api, fake), host="127.0.0.1", port=0) as server:
            yield Slack(api, SignedSender(server.url, api.url), server, fake)
    finally:
        await runner.cleanup()


def slack_config(tmp_path: Path, api: FakeSlack, model: FakeOpenAI) -> Config:
    """The app in HTTP mode on a SQLite file in ``tmp_path``, talking to ``api``, written by ``model``."""
    return make_config(
        tmp_path,
        {
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}",
            "STORYBOT_MODEL_BACKEND": "openai",
            "STORYBOT_MODEL_NAME": str(tmp_path / "no-local-model"),
            "STORYBOT_MODEL_MAX_NEW_TOKENS": "16",
            "STORYBOT_OPENAI_BASE_URL": model.url,
            "STORYBOT_OPENAI_MODEL": "served-model",
            "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0.05",
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
            "STORYBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
            "STORYBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "STORYBOT_SLACK_API_BASE_URL": f"{api.url}/api/",
        },
    )


# ---------------------------------------------------------------------- reading what the bot sent


def blocks_of(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def shown(args: dict[str, Any]) -> str:
    """The text a person sees in a message (sections and context lines), entities decoded."""
    parts = []
    for block in blocks_of(args):
        if block["type"] == "section":
            parts.append(block["text"]["text"])
        elif block["type"] == "context":
            parts.extend(element["text"] for element in block["elements"])
    return plain_text("\n".join(parts))


def buttons(args: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in blocks_of(args) if b["type"] == "actions" for e in b["elements"]]


def passages(api: FakeSlack) -> list[tuple[str, dict[str, Any]]]:
    """Finished bot passages (messages with buttons) as they look now: (ts, latest content), oldest first."""
    return [(ts, args) for (_, ts), args in sorted(api.messages.items()) if buttons(args)]


def ephemerals(slack: Slack, user: str) -> list[str]:
    """What ``user`` alone was shown, oldest first: in a command's acknowledgement, or ephemeral messages."""
    acks = [(at, shown(body)) for who, body, at in slack.sender.replies if who == user]
    notes = [(call.at, shown(call.args)) for call in slack.api.of("chat.postEphemeral") if call.args["user"] == user]
    return [text for _, text in sorted(acks + notes)]


def posts(api: FakeSlack) -> list[str]:
    return [shown(args) for args in api.messages.values()]


async def bot_passage(api: FakeSlack, count: int) -> tuple[str, dict[str, Any]]:
    """Wait for the ``count``-th finished bot passage; returns it."""
    found: list[tuple[str, dict[str, Any]]] = await api.wait_for(lambda: len(passages(api)) >= count and passages(api))
    return found[count - 1]


# ---------------------------------------------------------------------- the tests


async def test_a_whole_story_runs_with_commands_buttons_and_streamed_turns(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    scripts = [PIECES, [" The beam", " swept", " the rocks."], [" A ship", " answered", " with a horn."]]
    slack.model.pieces = lambda body: scripts[min(len(slack.model.requests), len(scripts)) - 1]

    sent = await send.command('start "The Lighthouse" The keeper climbed the stairs at dusk.', user=ALICE)
    assert sent.status == 200 and sent.body == ""  # acknowledged; the work follows
    ts, first = await bot_passage(api, 1)
    assert PASSAGE in shown(first) and "passage 2 · asked by Alice" in shown(first)
    assert any("Alice:* The keeper climbed the stairs at dusk." in json.dumps(a) for a in api.messages.values())
    updates = [call for call in api.of("chat.update") if call.args["ts"] == ts]
    streaming = [shown(call.args) for call in updates[:-1]]
    assert len(streaming) >= 2 and all("is writing" in text for text in streaming)
    assert any(text.startswith("*storybot:* The lamp was cold") and PASSAGE not in text for text in streaming)
    assert shown(updates[-1].args).startswith(f"*storybot:* {PASSAGE}")  # the final text, whole
    labels = [(b["text"]["text"], b["value"]) for b in buttons(first)]
    story_id, rated = labels[0][1], labels[-1][1]  # the 👍 / 👎 name the passage too: "<story>:<passage>"
    assert labels[:4] == [("Continue", story_id), ("Retry", story_id), ("Undo", story_id), ("End", story_id)]
    assert labels[4:] == [("👍", rated), ("👎", rated)] and re.fullmatch(f"{story_id}:[0-9]+", rated)

    await send.command("add The beam swept across the rocks.", user=BOB)
    ts2, second = await bot_passage(api, 2)
    assert "The beam swept the rocks." in shown(second)

    assert (await send.click("retry", story_id, user=BOB, channel=CHANNEL, message_ts=ts2)).status == 200
    _, rewritten = await bot_passage(api, 3)
    assert "A ship answered with a horn." in shown(rewritten) and "rewritten at Bob's request" in shown(rewritten)

    await send.click("undo", story_id, user=BOB, channel=CHANNEL, message_ts=ts2)
    await api.wait_for(lambda: any("Withdrew passage 4 by storybot" in text for text in posts(api)))

    await send.command("status", user=BOB)
    status = (await api.wait_for(lambda: ephemerals(slack, BOB)))[-1]
    assert (
        "“The Lighthouse” — alternate mode, rated general, 3 passages" in status
        and "Contributors: Alice, Bob, storybot." in status
    )

    await send.click("end", story_id, user=BOB, channel=CHANNEL, message_ts=ts)  # not the starter, not an admin
    refusal = await api.wait_for(lambda: [t for t in ephemerals(slack, BOB) if "Only Alice" in t])
    assert refusal == ["⚠️ Only Alice (who started the story) or a moderator can end the story."]
    await send.click("end", story_id, user=MOD, channel=CHANNEL, message_ts=ts)  # a workspace admin may
    await api.wait_for(lambda: any(text.startswith("The End. “The Lighthouse”") for text in posts(api)))

    requests_before = len(slack.model.requests)
    await send.click("continue", story_id, user=ALICE, channel=CHANNEL, message_ts=ts)  # a stale button
    stale = await api.wait_for(lambda: [t for t in ephemerals(slack, ALICE) if "has ended" in t])
    assert stale == ["⚠️ That story has ended, so this button does nothing now. Type /story status."]
    await asyncio.sleep(0.3)
    assert len(slack.model.requests) == requests_before

    await send.command("export", user=ALICE)
    completed = await api.wait_for(lambda: api.of("files.completeUploadExternal"))
    upload = api.of("files.getUploadURLExternal")[0].args
    assert upload["filename"].endswith(".md") and int(upload["length"]) > 0
    [(file_id, data)] = api.uploads.items()
    assert b"The keeper climbed the stairs at dusk." in data and PASSAGE.encode() in data
    assert completed[0].args["channel_id"] == CHANNEL and file_id in completed[0].args["files"]
    assert "“The Lighthouse” as md" in plain_text(completed[0].args["initial_comment"])


async def test_bad_signatures_and_old_timestamps_get_401_and_change_nothing(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    forged = await send.command('start "Forged"', user=ALICE, secret="not-the-secret")
    stale = await send.command('start "Replayed"', user=ALICE, age_s=6 * 60)
    assert (forged.status, stale.status) == (401, 401)
    await send.command("status", user=ALICE)
    answer = await api.wait_for(lambda: ephemerals(slack, ALICE))
    assert answer == ['⚠️ No story is running in this channel. Start one with /story start "Title".']
    assert not api.of("chat.postMessage")


async def test_a_redelivered_event_or_command_is_applied_once(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command('start thread:true mode:free "Night Watch"', user=ALICE, trigger_id="trigger-start")
    parent = await api.wait_for(
        lambda: [
            ts
            for (_, ts), a in api.messages.items()
            if "Night Watch" in shown(a) and "every reply is a passage" in shown(a)
        ]
    )
    thread = parent[0]
    first = await send.message(
        "The guard lowered her lantern.", user=BOB, channel=CHANNEL, thread_ts=thread, event_id="Ev0PASSAGE"
    )
    retried = await send.message(
        "The guard lowered her lantern.",
        user=BOB,
        channel=CHANNEL,
        thread_ts=thread,
        event_id="Ev0PASSAGE",
        retry_num=1,
    )
    again = await send.command('start thread:true mode:free "Night Watch"', user=ALICE, trigger_id="trigger-start")
    assert (first.status, retried.status, again.status) == (200, 200, 200)
    await api.wait_for(lambda: [a for a in api.messages.values() if a.get("thread_ts") == thread])
    await send.message(f"<@{BOT_USER}> status", user=BOB, channel=CHANNEL, thread_ts=thread, event_id="Ev0STATUS")
    status = await api.wait_for(lambda: ephemerals(slack, BOB))
    assert "“Night Watch” — free mode, rated general, 1 passage," in status[0]
    in_thread = [a for a in api.messages.values() if a.get("thread_ts") == thread]
    assert [shown(a) for a in in_thread] == ["*Bob:* The guard lowered her lantern.\nPassage 1 added."]
    assert len([a for a in api.messages.values() if "Night Watch" in shown(a)]) == 1  # one story, one thread


async def test_nothing_the_bot_sends_can_ping_anyone(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    slack.model.pieces = lambda body: [
        "Then <!channel>",
        " and <@U123>",
        " shouted <!everyone>.",
        " <https://x.test|Go>.",
    ]
    await send.command(
        'start "<!here> party" Hello <!channel> and <@U123|bob>, <!everyone> & <#C1|general>.', user=ALICE
    )
    _, bot = await bot_passage(api, 1)
    await send.command("memory Remember <!here> and <@U999>.", user=ALICE)
    await api.wait_for(lambda: "Memory updated." in posts(api))
    await send.command("memory", user=ALICE)
    await send.command("status", user=ALICE)
    await api.wait_for(lambda: len(ephemerals(slack, ALICE)) >= 2)
    assert "Then <!channel> and <@U123> shouted <!everyone>." in shown(bot)  # shown as the model wrote it
    assert "Memory: Remember <!here> and <@U999>." in ephemerals(slack, ALICE)
    texts = api.sent_texts() + [json.dumps(body) for _, body, _ in send.replies]  # acknowledgements too
    assert any("&lt;!channel&gt;" in text for text in texts)
    assert [text for text in texts if re.search(r"<[!@#]|<https?:", text)] == []
    for call in api.of("chat.postMessage") + api.of("chat.update") + api.of("chat.postEphemeral"):
        assert call.args.get("link_names") in (False, None, "0", "false")


async def test_every_command_is_answered_within_3_s_while_a_slow_turn_runs(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    slack.model.pieces = lambda body: [f" Word{i}" for i in range(7)] + ["."]
    slack.model.delay_s = 0.5  # a four-second bot turn
    await send.command('start "Slow" mode:free The night was long.', user=ALICE)
    story = await api.wait_for(lambda: [a for a in api.messages.values() if "The night was long." in shown(a)])
    await send.command("continue", user=ALICE)
    await api.wait_for(lambda: slack.model.in_flight == 1)
    started = time.monotonic()
    answers = [
        await send.command("status", user=BOB),
        await send.command("add A door creaked.", user=BOB),
        await send.command("memory The night is cold.", user=ALICE),
        await send.command("help", user=BOB),
        await send.command("lore add door The door is old.", user=ALICE),
        await send.command("bogus words", user=BOB),
    ]
    assert time.monotonic() - started < 3.5 and slack.model.in_flight == 1  # all while the model writes
    assert all(a.status == 200 and a.seconds < 3 for a in answers), [a.seconds for a in answers]
    assert max(a.seconds for a in answers) < 1.0
    await api.wait_for(lambda: any("A door creaked." in text for text in posts(api)))
    assert any("Unknown" in t or "bogus" in t for t in ephemerals(slack, BOB))
    _, turn = await bot_passage(api, 1)
    assert "Word0 Word1 Word2 Word3 Word4 Word5 Word6." in shown(turn) and story


async def test_a_429_from_chat_update_is_waited_out_and_the_final_text_arrives(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    api.limit("chat.update", 1)
    await send.command('start "Storm" The wind rose.', user=ALICE)
    ts, turn = await bot_passage(api, 1)
    assert shown(turn).startswith(f"*storybot:* {PASSAGE}")
    limited = [c for c in api.calls if c.method == "chat.update (429)"]
    after = [c for c in api.of("chat.update") if c.args["ts"] == ts]
    assert len(limited) == 1 and after[0].at - limited[0].at >= 1.0  # Retry-After: 1 was honoured


async def test_a_long_passage_is_split_into_sections_at_sentence_ends(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    sentence = "The <tide> & the moon pulled at the old harbour wall. "
    text = (sentence * 72).strip()  # 3959 characters, far more once escaped
    await send.command('start "Tides" mode:free', user=ALICE)
    # Slack acknowledges before the story is stored: the passage must wait for the start.
    await api.wait_for(lambda: [a for a in api.messages.values() if "started “Tides”" in shown(a)])
    await send.command(f"add {text}", user=ALICE)
    message = await api.wait_for(lambda: [a for a in api.messages.values() if "Passage 1 added." in shown(a)])
    sections = [b["text"]["text"] for b in blocks_of(message[0]) if b["type"] == "section"]
    assert len(sections) >= 2 and all(len(s) <= SECTION_LIMIT for s in sections)
    assert all(s.endswith("wall.") for s in sections)  # each section ends at a sentence end
    assert plain_text(" ".join(sections)) == f"*Alice:* {text}"


def test_split_text_measures_escaped_length_and_prefers_sentences() -> None:
    text = "Short one. " + "<" * 50 + " end."
    pieces = split_text(text, limit=60)
    assert pieces[0] == "Short one."
    assert "".join(pieces[1:]) == text[len("Short one. ") :]  # no space to cut at: a hard cut
    assert all(len(p.replace("<", "&lt;")) <= 60 for p in pieces)


async def test_a_refused_bot_token_stops_the_start_with_one_clear_line(tmp_path: Path) -> None:
    api = FakeSlack()
    runner = await start_fake_slack(api)
    config = make_config(
        tmp_path,
        {
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}",
            "STORYBOT_SLACK_BOT_TOKEN": "xoxb-revoked",
            "STORYBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "STORYBOT_SLACK_API_BASE_URL": f"{api.url}/api/",
        },
    )
    try:
        with pytest.raises(ConfigError, match=r"^Slack refused slack.bot_token \(invalid_auth\)"):
            async with slack_http_server(config, host="127.0.0.1", port=0):
                pass
    finally:
        await runner.cleanup()


def test_storybot_slack_names_the_missing_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "storybot.toml"
    settings.write_text("")
    monkeypatch.setenv("STORYBOT_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.delenv("STORYBOT_SLACK_APP_TOKEN", raising=False)
    monkeypatch.delenv("STORYBOT_SLACK_SIGNING_SECRET", raising=False)
    assert main(["--config", str(settings), "slack"]) == 2
    assert "slack.app_token is empty: set STORYBOT_SLACK_APP_TOKEN" in capsys.readouterr().err
    assert main(["--config", str(settings), "slack", "--http", "--port", "0"]) == 2
    assert "slack.signing_secret is empty: set STORYBOT_SLACK_SIGNING_SECRET" in capsys.readouterr().err


async def test_storybot_slack_in_socket_mode_acknowledges_and_answers(tmp_path: Path) -> None:
    api = FakeSlack(users={ALICE: {"name": "alice", "profile": {"display_name": "Alice"}}})
    runner = await start_fake_slack(api)
    config = make_config(
        tmp_path,
        {
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}",
            "STORYBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
            "STORYBOT_SLACK_APP_TOKEN": APP_TOKEN,
            "STORYBOT_SLACK_API_BASE_URL": f"{api.url}/api/",
        },
    )
    app = asyncio.create_task(run_slack(config))
    try:
        fields = SignedSender("", api.url).command_fields('start "By Socket" mode:free The bell rang.', user=ALICE)
        await api.push("slash_commands", fields, envelope_id="env-1")
        ack = await api.wait_for(lambda: api.acks)
        assert ack == [{"envelope_id": "env-1"}]
        posted = await api.wait_for(lambda: posts(api))
        assert "*Alice:* The bell rang." in posted[0] and "started “By Socket”" in posted[0]
    finally:
        app.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app
        await runner.cleanup()


async def test_where_the_bot_cannot_post_the_asker_still_hears_why(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    api.refused.update({"chat.postMessage": "not_in_channel", "chat.postEphemeral": "channel_not_found"})
    helped = await send.command("help", user=ALICE, channel="G0PRIVATE")
    assert plain_text(json.loads(helped.body)["text"]).startswith("/story start")  # in the acknowledgement
    await send.command('start "Hidden"', user=ALICE, channel="G0PRIVATE")
    [answer] = await api.wait_for(lambda: api.of("response_url"))
    assert answer.args["response_type"] == "ephemeral"
    assert (
        plain_text(answer.args["text"]) == "⚠️ I can't post in this channel yet: invite me with /invite, then try again."
    )


# ---------------------------------------------------------------------- requests Slack would never send

OTHER = "C0OTHER"  # where each malformed ``/story start`` would have started a story
FORM, JSON = "application/x-www-form-urlencoded", "application/json"
NOT_OUR_BUTTON = "⚠️ This button is not one the bot made. Type /story status."
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")  # int() reads them; Slack never sends them


def altered(fields: dict[str, Any], drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """``fields`` with ``changes`` made and the keys in ``drop`` left out."""
    return {key: value for key, value in {**fields, **changes}.items() if key not in drop}


@dataclass
class Target:
    """What a malformed request would change if the app took it: the running story “Kept”, which
    an End click would end, and the channel OTHER, where ``/story start`` would start “Lost”."""

    send: SignedSender
    story_id: str
    message_ts: str

    def start(self, drop: tuple[str, ...] = (), **changes: str) -> bytes:
        fields = self.send.command_fields('start "Lost" The door opened.', user=ALICE, channel=OTHER)
        return urllib.parse.urlencode(altered(fields, drop, **changes)).encode()

    def end(self, drop: tuple[str, ...] = (), **changes: Any) -> str:
        payload = self.send.click_payload("end", self.story_id, user=ALICE, channel=CHANNEL, message_ts=self.message_ts)
        return json.dumps(altered(payload, drop, **changes))

    def event(self, **changes: Any) -> bytes:
        envelope = self.send.message_envelope(
            "The gull cried.", user=BOB, channel=CHANNEL, thread_ts=None, event_id=self.send.next_id("Ev0")
        )
        return json.dumps(altered(envelope, **changes)).encode()


MALFORMED: dict[str, Callable[[Target], Awaitable[Sent]]] = {
    "timestamp is a word": lambda t: t.send.send(t.start(), FORM, timestamp="soon"),
    "timestamp has 5000 digits": lambda t: t.send.send(t.start(), FORM, timestamp="9" * 5000),
    "timestamp in Arabic-Indic digits": lambda t: t.send.send(
        t.start(), FORM, timestamp=str(int(time.time())).translate(ARABIC_INDIC)
    ),
    "body is not UTF-8": lambda t: t.send.send(t.start() + b"&channel_name=\xff", FORM),
    "payload is not JSON": lambda t: t.send.interact(t.end()[:-1]),
    "payload is a JSON list": lambda t: t.send.interact(f"[{t.end()}]"),
    "event body is not JSON": lambda t: t.send.send(t.event()[:-1], JSON),
    "event is not an object": lambda t: t.send.send(t.event(event="message"), JSON),
    "command has no channel_id": lambda t: t.send.send(t.start(drop=("channel_id",)), FORM),
    "command has no user_id": lambda t: t.send.send(t.start(drop=("user_id",)), FORM),
    "command has no trigger_id": lambda t: t.send.send(t.start(drop=("trigger_id",)), FORM),
    "click has no actions": lambda t: t.send.interact(t.end(drop=("actions",))),
    "click's action is not an object": lambda t: t.send.interact(t.end(actions=["story_end"])),
    "click has no user": lambda t: t.send.interact(t.end(drop=("user",))),
    "click's user has no id": lambda t: t.send.interact(t.end(user={"username": "alice", "team_id": "T0TEAM"})),
    "click has no channel": lambda t: t.send.interact(t.end(drop=("channel",))),
    "click's team is a number": lambda t: t.send.interact(t.end(team=1)),
}


async def running_story(slack: Slack, caplog: pytest.LogCaptureFixture) -> tuple[Target, tuple[int, int]]:
    """Start “Kept” in CHANNEL and wait until its first bot passage (with its buttons) is final;
    also how many model requests and posts there were by then, and log from INFO up."""
    caplog.set_level(logging.INFO)
    await slack.sender.command('start "Kept" The keeper waited.', user=ALICE)
    ts, passage = await bot_passage(slack.api, 1)
    before = len(slack.model.requests), len(slack.api.of("chat.postMessage"))
    return Target(slack.sender, buttons(passage)[0]["value"], ts), before


def assert_logged_once(caplog: pytest.LogCaptureFixture, level: int) -> None:
    """One log line at ``level`` since ``caplog.clear()``: no traceback, no secret. aiohttp's access
    log, which has a line for every request, good or bad, is left aside."""
    records = [record for record in caplog.records if record.name != "aiohttp.access"]
    assert [(r.levelno, r.exc_info) for r in records] == [(level, None)], [r.getMessage() for r in records]
    assert "\n" not in records[0].getMessage() and "Traceback" not in caplog.text
    assert all(secret not in caplog.text for secret in (SIGNING_SECRET, BOT_TOKEN, "legacy-verification-token"))


async def assert_kept_and_answering(slack: Slack, before: tuple[int, int]) -> None:
    """The app still answers good requests, and nothing changed: “Kept” runs on, nothing started in
    OTHER, the model was not asked for a turn, nothing was posted."""
    api, send = slack.api, slack.sender
    for channel, answer in (
        (CHANNEL, "“Kept” — alternate mode, rated general, 2 passages"),
        (OTHER, "No story is running"),
    ):
        seen = len(ephemerals(slack, BOB))
        assert (await send.command("status", user=BOB, channel=channel)).status == 200
        # (awaited before the loop moves on, so the lambda reads this round's ``seen``)
        status = await api.wait_for(lambda: ephemerals(slack, BOB)[seen:])  # noqa: B023
        assert answer in status[0], status
    assert (len(slack.model.requests), len(api.of("chat.postMessage"))) == before


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_signed_request_gets_400_one_log_line_and_changes_nothing(
    slack: Slack, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    target, before = await running_story(slack, caplog)
    caplog.clear()
    sent = await MALFORMED[case](target)
    await asyncio.sleep(0.2)  # anything the request set off after its answer has run by now
    assert sent.status == 400, sent
    assert_logged_once(caplog, logging.WARNING)
    await assert_kept_and_answering(slack, before)


@pytest.mark.parametrize("value", ["²", "1" * 5000], ids=["superscript two", "5000 digits"])
async def test_a_button_value_that_is_not_a_story_id_gets_the_not_our_button_answer(
    slack: Slack, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    target, before = await running_story(slack, caplog)
    caplog.clear()
    sent = await slack.sender.click("end", value, user=ALICE, channel=CHANNEL, message_ts=target.message_ts)
    assert sent.status == 200  # "²".isdigit(), yet int("²") raised after the acknowledgement
    assert await slack.api.wait_for(lambda: ephemerals(slack, ALICE)) == [NOT_OUR_BUTTON]
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await assert_kept_and_answering(slack, before)


async def test_a_message_event_without_a_channel_gets_400_and_one_log_line(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    target, before = await running_story(slack, caplog)
    event = json.loads(target.event())["event"]
    caplog.clear()
    # An event is acknowledged once its passage is stored, so a malformed one is refused like a command.
    sent = await slack.sender.send(target.event(event=altered(event, drop=("channel",))), JSON)
    assert sent.status == 400
    assert_logged_once(caplog, logging.WARNING)
    await assert_kept_and_answering(slack, before)


async def test_a_request_no_listener_handles_gets_200_and_one_log_line(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    target, before = await running_story(slack, caplog)
    reaction = {"type": "reaction_added", "user": BOB, "reaction": "wave", "event_ts": "1700000000.000100"}
    irrelevant: list[Callable[[], Awaitable[Sent]]] = [
        lambda: target.send.interact(target.end(actions=[{"type": "button", "action_id": "another_apps_button"}])),
        lambda: target.send.send(target.event(event=reaction), JSON),  # Bolt's 404 would make Slack retry it
        lambda: target.send.send(json.dumps({"type": "something_new"}).encode(), JSON),
    ]
    for send in irrelevant:
        caplog.clear()
        sent = await send()
        await asyncio.sleep(0.2)
        assert sent.status == 200, sent
        assert_logged_once(caplog, logging.INFO)
    await assert_kept_and_answering(slack, before)


async def test_a_thread_start_the_rules_refuse_takes_its_opening_message_back(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    sent = await send.command(f'start thread:true "{"Long " * 60}"', user=ALICE)
    assert sent.status == 200 and sent.body == ""  # the answer needs the opening message gone first
    refusal = await api.wait_for(lambda: ephemerals(slack, ALICE))
    assert refusal[0].startswith("⚠️ The title") and "200" in refusal[0]
    await api.wait_for(lambda: api.of("chat.delete"))
    assert not [a for a in api.messages.values() if "is starting" in shown(a)]
