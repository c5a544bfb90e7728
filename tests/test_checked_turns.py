"""Bot passages go through the content checks before anyone sees them: the stream shows only
text that passed, a passage that fails is written once more with the words banned, then withheld
with a notice; a checker that is down holds the passage back. The whole app, writing through the
fake OpenAI-compatible server; the platforms' own tests check the same through Discord and Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import commands as c
from bot.app import open_app
from bot.config import Config
from bot.generation.queue import CHECKED_OUT_NOTICE, CHECKS_DOWN_NOTICE
from bot.identity import Actor, ChannelRef
from bot.safety.checker import Standard
from bot.safety.checks import Checks
from bot.safety.gate import StreamGate
from storage.models import ContentRating, ModerationEntry, Passage, PassageStatus
from tests.conftest import TurnRecorder, make_config
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.test_openai_backend import app_config

CHANNEL = ChannelRef("test", "guild", "general")
ALICE = Actor("u-alice", "Alice")
CLEAN = ["The lamp", " was lit,", " and the", " sea was calm."]
RUDE = ["The lamp", " was lit.", " Then shit", " happened", " at sea."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


def scripted(*answers: list[str]) -> Any:
    """The model writes each answer in turn, then the last one again."""
    calls: list[int] = []

    def pieces(body: dict[str, Any]) -> list[str]:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    return pieces


async def one_turn(config: Config) -> tuple[TurnRecorder, Any, list[Passage], list[ModerationEntry]]:
    turns = TurnRecorder()
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(CHANNEL, ALICE, c.parse('/story start "Sea" The keeper climbed.'))
        result = await turns.wait(started.job_id, timeout=30)
        async with app.db.read() as tx:
            rows = list((await tx.execute(select(Passage).order_by(Passage.seq))).scalars())
            log = list((await tx.execute(select(ModerationEntry))).scalars())
    return turns, (started, result), rows, log


async def test_a_passage_that_fails_is_written_again_without_the_word(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = scripted(RUDE, CLEAN)
    turns, (started, result), rows, _ = await one_turn(app_config(tmp_path, fake.url))
    assert result is not None and result.ok and result.passage is not None
    assert result.passage.text == "The lamp was lit, and the sea was calm."
    shown = turns.progress[started.job_id]
    assert shown and not any("shit" in text for text in shown)  # the stream never carried it
    assert [p.status for p in rows] == [PassageStatus.CANONICAL, PassageStatus.CANONICAL]
    first, second = (request["body"] for request in fake.requests)
    assert "shit" in first["bad_words"]  # the rating's words are banned at decode time...
    assert "Then shit" not in first["bad_words"] and "shit" in second["bad_words"]  # ...and what was found


async def test_a_passage_that_fails_twice_is_withheld_with_a_notice(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = scripted(RUDE)
    turns, (started, result), rows, log = await one_turn(app_config(tmp_path, fake.url))
    assert result is not None and not result.ok and result.text == CHECKED_OUT_NOTICE.format(rating="general")
    assert not any("shit" in text for text in turns.progress[started.job_id])
    assert [p.status for p in rows] == [PassageStatus.CANONICAL, PassageStatus.WITHHELD]
    assert rows[1].text == "The lamp was lit. Then shit happened at sea."
    assert rows[1].generation is not None and rows[1].generation["check"]["found"] == ["shit"]
    assert [(e.action, e.passage_id) for e in log] == [("withheld", rows[1].id)]


async def test_a_checker_that_is_down_holds_the_passage_back(fake: FakeOpenAI, tmp_path: Path) -> None:
    # The moderation endpoint is the fake model server's, which has no /v1/moderations: a 404.
    config = app_config(tmp_path, fake.url, safety_general="words,moderation", safety_human_when_down="allow")
    fake.pieces = scripted(CLEAN)
    turns, (started, result), rows, _ = await one_turn(config)
    assert result is not None and not result.ok and result.text == CHECKS_DOWN_NOTICE
    assert turns.progress.get(started.job_id) == []  # nothing was shown while it could not be checked
    assert [p.status for p in rows] == [PassageStatus.CANONICAL, PassageStatus.WITHHELD]  # nothing lost


# ------------------------------------------------------------------------- the gate itself


@pytest.fixture
def checks(tmp_path: Path) -> Checks:
    return Checks.from_config(make_config(tmp_path, {}))


async def test_the_gate_shows_whole_words_that_passed(checks: Checks) -> None:
    gate = StreamGate(checks, Standard(ContentRating.GENERAL))
    assert await gate.admit("Lam") is None  # no word is finished yet
    assert await gate.admit("The lamp was li") == "The lamp was"
    assert await gate.admit("The lamp was lit. Then sh") == "The lamp was lit. Then"  # "sh" may become anything
    assert await gate.admit("The lamp was lit. Then shit happ") is None
    assert await gate.admit("The lamp was lit. Then shit happened, and more.") is None  # this attempt stopped
    assert await gate.admit("The lamp was lit. Then shh", 2) == "The lamp was lit. Then"  # written again


async def test_the_gate_waits_for_chinese_punctuation_and_passes_what_no_check_judges(
    checks: Checks, tmp_path: Path
) -> None:
    gate = StreamGate(checks, Standard(ContentRating.GENERAL))
    assert await gate.admit("灯塔的灯亮了，海") == "灯塔的灯亮了，"
    unchecked = Checks.from_config(make_config(tmp_path, {"STORYBOT_SAFETY_GENERAL": ""}))
    assert await StreamGate(unchecked, Standard()).admit("The lam") == "The lam"
