"""The moderators' commands: report a passage, hide and unhide one, and the channel's own word list.

Every change is written to the audit log (``moderation_log``) in the same transaction, with who
did it; ``storybot audit`` and the JSON export show it. A report also reaches the moderators
(``Result.alert``: the platform sends it to its moderators' channel, or to the story's starter).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.config import ConfigError
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import ModeratorAlert, Result, UserError
from bot.rule_base import StoryRules
from bot.safety.wordlist import parse_entry
from storage import queries as q
from storage.models import ChannelWord, ModerationAction, PassageStatus, WordRule

MODERATION: Handlers[ModerationRules] = Handlers()

MAX_REASON_CHARS = 500
REPORTS_PER_MINUTE = 3  # per person: a report reaches people, so it must not become a flood
EXCERPT_CHARS = 300


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


class ModerationRules(StoryRules):
    """The moderators' commands, each one transaction like every rule."""

    @MODERATION.handles(c.Report)
    async def _report(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Report) -> Result:
        """Anyone may flag a passage; the moderators get it, the reporter a private thank-you."""
        story = await self._story(tx, channel)
        passage = await self._numbered_passage(tx, story, cmd.number)
        reason = cmd.reason.strip()
        if len(reason) > MAX_REASON_CHARS:
            raise UserError(f"The reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}.")
        since = self.clock() - timedelta(minutes=1)
        if await q.recent_actions(tx, actor.user_id, ModerationAction.REPORT, since) >= REPORTS_PER_MINUTE:
            raise UserError(f"At most {REPORTS_PER_MINUTE} reports a minute; the moderators have the others.")
        self._audit(
            tx, story.channel_key, actor, ModerationAction.REPORT, reason, story_id=story.id, passage_id=passage.id
        )
        why = f" Reason: {reason.rstrip('.')}." if reason else ""
        # The reporter is not named: the alert may reach the very person reported (the starter,
        # when no moderators' channel is set). The audit log keeps who it was.
        alert = ModeratorAlert(
            f"⚑ Someone reported passage {cmd.number} of “{story.title}” (story #{story.id}, by "
            f"{passage.author_name}): “{_excerpt(passage.text)}”.{why} Hide it with /story hide {cmd.number}.",
            starter_id=story.starter_id,
        )
        return Result(
            f"Thank you: passage {cmd.number} was reported to the story's moderators.",
            private=True,
            story_id=story.id,
            alert=alert,
        )

    @MODERATION.handles(c.Hide)
    async def _hide(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Hide) -> Result:
        story = await self._story(tx, channel)
        self._require_moderator(story, actor, "hide a passage")
        passage = await self._numbered_passage(tx, story, cmd.number)
        if passage.status == PassageStatus.HIDDEN:
            raise UserError(f"Passage {cmd.number} is already hidden; /story unhide {cmd.number} puts it back.")
        passage.status = PassageStatus.HIDDEN
        passage.changed_by_id, passage.changed_at = actor.user_id, self.clock()
        cancelled = await self._cancel_open_jobs(tx, story.id)  # a turn written after it read it
        self._audit(tx, story.channel_key, actor, ModerationAction.HIDE, story_id=story.id, passage_id=passage.id)
        return Result(
            f"{actor.name} hid passage {cmd.number} (by {passage.author_name}): it is out of the story, its "
            "exports and what the bot reads, and kept for the moderators.",
            story_id=story.id,
            cancelled_job_ids=cancelled,
        )

    @MODERATION.handles(c.Unhide)
    async def _unhide(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Unhide) -> Result:
        story = await self._story(tx, channel)
        self._require_moderator(story, actor, "unhide a passage")
        passage = await self._numbered_passage(tx, story, cmd.number)
        if passage.status != PassageStatus.HIDDEN:
            raise UserError(f"Passage {cmd.number} is not hidden.")
        passage.status = PassageStatus.CANONICAL
        passage.changed_by_id, passage.changed_at = actor.user_id, self.clock()
        self._audit(tx, story.channel_key, actor, ModerationAction.UNHIDE, story_id=story.id, passage_id=passage.id)
        return Result(f"{actor.name} put passage {cmd.number} back in the story.", story_id=story.id)

    @MODERATION.handles(c.Words)
    async def _words(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Words) -> Result:
        """The channel's list is the channel's, not one story's: only platform moderators change it."""
        scope = channel.channel_key
        entries = {word.entry.casefold(): word for word in await q.channel_words(tx, scope)}
        if cmd.rule is None and not cmd.clear:
            if not entries:
                return Result("This channel has no words of its own: only the built-in lists apply.", private=True)
            banned = [w.entry for w in entries.values() if w.rule == WordRule.BAN]
            allowed = [w.entry for w in entries.values() if w.rule == WordRule.ALLOW]
            lines = [
                f"Banned here: {', '.join(banned)}." if banned else "",
                f"Allowed here: {', '.join(allowed)}." if allowed else "",
            ]
            return Result("\n".join(line for line in lines if line), private=True)
        if not actor.is_moderator:
            raise UserError("Only the channel's moderators can change its word list.")
        existing = entries.get(cmd.entry.casefold())
        if cmd.clear:
            if existing is None:
                raise UserError(f"“{cmd.entry}” is not on this channel's list; /story words shows it.")
            await tx.delete(existing)
            self._audit(tx, scope, actor, ModerationAction.CLEAR_WORD, f"{existing.rule} {existing.entry}")
            return Result(f"{actor.name} took “{existing.entry}” off this channel's word list.", private=True)
        assert cmd.rule is not None
        try:
            parse_entry(cmd.entry, "this channel's word list")
        except ConfigError as error:
            raise UserError(str(error)) from None
        if existing is not None:
            if existing.rule == cmd.rule:
                raise UserError(
                    f"“{cmd.entry}” is already {cmd.rule}ned here."
                    if cmd.rule == WordRule.BAN
                    else f"“{cmd.entry}” is already allowed here."
                )
            existing.rule, existing.by_id, existing.by_name, existing.created_at = (
                cmd.rule,
                actor.user_id,
                actor.name,
                self.clock(),
            )
        else:
            tx.add(
                ChannelWord(
                    scope=scope,
                    entry=cmd.entry,
                    rule=cmd.rule,
                    by_id=actor.user_id,
                    by_name=actor.name,
                    created_at=self.clock(),
                )
            )
        cancelled: tuple[int, ...] = ()
        story = await q.active_story(tx, channel.key, lock=True)
        if story is not None and cmd.rule == WordRule.BAN:  # the bot's turn in progress was checked without it
            cancelled = await self._cancel_open_jobs(tx, story.id)
        action = ModerationAction.BAN_WORD if cmd.rule == WordRule.BAN else ModerationAction.ALLOW_WORD
        self._audit(tx, scope, actor, action, cmd.entry)
        said = "banned" if cmd.rule == WordRule.BAN else "allowed"
        return Result(
            f"{actor.name} {said} a word in this channel's stories.", private=True, cancelled_job_ids=cancelled
        )
