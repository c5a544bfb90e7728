"""What the core hands back to adapters: plain data, rendered by each platform in its own idiom."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.models import AuthorKind

BOT_NAME = "storybot"  # the author name of the bot's passages, as every platform shows it
DEFAULT_TITLE = "Untitled story"  # what a story nobody named is called (and its thread, on Discord)


class UserError(Exception):
    """A rule said no. The message is one line, shown to the person, and nothing was changed."""


class BusyError(UserError):
    """The generation queue is full; nothing already accepted is dropped."""


@dataclass(frozen=True, slots=True)
class Votes:
    """The 👍 and 👎 on a passage, as shown beside it."""

    up: int = 0
    down: int = 0

    def __str__(self) -> str:
        """``👍 2 · 👎 1``; empty when nobody voted, so an unrated passage shows nothing."""
        return f"👍 {self.up} · 👎 {self.down}" if self.up or self.down else ""


@dataclass(frozen=True, slots=True)
class Alternatives:
    """Where a bot passage stands among the bot's alternatives for its place in the story (itself,
    the passages its retries replaced and those that replaced it), numbered oldest first: "2 / 3".
    ``browsable`` while it is the story's last passage: then another of them may be picked (◀ ▶)."""

    position: int
    count: int
    browsable: bool = False

    def __str__(self) -> str:
        return f"{self.position} / {self.count}"

    @property
    def older(self) -> int | None:
        """The number ◀ picks: the alternative before this one; None for the first."""
        return self.position - 1 if self.position > 1 else None

    @property
    def newer(self) -> int | None:
        """The number ▶ picks: the alternative after this one; None for the last."""
        return self.position + 1 if self.position < self.count else None


@dataclass(frozen=True, slots=True)
class Election:
    """How the channel chose a bot passage among its candidates: the votes it won, of all cast
    (none cast: the vote timed out, and the first candidate stands)."""

    won: int
    cast: int

    def __str__(self) -> str:
        return f"chosen by {self.won} of {self.cast} votes" if self.cast else "no votes: the first candidate stands"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One passage the bot wrote for the channel's vote, numbered as people vote for it."""

    number: int
    passage_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Ballot:
    """A bot turn's candidates, open for the channel's vote (``/story vote``) until ``closes_at``,
    or until all ``electorate`` participants of the story have voted."""

    job_id: int
    story_id: int
    candidates: tuple[Candidate, ...]
    closes_at: datetime
    electorate: int


@dataclass(frozen=True, slots=True)
class PassageView:
    """One passage as people see it."""

    id: int
    story_id: int
    seq: int
    number: int  # position in the canonical story, 1-based, as shown to people
    author_kind: str  # an AuthorKind: "human" or "bot"
    author_name: str
    text: str
    votes: Votes = Votes()
    # A bot passage's turn: who asked for it, and whether it rewrote an earlier one (its credit line).
    asked_by: str | None = None
    rewrite: bool = False
    alternatives: Alternatives | None = None  # a bot passage with more than one alternative: where it stands
    elected: Election | None = None  # a bot passage the channel chose among candidates: the count

    @property
    def by_bot(self) -> bool:
        return self.author_kind == AuthorKind.BOT


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ModeratorAlert:
    """A message for a story's moderators (``/story report``): the platform sends it to its
    moderators' channel when the config names one, else privately to ``starter_id``."""

    text: str
    starter_id: str


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to one command.

    ``private`` asks the adapter to show the text only to the person who asked (ephemeral on
    Discord and Slack); errors are always private. ``job_id`` is set when the bot's turn was
    queued, so the adapter can show that the bot is writing. ``message_ref`` is set when a
    rating changed the counts of ``passage``: the platform message(s) showing it (as the turn
    recorded them), for the adapter to show the new counts there; or when a pick made ``passage``
    the story's in place of the alternative that message showed (``picked``: show it at once, not
    at a rating's pace). ``alert`` is for the story's moderators, not the channel (a report).
    ``ballot``: the end of a bot turn that wrote several candidates, for the channel to vote on.
    """

    text: str
    ok: bool = True
    private: bool = False
    story_id: int | None = None
    passage: PassageView | None = None
    job_id: int | None = None
    cancelled_job_ids: tuple[int, ...] = ()
    attachment: Attachment | None = None
    duplicate: bool = False
    message_ref: str | None = None
    picked: bool = False
    alert: ModeratorAlert | None = None
    ballot: Ballot | None = None  # a bot turn that wrote candidates: what the channel votes on
    turn_ended: int | None = None  # a bot turn (job id) this command ended (its vote closed): owed its showing

    @classmethod
    def error(cls, text: str) -> Result:
        return cls(text=text, ok=False, private=True)
