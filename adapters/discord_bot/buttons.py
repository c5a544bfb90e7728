"""The Continue / Retry / Undo / End buttons under each bot passage, and its 👍 / 👎 below them;
◀ ▶ beside those under the bot's latest passage when it has alternatives.

Each button is a ``DynamicItem`` whose custom id holds the action and the story id
(``story:retry:12``), so buttons keep working after a restart with no view state kept in
memory. The story id goes to the core with the command: once that story is no longer the
channel's running one, the button answers politely and changes nothing. A rating button names
its passage exactly (``story:up:12:345``: story 12, passage 345), since people rate any passage
still on screen, not only the last one. ◀ and ▶ name the passage their message shows and the
alternative they pick (``story:pick:12:345:1``: alternative 1); once that message shows a
passage no longer the story's, they change nothing. At the first or last alternative the one
with nowhere to go is greyed out. Discord fits five buttons in a row, so ◀ ▶ and the two
ratings take a second row. Under the bot's candidates for a vote, one button per candidate names
the turn and the candidate (``story:ballot:12:77:2``); once that vote closed, it changes nothing.
"""

from __future__ import annotations

import re
from typing import Any, cast

import discord

from adapters.common.wording import candidate_label
from adapters.discord_bot.runner import CommandRunner
from bot import commands as c
from bot.results import Ballot, PassageView

ACTIONS: dict[str, tuple[str, discord.ButtonStyle, type[c.Command]]] = {
    "continue": ("Continue", discord.ButtonStyle.primary, c.Continue),
    "retry": ("Retry", discord.ButtonStyle.secondary, c.Retry),
    "undo": ("Undo", discord.ButtonStyle.secondary, c.Undo),
    "end": ("End", discord.ButtonStyle.danger, c.End),
}
CUSTOM_ID = r"story:(?P<action>[a-z]+):(?P<story_id>[0-9]{1,18})"
RATING_ID = r"story:(?P<vote>up|down):(?P<story_id>[0-9]{1,18}):(?P<passage_id>[0-9]{1,18})"
PICK_ID = r"story:pick:(?P<story_id>[0-9]{1,18}):(?P<passage_id>[0-9]{1,18}):(?P<number>[0-9]{1,9})"
BALLOT_ID = r"story:ballot:(?P<story_id>[0-9]{1,18}):(?P<job_id>[0-9]{1,18}):(?P<number>[0-9]{1,9})"
RATING_ROW = 1  # under the row of actions (◀ ▶ go there too)


class StoryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID):
    """One action on one story."""

    def __init__(self, action: str, story_id: int) -> None:
        label, style, _ = ACTIONS[action]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"story:{action}:{story_id}"))
        self.action = action
        self.story_id = story_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StoryButton:
        action = match["action"]
        if action not in ACTIONS:  # an id we never made; discord.py reports the error
            raise ValueError(f"unknown story button action {action!r}")
        return cls(action, int(match["story_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        runner = cast(CommandRunner, interaction.client)
        await runner.run_command(interaction, ACTIONS[self.action][2](), story_id=self.story_id)


class RatingButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=RATING_ID):
    """👍 or 👎 on one bot passage; the answer is for the clicker alone, the counts show on the passage."""

    def __init__(self, vote: c.Vote, story_id: int, passage_id: int) -> None:
        custom_id = f"story:{vote.value}:{story_id}:{passage_id}"
        super().__init__(
            discord.ui.Button(
                emoji=vote.emoji, style=discord.ButtonStyle.secondary, custom_id=custom_id, row=RATING_ROW
            )
        )
        self.vote = vote
        self.story_id = story_id
        self.passage_id = passage_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RatingButton:
        return cls(c.Vote(match["vote"]), int(match["story_id"]), int(match["passage_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        runner = cast(CommandRunner, interaction.client)
        await runner.run_command(interaction, c.Rate(self.vote, passage_id=self.passage_id), story_id=self.story_id)


class PickButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=PICK_ID):
    """◀ or ▶ under the bot's latest passage: make alternative ``number`` of it the story's. The
    answer is for the clicker alone; the message then shows the alternative picked."""

    def __init__(
        self, story_id: int, passage_id: int, number: int, label: str = "◀", *, disabled: bool = False
    ) -> None:
        custom_id = f"story:pick:{story_id}:{passage_id}:{number}"
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, style=discord.ButtonStyle.secondary, custom_id=custom_id, row=RATING_ROW, disabled=disabled
        )
        super().__init__(button)
        self.story_id = story_id
        self.passage_id = passage_id
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PickButton:
        return cls(int(match["story_id"]), int(match["passage_id"]), int(match["number"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        runner = cast(CommandRunner, interaction.client)
        await runner.run_command(interaction, c.Pick(self.number, passage_id=self.passage_id), story_id=self.story_id)


class BallotButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=BALLOT_ID):
    """A vote for one of the bot's candidates (``story:ballot:12:77:2``: story 12, turn 77,
    candidate 2). The answer is the voter's alone; once that vote closed, it changes nothing."""

    def __init__(self, story_id: int, job_id: int, number: int) -> None:
        custom_id = f"story:ballot:{story_id}:{job_id}:{number}"
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=candidate_label(number), style=discord.ButtonStyle.primary, custom_id=custom_id
        )
        super().__init__(button)
        self.story_id = story_id
        self.job_id = job_id
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BallotButton:
        return cls(int(match["story_id"]), int(match["job_id"]), int(match["number"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        runner = cast(CommandRunner, interaction.client)
        await runner.run_command(interaction, c.VoteFor(self.number, job_id=self.job_id), story_id=self.story_id)


def ballot_buttons(ballot: Ballot) -> discord.ui.View:
    """A vote button per candidate, under the last of the messages that show them."""
    view = discord.ui.View(timeout=None)
    for candidate in ballot.candidates:
        view.add_item(BallotButton(ballot.story_id, ballot.job_id, candidate.number))
    return view


def passage_buttons(passage: PassageView) -> discord.ui.View:
    """The buttons under a bot passage: its story's actions, then ◀ ▶ while it is the latest of
    several alternatives, then the passage's own 👍 and 👎."""
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        view.add_item(StoryButton(action, passage.story_id))
    alternatives = passage.alternatives
    if alternatives is not None and alternatives.browsable:
        for label, number in (("◀", alternatives.older), ("▶", alternatives.newer)):
            # (a greyed-out one names its own alternative: custom ids must differ within a message)
            target = number if number is not None else alternatives.position
            view.add_item(PickButton(passage.story_id, passage.id, target, label, disabled=number is None))
    for vote in c.Vote:
        view.add_item(RatingButton(vote, passage.story_id, passage.id))
    return view
