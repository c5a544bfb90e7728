"""The bot's passages as people judged them, read in one transaction for stats and datasets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.feedback.signals import Fate, fate_of, turned_down
from bot.words import word_count
from storage import queries as q
from storage.database import Database
from storage.models import PassageStatus


@dataclass(frozen=True, slots=True)
class Ballot:
    """One person's vote on a passage."""

    voter_id: str
    voter_name: str
    value: int  # +1 or -1
    at: datetime


@dataclass(frozen=True, slots=True)
class JudgedPassage:
    """A bot passage with its fate and votes, and how it was written (``generation``)."""

    id: int
    story_id: int
    story_title: str
    channel_key: str
    seq: int
    created_at: datetime
    text: str
    status: str
    replaces_id: int | None
    generation: dict[str, Any]
    ballots: tuple[Ballot, ...]
    changed_by: str | None = None  # who set ``status`` (``signals.VOTED``: a vote's close)

    @property
    def fate(self) -> Fate:
        return fate_of(self.status, self.changed_by)

    @property
    def up(self) -> int:
        return sum(b.value > 0 for b in self.ballots)

    @property
    def down(self) -> int:
        return sum(b.value < 0 for b in self.ballots)

    @property
    def turned_down(self) -> bool:
        return turned_down(self.status, self.up, self.down)

    @property
    def words(self) -> int:
        return word_count(self.text)


async def judged_passages(
    db: Database, *, channel_keys: Sequence[str] = (), since: datetime | None = None
) -> list[JudgedPassage]:
    """Every bot passage in those channels (all when none) since ``since``, in story order."""

    async def read(tx: AsyncSession) -> list[JudgedPassage]:
        rows = await q.bot_passages(tx, channel_keys=channel_keys, since=since)
        ballots: dict[int, list[Ballot]] = {}
        for vote in await q.votes_of_passages(tx, [passage.id for passage, _ in rows]):
            ballot = Ballot(vote.voter_id, vote.voter_name, vote.value, vote.changed_at or vote.created_at)
            ballots.setdefault(vote.passage_id, []).append(ballot)
        return [
            JudgedPassage(
                id=passage.id,
                story_id=story.id,
                story_title=story.title,
                channel_key=story.channel_key,
                seq=passage.seq,
                created_at=passage.created_at,
                text=passage.text,
                status=passage.status,
                replaces_id=passage.replaces_id,
                changed_by=passage.changed_by_id,
                generation=passage.generation or {},
                ballots=tuple(ballots.get(passage.id, ())),
            )
            for passage, story in rows
            if passage.status != PassageStatus.CANDIDATE  # out for a vote: nobody has judged it yet
        ]

    return await db.transaction(read, write=False)
