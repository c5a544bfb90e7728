"""The recap ("the story so far") replaces the passages that fell out of the prompt: after the
memory, within the budget, changing only when a new recap is written (so two turns between
recaps share the prompt's head, byte for byte); written by the story's model as low-priority
jobs; shown, replaced and cleared by ``/story recap``. The prompt rules on their own; the rule
book and the job order on both databases; end to end through the fake OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import commands as c
from bot.app import App, open_app
from bot.context import PromptLimits, StorySnapshot, compose_prompt
from bot.identity import Actor, ChannelRef
from bot.jobs import JobKind
from bot.recaps import SUMMARY_ASK
from bot.results import Result
from bot.sessions import SessionManager
from storage.models import StoryRecap
from tests.conftest import TurnRecorder
from tests.fake_openai import PIECES, FakeOpenAI, running_fake_openai
from tests.test_openai_backend import app_config
from tests.waiting import until

CHANNEL = ChannelRef("test", "guild", "recaps")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")
MEMORY = "The keeper is old and half blind."
RECAP_TEXT = "The keeper lit the lamp and the storm came."


def words(text: str) -> int:
    """A tokenizer for the prompt rules alone: one token a word."""
    return len(text.split())


def shared_head(prompts: list[str]) -> str:
    """The text every one of ``prompts`` begins with."""
    head = prompts[0]
    for prompt in prompts[1:]:
        while not prompt.startswith(head):
            head = head[:-1]
    return head


def passage(number: int) -> str:
    return f"<p{number}> " + "the tide came in slowly " * 3


def story(count: int, recap: str = RECAP_TEXT, covers: int = 8) -> StorySnapshot:
    return StorySnapshot(
        title="Tides",
        genre=None,
        memory=MEMORY,
        note="",
        passages=tuple(passage(n) for n in range(1, count + 1)),
        recap=recap,
        recap_covers=covers,
    )


# --- the prompt -----------------------------------------------------------------------------


def test_the_recap_sits_after_the_memory_before_the_passages() -> None:
    prompt = compose_prompt(story(30), PromptLimits(budget_tokens=150), words)
    memory_at, recap_at = prompt.text.index(MEMORY), prompt.text.index(f"[The story so far: {RECAP_TEXT}]")
    assert memory_at < recap_at < prompt.text.index(f"<p{prompt.first_passage + 1}>")
    assert prompt.recap and prompt.first_passage > 0


@pytest.mark.parametrize("budget", [40, 60, 90, 150, 400])
@pytest.mark.parametrize("recap_words", [5, 80, 600])
def test_a_prompt_with_a_recap_never_exceeds_its_budget(budget: int, recap_words: int) -> None:
    long_recap = " ".join(["storm"] * recap_words)
    limits = PromptLimits(budget_tokens=budget, recap_max_tokens=100)
    prompt = compose_prompt(story(40, recap=long_recap), limits, words)
    assert words(prompt.text) <= budget
    assert words(prompt.recap) <= 100  # a long recap is cut to its own budget, not dropped whole
    without = compose_prompt(story(40, recap=""), limits, words)
    assert len(prompt.passages) <= len(without.passages)  # its tokens are taken from the passages'


def test_two_turns_without_a_new_recap_share_the_prompts_head() -> None:
    limits = PromptLimits(budget_tokens=150)
    before, after = (compose_prompt(story(count), limits, words) for count in (33, 34))
    assert before.first_passage == after.first_passage  # the cut did not move
    head = before.preamble + before.memory + before.recap + passage(before.first_passage + 1).strip()
    assert shared_head([before.text, after.text]).startswith(head)


# --- the rule book, on each database --------------------------------------------------------


async def run(rules: SessionManager | App, line: str, actor: Actor = ALICE) -> Result:
    manager = rules.sessions if isinstance(rules, App) else rules
    result = await manager.handle(CHANNEL, actor, c.parse(line))
    assert result.ok, result.text
    return result


async def test_recap_shows_replaces_and_clears_keeping_its_history(rules: SessionManager) -> None:
    await run(rules, '/story start "Tides" mode:free')
    await run(rules, f"/story add {passage(1)}")
    shown = await run(rules, "/story recap")
    assert shown.private and "No recap yet" in shown.text and "The latest, passage 1 by Alice" in shown.text

    replaced = await run(rules, f"/story recap {RECAP_TEXT}", BOB)
    assert not replaced.private and "Bob replaced the recap" in replaced.text
    shown = await run(rules, "/story recap")
    assert shown.private and f"The story so far (by Bob): {RECAP_TEXT}" in shown.text

    cleared = await run(rules, "/story recap clear")
    assert "cleared the recap" in cleared.text and "No recap yet" in (await run(rules, "/story recap")).text
    again = await rules.handle(CHANNEL, ALICE, c.parse("/story recap clear"))
    assert not again.ok and "no recap to clear" in again.text

    async def versions(tx: Any) -> int:
        return int((await tx.execute(select(func.count()).select_from(StoryRecap))).scalar_one())

    assert await rules.db.transaction(versions, write=False) == 2  # Bob's, and the clearing


async def test_a_waiting_turn_is_claimed_before_an_older_recap(rules: SessionManager) -> None:
    started = await run(rules, '/story start "Tides" mode:free')
    await run(rules, f"/story add {passage(1)}")
    assert started.story_id is not None
    assert await rules.queue_recap(started.story_id, up_to_seq=1)
    assert not await rules.queue_recap(started.story_id, up_to_seq=1)  # one open recap a story
    turn = await run(rules, "/story continue")  # a recap is no open turn: continuing is allowed
    [first] = await rules.claim_jobs(limit=1)
    assert first.job_id == turn.job_id and first.kind == JobKind.CONTINUE
    [second] = await rules.claim_jobs(limit=1)
    assert second.kind == JobKind.RECAP


async def test_a_waiting_recap_never_makes_the_bot_busy(rules: SessionManager) -> None:
    busy = dataclasses.replace(rules.config, generation=dataclasses.replace(rules.config.generation, max_pending=1))
    strict = SessionManager(rules.db, busy, clock=rules.clock)
    started = await run(strict, '/story start "Tides" mode:free')
    await run(strict, f"/story add {passage(1)}")
    assert started.story_id is not None and await strict.queue_recap(started.story_id, up_to_seq=1)
    assert (await run(strict, "/story continue")).job_id is not None  # the one pending turn allowed


# --- end to end through the fake OpenAI-compatible server -----------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        server.pieces = lambda body: [RECAP_TEXT] if SUMMARY_ASK in body["prompt"] else PIECES
        yield server


def turn_prompts(fake: FakeOpenAI) -> list[str]:
    return [r["body"]["prompt"] for r in fake.requests if SUMMARY_ASK not in r["body"]["prompt"]]


async def test_the_bot_writes_a_recap_of_what_fell_out_and_the_next_prompts_carry_it(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.max_model_len = 640
    config = app_config(tmp_path, fake.url, model_max_new_tokens="64", story_recap_max_tokens="40")
    turns = TurnRecorder()
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        await until(lambda: app.queue.health().model_ready, "the model server to be ready")
        await run(app, '/story start "Tides" mode:free')
        await run(app, f"/story memory {MEMORY}")
        for n in range(1, 31):
            await run(app, f"/story add {passage(n)}")

        async def write_turn() -> None:
            started = await run(app, "/story continue")
            assert started.job_id is not None
            await turns.passage(started.job_id, timeout=30)

        async def recap_stored() -> bool:
            return "story so far (by the bot" in (await run(app, "/story recap")).text

        await write_turn()  # passages fell out of its prompt: it asks for a recap
        await until(recap_stored, "the bot's recap to be stored", timeout=30)
        summary_prompt = next(p for p in fake.requests if SUMMARY_ASK in p["body"]["prompt"])["body"]["prompt"]
        await write_turn()
        await write_turn()
        backend = await app.queue.backend(app.config.model.name)
        budget = backend.context_length - 64 - backend.count_tokens(backend.prompt_frame.overhead())
        prompts = turn_prompts(fake)
        counts = [backend.count_tokens(p) for p in prompts]
        shown = (await run(app, "/story recap")).text
    assert "<p1>" in summary_prompt and MEMORY not in summary_prompt
    assert f"[The story so far: {RECAP_TEXT}]" not in prompts[0]
    with_recap = prompts[1:]
    for prompt in with_recap:
        assert prompt.index(MEMORY) < prompt.index(f"[The story so far: {RECAP_TEXT}]") < prompt.index("<p")
    head = shared_head(with_recap)  # the turns after the recap: the same head, passages included
    assert f"[The story so far: {RECAP_TEXT}]" in head and "<p" in head
    assert all(count <= budget for count in counts)
    assert "The story so far (by the bot, up to passage " in shown and RECAP_TEXT in shown
