"""``/story context`` shows the prompt the bot would use next, part by part: it must be the prompt
the model then receives. Through the rule book on both databases (with a generation queue on
the tiny model that loads but never writes, so a queued turn stays queued), and end to end with
the whole app writing through the fake OpenAI-compatible server, whose recorded requests hold
the prompt the backend was sent."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot import commands as c
from bot.app import App, configured_backend_factory, open_app
from bot.config import Config
from bot.context_report import MODEL_LOADING
from bot.generation.queue import GenerationQueue
from bot.identity import Actor, ChannelRef
from bot.results import Result
from bot.sessions import SessionManager
from tests.conftest import TurnRecorder
from tests.fake_openai import Answer, FakeOpenAI, running_fake_openai
from tests.test_openai_backend import app_config
from tests.waiting import until

CHANNEL = ChannelRef("test", "guild", "general")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")
CONTEXT = c.parse("/story context")
DRAGON = "Dragons sleep under the hill and wake only in storms."
CASTLE = "The castle has stood empty since the flood."


def passage(number: int, words: int = 6) -> str:
    """A passage easy to find in a prompt: ``<p3>`` and a few words of filler."""
    return f"<p{number}> " + " ".join(["the tide came in slowly"] * words)


async def run(handle: SessionManager | App, line: str, actor: Actor = ALICE) -> Result:
    rules = handle.sessions if isinstance(handle, App) else handle
    result = await rules.handle(CHANNEL, actor, c.parse(line))
    assert result.ok, result.text
    return result


def line_of(report: str, label: str) -> str:
    [line] = [line for line in report.splitlines() if line.startswith(label)]
    return line


def number(pattern: str, report: str) -> int:
    found = re.search(pattern, report)
    assert found is not None, f"{pattern!r} not in:\n{report}"
    return int(found.group(1).replace(",", ""))


# --- through the rule book, on each database ------------------------------------------------


@pytest.fixture
async def previewed(rules: SessionManager) -> AsyncIterator[SessionManager]:
    """The rules with a queue on the tiny model, loaded but not started: it measures prompts and
    writes nothing, so a turn queued by a test stays queued."""
    queue = GenerationQueue(rules, rules.config, configured_backend_factory(rules.config), rules.checks)
    assert await queue.warm_up() is None
    rules.preview_prompts_with(queue.preview)
    yield rules


async def told_story(rules: SessionManager) -> None:
    await run(rules, '/story start "The Lighthouse" genre:mystery mode:free')
    await run(rules, "/story memory The keeper is old and half blind.")
    await run(rules, "/story note Keep it tense.")
    await run(rules, f"/story lore add dragon,wyrm {DRAGON}")
    await run(rules, f"/story lore add castle {CASTLE}")
    await run(rules, f"/story add {passage(1)}")
    await run(rules, f"/story add {passage(2)} A wyrm circled the lamp.", BOB)
    await run(rules, f"/story add {passage(3)}")


async def test_the_answer_is_private_and_goes_part_by_part_in_the_prompts_order(previewed: SessionManager) -> None:
    await told_story(previewed)
    result = await previewed.handle(CHANNEL, BOB, CONTEXT)  # anyone may look, not only the starter
    assert result.ok and result.private
    lines = result.text.splitlines()
    assert lines[0] == "What the model would read for the next /story continue (without a direction):"
    labels = [line.split(":")[0].split(" (")[0] for line in lines[1:]]
    assert labels == [
        "Budget", "Preamble", "Memory", "Recap", "Lore", "• #1", "Author's note", "Passages", "Direction", "Total"
    ]  # fmt: skip
    assert re.fullmatch(r"Budget: [\d,]+ tokens \(context [\d,]+ − passage 16 − frame 0\)\.", lines[1])
    assert line_of(result.text, "Lore:").startswith("Lore: 1 of 2 entries triggered; 1 fits, ")
    assert line_of(result.text, "• #1").startswith("• #1 (key “wyrm” in passage 2): ")  # #2 (castle) did not
    assert line_of(result.text, "Author's note").startswith("Author's note (3 passages from the end): ")
    assert line_of(result.text, "Passages:").startswith("Passages: all 3 fit, ")
    assert line_of(result.text, "Direction:") == "Direction: none."
    total, budget = number(r"Total: ([\d,]+) of", result.text), number(r"Budget: ([\d,]+)", result.text)
    assert 0 < total <= budget


async def test_a_queued_turn_is_shown_with_its_direction_and_the_lore_it_triggers(previewed: SessionManager) -> None:
    await told_story(previewed)
    await run(previewed, "/story continue the castle gate falls open")
    report = (await previewed.handle(CHANNEL, ALICE, CONTEXT)).text
    assert report.startswith("What the model would read for the bot's queued turn:")
    assert line_of(report, "Direction").startswith("Direction “the castle gate falls open”: ")
    assert line_of(report, "• #2").startswith("• #2 (key “castle” in the direction): ")  # the newest mention first
    assert line_of(report, "Lore:").startswith("Lore: 2 of 2 entries triggered; 2 fit, ")


async def test_passages_keep_the_numbers_people_see_when_one_is_hidden(previewed: SessionManager) -> None:
    await told_story(previewed)
    await run(previewed, "/story hide 1")
    await run(previewed, "/story add A dragon landed on the rocks.", BOB)
    report = (await previewed.handle(CHANNEL, ALICE, CONTEXT)).text
    assert line_of(report, "• #1").startswith("• #1 (key “dragon” in passage 4): ")
    assert line_of(report, "Passages:").startswith("Passages: all 3 fit, ")  # the hidden one is not read


async def test_a_story_with_nothing_optional_says_so(previewed: SessionManager) -> None:
    await run(previewed, '/story start "Bare" mode:free')
    report = (await previewed.handle(CHANNEL, ALICE, CONTEXT)).text
    for line in ("Memory: none.", "Lore: none.", "Author's note: none.", "Passages: none yet.", "Direction: none."):
        assert line in report.splitlines()


async def test_many_triggered_lore_entries_are_cut_to_fit_one_discord_message(previewed: SessionManager) -> None:
    await run(previewed, '/story start "Crowded" mode:free')
    for index in range(60):
        await run(previewed, f"/story lore add dragon The dragon number {index}.")
    await run(previewed, "/story add A dragon flew by.")
    report = (await previewed.handle(CHANNEL, ALICE, CONTEXT)).text
    assert len(report) <= 2000
    assert line_of(report, "Lore:").startswith("Lore: 60 of 60 entries triggered; ")
    listed = [line for line in report.splitlines() if line.startswith("• #")]
    more = number(r"• … and (\d+) more", report)
    assert listed and len(listed) + more == 60
    assert report.splitlines()[-1].startswith("Total: ")  # the parts after the lore are all there


async def test_no_story_and_no_model_yet_are_refused(rules: SessionManager) -> None:
    nothing = await rules.handle(CHANNEL, ALICE, CONTEXT)
    assert not nothing.ok and nothing.text.startswith("No story is running in this channel.")
    await run(rules, '/story start "Early" mode:free')
    queue = GenerationQueue(rules, rules.config, configured_backend_factory(rules.config), rules.checks)
    rules.preview_prompts_with(queue.preview)  # its model not loaded yet
    loading = await rules.handle(CHANNEL, ALICE, CONTEXT)
    assert not loading.ok and loading.text == MODEL_LOADING


# --- end to end: what /story context says is what the backend is sent ----------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


async def next_prompt(app: App, turns: TurnRecorder, fake: FakeOpenAI, line: str = "/story continue") -> str:
    """Ask the bot to write, and return the prompt its request carried."""
    sent = len(fake.requests)
    started = await run(app, line)
    assert started.job_id is not None
    await turns.wait(started.job_id, timeout=30)
    prompt = fake.requests[sent]["body"]["prompt"]
    assert isinstance(prompt, str)
    return prompt


async def counted(app: App, prompt: str) -> int:
    return (await app.queue.backend(app.config.model.name)).count_tokens(prompt)


def shown_passages(prompt: str, count: int) -> list[int]:
    return [n for n in range(1, count + 1) if f"<p{n}>" in prompt]


@asynccontextmanager
async def opened(config: Config) -> AsyncIterator[tuple[App, TurnRecorder]]:
    """The whole app on the fake server, its model ready, with a recorder of its turns."""
    turns = TurnRecorder()
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        await until(lambda: app.queue.health().model_ready, "the model server to be ready")
        yield app, turns


async def test_the_report_matches_the_prompt_the_backend_receives(fake: FakeOpenAI, tmp_path: Path) -> None:
    async with opened(app_config(tmp_path, fake.url)) as (app, turns):
        await told_story(app.sessions)
        report = (await app.sessions.handle(CHANNEL, BOB, CONTEXT)).text
        prompt = await next_prompt(app, turns, fake)
        assert number(r"Total: ([\d,]+) of", report) == await counted(app, prompt)
    assert shown_passages(prompt, 3) == [1, 2, 3] and "Passages: all 3 fit" in report
    assert "The keeper is old and half blind." in prompt and "Keep it tense." in prompt
    assert DRAGON in prompt and CASTLE not in prompt  # #1 reported triggered, #2 not


async def test_a_turn_being_written_is_reported_as_the_backend_received_it(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(stall_s=1.0)]
    async with opened(app_config(tmp_path, fake.url)) as (app, turns):
        await told_story(app.sessions)
        started = await run(app, "/story continue the castle gate falls open")
        await until(lambda: fake.requests, "the turn's request to reach the server")
        report = (await app.sessions.handle(CHANNEL, ALICE, CONTEXT)).text
        assert started.job_id is not None
        await turns.wait(started.job_id, timeout=30)
        prompt = fake.requests[0]["body"]["prompt"]
        assert number(r"Total: ([\d,]+) of", report) == await counted(app, prompt)
    assert report.startswith("What the model would read for the bot's turn being written now:")
    assert "[Next: the castle gate falls open]" in prompt and CASTLE in prompt and DRAGON in prompt


async def test_a_long_story_reports_the_passages_left_out_and_the_lore_without_room(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.max_model_len = 640
    config = app_config(tmp_path, fake.url, model_max_new_tokens="64", story_lore_max_tokens="30")
    async with opened(config) as (app, turns):
        await run(app, '/story start "Tides" mode:free')
        await run(
            app,
            "/story lore add castle The castle has stood empty since the flood, its gates rusted shut and its towers full of gulls.",
        )
        await run(app, "/story lore add dragon A dragon sleeps under the hill and wakes only in storms.")
        await run(app, "/story lore add lamp The lamp was lit by the first keeper.")
        await run(app, f"/story add {passage(1)} The lamp burned.")  # too old to trigger its lore
        for n in range(2, 31):
            await run(app, f"/story add {passage(n)}")
        await run(app, f"/story add {passage(31)} The castle and the dragon watched.")
        report = (await app.sessions.handle(CHANNEL, ALICE, CONTEXT)).text
        prompt = await next_prompt(app, turns, fake)
        total = await counted(app, prompt)
    first = number(r"from passage (\d+) on", report)
    left_out = number(r"\((\d+) left out, the oldest; the cut moves 8 passages at a time\)", report)
    assert number(r"Passages: (\d+) of 31 fit", report) == 32 - first and left_out == first - 1 > 0
    assert shown_passages(prompt, 31) == list(range(first, 32))
    assert number(r"Total: ([\d,]+) of", report) == total <= number(r"Budget: ([\d,]+)", report)
    assert line_of(report, "Lore:").startswith("Lore: 2 of 3 entries triggered; 1 fits, ")
    assert "no room" in line_of(report, "• #1") and "no room" not in line_of(report, "• #2")
    assert "dragon sleeps" in prompt and "castle has stood" not in prompt and "first keeper" not in prompt
