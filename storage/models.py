"""The tables that hold every channel's stories.

Nothing a person wrote is ever deleted: undo and retry change a passage's ``status``, and the
canonical story is the passages with status ``canonical`` in ``seq`` order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite keeps no zone and would hand back naive datetimes; comparing those with aware ones
    raises, so every value is normalised on the way in and out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    # Read once by SQLAlchemy when Base is declared: configuration of the class, not a column.
    type_annotation_map: ClassVar[dict[Any, type[TypeEngine[Any]]]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class StoryStatus(StrEnum):
    """``stories.status``; the values are what the database and the JSON export hold."""

    ACTIVE = "active"
    FINISHED = "finished"


class ContentRating(StrEnum):
    """``stories.rating``: who a story is for, on the scale fiction archives use."""

    GENERAL = "general"
    TEEN = "teen"
    MATURE = "mature"  # only where the platform says the channel is for adults


class PassageStatus(StrEnum):
    """``passages.status``."""

    CANONICAL = "canonical"
    SUPERSEDED = "superseded"  # replaced by a retry, or another alternative picked over it; kept as an alternative
    UNDONE = "undone"
    # A moderator took it out of the story (changed_by_id/changed_at say who and when); it keeps
    # its number, so the passages after it keep theirs, and /story unhide puts it back.
    HIDDEN = "hidden"
    # A bot passage the content checks stopped: never shown, exported or sent to the model; kept
    # for moderators (``generation["check"]`` says which checker and why).
    WITHHELD = "withheld"
    # One of several passages the bot wrote for its turn (``/story settings candidates``), waiting for
    # the channel's vote: not numbered, not shown as the story's nor read by the model. The vote
    # makes the winner ``canonical`` and the rest ``superseded`` (kept as its alternatives).
    CANDIDATE = "candidate"


# The passages a story numbers (``/story status``, ``rate``, ``hide``): those in it, and those
# hidden from it, so that hiding one never renumbers the rest.
NUMBERED_PASSAGE_STATUSES = (PassageStatus.CANONICAL, PassageStatus.HIDDEN)


class AuthorKind(StrEnum):
    """``passages.author_kind``: who wrote a passage."""

    HUMAN = "human"
    BOT = "bot"


class JobKind(StrEnum):
    """``generation_jobs.kind``: what a bot turn was asked for."""

    CONTINUE = "continue"
    RETRY = "retry"
    # "The story so far": a summary of what fell out of the prompt, written between turns. Claimed
    # only when no turn waits, never shown in the channel, never counted as the story's open turn.
    RECAP = "recap"


class JobStatus(StrEnum):
    """``generation_jobs.status``."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    VOTING = "voting"  # its candidates are written; the channel is voting on them (``vote_closes_at``)


# A job still waiting to be written, being written, or waiting for the channel's vote: the story's
# bot turn is not over yet.
OPEN_JOB_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.VOTING)


class TurnCall(StrEnum):
    """``stories.turn_call``: what the bot last said of the round-robin turn ``turn_called_at`` names."""

    CALLED = "called"  # "it's your turn" (or "… was skipped; it's your turn")
    REMINDED = "reminded"  # its one reminder too (or none is owed: it was called past the reminder's time)
    QUIET = "quiet"  # a whole round went by without a passage: no more calls until someone writes


