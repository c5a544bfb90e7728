"""The content checks and the moderators' tools on Discord, end to end: the real discord.py client
against the fake Discord on loopback, the model an OpenAI-compatible fake that streams a scripted
passage, the shipped word lists (``bot/safety/lists``) as the checks.

What people would notice: a passage with a word its story's rating refuses is refused privately in
one line, disguised or not; a bot passage never shows a refused word, not even while it streams,
and is written again or withheld (kept for the moderators, a notice in the channel); a report
reaches the moderators' channel, or the story's starter privately; moderators hide and unhide
passages; the starter changes the story's rating; a channel's moderators allow a word of the
shipped lists there, and take it back; a checker that is down holds the bot's passage back and
refuses what people write (unless ``safety.human_when_down = "allow"``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.common.wording import problem
from bot.config import Config
from bot.generation.queue import CHECKED_OUT_NOTICE, CHECKS_DOWN_NOTICE
from tests import test_discord
from tests.fake_discord import MANAGE_MESSAGES, MEMBER_PERMISSIONS, FakeDiscord, user
from tests.fake_moderation import FakeModeration, running_fake_moderation
from tests.fake_openai import FakeOpenAI
from tests.test_discord import ALICE, BOB, CAROL, bot_turn, discord_config, rows, running, served_model

fake = test_discord.fake  # the fixtures: the fake Discord (which checks nothing could ping), a served model
model_server = test_discord.model_server
DAVE = user(4, "Dave")  # a moderator: Manage Messages in the channel
MODERATOR = MEMBER_PERMISSIONS | MANAGE_MESSAGES
MODERATORS_CHANNEL = 4000
OPENING = "The keeper climbed the stairs."

CLEAN = "The keeper counted the ships coming home. Every one of them was safe."
AFTER_IT = "hit the fan"  # what follows the refused word in ``dirty``
CHECKS_NOT_ANSWERING = (
    "⚠️ The content checks are not answering right now, so nothing was changed; try again in a moment."
)


def dirty(word: str) -> str:
    """A bot passage whose first sentences are clean (long enough to stream before the third is
    written, several stream intervals) and whose third holds ``word``."""
    return (
        "The lamp was lit at dusk. Gulls circled the tower twice, crying over the black water and the "
        f"rocks below. Then the {word} {AFTER_IT} on the pier."
    )


def refused_here(answer: tuple[str, bool]) -> bool:
    """The rules' private one-line refusal of what a person wrote."""
    text, private = answer
    return private and text.startswith("⚠️ That can't go in this story: ") and "\n" not in text


def word_by_word(*passages: str) -> Callable[[dict[str, Any]], list[str]]:
    """The model's script: each request streams the next passage a word at a time (the last again
    once the script runs out), so the channel sees it grow."""
    script = list(passages)

    def pieces(body: dict[str, Any]) -> list[str]:
        text = script.pop(0) if len(script) > 1 else script[0]
        words = text.split(" ")
        return [words[0], *(" " + word for word in words[1:])]

    return pieces


def sent_to_discord(fake: FakeDiscord, text: str) -> list[str]:
    """Every request the bot made to Discord whose body holds ``text`` (any case): message posts,
    edits, interaction responses and follow-ups alike."""
    return [
        f"{r.method} {r.path}"
        for r in fake.requests
        if text.lower() in json.dumps(r.json, ensure_ascii=False).lower()
        or any(text.lower().encode() in data.lower() for _, data in r.files)
    ]


def exported(fake: FakeDiscord, token: str) -> bytes:
    """The file an export's answer carries."""
    [(_, data)] = [file for message in fake.answers[token].messages() for file in message.get("files", [])]
    assert isinstance(data, bytes)
    return data


@pytest.fixture
def settings(tmp_path: Path, fake: FakeDiscord, model_server: FakeOpenAI) -> Config:
    """The bot on a SQLite file in ``tmp_path``, on the fake Discord, written by the scripted model."""
    return discord_config(tmp_path, fake, served_model(model_server))


@pytest.fixture
async def moderation() -> AsyncIterator[FakeModeration]:
    """A moderation service that is down: every check answers HTTP 500."""
    async with running_fake_moderation() as server:
        server.status = 500
        yield server


async def ask(fake: FakeDiscord, who: dict[str, Any], *path: str, **options: Any) -> tuple[str, bool]:
    """``/story <path> options…`` by ``who``; its one answer (text, only the asker sees it)."""
    permissions = options.pop("permissions", MEMBER_PERMISSIONS)
    [answer] = await fake.answered(await fake.slash(who, *path, permissions=permissions, **options))
    return answer


