"""The story rules, in one place: turns, modes, permissions, limits.

``SessionManager`` is the only writer of story state. Every command is one short transaction:
it either changes what it should and commits, or raises ``UserError`` and changes nothing.
Concurrent commands on one channel are serialised by the database itself (``BEGIN IMMEDIATE``
on SQLite, a row lock on the story in PostgreSQL), so every passage gets a place in one order.
Every transaction goes through ``Database.transaction``: a writer that finds the database
locked waits its turn and runs again, and only past ``database.write_deadline_s`` is the person
told that the bot is busy (with nothing changed).

The manager never talks to a platform and never runs the model: when the bot must write it
records a ``GenerationJob`` row and tells the queue (``on_jobs_changed``) after the commit (on
PostgreSQL the other processes' workers too, with the commit: ``JobBook._announce_jobs``).
It never renders a file either: ``/story list``, ``show`` and ``export`` are answered by the
archive (``bot.export.chat``). What the queue does with a job afterwards is ``bot.jobs``.
Each handler is registered with its command class (``@RULES.handles(c.Start)``); a command's
own flags (``read_only``) say which transaction it runs in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.alternatives import ALTERNATIVES, AlternativeRules
from bot.branches import BRANCHES, BranchRules
from bot.config import Config
from bot.context_report import CONTEXT, ContextRules
from bot.export.chat import ARCHIVE, Archive
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.moderation import MODERATION, ModerationRules
from bot.publishing import PUBLISHING, PublishingRules
from bot.recaps import RECAPS, RecapRules
from bot.results import DEFAULT_TITLE, BusyError, Result, UserError, Votes
from bot.safety.checker import Standard
from bot.safety.checks import Checks
from bot.share_links import archive_note
from bot.turns import TURNS, TurnRules
from bot.votes import VOTES, VoteRules
from bot.words import story_size, word_count
from storage import queries as q
from storage.database import Database, DatabaseBusy
from storage.models import (
    AuthorKind,
    ContentRating,
    GenerationJob,
    JobKind,
    LoreEntry,
    ModerationAction,
    Participant,
    Passage,
    PassageStatus,
    PassageVote,
    ProcessedEvent,
    Story,
    StoryStatus,
    utcnow,
)

log = logging.getLogger(__name__)

STATUS_RECENT_PASSAGES = 3
DATABASE_BUSY = "The bot is busy right now; try again in a moment."

RULES: Handlers[SessionManager] = Handlers()
_STRICTNESS = (ContentRating.GENERAL, ContentRating.TEEN, ContentRating.MATURE)  # strictest first


class SessionManager(
    PublishingRules, VoteRules, RecapRules, BranchRules, ContextRules, TurnRules, AlternativeRules, ModerationRules
):
    """The rule book: answers every command, in one transaction each (see the module docstring).

    The archive commands (list, show, export) are answered by ``Archive``, the moderators' by
    ``ModerationRules``; the job lifecycle the queue drives is the ``JobBook`` under them.
    ``checks`` judges what people write before any of it is stored (the config's by default).
    """

    def __init__(
        self,
        db: Database,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        checks: Checks | None = None,
    ) -> None:
        super().__init__(db, config, clock=clock)
        self.checks = checks if checks is not None else Checks.from_config(config)
        limits = config.story
        # The longest text any rule accepts: a longer one is refused for its length, unchecked.
        self._longest_text = max(
            limits.max_passage_chars,
            limits.max_title_chars,
            limits.max_memory_chars,
            limits.max_note_chars,
            limits.max_lore_chars,
        )
        self._longest_passage: Callable[[str], int | None] = lambda model: None
        self._handlers = (
            RULES.bind(self)
            | MODERATION.bind(self)
            | ALTERNATIVES.bind(self)
            | VOTES.bind(self)
            | BRANCHES.bind(self)
            | RECAPS.bind(self)
            | PUBLISHING.bind(self)
            | TURNS.bind(self)
            | CONTEXT.bind(self)
            | ARCHIVE.bind(Archive(config.export, config.web.public_url))
        )

    def limit_passage_length(self, longest: Callable[[str], int | None]) -> None:
        """Register what says how many tokens a model can write at most (None: not known yet)."""
        self._longest_passage = longest

    # ------------------------------------------------------------------ entry point

    async def handle(
        self,
        channel: ChannelRef,
        actor: Actor,
        command: c.Command,
        *,
        event_id: str | None = None,
        story_id: int | None = None,
    ) -> Result:
        """Apply one command.

        ``event_id`` (a platform delivery id) makes a redelivered event a no-op. ``story_id``
        is set by buttons under a passage: the command then applies only while that story is
        still the channel's running one, so a stale button changes nothing. Commands that only
        look (status, export, ...) run in a read transaction: on SQLite a long export then
        never holds up other channels' writes.
        """
        handler = self._handlers[type(command)]
        reads_only = command.read_only
        try:
            refusal = await self.refusal(channel, command)
        except DatabaseBusy:
            return Result.error(DATABASE_BUSY)
        if refusal is not None:
            return Result.error(refusal)

        async def apply(tx: AsyncSession) -> Result:
            if event_id is not None and not reads_only:
                if await q.event_seen(tx, channel.platform, event_id):
                    return Result("Already done.", private=True, duplicate=True)
                tx.add(ProcessedEvent(platform=channel.platform, event_id=event_id, created_at=self.clock()))
            if story_id is not None:
                await self._require_running(tx, channel, story_id)
            if not (command.read_only or isinstance(command, c.End)):
                await self._require_not_paused(tx, channel)
            result = await handler(tx, channel, actor, command)
            if result.job_id is not None or result.cancelled_job_ids:  # (the other processes' workers)
                await self._announce_jobs(tx, result.cancelled_job_ids)
            return result

        try:
            result = await self.db.transaction(apply, write=not reads_only)
        except UserError as error:
            return Result.error(str(error))
        except IntegrityError:
            # Two processes raced: another start won the channel, or the same event was
            # delivered twice at once. Re-read to tell which, and say so plainly.
            return await self._explain_conflict(channel, event_id)
        except DatabaseBusy:
            return Result.error(DATABASE_BUSY)
        if result.job_id is not None or result.cancelled_job_ids:
            self._notify_jobs()
        if result.turn_ended is not None or result.cancelled_job_ids:
            self._notify_showings()  # a vote closed or withdrawn: its messages are owed a redraw now
        if not reads_only:
            self._turns_changed()
        return result

    async def refusal(self, channel: ChannelRef, command: c.Command) -> str | None:
        """Why the content checks refuse what the person wrote, or None. ``handle`` asks first,
        before the command's transaction (a checker may take a while, and no lock is held
        meanwhile); an adapter asks too before it shows anything of the command (the thread a
        start opens is named after its title). The standard is the running story's, or for a
        start the rating it asks for."""
        if not command.written or any(len(text) > self._longest_text for text in command.written):
            return None  # nothing to check, or refused for its length without costing a check

        async def read(tx: AsyncSession) -> Standard:
            if isinstance(command, c.Start):
                rating = command.rating or self.config.story.default_rating
            else:
                story = await q.active_story(tx, channel.key)
                rating = story.rating if story is not None else self.config.story.default_rating
            return await self._standard(tx, channel, rating)

        verdict = await self.checks.check_human(command.written, await self.db.transaction(read, write=False))
        if verdict.passed:
            return None
        if verdict.down:
            return "The content checks are not answering right now, so nothing was changed; try again in a moment."
        return f"That can't go in this story: {verdict.reason}. Nothing was changed."

    async def _explain_conflict(self, channel: ChannelRef, event_id: str | None) -> Result:
        async def explain(tx: AsyncSession) -> Result:
            if event_id is not None and await q.event_seen(tx, channel.platform, event_id):
                return Result("Already done.", private=True, duplicate=True)
            story = await q.active_story(tx, channel.key)
            if story is not None:
                return Result.error(f"A story is already running here: “{story.title}”. Type /story status.")
            return Result.error("Someone else changed the story at the same moment; please try again.")

        try:
            return await self.db.transaction(explain, write=False)
        except DatabaseBusy:
            return Result.error(DATABASE_BUSY)

    # ------------------------------------------------------------------ helpers

    async def running_story_id(self, channel: ChannelRef) -> int | None:
        """The id of the story running in ``channel``, if any (a read, for adapters that must
        tell story chatter from other messages, e.g. plain messages in a story's thread)."""

        async def story_id(tx: AsyncSession) -> int | None:
            story = await q.active_story(tx, channel.key)
            return story.id if story is not None else None

        return await self.db.transaction(story_id, write=False)

    async def _require_running(self, tx: AsyncSession, channel: ChannelRef, story_id: int) -> None:
        story = await q.active_story(tx, channel.key)
        if story is None or story.id != story_id:
            raise UserError("That story has ended, so this button does nothing now. Type /story status.")

    async def _require_not_paused(self, tx: AsyncSession, channel: ChannelRef) -> None:
        """A mature story runs only while its channel is for adults; when the platform stops saying
        so, the story pauses: nothing is added or written until it does again (or the story ends)."""
        story = await q.active_story(tx, channel.key)
        if story is not None and story.rating == ContentRating.MATURE and not channel.age_restricted:
            raise UserError(
                f"“{story.title}” is rated mature and this channel is no longer for adults, so the story is "
                "paused: mark the channel age-restricted again to go on, or finish it with /story end."
            )

    async def _check_rate(self, tx: AsyncSession, story: Story, actor: Actor) -> None:
        limit = self.config.story.passages_per_minute
        if limit <= 0:
            return
        since = self.clock() - timedelta(minutes=1)
        if await q.recent_passage_count(tx, story.id, actor.user_id, since) >= limit:
            raise UserError(f"Slow down: at most {limit} passages a minute per person. Try again shortly.")

    async def _add_passage(self, tx: AsyncSession, story: Story, actor: Actor, text: str) -> Passage:
        passage = Passage(
            story_id=story.id,
            seq=await q.next_seq(tx, story.id),
            author_kind=AuthorKind.HUMAN,
            author_id=actor.user_id,
            author_name=actor.name,
            text=text,
            created_at=self.clock(),
        )
        tx.add(passage)
        await self._ensure_participant(tx, story, actor)
        await tx.flush()
        return passage

    async def _ensure_participant(self, tx: AsyncSession, story: Story, actor: Actor) -> None:
        """Anyone who writes in alternate or free mode counts as a contributor."""
        if await q.participant(tx, story.id, actor.user_id) is None:
            tx.add(
                Participant(
                    story_id=story.id,
                    user_id=actor.user_id,
                    name=actor.name,
                    position=await q.next_participant_position(tx, story.id),
                    joined_at=self.clock(),
                )
            )

    async def _queue_job(
        self,
        tx: AsyncSession,
        story: Story,
        actor: Actor,
        *,
        kind: JobKind = JobKind.CONTINUE,
        direction: str | None = None,
        replaces: Passage | None = None,
    ) -> GenerationJob:
        """Record a bot turn; refused when the queue already holds ``max_pending`` turns."""
        if await q.count_pending_jobs(tx) >= self.config.generation.max_pending:
            raise BusyError("The bot is busy with other channels; try /story continue again in a moment.")
        job = GenerationJob(
            story_id=story.id,
            channel_key=story.channel_key,
            kind=kind,
            direction=direction,
            replaces_passage_id=replaces.id if replaces else None,
            requested_by_id=actor.user_id,
            requested_by_name=actor.name,
            created_at=self.clock(),
            candidates=self.story_settings(story).candidates,
        )
        tx.add(job)
        await tx.flush()
        return job

    # ------------------------------------------------------------------ commands

    @RULES.handles(c.Start)
    async def _start(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Start) -> Result:
        existing = await q.active_story(tx, channel.key)
        if existing is not None:
            raise UserError(f"A story is already running here: “{existing.title}”. Finish it with /story end first.")
        title = self._check_length(cmd.title or DEFAULT_TITLE, self.config.story.max_title_chars, "The title")
        opening = self._check_length(cmd.opening or "", self.config.story.max_passage_chars, "The opening")
        mode = (cmd.mode or c.Mode.parse(self.config.story.default_mode)).value
        rating = cmd.rating or ContentRating(self.config.story.default_rating)
        if rating == ContentRating.MATURE and not channel.age_restricted:
            raise UserError(
                "A story rated mature needs a channel for adults (on Discord an age-restricted channel; on Slack "
                "one listed in slack.mature_channels; the console with console.mature). Start it with rating:teen "
                "or rating:general here."
            )
        now = self.clock()
        story = Story(
            channel_key=channel.key,
            platform=channel.platform,
            workspace=channel.workspace,
            channel=channel.channel,
            thread=channel.thread,
            title=title,
            genre=cmd.genre,
            mode=mode,
            rating=rating,
            starter_id=actor.user_id,
            starter_name=actor.name,
            settings={},
            turn_started_at=now,
            created_at=now,
        )
        tx.add(story)
        await tx.flush()
        await self._ensure_participant(tx, story, actor)
        passage = job = None
        if opening:
            passage = await self._add_passage(tx, story, actor, opening)
            if mode == c.Mode.ALTERNATE.value:
                job = await self._queue_bot_reply(tx, story, actor) or None
            elif mode == c.Mode.ROUND_ROBIN.value:
                story.turn_index = 1  # the starter has had their turn
        genre = f" ({cmd.genre})" if cmd.genre else ""
        next_step = {
            c.Mode.ALTERNATE.value: "Write with /story add <text>; the bot answers each passage.",
            c.Mode.ROUND_ROBIN.value: "Type /story join to take part; turns go in join order, the bot after each round.",
            c.Mode.FREE.value: "Anyone writes with /story add; /story continue asks the bot.",
        }[mode]
        return Result(
            f"📖 {actor.name} started “{title}”{genre}, {mode} mode, rated {rating}. {next_step}",
            story_id=story.id,
            passage=await self._view(tx, passage) if passage else None,
            job_id=job.id if job else None,
        )

    @RULES.handles(c.Add)
    async def _add(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Add) -> Result:
        story = await self._story(tx, channel)
        text = self._check_length(cmd.text, self.config.story.max_passage_chars, "Your passage")
        if not text:
            raise UserError("Your passage is empty. Type /story add <text>.")
        await self._check_rate(tx, story, actor)
        await self._refuse_while_voting(tx, story, "write your passage")
        job: GenerationJob | Literal[False] | None = None
        if story.mode == c.Mode.ROUND_ROBIN.value:
            if await self._take_round_robin_turn(tx, story, actor):
                job = await self._queue_bot_reply(tx, story, actor)
            passage = await self._add_passage(tx, story, actor, text)
        else:
            passage = await self._add_passage(tx, story, actor, text)
            if story.mode == c.Mode.ALTERNATE.value and await q.open_job(tx, story.id) is None:
                job = await self._queue_bot_reply(tx, story, actor)
        story.turn_started_at = self.clock()
        view = await self._view(tx, passage)
        busy = " The bot is busy with other channels; type /story continue in a moment." if job is False else ""
        return Result(
            f"Passage {view.number} added.{busy}",
            story_id=story.id,
            passage=view,
            job_id=job.id if job else None,
        )

    async def _queue_bot_reply(self, tx: AsyncSession, story: Story, actor: Actor) -> GenerationJob | Literal[False]:
        """The bot's answer to a passage; ``False`` when the queue is full (the passage stays)."""
        try:
            return await self._queue_job(tx, story, actor)
        except BusyError:
            return False

    @RULES.handles(c.Continue)
    async def _continue(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Continue) -> Result:
        story = await self._story(tx, channel)
        direction = self._check_length(cmd.direction or "", self.config.story.max_note_chars, "The direction")
        await self._refuse_while_voting(tx, story, "ask for the next passage")
        if await q.open_job(tx, story.id) is not None:
            raise UserError("The bot is already writing; its passage is on the way.")
        await self._check_rate(tx, story, actor)
        job = await self._queue_job(tx, story, actor, direction=direction or None)
        return Result("The bot is writing…", story_id=story.id, job_id=job.id)

    @RULES.handles(c.Retry)
    async def _retry(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Retry) -> Result:
        story = await self._story(tx, channel)
        await self._refuse_while_voting(tx, story, "retry")
        last = await q.last_canonical_passage(tx, story.id)
        if last is None or last.author_kind != AuthorKind.BOT:
            whose = f"{last.author_name}'s" if last else "nobody's"
            raise UserError(f"The last passage is {whose}, not the bot's: nothing to retry. Try /story continue.")
        await self._check_rate(tx, story, actor)
        cancelled = await self._cancel_open_jobs(tx, story.id)
        job = await self._queue_job(tx, story, actor, kind=JobKind.RETRY, direction=last.direction, replaces=last)
        return Result(
            "The bot is rewriting its last passage (the old one is kept).",
            story_id=story.id,
            job_id=job.id,
            cancelled_job_ids=cancelled,
        )

    @RULES.handles(c.Undo)
    async def _undo(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Undo) -> Result:
        story = await self._story(tx, channel)
        if (voting := await self._open_vote(tx, story)) is not None:
            return await self._withdraw_vote(tx, story, voting, actor)
        last = await q.last_canonical_passage(tx, story.id)
        if last is None:
            raise UserError("There is nothing to undo yet.")
        owner = last.requested_by_id if last.author_kind == AuthorKind.BOT else last.author_id
        if owner != actor.user_id and not self._is_moderator(story, actor):
            raise UserError(
                f"The last passage is {last.author_name}'s; only its author, the starter or a moderator can undo it."
            )
        number = await q.passage_number(tx, story.id, last.seq)
        last.status = PassageStatus.UNDONE
        last.changed_by_id = actor.user_id
        last.changed_at = self.clock()
        cancelled = await self._cancel_open_jobs(tx, story.id)
        if story.mode == c.Mode.ROUND_ROBIN.value and last.author_kind == AuthorKind.HUMAN:
            people = list(await q.participants(tx, story.id))
            story.turn_index = next((i for i, p in enumerate(people) if p.user_id == last.author_id), 0)
            story.turn_started_at = self.clock()
        return Result(
            f"Withdrew passage {number} by {last.author_name} (kept in the archive).",
            story_id=story.id,
            cancelled_job_ids=cancelled,
        )

    @RULES.handles(c.Rate)
    async def _rate(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Rate) -> Result:
        """Anyone in the channel rates any of the bot's passages still in the story, once: voting
        again changes their vote. The answer is private; the counts show on the passage itself."""
        story = await self._story(tx, channel)
        passage = await self._passage_to_rate(tx, story, cmd)
        vote = await q.vote_of(tx, passage.id, actor.user_id)
        if vote is not None and vote.value == cmd.vote.points:
            view = await self._view(tx, passage)
            return Result(
                f"You already rated passage {view.number} {cmd.vote.emoji} ({view.votes}).",
                private=True,
                story_id=story.id,
            )
        now = self.clock()
        if vote is None:
            tx.add(
                PassageVote(
                    passage_id=passage.id,
                    voter_id=actor.user_id,
                    voter_name=actor.name,
                    value=cmd.vote.points,
                    created_at=now,
                )
            )
        else:
            vote.value, vote.voter_name, vote.changed_at = cmd.vote.points, actor.name, now
        await tx.flush()
        view = await self._view(tx, passage)
        changed = "changed your rating of" if vote is not None else "rated"
        return Result(
            f"You {changed} passage {view.number} {cmd.vote.emoji} ({view.votes}).",
            private=True,
            story_id=story.id,
            passage=view,
            message_ref=await self._message_showing(tx, passage),
        )

    async def _passage_to_rate(self, tx: AsyncSession, story: Story, cmd: c.Rate) -> Passage:
        """The passage a rating names: by id (a button), by its number, else the bot's last one."""
        if cmd.passage_id is not None:
            passage = await tx.get(Passage, cmd.passage_id)
            if passage is None or passage.story_id != story.id:
                raise UserError("That passage is not part of the story running here, so it cannot be rated.")
        elif cmd.number is not None:
            passage = await self._numbered_passage(tx, story, cmd.number)
        else:
            found = await q.last_canonical_passage(tx, story.id, author_kind=AuthorKind.BOT)
            if found is None:
                raise UserError("The bot has not written a passage in this story yet, so there is nothing to rate.")
            passage = found
        if passage.status == PassageStatus.HIDDEN:
            raise UserError("A moderator hid that passage, so it cannot be rated.")
        if passage.author_kind != AuthorKind.BOT:
            raise UserError(f"That passage is {passage.author_name}'s; only the bot's passages are rated.")
        if passage.status != PassageStatus.CANONICAL:
            raise UserError("That passage was withdrawn (undone or retried away), so it can no longer be rated.")
        return passage

    @RULES.handles(c.Join)
    async def _join(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Join) -> Result:
        story = await self._story(tx, channel)
        person = await q.participant(tx, story.id, actor.user_id)
        if person is not None and person.active:
            raise UserError("You are already taking part.")
        before = list(await q.participants(tx, story.id))
        if before:  # the turn stays with whoever holds it: pinned before the order grows
            turn = self._turn_now(story, before)
            story.turn_index, story.turn_started_at = turn.index, turn.began
        position = await q.next_participant_position(tx, story.id)
        if person is None:
            tx.add(
                Participant(
                    story_id=story.id, user_id=actor.user_id, name=actor.name, position=position, joined_at=self.clock()
                )
            )
        else:
            person.active, person.position, person.left_at, person.name = True, position, None, actor.name
        await tx.flush()
        people = list(await q.participants(tx, story.id))
        order = ", ".join(p.name for p in people)
        return Result(f"{actor.name} joined “{story.title}”. Turn order: {order}.", story_id=story.id)

    @RULES.handles(c.Leave)
    async def _leave(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Leave) -> Result:
        story = await self._story(tx, channel)
        people = list(await q.participants(tx, story.id))
        index = next((i for i, p in enumerate(people) if p.user_id == actor.user_id), None)
        if index is None:
            raise UserError("You are not taking part in this story.")
        self._keep_turn_after_leaving(story, people, index)
        people[index].active = False
        people[index].left_at = self.clock()
        return Result(f"{actor.name} left “{story.title}”.", story_id=story.id)

    @RULES.handles(c.Memory)
    async def _memory(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Memory) -> Result:
        return await self._story_text(
            tx,
            channel,
            "memory",
            cmd.text,
            self.config.story.max_memory_chars,
            "Memory",
            "facts the bot should always know",
        )

    @RULES.handles(c.Note)
    async def _note(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Note) -> Result:
        return await self._story_text(
            tx,
            channel,
            "note",
            cmd.text,
            self.config.story.max_note_chars,
            "Author's note",
            "style, tone, what to aim for",
        )

    async def _story_text(
        self, tx: AsyncSession, channel: ChannelRef, field: str, text: str | None, limit: int, label: str, hint: str
    ) -> Result:
        """Show (``text`` None), clear ("") or set the story's memory or author's note."""
        story = await self._story(tx, channel)
        if text is None:
            shown = getattr(story, field) or f"(empty) — set it with /story {field} <{hint}>"
            return Result(f"{label}: {shown}", private=True, story_id=story.id)
        value = self._check_length(text, limit, f"The {label.lower()}")
        setattr(story, field, value)
        return Result(f"{label} {'updated' if value else 'cleared'}.", story_id=story.id)

    @RULES.handles(c.LoreAdd)
    async def _lore_add(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.LoreAdd) -> Result:
        story = await self._story(tx, channel)
        text = self._check_length(cmd.text, self.config.story.max_lore_chars, "The lore entry")
        if len(await q.lore_entries(tx, story.id)) >= self.config.story.max_lore_entries:
            raise UserError(
                f"This story has {self.config.story.max_lore_entries} lore entries, the limit. "
                "Remove one with /story lore remove <number>."
            )
        number = await q.next_lore_number(tx, story.id)
        tx.add(
            LoreEntry(
                story_id=story.id,
                number=number,
                keys=list(cmd.keys),
                text=text,
                author_id=actor.user_id,
                created_at=self.clock(),
            )
        )
        return Result(f"Lore #{number} added for {', '.join(cmd.keys)}.", story_id=story.id)

    @RULES.handles(c.LoreList)
    async def _lore_list(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.LoreList) -> Result:
        story = await self._story(tx, channel, lock=False)
        entries = await q.lore_entries(tx, story.id)
        if not entries:
            return Result(
                "No lore yet. Add some with /story lore add <key,key> <text>.", private=True, story_id=story.id
            )
        lines = [f"#{e.number} [{', '.join(e.keys)}] {e.text}" for e in entries]
        return Result("Lore:\n" + "\n".join(lines), private=True, story_id=story.id)

    @RULES.handles(c.LoreRemove)
    async def _lore_remove(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.LoreRemove) -> Result:
        story = await self._story(tx, channel)
        entry = next((e for e in await q.lore_entries(tx, story.id) if e.number == cmd.entry_id), None)
        if entry is None:
            raise UserError(f"There is no lore entry #{cmd.entry_id}. See /story lore list.")
        if entry.author_id != actor.user_id:
            self._require_moderator(story, actor, "remove someone else's lore")
        entry.removed = True
        return Result(f"Lore #{entry.number} removed.", story_id=story.id)

    @RULES.handles(c.Settings)
    async def _settings(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Settings) -> Result:
        story = await self._story(tx, channel)
        changes = cmd.as_dict
        if not changes:
            return Result(self._describe_settings(story), private=True, story_id=story.id)
        self._require_moderator(story, actor, "change the settings")
        model = changes.get("model")
        allowed = self.config.model_choices
        if model is not None and model not in allowed:
            raise UserError(f"model must be one of: {', '.join(allowed)}.")
        length = changes.get("length")
        if length is not None:
            if not isinstance(length, int):  # the parser converts length to a whole number
                raise TypeError(f"the length setting must be an int, got {length!r}")
            writer = str(model or self.story_settings(story).model)
            longest = self._longest_passage(writer)
            if longest is not None and length > longest:
                raise UserError(
                    f"length can be at most {longest} with {writer}: the model must hold the story "
                    f"and the passage together. Try length:{longest}."
                )
        rating = changes.pop("rating", None)
        cancelled: tuple[int, ...] = ()
        if rating is not None:
            cancelled = await self._change_rating(tx, story, channel, actor, c.ContentRating(str(rating)))
        mode = changes.pop("mode", None)
        if mode is not None:
            if not isinstance(mode, str):  # the parser converts mode to a Mode, which is a str
                raise TypeError(f"the mode setting must be a Mode, got {mode!r}")
            story.mode = c.Mode(mode).value
            story.turn_index, story.turn_started_at = 0, self.clock()
        story.settings = {**story.settings, **changes}
        return Result(
            "Settings updated. " + self._describe_settings(story), story_id=story.id, cancelled_job_ids=cancelled
        )

    async def _change_rating(
        self, tx: AsyncSession, story: Story, channel: ChannelRef, actor: Actor, rating: ContentRating
    ) -> tuple[int, ...]:
        """A new rating, recorded in the audit log; mature only where the channel is for adults.
        A stricter one withdraws the bot's turn in progress, which is checked against the old one;
        returns the turns withdrawn."""
        if rating == story.rating:
            return ()
        if rating == ContentRating.MATURE and not channel.age_restricted:
            raise UserError("A story rated mature needs a channel for adults; this one is not marked so.")
        self._audit(
            tx, story.channel_key, actor, ModerationAction.RATING, f"{story.rating} → {rating}", story_id=story.id
        )
        stricter = _STRICTNESS.index(rating) < _STRICTNESS.index(ContentRating(story.rating))
        story.rating = rating
        return await self._cancel_open_jobs(tx, story.id) if stricter else ()

    def _describe_settings(self, story: Story) -> str:
        values = self.story_settings(story).as_dict()
        shown = ", ".join(f"{key}:{value}" for key, value in values.items())
        return f"mode:{story.mode}, rating:{story.rating}, {shown}"

    @RULES.handles(c.Status)
    async def _status(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Status) -> Result:
        story = await self._story(tx, channel, lock=False)
        numbered = await q.numbered_passages(tx, story.id)
        passages = [p for p in numbered if p.status == PassageStatus.CANONICAL]
        words = sum(word_count(p.text) for p in passages)
        people = list(await q.participants(tx, story.id))
        contributors = sorted({p.author_name for p in passages})
        lines = [
            f"“{story.title}” — {story.mode} mode, rated {story.rating}, {story_size(len(passages), words)}.",
            f"Contributors: {', '.join(contributors) if contributors else 'none yet'}.",
        ]
        if branched := await self._branch_line(tx, story):
            lines.append(branched)
        lines.append(f"Written by {self.config.writer(self.story_settings(story).model)}.")
        if turn := self._turn_text(story, people):
            lines.append(turn)
        if (job := await q.open_job(tx, story.id)) is not None:
            lines.append(await self._open_turn_line(tx, job))
        recent = numbered[-STATUS_RECENT_PASSAGES:]
        votes = await q.vote_counts(tx, [p.id for p in recent])
        for number, passage in enumerate(recent, start=len(numbered) - len(recent) + 1):
            if passage.status == PassageStatus.HIDDEN:
                lines.append(f"{number}. (hidden by a moderator)")
                continue
            excerpt = passage.text if len(passage.text) <= 200 else passage.text[:199] + "…"
            counts = str(Votes(*votes.get(passage.id, (0, 0))))
            lines.append(f"{number}. {passage.author_name}: {excerpt}" + (f" ({counts})" if counts else ""))
        return Result("\n".join(lines), private=True, story_id=story.id)

    @RULES.handles(c.End)
    async def _end(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.End) -> Result:
        story = await self._story(tx, channel)
        self._require_moderator(story, actor, "end the story")
        self._audit(tx, story.channel_key, actor, ModerationAction.END, story_id=story.id)
        cancelled = await self._cancel_open_jobs(tx, story.id)
        passages = await q.canonical_passages(tx, story.id)
        story.status = StoryStatus.FINISHED
        story.finished_at = self.clock()
        words = sum(word_count(p.text) for p in passages)
        return Result(
            f"The End. “{story.title}” (story #{story.id}) is finished: {story_size(len(passages), words)}. "
            "See it again with /story list." + archive_note(self.config.web.public_url, story),
            story_id=story.id,
            cancelled_job_ids=cancelled,
        )

    @RULES.handles(c.Help)
    async def _help(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Help) -> Result:
        if not cmd.topic:
            return Result(c.HELP_TEXT, private=True)
        try:
            return Result(c.usage(cmd.topic), private=True)
        except c.ParseError as error:  # adapters may build Help(topic) without the parser
            raise UserError(str(error)) from None
