"""The channel votes on the bot's candidates on every platform, end to end: the real discord.py
client against the fake Discord, the real Bolt app against the mock Slack Web API (both written
by a scripted model on loopback, each candidate a different sentence), and the real
``storybot console`` with the tiny model.

With ``/story settings candidates:2`` a turn ends with the candidates numbered and a vote button
each; each vote is answered to the voter alone, a second one for the same candidate says so; once
every participant has voted the turn's own messages show the winner ("chosen by … votes", ◀ ▶
among its alternatives); a vote button clicked after that changes nothing. In the console the
vote also closes at ``story.vote_timeout_s`` without everyone's vote.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from adapters.common.wording import WITHDRAWN
from bot.config import Config
from bot.votes import CLOSED, NO_VOTE
from tests import test_discord, test_slack
from tests.fake_discord import FakeDiscord
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.fake_slack import FakeSlack
from tests.test_alternatives_platforms import buttons_shown, click, content
from tests.test_console import console_env, run_console, storybot_command
from tests.test_discord import ALICE, BOB, CAROL, bot_turn, custom_ids, discord_config, rows, running, served_model
from tests.test_slack import CHANNEL, Slack, buttons, shown

discord_fake = test_discord.fake  # the fake Discord
slack = test_slack.slack  # the running Slack app and Slack's sides of it,
fake = test_slack.fake  # ... and its model

OPENING = "The ferry left at dawn."
# What the scripted model writes, one sentence a request: each candidate differs.
SENTENCES = ("The fog closed in.", "A gull cried twice.", "Someone was missing.", "The engine stopped.")
WAIT_FOR_VOTE = "The channel is voting on the bot's candidates; {} once the vote closes (/story vote <n>)."
CANDIDATE_TEXTS = "SELECT text FROM passages WHERE job_id = {} ORDER BY seq"


def scripted(server: FakeOpenAI) -> None:
    """The model writes SENTENCES in turn, one a request (then "Passage 5." and on)."""
    requests = count()
    server.pieces = lambda body: [SENTENCES[n] if n < len(SENTENCES) else f"Passage {n + 1}." for n in [next(requests)]]


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        scripted(server)
        server.max_model_len = 8192
        yield server


# ---------------------------------------------------------------------- Discord


async def said(fake: FakeDiscord, token: str) -> tuple[str, bool]:
    """The one answer an interaction got: its text, and whether it was for the asker alone."""
    [answer] = await fake.answered(token)
    return answer


@pytest.fixture
def settings(tmp_path: Path, discord_fake: FakeDiscord, model: FakeOpenAI) -> Config:
    return discord_config(tmp_path, discord_fake, served_model(model))


async def test_discord_shows_the_candidates_takes_votes_and_draws_the_winner_in_the_turns_messages(
    tmp_path: Path, discord_fake: FakeDiscord, settings: Config
) -> None:
    fake = discord_fake

    async with running(settings, fake):
        await said(fake, await fake.slash(ALICE, "start", title="Ferry", mode="free", opening=OPENING))
        await said(fake, await fake.slash(BOB, "add", text="The engine coughed."))  # Bob takes part too
        settings_said, private = await said(fake, await fake.slash(ALICE, "settings", candidates=2))
        assert settings_said.startswith("Settings updated.") and not private
        await said(fake, await fake.slash(ALICE, "continue"))

        # The turn ends with the heading and the candidates, in one message (they are short), and a
        # vote button each under it.
        [ballot_message] = await bot_turn(fake)
        [(job_id, story_id)] = rows(tmp_path, "SELECT id, story_id FROM generation_jobs")
        texts = [text for (text,) in rows(tmp_path, CANDIDATE_TEXTS.format(job_id))]
        assert sorted(texts) == sorted(SENTENCES[:2])
        heading, *candidates = content(fake, ballot_message).split("\n\n")
        assert heading.startswith("🗳️ storybot wrote 2 candidates for its next passage")
        assert "The vote closes when all 2 participants have voted, or <t:" in heading
        assert candidates == [f"**Candidate {n}:** {t}" for n, t in enumerate(texts, 1)]
        assert buttons_shown(ballot_message) == [["Candidate 1", "Candidate 2"]]
        ballot = [f"story:ballot:{story_id}:{job_id}:{n}" for n in (1, 2)]
        assert custom_ids(ballot_message) == ballot
        recorded = ("voting", ballot_message["id"])  # for the winner to be drawn in
        await fake.until(lambda: rows(tmp_path, "SELECT status, message_ref FROM generation_jobs") == [recorded])
        as_drawn = copy.deepcopy(ballot_message)

        # Bob votes, then clicks the same candidate again; Carol (who takes no part) types /story vote.
        assert await said(fake, await fake.press(BOB, ballot_message, ballot[1])) == (
            "You voted for candidate 2. The vote closes when all have voted or in time "
            "(1 of 2 participants have not voted yet).",
            True,
        )
        again, private = await said(fake, await fake.press(BOB, ballot_message, ballot[1]))
        assert private and again.startswith("You already voted for candidate 2;")
        carol, private = await said(fake, await fake.slash(CAROL, "vote", number=1))
        assert private and carol.startswith("You voted for candidate 1.")
        # Meanwhile nobody writes past the candidates.
        assert await said(fake, await fake.slash(CAROL, "continue")) == (
            "⚠️ " + WAIT_FOR_VOTE.format("ask for the next passage"),
            True,
        )
        assert rows(tmp_path, "SELECT count(*) FROM passages WHERE status = 'canonical'") == [(2,)]

        # Alice's vote is the last participant's: candidate 2 wins, drawn in the turn's own message.
        last, private = await said(fake, await fake.press(ALICE, ballot_message, ballot[1]))
        assert private and last == (
            "You voted for candidate 2. Everyone has voted: candidate 2 won, chosen by 2 of 3 votes."
        )
        footer = "-# passage 3 · 2 / 2 · asked by Alice · chosen by 2 of 3 votes"
        await fake.until(lambda: content(fake, ballot_message) == f"**storybot:** {texts[1]}\n{footer}")
        winner = fake.messages[int(ballot_message["id"])]
        assert buttons_shown(winner) == [["Continue", "Retry", "Undo", "End"], ["◀", "(▶)", "👍", "👎"]]
        assert len(fake.channel_messages()) == 1, "the winner is drawn in the candidates' message, none added"

        # A vote button as first drawn changes nothing now.
        edits = len(fake.edits_of(ballot_message["id"]))
        assert await said(fake, await fake.press(CAROL, as_drawn, ballot[0])) == (f"⚠️ {CLOSED}", True)
        assert len(fake.edits_of(ballot_message["id"])) == edits
        assert await said(fake, await fake.slash(BOB, "vote", number=1)) == (f"⚠️ {NO_VOTE}", True)

        # The loser stays an alternative: ◀ draws it in the same message.
        [(winner_id,)] = rows(tmp_path, f"SELECT id FROM passages WHERE job_id = {job_id} AND status = 'canonical'")
        picked = await said(fake, await fake.press(CAROL, winner, f"story:pick:{story_id}:{winner_id}:1"))
        assert picked == ("You picked alternative 1 of 2: it is passage 3 now.", True)
        await fake.until(
            lambda: content(fake, ballot_message) == f"**storybot:** {texts[0]}\n-# passage 3 · 1 / 2 · asked by Alice"
        )
        fake.assert_nothing_could_ping()

    statuses = rows(tmp_path, f"SELECT text, status FROM passages WHERE job_id = {job_id} ORDER BY seq")
    assert statuses == [(texts[0], "canonical"), (texts[1], "superseded")]
    assert rows(tmp_path, "SELECT status FROM generation_jobs") == [("done",)]


async def test_discord_draws_a_long_votes_winner_in_the_messages_it_needs_and_deletes_the_rest(
    tmp_path: Path, discord_fake: FakeDiscord, settings: Config, model: FakeOpenAI
) -> None:
    """Long candidates take a message each; the winner needs one: the others go (nothing was built
    on them), and the turn records the one left, where ratings and picks draw from then on."""
    fake = discord_fake
    requests = count()
    model.pieces = lambda body: [f"Candidate {next(requests)} speaks. " + "The sea went on and on. " * 60]

    async with running(settings, fake):
        await said(fake, await fake.slash(ALICE, "start", title="Ferry", mode="free", opening=OPENING))
        await said(fake, await fake.slash(ALICE, "settings", candidates=2))
        await said(fake, await fake.slash(ALICE, "continue"))
        ballot_messages = await bot_turn(fake)
        assert len(ballot_messages) >= 2  # long candidates do not share a message
        ids = ",".join(m["id"] for m in ballot_messages)
        await fake.until(lambda: rows(tmp_path, "SELECT message_ref FROM generation_jobs") == [(ids,)])

        closed, _ = await said(fake, await fake.slash(ALICE, "vote", number=2))  # Alice alone takes part
        assert "candidate 2 won" in closed
        first = ballot_messages[0]["id"]
        await fake.until(lambda: rows(tmp_path, "SELECT message_ref FROM generation_jobs") == [(first,)])
        [winner] = fake.channel_messages()[-1:]
        assert winner["id"] == first and "chosen by 1 of 1 votes" in content(fake, ballot_messages[0])
        assert [m["id"] for m in fake.channel_messages() if m["id"] in ids.split(",")] == [first]
        assert buttons_shown(fake.messages[int(first)])[1][:2] == ["◀", "(▶)"]


# ---------------------------------------------------------------------- Slack


def ballots(api: FakeSlack) -> list[tuple[str, dict[str, Any]]]:
    """Messages showing candidates to vote on, as they look now: (ts, latest content), oldest first."""
    return [
        (ts, args)
        for (_, ts), args in sorted(api.messages.items())
        if any(b["action_id"] == "story_ballot" for b in buttons(args))
    ]


async def test_slack_shows_the_candidates_takes_votes_and_updates_the_turns_message_to_the_winner(
    slack: Slack, tmp_path: Path
) -> None:
    api, send = slack.api, slack.sender
    scripted(slack.model)
    await send.command(f'start "Ferry" mode:free {OPENING}', user=test_slack.ALICE)
    await api.wait_for(lambda: any(OPENING in shown(a) for a in api.messages.values()))
    await send.command("add The engine coughed.", user=test_slack.BOB)  # Bob takes part too
    await send.command("settings candidates:2", user=test_slack.ALICE)
    await send.command("continue", user=test_slack.ALICE)

    [(ts, ballot)] = await api.wait_for(lambda: ballots(api))
    [(job_id, story_id)] = rows(tmp_path, "SELECT id, story_id FROM generation_jobs")
    texts = [text for (text,) in rows(tmp_path, CANDIDATE_TEXTS.format(job_id))]
    assert sorted(texts) == sorted(SENTENCES[:2])
    heading, *candidates = shown(ballot).split("\n")
    assert heading.startswith("🗳️ storybot wrote 2 candidates for its next passage")
    assert "The vote closes when all 2 participants have voted, or by " in heading
    assert candidates == [f"*Candidate {n}:* {text}" for n, text in enumerate(texts, 1)]
    values = [f"{story_id}:{job_id}:{n}" for n in (1, 2)]
    assert [(b["text"]["text"], b["value"]) for b in buttons(ballot)] == [
        ("Candidate 1", values[0]),
        ("Candidate 2", values[1]),
    ]

    # Bob votes twice for the same candidate; the moderator (no participant) types /story vote.
    assert await click(slack, test_slack.BOB, "ballot", values[1], ts) == (
        "You voted for candidate 2. The vote closes when all have voted or in time "
        "(1 of 2 participants have not voted yet)."
    )
    assert (await click(slack, test_slack.BOB, "ballot", values[1], ts)).startswith(
        "You already voted for candidate 2;"
    )
    voted = await send.command("vote 1", user=test_slack.MOD)
    assert shown(json.loads(voted.body)).startswith("You voted for candidate 1.")  # in the acknowledgement
    refused = await send.command("add Me too.", user=test_slack.MOD)
    assert shown(json.loads(refused.body)) == "⚠️ " + WAIT_FOR_VOTE.format("write your passage")

    # Alice's vote closes it: the ballot's message becomes the winner, with ◀ among its alternatives.
    assert await click(slack, test_slack.ALICE, "ballot", values[1], ts) == (
        "You voted for candidate 2. Everyone has voted: candidate 2 won, chosen by 2 of 3 votes."
    )
    winner = await api.wait_for(lambda: not ballots(api) and api.messages[(CHANNEL, ts)])
    assert shown(winner) == f"*storybot:* {texts[1]}\npassage 3 · 2 / 2 · asked by Alice · chosen by 2 of 3 votes"
    assert [b["action_id"] for b in buttons(winner)] == [
        "story_continue",
        "story_retry",
        "story_undo",
        "story_end",
        "story_older",
        "story_up",
        "story_down",
    ]

    # A vote button of the closed vote changes nothing.
    updates = len(api.of("chat.update"))
    assert await click(slack, test_slack.MOD, "ballot", values[0], ts) == f"⚠️ {CLOSED}"
    assert len(api.of("chat.update")) == updates
    statuses = rows(tmp_path, f"SELECT text, status FROM passages WHERE job_id = {job_id} ORDER BY seq")
    assert statuses == [(texts[0], "superseded"), (texts[1], "canonical")]


async def test_slack_undo_withdraws_the_candidates_and_the_ballot_says_so(slack: Slack, tmp_path: Path) -> None:
    api, send = slack.api, slack.sender
    scripted(slack.model)
    await send.command(f'start "Ferry" mode:free {OPENING}', user=test_slack.ALICE)
    await api.wait_for(lambda: any(OPENING in shown(a) for a in api.messages.values()))
    await send.command("settings candidates:2", user=test_slack.ALICE)
    await send.command("continue", user=test_slack.ALICE)
    [(ts, _)] = await api.wait_for(lambda: ballots(api))

    refused = await send.command("undo", user=test_slack.BOB)  # neither the asker, the starter nor a moderator
    assert shown(json.loads(refused.body)).startswith("⚠️ The bot's candidates were asked for by Alice;")
    await send.command("undo", user=test_slack.ALICE)
    await api.wait_for(
        lambda: any("Withdrew the bot's candidates; the vote is off." in shown(a) for a in api.messages.values())
    )
    withdrawn = await api.wait_for(lambda: not ballots(api) and api.messages[(CHANNEL, ts)])
    assert shown(withdrawn) == WITHDRAWN
    assert rows(tmp_path, "SELECT status FROM passages WHERE author_kind = 'bot'") == [("undone",), ("undone",)]
    assert rows(tmp_path, "SELECT status FROM generation_jobs") == [("cancelled",)]
    continued = await send.command("continue", user=test_slack.BOB)  # the story goes on
    assert continued.status == 200 and not continued.body


# ---------------------------------------------------------------------- console


class Console:
    """The real ``storybot console`` with stdin a pipe (as a script feeds it), typed into line by
    line while it runs, so a test can wait for what it prints (a vote closing on its own) first."""

    def __init__(self, tmp_path: Path, model_dir: Path, **env: str) -> None:
        self.db = tmp_path / "console.db"
        self.stderr = tmp_path / "stderr.txt"
        with self.stderr.open("w") as stderr:
            self.process = subprocess.Popen(
                [*storybot_command(), "console"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=console_env(tmp_path, model_dir, **env),
                cwd=tmp_path,
            )
        self.out = ""  # everything printed so far
        self._read_to = 0  # where the next ``expect`` starts looking
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines))
        self.process.stdin.flush()

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait for ``pattern`` in what is printed after the last match; returns the match."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.out[self._read_to :])) is None:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{pattern!r} not printed in {timeout} s:\n{self.out}") from None
            if line is None:
                raise AssertionError(f"the console ended before printing {pattern!r}:\n{self.out}")
            self.out += line
        self._read_to += found.end()
        return found

    def candidates(self) -> list[str]:
        """The candidates out for the vote, in their order (the tiny model's text is random)."""
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            query = "SELECT text FROM passages WHERE status = 'candidate' ORDER BY seq"
            return [text for (text,) in db.execute(query).fetchall()]

    def close(self) -> int:
        """End the input as a script does; the exit status once the console is done."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        status = self.process.wait(timeout=60)
        while (line := self._lines.get(timeout=10)) is not None:
            self.out += line
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def console(tmp_path: Path, model_dir: Path, **env: str) -> Iterator[Console]:
    running = Console(tmp_path, model_dir, STORYBOT_STORY_PASSAGES_PER_MINUTE="0", **env)
    try:
        yield running
    finally:
        running.kill()


def ballot_in(console: Console) -> list[str]:
    """Ask for the bot's candidates (Alice) until the tiny model writes two that differ (identical
    ones count once: no vote, the story just takes the passage); the candidates, as printed."""
    for _ in range(3):
        console.type("/story continue")
        shown = console.expect(r"\n(🗳️ storybot wrote 2 candidates[^\n]*)\n|\nstorybot ▸ ")
        if shown[1] is not None:
            break
    else:
        raise AssertionError(f"the candidates were the same three times:\n{console.out}")
    assert "The vote closes when all 2 participants have voted, or in " in shown[1]
    texts = console.candidates()
    assert len(texts) == 2
    for number, text in enumerate(texts, 1):
        console.expect(re.escape(f"\n[Candidate {number}] {text}\n"))
    return texts


def voting_console(console: Console) -> list[str]:
    """Alice starts a story, Bob writes in it (both take part), Alice sets two candidates a turn
    and asks the bot: the candidates, once printed."""
    console.type(
        f'/story start "Ferry" mode:free {OPENING}',
        "/as Bob",
        "The engine coughed.",
        "/as Alice",
        "/story settings candidates:2 temperature:1.5",
    )
    console.expect(r"Settings updated\.")
    return ballot_in(console)


def test_the_console_prints_the_candidates_takes_votes_and_prints_the_winner(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    with console(tmp_path, tiny_model_dir) as running:
        texts = voting_console(running)
        running.type("/story continue", "/story vote 1")
        running.expect(re.escape("! " + WAIT_FOR_VOTE.format("ask for the next passage")))
        running.expect(re.escape("You voted for candidate 1. The vote closes when all have voted or in time (1 of 2 "))
        running.type("/story vote 3", "/as Bob", "/story vote 2")
        running.expect(re.escape("! There are 2 candidates; vote for one from 1 to 2."))
        running.expect(
            re.escape("You voted for candidate 2. Everyone has voted: candidate 1 won, chosen by 1 of 2 votes.")
        )
        running.expect(re.escape(f"🗳️ The vote is closed: chosen by 1 of 2 votes.\n\nstorybot ▸ {texts[0]}\n"))
        running.type("/story vote 1")
        running.expect(re.escape("! No vote is open in this story."))
        assert running.close() == 0, running.stderr.read_text()
    assert running.out.count(f"storybot ▸ {texts[0]}\n") == 1  # the winner, once
    with contextlib.closing(sqlite3.connect(tmp_path / "console.db")) as db:
        query = "SELECT text, status FROM passages WHERE author_kind = 'bot' ORDER BY seq"
        assert db.execute(query).fetchall()[-2:] == [(texts[0], "canonical"), (texts[1], "superseded")]


def test_the_console_closes_the_vote_at_its_deadline_without_everyones_vote(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    with console(tmp_path, tiny_model_dir, STORYBOT_STORY_VOTE_TIMEOUT_S="5") as running:
        texts = voting_console(running)
        opened = time.monotonic()
        assert re.search(r"or in [1-5] s; the others stay as alternatives\.", running.out)
        running.type("/as Bob", "/story vote 2")
        running.expect(re.escape("You voted for candidate 2. The vote closes when all have voted or in time (1 of 2 "))
        running.expect(re.escape(f"🗳️ The vote is closed: chosen by 1 of 1 votes.\n\nstorybot ▸ {texts[1]}\n"), 20)
        assert time.monotonic() - opened >= 4, "not before its deadline"
        assert running.close() == 0, running.stderr.read_text()
    with contextlib.closing(sqlite3.connect(tmp_path / "console.db")) as db:
        [(closes_at, finished_at)] = db.execute("SELECT vote_closes_at, finished_at FROM generation_jobs").fetchall()
    assert datetime.fromisoformat(finished_at) >= datetime.fromisoformat(closes_at)


def test_a_piped_script_ending_with_the_deciding_vote_prints_the_winner(tmp_path: Path, tiny_model_dir: Path) -> None:
    script = [
        f'/story start "Ferry" mode:free {OPENING}',
        "/as Bob",
        "The engine coughed.",
        "/as Alice",
        "/story settings candidates:2 temperature:1.5",
        "/story continue",
        "/story vote 2",
        "/as Bob",
        "/story vote 2",
    ]
    done = run_console(tmp_path, tiny_model_dir, "\n".join(script) + "\n")
    assert done.returncode == 0, done.stderr
    assert "Everyone has voted: candidate 2 won, chosen by 2 of 2 votes." in done.stdout, done.stdout
    with contextlib.closing(sqlite3.connect(tmp_path / "console.db")) as db:
        [(winner,)] = db.execute("SELECT text FROM passages WHERE author_kind = 'bot' AND status = 'canonical'")
    assert done.stdout.endswith(f"🗳️ The vote is closed: chosen by 2 of 2 votes.\n\nstorybot ▸ {winner}\n\n")