class Story(Base):
    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_key: Mapped[str] = mapped_column(String(400), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    workspace: Mapped[str] = mapped_column(String(100), default="")
    channel: Mapped[str] = mapped_column(String(100))
    thread: Mapped[str] = mapped_column(String(100), default="")
    title: Mapped[str] = mapped_column(String(300))
    genre: Mapped[str | None] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20))
    rating: Mapped[str] = mapped_column(String(10), default=ContentRating.GENERAL, server_default="general")
    status: Mapped[str] = mapped_column(String(20), default=StoryStatus.ACTIVE)
    starter_id: Mapped[str] = mapped_column(String(100))
    starter_name: Mapped[str] = mapped_column(String(200))
    memory: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Round-robin bookkeeping: index into the active participants, and when that turn began.
    turn_index: Mapped[int] = mapped_column(Integer, default=0)
    turn_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the bot last told the channel of its turns (``bot.turns``), so that each call, reminder
    # and skip notice is claimed once, by one process, across restarts: whose turn it called
    # (None for the quiet notice), when that turn began, and a TurnCall.
    turn_called_id: Mapped[str | None] = mapped_column(String(100))
    turn_called_at: Mapped[datetime | None]
    turn_call: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # A branch (``/story branch``): the story it was copied from, and the parent's passage number
    # it branched at (as the parent numbers them). Both None for a story started afresh.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    branched_at: Mapped[int | None] = mapped_column(Integer)
    # The web archive (``bot.publishing``): set = listed and readable there, by whom; whether it
    # shows who wrote each passage; the random part of its share links (None: never shared, or
    # revoked, so that every link made before stops working).
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    published_by_id: Mapped[str | None] = mapped_column(String(100))
    publish_authors: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    share_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # One active story per channel, enforced by the database so that two processes
        # racing on `/story start` cannot both win.
        Index(
            "uq_stories_active_channel",
            "channel_key",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class Passage(Base):
    __tablename__ = "passages"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    author_kind: Mapped[str] = mapped_column(String(10))  # an AuthorKind
    author_id: Mapped[str] = mapped_column(String(100))
    author_name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=PassageStatus.CANONICAL)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("passages.id"))
    job_id: Mapped[int | None] = mapped_column(Integer)  # the job that wrote it (no FK: jobs point here)
    # For bot passages: who asked for it (their turn, /story continue or retry).
    requested_by_id: Mapped[str | None] = mapped_column(String(100))
    direction: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by_id: Mapped[str | None] = mapped_column(String(100))
    changed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("story_id", "seq", name="uq_passages_story_seq"),)


class PassageVote(Base):
    """One person's 👍 (+1) or 👎 (-1) on a bot passage; voting again changes the row.

    Together with a passage's ``status`` (kept, retried away, undone) this is the judgement
    people passed on what the bot wrote: what ``storybot stats`` counts and fine-tuning reads.
    """

    __tablename__ = "passage_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    passage_id: Mapped[int] = mapped_column(ForeignKey("passages.id"), index=True)
    voter_id: Mapped[str] = mapped_column(String(100))
    voter_name: Mapped[str] = mapped_column(String(200))
    value: Mapped[int] = mapped_column(Integer)  # +1 or -1
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("passage_id", "voter_id", name="uq_passage_votes_voter"),)


class CandidateVote(Base):
    """One person's vote among a bot turn's candidates; voting again changes the row, so nobody
    votes twice. Kept after the vote: the winner's credit line counts them, the exports keep them."""

    __tablename__ = "candidate_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id"), index=True)
    passage_id: Mapped[int] = mapped_column(ForeignKey("passages.id"))
    voter_id: Mapped[str] = mapped_column(String(100))
    voter_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("job_id", "voter_id", name="uq_candidate_votes_voter"),)


class ModerationAction(StrEnum):
    """``moderation_log.action``: what a moderator (or the content checks) did."""

    HIDE = "hide"
    UNHIDE = "unhide"
    RATING = "rating"  # the story's content rating changed
    END = "end"
    BAN_WORD = "ban-word"  # a channel's moderators banned a word
    ALLOW_WORD = "allow-word"  # ... allowed one of the shipped lists' words in the channel
    CLEAR_WORD = "clear-word"  # ... took their ban or allowance back
    REPORT = "report"  # someone flagged a passage to the moderators
    WITHHELD = "withheld"  # the checks stopped a bot passage (actor: the bot)
    PUBLISHED = "published"  # listed in the web archive (detail: "without authors" when so)
    UNPUBLISHED = "unpublished"  # taken out of it
    SHARED = "shared"  # its share links were made (a new share key)
    UNSHARED = "unshared"  # its share links were revoked


class ModerationEntry(Base):
    """One line of the audit log: who did what, where and when. Nothing is ever deleted."""

    __tablename__ = "moderation_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_key: Mapped[str] = mapped_column(String(400), index=True)
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    passage_id: Mapped[int | None] = mapped_column(ForeignKey("passages.id"))
    action: Mapped[str] = mapped_column(String(20))  # a ModerationAction
    actor_id: Mapped[str] = mapped_column(String(100))
    actor_name: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WordRule(StrEnum):
    """``channel_words.rule``."""

    BAN = "ban"  # refused in this channel's stories, whatever their rating
    ALLOW = "allow"  # an entry of the shipped or configured lists not used in this channel


