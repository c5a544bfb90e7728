"""The console channel: one story channel in a terminal, or a script piped through stdin.

Lines starting with ``/story`` are commands, ``/as NAME`` switches who is typing, ``/channel
NAME`` which console channel they type in, ``/quit`` leaves, and any other line is the current
person's turn (``/story add``). ``/story branch`` puts the branch in a new console channel,
``<channel>-branch-<parent story id>`` (``-2``, ``-3``… when that one holds a running story), and
switches there, saying so; ``/channel <the first one>`` goes back to the parent. When stdin is not a
terminal each line waits for the bot turn it triggered, so a script reads like people taking
turns; at a terminal the bot's text streams in as it is written.

A line that fails gets one line of error and the console reads the next: a script is never cut
short by one bad line. Bytes that are not UTF-8 are read as U+FFFD, never fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import io
import logging
import sys
from pathlib import Path
from typing import TextIO

from adapters.common.wording import WITHDRAWN, WRITING, ballot_heading, candidate_label
from bot import commands as c
from bot.app import App
from bot.export.files import save_in
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import BOT_NAME, Ballot, PassageView, Result
from bot.turns import TurnNotice, duration

log = logging.getLogger(__name__)

TO_MODERATORS = "[to the moderators]"  # marks a report's message, which a chat platform sends elsewhere
CONSOLE_HELP = (
    "Lines starting with /story are commands (try /story help); /as NAME switches who is typing; "
    "/channel NAME which console channel; /quit leaves."
)


def default_user(configured: str) -> str:
    if configured:
        return configured
    try:
        return getpass.getuser() or "you"
    except Exception:  # no login name in some containers
        return "you"


class ConsoleChannel:
    """One channel on stdin/stdout; also the queue listener that prints the bot's turns."""

    def __init__(self, app: App, *, out: TextIO = sys.stdout, interactive: bool | None = None) -> None:
        self.app = app
        self.out = out
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        # The console is for adults only when the config says so (console.mature): then a story may be rated mature.
        self.channel = ChannelRef(
            "console", "local", app.config.console.channel, age_restricted=app.config.console.mature
        )
        self.actor = self._actor(default_user(app.config.console.user))
        self._turns: dict[int, asyncio.Future[None]] = {}  # a turn's first showing (its passage, or its ballot)
        self._endings: dict[int, asyncio.Future[None]] = {}  # a voted turn's last one: its winner
        self._streamed: dict[int, str] = {}
        app.queue.add_listener(self, shows=self.channel.platform)
        app.reminders.add_listener(self.channel.platform, self)

    @staticmethod
    def _actor(name: str) -> Actor:
        return Actor(user_id=f"console:{name.casefold()}", name=name)

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------ the loop

    async def run(self, stdin: TextIO = sys.stdin) -> None:
        for stream in (stdin, self.out):
            if isinstance(stream, io.TextIOWrapper):  # undecodable input, unencodable output: replaced
                stream.reconfigure(errors="replace")
        self._print(f"storybot console — writing as {self.actor.name}. {CONSOLE_HELP}")
        warming = None
        if self.interactive:
            self._print(f"Loading {self.app.config.model.name} in the background…")
            warming = asyncio.create_task(self._warm_up())  # (held, so it is not collected mid-way)
        while True:
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            if not await self._handle_safely(line.rstrip("\r\n")):
                break
        if warming is not None:
            warming.cancel()

    async def _handle_safely(self, line: str) -> bool:
        """``handle_line``, but a failure costs only this line."""
        try:
            return await self.handle_line(line)
        except Exception as error:
            log.exception("console line failed")
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            self._print(f"! That line failed: {reason}")
            return True

    async def _warm_up(self) -> None:
        problem = await self.app.queue.warm_up()
        self._print(f"! {problem}" if problem else "The model is ready.")

    async def handle_line(self, line: str) -> bool:
        """Apply one line; False means the person asked to leave."""
        text = line.strip()
        if not text:
            return True
        if text in ("/quit", "/exit"):
            return False
        if text.startswith("/as"):
            name = text[3:].strip()
            if not name or not text[3:4].isspace():
                self._print("! Type /as NAME to write as someone else.")
            else:
                self.actor = self._actor(name)
                self._print(f"(now writing as {name})")
            return True
        if text.split()[0] == "/channel":
            name = text[len("/channel") :].strip()
            if name:
                self.channel = dataclasses.replace(self.channel, channel=name)
            self._print(f"(in console channel {self.channel.channel})")
            return True
        if text.lower().startswith("/story"):
            try:
                command = c.parse(text)
            except c.ParseError as error:
                self._print(f"! {error}")
                return True
        elif text.startswith("/"):
            self._print(f"! Unknown console command {text.split()[0]!r}. {CONSOLE_HELP}")
            return True
        else:
            command = c.Add(line.strip())
        if isinstance(command, c.Branch):
            result = await self._branch(command)
        else:
            result = await self.app.sessions.handle(self.channel, self.actor, command)
        self._show(result)
        if not self.interactive:
            if result.job_id is not None:
                await self._turn(result.job_id)
            if result.turn_ended is not None and isinstance(command, c.VoteFor):  # the winner shows next
                await self._ending(result.turn_ended)
        return True

    async def _branch(self, command: c.Branch) -> Result:
        """The branch goes in a new console channel, and the console switches there."""
        sessions = self.app.sessions
        source = await sessions.branch_source(self.channel)
        if source is None:  # the core says why (no story runs here)
            return await sessions.handle(self.channel, self.actor, command)
        base = f"{self.channel.channel}-branch-{source.story_id}"
        place, copy = dataclasses.replace(self.channel, channel=base), 1
        while await sessions.running_story_id(place) is not None:
            copy += 1
            place = dataclasses.replace(self.channel, channel=f"{base}-{copy}")
        result = await sessions.handle(place, self.actor, dataclasses.replace(command, from_story_id=source.story_id))
        if result.ok:
            back, self.channel = self.channel.channel, place
            self._print(
                f"(now in console channel {place.channel}: /story commands apply to the branch; /channel {back} goes back)"
            )
        return result

    def _turn(self, job_id: int) -> asyncio.Future[None]:
        return self._turns.setdefault(job_id, asyncio.get_running_loop().create_future())

    def _ending(self, job_id: int) -> asyncio.Future[None]:
        return self._endings.setdefault(job_id, asyncio.get_running_loop().create_future())

    def _print_passage(self, passage: PassageView) -> None:
        self._print(f"\n{BOT_NAME} ▸ {passage.text}\n")

    def _print_ballot(self, ballot: Ballot) -> None:
        """The bot's candidates, numbered; people vote with ``/story vote <n>`` (``/as NAME`` first)."""
        left = (ballot.closes_at - self.app.sessions.clock()).total_seconds()
        self._print(f"\n{ballot_heading(ballot, f'in {duration(left)}')}")
        for candidate in ballot.candidates:
            self._print(f"\n[{candidate_label(candidate.number)}] {candidate.text}")
        self._print()

    def _show(self, result: Result) -> None:
        if not result.ok:
            self._print(f"! {result.text}")
        elif result.text:
            self._print(result.text)
        if result.picked and result.passage is not None:  # the alternative picked: the story's passage now
            self._print_passage(result.passage)
        if result.alert is not None:  # no moderators' channel here: the console shows it
            self._print(f"{TO_MODERATORS} {result.alert.text}")
        if result.attachment is not None:
            try:
                self._print(f"Saved {save_in(Path.cwd(), result.attachment.filename, result.attachment.data)}")
            except OSError as error:
                self._print(f"! Cannot save {result.attachment.filename} here: {error.strerror or error}")

    # ------------------------------------------------------------------ queue listener

    def _ours(self, job: JobSpec) -> bool:
        return job.channel == self.channel

    async def turn_started(self, job: JobSpec) -> None:
        if self._ours(job) and self.interactive:
            self._print(WRITING)

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        if not (self._ours(job) and self.interactive):
            return
        shown = self._streamed.get(job.job_id, "")
        if text.startswith(shown):
            print(text[len(shown) :], end="", file=self.out, flush=True)
            self._streamed[job.job_id] = text

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        if not self._ours(job):
            return
        if self._streamed.pop(job.job_id, None) is not None:
            self._print()
        if result is None:
            self._print(f"({WITHDRAWN})")
        elif not result.ok:
            self._print(f"! {result.text}")
        elif result.ballot is not None:
            self._print_ballot(result.ballot)
        elif result.passage is not None:
            if result.passage.elected is not None:
                self._print(f"🗳️ The vote is closed: {result.passage.elected}.")
            self._print_passage(result.passage)
        _settle(self._turn(job.job_id))
        if result is None or result.ballot is None:  # a ballot's turn ends again, with its winner
            _settle(self._ending(job.job_id))

    # ------------------------------------------------------------------ round-robin turn notices

    async def turn_notice(self, notice: TurnNotice) -> None:
        """The console's way to call one person: "→ Bob, it's your turn…" (a story of another
        console channel, from an earlier run with another ``console.channel``, is not shown here)."""
        if notice.channel == self.channel:
            self._print(f"→ {notice.to.name}, {notice.text}" if notice.to is not None else notice.text)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
