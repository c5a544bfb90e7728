"""Choosing among the bot's alternatives ("swipes"): a retried passage is kept as an alternative,
and ``/story pick`` (the ◀ ▶ buttons under the latest bot passage) makes one of them the story's.

The alternatives for a place in the story are the bot's passage there and every passage linked to
it through retries (``Passage.replaces_id``, either way), numbered oldest first; the one in the
story is ``canonical``, the others ``superseded``. Picking swaps those two statuses, with who did
it and when, and writes nothing new, so numbers stay put and the feedback signals read the pick
as they read a retry: a passage picked away was turned down, one picked back is kept.

Only the bot's latest passage can be changed, and only while it is the story's last and no bot
turn is being written for the story: a pick never rewrites what someone has built on, nor what a
turn in progress is reading. The answer is the picker's alone; what everyone sees is the message
that shows the passage (``Result.message_ref``), redrawn with the one picked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from storage import queries as q
from storage.models import AuthorKind, Passage, PassageStatus

ALTERNATIVES: Handlers[AlternativeRules] = Handlers()

WRITTEN_SINCE = "Someone has written since; only the bot's latest passage, while it is the last, can be changed."
STALE = (
    "That message no longer shows the story's passage, so its buttons change nothing now; "
    "use the ones under the bot's latest passage."
)

T = TypeVar("T")


def retry_families(items: Sequence[T], key: Callable[[T], int], replaces: Callable[[T], int | None]) -> list[list[T]]:
    """``items`` (in story order) grouped by retries: each group holds a first try and every item
    linked to it through ``replaces``, however far, in story order; the groups come in the order
    of their first tries. A retry after a pick rewrites the picked one, so the links may branch.
    An item whose link leads outside ``items`` starts a group there. For the exports and the
    feedback data, which hold all of a story's passages at once (the rules read one place's
    alternatives from the database: ``storage.queries.alternatives``)."""
    by_key = {key(item): item for item in items}
    groups: dict[int, list[T]] = {}
    for item in items:
        first = item
        while (earlier := replaces(first)) is not None and earlier in by_key:
            first = by_key[earlier]
        groups.setdefault(key(first), []).append(item)
    return list(groups.values())


class AlternativeRules(StoryRules):
    """The rules for browsing and picking the bot's alternatives."""

    @ALTERNATIVES.handles(c.Pick)
    async def _pick(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Pick) -> Result:
        """Anyone may pick, as anyone may retry: alternative ``number`` of the bot's latest passage
        becomes the story's, and the one it replaces is kept beside it."""
        story = await self._story(tx, channel)
        last = await self._latest_bot_passage(tx, story.id, cmd.passage_id)
        await self._refuse_while_voting(tx, story, "pick")
        if await q.open_job(tx, story.id) is not None:
            raise UserError("The bot is writing a passage for this story; wait for it, then pick.")
        found = await q.alternatives(tx, last)
        count = len(found)
        if count < 2:
            raise UserError(
                "The bot's latest passage has no alternatives to pick from; /story retry writes one (and keeps it)."
            )
        if not 1 <= cmd.number <= count:
            raise UserError(f"The bot's latest passage has {count} alternatives; pick one from 1 to {count}.")
        chosen = found[cmd.number - 1]
        if chosen.id == last.id:
            number = await q.passage_number(tx, story.id, last.seq)
            return Result(
                f"Alternative {cmd.number} of {count} is already passage {number}.", private=True, story_id=story.id
            )
        # It was checked against the story as it was then: the rating or the channel's words may be
        # stricter now.
        standard = await self._standard(tx, channel, story.rating)
        if not (await self.checks.judge(chosen.text, standard)).passed:
            raise UserError(
                f"Alternative {cmd.number} does not pass this story's content checks now (rated {story.rating}), "
                "so it cannot be picked."
            )
        now = self.clock()
        last.status, last.changed_by_id, last.changed_at = PassageStatus.SUPERSEDED, actor.user_id, now
        chosen.status, chosen.changed_by_id, chosen.changed_at = PassageStatus.CANONICAL, actor.user_id, now
        await tx.flush()
        view = await self._view(tx, chosen)
        return Result(
            f"You picked alternative {cmd.number} of {count}: it is passage {view.number} now.",
            private=True,
            story_id=story.id,
            passage=view,
            message_ref=await self._message_showing(tx, chosen),
            picked=True,
        )

    async def _latest_bot_passage(self, tx: AsyncSession, story_id: int, shown_id: int | None) -> Passage:
        """The story's last passage, which must be the bot's; with ``shown_id`` (a button), it must be
        the one that button's message shows."""
        last = await q.last_canonical_passage(tx, story_id)
        if shown_id is not None and (last is None or last.id != shown_id):
            shown = await tx.get(Passage, shown_id)
            still_in_story = shown is not None and shown.status == PassageStatus.CANONICAL
            raise UserError(WRITTEN_SINCE if still_in_story else STALE)
        if last is not None and last.author_kind == AuthorKind.BOT:
            return last
        if await q.last_canonical_passage(tx, story_id, author_kind=AuthorKind.BOT) is None:
            raise UserError("The bot has not written a passage in this story yet, so there is nothing to pick.")
        raise UserError(WRITTEN_SINCE)