class ChannelWord(Base):
    """A word list entry a channel's moderators set (``/story words``), for every story there
    (its threads included: ``scope`` is the channel's key without a thread)."""

    __tablename__ = "channel_words"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(400))
    entry: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(10))  # a WordRule
    by_id: Mapped[str] = mapped_column(String(100))
    by_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("scope", "entry", name="uq_channel_words_entry"),)


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)  # join order; rejoining goes to the end
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    left_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("story_id", "user_id", name="uq_participants_story_user"),)

    @classmethod
    def like(cls, story_id: int, other: ParticipantRecord) -> Participant:
        """A participant of ``story_id`` as ``other`` is of its story (a branch's parent, an import)."""
        return cls(
            story_id=story_id,
            user_id=other.user_id,
            name=other.name,
            position=other.position,
            active=other.active,
            joined_at=other.joined_at,
            left_at=other.left_at,
        )


class ParticipantRecord(Protocol):
    """What ``Participant.like`` copies: a row, or an export's participant."""

    @property
    def user_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def active(self) -> bool: ...
    @property
    def joined_at(self) -> datetime: ...
    @property
    def left_at(self) -> datetime | None: ...


class LoreEntry(Base):
    __tablename__ = "lore_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # what people see and type: #1, #2 ... per story
    keys: Mapped[list[str]] = mapped_column()
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(String(100))
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("story_id", "number", name="uq_lore_story_number"),)


class GenerationJob(Base):
    """A bot turn that was asked for. A row, so that a crash mid-generation is re-run.

    ``heartbeat_at`` is refreshed by the process writing the turn; a running job whose
    heartbeat is older than the lease belongs to a process that died.

    The row is also the turn's outbox. ``message_ref`` names the platform message(s) that show the
    turn ("storybot is writing…", then the passage; Discord ids comma-separated), so that whichever process writes or shows
    the turn edits that message instead of leaving it behind. When the job ends (done, failed,
    cancelled) it is owed a last showing: ``show_after`` says from when any process may take it
    (the writer's own process normally shows it first), and ``shown_at`` says it was shown.
    """

    __tablename__ = "generation_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    channel_key: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(20))  # a JobKind
    direction: Mapped[str | None] = mapped_column(Text)
    replaces_passage_id: Mapped[int | None] = mapped_column(ForeignKey("passages.id"))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING)
    requested_by_id: Mapped[str] = mapped_column(String(100))
    requested_by_name: Mapped[str] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    message_ref: Mapped[str | None] = mapped_column(String(400))
    show_after: Mapped[datetime | None]
    shown_at: Mapped[datetime | None]
    # How many passages the turn writes for the channel to vote on (1: no vote), fixed when it is
    # asked for; and, once they are written, when the vote closes at the latest.
    candidates: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    vote_closes_at: Mapped[datetime | None]
    # A turn a worker process writes for a chat process to show (``bot/generation/relay.py``): the
    # text so far, and the chat process that shows it meanwhile, its claim good until renewed or
    # ``streamed_until`` (so that two chat processes never both post "writing…").
    partial_text: Mapped[str | None] = mapped_column(Text)
    streamed_by: Mapped[str | None] = mapped_column(String(100))
    streamed_until: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_generation_jobs_status", "status", "id"),
        Index("ix_generation_jobs_show_after", "show_after"),
    )


class StoryRecap(Base):
    """One version of a story's recap ("the story so far"); the story's current recap is its latest.

    Nothing is overwritten, so a recap keeps its history: the bot's, a person's replacement, a
    clearing (``text`` empty). ``covers_up_to`` is the ``seq`` of the last passage it summarises.
    """

    __tablename__ = "story_recaps"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    covers_up_to: Mapped[int] = mapped_column(Integer)
    author_kind: Mapped[str] = mapped_column(String(10))  # an AuthorKind
    author_id: Mapped[str] = mapped_column(String(100))
    author_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SiteSecret(Base):
    """A secret the bot makes for itself on first use (``name``: what it is for), e.g. the key
    that signs share links when the config sets none: kept here so that every process, and the
    web archive, signs with the same one."""

    __tablename__ = "site_secrets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class ProcessedEvent(Base):
    """Platform event ids already applied, so a redelivered event changes nothing."""

    __tablename__ = "processed_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("platform", "event_id", name="uq_processed_events"),)