# ---------------------------------------------------------------------- what people write


async def test_a_word_the_rating_refuses_is_refused_privately_however_it_is_disguised(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free")  # rated general (the default)
        disguises = ["Well, shit.", "Well, SHIT!", "Well, \u0455hit.", "Well, sh\u200bit.", "Well, ｓｈｉｔ."]
        for text in disguises:  # plain, capitals, a Cyrillic ѕ, a zero-width space, fullwidth letters
            answer = await ask(fake, BOB, "add", text=text)
            assert refused_here(answer) and answer[0].endswith("Nothing was changed."), (text, answer)
        status, _ = await ask(fake, BOB, "status")
        assert "Contributors: none yet." in status and "1." not in status

        # A teen story may use what only a general one may not.
        await ask(fake, ALICE, "end")
        started, _ = await ask(fake, ALICE, "start", title="Night Shift", mode="free", rating="teen")
        assert "rated teen" in started
        added, private = await ask(fake, BOB, "add", text="Well, shit.")
        assert not private and added.startswith("**Bob:** Well, shit.")
    assert rows(tmp_path, "SELECT author_name, text FROM passages") == [("Bob", "Well, shit.")]


async def test_a_refused_title_opens_no_thread(tmp_path: Path, fake: FakeDiscord, settings: Config) -> None:
    async with running(settings, fake):
        answer = await ask(fake, ALICE, "start", title="Shit Happens", thread=True)
        assert refused_here(answer)
        assert fake.threads == [] and sent_to_discord(fake, "Shit Happens") == []
    assert rows(tmp_path, "SELECT title FROM stories") == []


async def test_the_channels_own_banned_words_are_set_by_its_moderators(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free")
        refused, private = await ask(fake, CAROL, "mod", "words", action="ban", entry="dark lord")
        assert private and refused == "⚠️ Only the channel's moderators can change its word list."
        assert await ask(fake, DAVE, "mod", "words", action="ban", entry="dark lord", permissions=MODERATOR) == (
            "Dave banned a word in this channel's stories.",
            True,
        )
        assert refused_here(await ask(fake, BOB, "add", text="The Dark  Lord rose from the sea."))
        assert await ask(fake, CAROL, "mod", "words") == ("Banned here: dark lord.", True)  # anyone may look
    assert rows(tmp_path, "SELECT COUNT(*) FROM passages") == [(0,)]


async def test_a_channels_moderators_allow_a_shipped_word_there_and_take_it_back(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free")  # rated general: "shit" is refused
        assert refused_here(await ask(fake, BOB, "add", text="Well, shit."))
        refused, private = await ask(fake, CAROL, "mod", "words", action="allow", entry="shit")
        assert private and refused == "⚠️ Only the channel's moderators can change its word list."
        assert await ask(fake, DAVE, "mod", "words", action="allow", entry="shit", permissions=MODERATOR) == (
            "Dave allowed a word in this channel's stories.",
            True,
        )
        added, private = await ask(fake, BOB, "add", text="Well, shit.")
        assert not private and added.startswith("**Bob:** Well, shit.")
        assert await ask(fake, CAROL, "mod", "words") == ("Allowed here: shit.", True)

        assert await ask(fake, DAVE, "mod", "words", action="clear", entry="shit", permissions=MODERATOR) == (
            "Dave took “shit” off this channel's word list.",
            True,
        )
        assert refused_here(await ask(fake, BOB, "add", text="Shit, the tide."))
        assert await ask(fake, CAROL, "mod", "words") == (
            "This channel has no words of its own: only the built-in lists apply.",
            True,
        )
    assert rows(tmp_path, "SELECT author_name, text FROM passages") == [("Bob", "Well, shit.")]
    assert rows(tmp_path, "SELECT COUNT(*) FROM channel_words") == [(0,)]
    assert rows(tmp_path, "SELECT action, actor_name, detail FROM moderation_log ORDER BY id") == [
        ("allow-word", "Dave", "shit"),
        ("clear-word", "Dave", "allow shit"),
    ]


# ---------------------------------------------------------------------- what the bot writes


async def test_a_streamed_passage_never_shows_a_refused_word_and_is_written_again(
    tmp_path: Path, fake: FakeDiscord, model_server: FakeOpenAI, settings: Config
) -> None:
    # Leetspeak: the plain word is banned at decode time from the start, this spelling only once found.
    disguised = "sh1t"
    model_server.pieces, model_server.delay_s = word_by_word(dirty(disguised), CLEAN), 0.03
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", opening=OPENING)
        *_, last = await bot_turn(fake)
        shown = fake.messages[int(last["id"])]["content"]
        assert shown.startswith(f"**storybot:** {CLEAN}\n-# passage 2")
    assert sent_to_discord(fake, "The lamp was lit at dusk."), "what passed the checks streamed"
    assert sent_to_discord(fake, disguised) == [] and sent_to_discord(fake, AFTER_IT) == []
    [first, second] = [request["body"].get("bad_words", []) for request in model_server.requests]
    assert "shit" in first and disguised not in first, "the rating's plain words are banned from the start"
    assert disguised in second, "the second try also bans the word as the first one wrote it"
    assert rows(tmp_path, "SELECT status, text FROM passages WHERE author_kind = 'bot'") == [("canonical", CLEAN)]


async def test_a_passage_refused_twice_is_withheld_for_the_moderators_with_a_notice(
    tmp_path: Path, fake: FakeDiscord, model_server: FakeOpenAI, settings: Config
) -> None:
    model_server.pieces, model_server.delay_s = word_by_word(dirty("shit")), 0.02
    notice = problem(CHECKED_OUT_NOTICE.format(rating="general"))
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", opening=OPENING)
        await fake.until(lambda: [m for m in fake.channel_messages() if m["content"] == notice])
        status, _ = await ask(fake, ALICE, "status")
    assert len(model_server.requests) == 2, "written once more, then withheld"
    assert sent_to_discord(fake, "shit") == [] and sent_to_discord(fake, AFTER_IT) == []
    assert "shit" not in status and "1. Alice: The keeper climbed the stairs." in status
    assert rows(tmp_path, "SELECT status, text FROM passages WHERE author_kind = 'bot'") == [
        ("withheld", dirty("shit"))
    ]
    [(action, actor, detail)] = rows(
        tmp_path, "SELECT action, actor_name, detail FROM moderation_log WHERE action = 'withheld'"
    )
    assert (action, actor) == ("withheld", "storybot") and "words" in detail


@pytest.mark.parametrize(
    ("when_down", "accepted"),
    [("refuse", False), ("allow", True)],
    ids=["a person's text refused", "a person's text allowed by safety.human_when_down"],
)
async def test_a_checker_outage_holds_the_bots_passage_back(
    tmp_path: Path,
    fake: FakeDiscord,
    model_server: FakeOpenAI,
    moderation: FakeModeration,
    when_down: str,
    accepted: bool,
) -> None:
    checks = {
        "STORYBOT_SAFETY_GENERAL": "words,moderation",
        "STORYBOT_SAFETY_MODERATION_URL": moderation.url,
        "STORYBOT_SAFETY_HUMAN_WHEN_DOWN": when_down,
    }
    notice = problem(CHECKS_DOWN_NOTICE)
    async with running(discord_config(tmp_path, fake, {**served_model(model_server), **checks}), fake):
        await ask(fake, ALICE, "start", mode="free")  # nothing written to check
        await fake.slash(ALICE, "continue")
        await fake.until(lambda: [m for m in fake.channel_messages() if m["content"] == notice])
        assert model_server.requests and moderation.requests  # written, then sent to the service that failed
        answer = await ask(fake, BOB, "add", text="The door opened.")
        if accepted:
            assert answer[0].startswith("**Bob:** The door opened.") and not answer[1]
        else:
            assert answer == (CHECKS_NOT_ANSWERING, True)
    assert sent_to_discord(fake, "rolled in under the beam") == []  # (the model writes test_discord.PASSAGE)
    assert rows(tmp_path, "SELECT author_kind, status FROM passages ORDER BY id") == [
        ("bot", "withheld"),
        *([("human", "canonical")] if accepted else []),
    ]
    [(detail,)] = rows(tmp_path, "SELECT detail FROM moderation_log WHERE action = 'withheld'")
    assert detail.endswith("the content checks are not answering right now")  # why, for the moderators


# ---------------------------------------------------------------------- reports


async def test_a_report_reaches_the_moderators_channel_and_the_reporter_is_thanked(
    tmp_path: Path, fake: FakeDiscord, model_server: FakeOpenAI
) -> None:
    config = discord_config(tmp_path, fake, served_model(model_server), moderators_channel=str(MODERATORS_CHANNEL))
    async with running(config, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free", opening=OPENING)
        token = await fake.slash(BOB, "report", passage=1, reason="Too grim for the kids' channel.")
        [thanks] = await fake.answered(token)
        assert thanks == ("Thank you: passage 1 was reported to the story's moderators.", True)
        [alert] = await fake.until(lambda: fake.channel_messages(MODERATORS_CHANNEL))
    text = alert["content"]
    assert text.startswith("⚑ Someone reported passage 1 of “Tides”") and f"“{OPENING}”" in text
    assert "Reason: Too grim for the kids' channel." in text and text.endswith("/story hide 1.")
    [sent] = [r for r in fake.requests if r.path == f"/channels/{MODERATORS_CHANNEL}/messages"]
    acked = fake.answers[token].acked_at
    assert acked is not None and acked <= sent.at, "the reporter's answer never waits on the alert"
    assert fake.dm_channels == {}, "nobody was messaged privately"
    assert rows(tmp_path, "SELECT action, actor_name, detail FROM moderation_log WHERE action = 'report'") == [
        ("report", "Bob", "Too grim for the kids' channel.")
    ]


async def test_without_a_moderators_channel_the_starter_hears_of_a_report_privately(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free", opening=OPENING)
        assert await ask(fake, BOB, "report", passage=1) == (
            "Thank you: passage 1 was reported to the story's moderators.",
            True,
        )
        [alert] = await fake.until(lambda: fake.direct_messages(ALICE))
    assert alert["content"].startswith("⚑ Someone reported passage 1 of “Tides”") and "Reason" not in alert["content"]
    assert list(fake.dm_channels) == [ALICE["id"]]


async def test_a_starter_who_takes_no_direct_messages_costs_the_reporter_nothing(
    tmp_path: Path, fake: FakeDiscord, settings: Config, caplog: pytest.LogCaptureFixture
) -> None:
    fake.closed_dms.add(ALICE["id"])
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free", opening=OPENING)
        with caplog.at_level(logging.WARNING, logger="adapters.discord_bot.client"):
            token = await fake.slash(BOB, "report", passage=1, reason="Spam.")
            await fake.until(lambda: "could not be sent" in caplog.text)
        status, _ = await ask(fake, BOB, "status")  # the bot goes on answering
    assert fake.replies(token) == [("Thank you: passage 1 was reported to the story's moderators.", True)]
    assert fake.direct_messages(ALICE) == [] and OPENING in status
    assert "a report could not be sent to the story's starter" in caplog.text
    assert rows(tmp_path, "SELECT COUNT(*) FROM moderation_log WHERE action = 'report'") == [(1,)]


# ---------------------------------------------------------------------- hiding and the rating


async def test_moderators_hide_and_unhide_passages_and_the_starter_sets_the_rating(
    tmp_path: Path, fake: FakeDiscord, settings: Config
) -> None:
    gull = "A gull screamed over the rocks."
    async with running(settings, fake):
        await ask(fake, ALICE, "start", title="Tides", mode="free", opening=OPENING)
        await ask(fake, BOB, "add", text=gull)

        refused, private = await ask(fake, CAROL, "mod", "hide", passage=2)  # neither the starter nor a moderator
        assert private and refused == "⚠️ Only Alice (who started the story) or a moderator can hide a passage."
        hid, private = await ask(fake, DAVE, "mod", "hide", passage=2, permissions=MODERATOR)
        assert not private and hid.startswith("Dave hid passage 2 (by Bob)")
        status, _ = await ask(fake, CAROL, "status")
        assert gull not in status and "2. (hidden by a moderator)" in status
        export = await fake.slash(CAROL, "export", format="md")
        await fake.answered(export)
        assert OPENING.encode() in exported(fake, export) and gull.encode() not in exported(fake, export)

        assert (await ask(fake, CAROL, "mod", "unhide", passage=2))[0].startswith("⚠️ Only Alice")
        assert await ask(fake, ALICE, "mod", "unhide", passage=2) == ("Alice put passage 2 back in the story.", False)
        status, _ = await ask(fake, CAROL, "status")
        assert f"2. Bob: {gull}" in status

        changed, private = await ask(fake, ALICE, "settings", rating="teen")
        assert not private and changed.startswith("Settings updated. mode:free, rating:teen,")
        refused, private = await ask(fake, ALICE, "settings", rating="mature")  # not an age-restricted channel
        assert private and refused.startswith("⚠️ A story rated mature needs a channel for adults")
    assert rows(tmp_path, "SELECT rating FROM stories") == [("teen",)]
    assert rows(tmp_path, "SELECT action, actor_name FROM moderation_log ORDER BY id") == [
        ("hide", "Dave"),
        ("unhide", "Alice"),
        ("rating", "Alice"),
    ]
