"""The recap: "the story so far", a summary of the passages that no longer fit the model's context.

Why: a long story's oldest passages fall out of the prompt (``bot.context._window`` cuts them a
step of passages at a time), and with them what happened there. After a turn whose prompt left
out passages the recap does not cover yet, the queue asks for a recap job (``JobBook.queue_recap``):
low priority (claimed only when no turn waits), written by the story's own model from the
previous recap and the passages that fell out (``recap_source``, ``recap_prompt``), judged by the
content checks like a passage, and stored as a new version (``story_recaps``: a history, the
latest is current). The prompt puts it after the memory, so it changes only when the cut moves:
between two recaps the prompt's head stays byte-stable and the prefix cache keeps working.

``/story recap`` (``RecapRules``): shown privately with a catch-up of where the story stands, for
a latecomer; ``/story recap <text>`` replaces it and ``/story recap clear`` removes it, both
said in the channel. A person's recap keeps the passages the replaced one covered, so the bot's
next recap starts from it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.context import PromptFrame, StorySnapshot
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.language import ENGLISH, LANGUAGES, Language, language_of
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from storage import queries as q
from storage.models import AuthorKind, Passage, Story, StoryRecap

RECAPS: Handlers[RecapRules] = Handlers()

LATEST_CHARS = 300  # the catch-up quotes the latest passage up to this many characters
SUMMARY_ASK = (
    "Summarise the story so far in one short paragraph: who is in it, where they are, "
    "and what has happened. Write only the summary."
)


def summary_request(language: Language | None) -> str:
    """What the model is asked for, naming the story's language when it is not English."""
    if language is None or language is ENGLISH:
        return SUMMARY_ASK
    return f"The story is written in {language.name}: write in {language.name}. {SUMMARY_ASK}"


LONGEST_SUMMARY_REQUEST = max((summary_request(language) for language in LANGUAGES), key=len)  # for budgets


def recap_source(story: StorySnapshot, first: int, budget: int, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    """What the model summarises: the title, the previous recap and the passages it does not cover
    yet, up to ``first`` (where the turn's prompt now starts), as many as fit ``budget`` tokens.
    Returns the text and how many passages it holds; the rest go into the next recap."""
    text = f"Title: {story.title}\n\n" + (f"[The story so far: {story.recap.strip()}]\n\n" if story.recap else "")
    taken = 0
    for passage in story.passages[story.recap_covers : first]:
        longer = f"{text}{passage.strip()}\n\n"
        if count_tokens(longer) > budget:
            break
        text, taken = longer, taken + 1
    return text, taken


def recap_prompt(frame: PromptFrame, source: str) -> str:
    """The whole prompt for a recap: in a chat model's frame, the summary asked for in the person's
    turn; for a plain completion model, the request follows the story."""
    request = summary_request(language_of(source))
    if frame.head or frame.tail:
        return frame.around(source, request)
    return f"{source.rstrip()}\n\n{request}\n\n"


class RecapRules(StoryRules):
    """``/story recap``: show (with a catch-up), replace or clear the story so far."""

    @RECAPS.handles(c.Recap)
    async def _recap(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Recap) -> Result:
        story = await self._story(tx, channel, lock=cmd.text is not None)
        recap = await q.current_recap(tx, story.id)
        if cmd.text is None:
            return Result(await self._catch_up(tx, story, recap), private=True, story_id=story.id)
        if not cmd.text and (recap is None or not recap.text):
            raise UserError("This story has no recap to clear.")
        text = self._check_length(cmd.text, self.config.story.max_memory_chars, "The recap") if cmd.text else ""
        tx.add(
            StoryRecap(
                story_id=story.id,
                text=text,
                covers_up_to=recap.covers_up_to if recap is not None and text else 0,
                author_kind=AuthorKind.HUMAN,
                author_id=actor.user_id,
                author_name=actor.name,
                created_at=self.clock(),
            )
        )
        if text:
            return Result(f"{actor.name} replaced the recap (the story so far).", story_id=story.id)
        return Result(
            f"{actor.name} cleared the recap; the bot writes a new one once passages fall out of what it reads.",
            story_id=story.id,
        )

    async def _catch_up(self, tx: AsyncSession, story: Story, recap: StoryRecap | None) -> str:
        """The recap, who wrote it and what it covers, then where the story stands since."""
        total = len(await q.numbered_passages(tx, story.id))
        lines = [f"“{story.title}”: {_count(total)} so far."]
        covered = 0
        if recap is not None and recap.text:
            covered = await q.passage_number(tx, story.id, recap.covers_up_to) if recap.covers_up_to else 0
            by = "the bot" if recap.author_kind == AuthorKind.BOT else recap.author_name
            span = f", up to passage {covered}" if covered else ""
            lines.append(f"The story so far (by {by}{span}): {recap.text}")
        else:
            lines.append("No recap yet: the bot writes one once the oldest passages no longer fit what it reads.")
        latest = await q.last_canonical_passage(tx, story.id)
        if total > covered and latest is not None:
            lines.append(f"Since then: passages {covered + 1}–{total}." if covered else "")
            lines.append(_latest(await q.passage_number(tx, story.id, latest.seq), latest))
        return "\n".join(line for line in lines if line)


def _count(passages: int) -> str:
    return "1 passage" if passages == 1 else f"{passages} passages"


def _latest(number: int, latest: Passage) -> str:
    words = " ".join(latest.text.split())
    quoted = words if len(words) <= LATEST_CHARS else words[: LATEST_CHARS - 1].rstrip() + "…"
    return f"The latest, passage {number} by {latest.author_name}: “{quoted}”"
