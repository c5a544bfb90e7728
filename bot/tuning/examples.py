"""What an adapter learns from: finished stories and text files, split by story, framed as the bot sees them.

A story is its canonical passages, oldest first. Every passage is learned from (a *target*)
except a bot passage people turned down (``bot.feedback.signals.turned_down``: retried away,
undone, or more 👎 than 👍) and a passage that is only a chapter heading (the bot is never to
write one). A turned-down passage that is still canonical (rated down, but the story went on
from it) stays in the context of the passages after it: the story as people wrote it on.

Each target becomes one example: the context is the bot's whole prompt at that point of the
story (``build_prompt`` under the ``--context`` budget, in the model's prompt frame) and the
target is the passage. A bot passage written with ``/story continue <direction>`` keeps its
direction in its prompt, as the bot had it. Memory, author's note and lore are the story's
last ones (the database keeps no history of them).

The held-out stories are chosen whole (never some passages of a story), at random with a seed,
so the same stories and seed always give the same split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import StoryConfig
from bot.context import LoreItem, PromptFrame, PromptLimits, StorySnapshot, build_prompt
from bot.export.model import chapter_title
from bot.feedback.signals import turned_down
from bot.identity import ChannelRef
from bot.results import UserError
from storage import queries as q
from storage.database import Database
from storage.models import AuthorKind, PassageStatus, Story, StoryStatus

# Below this many tokens for the story itself, --context leaves the model nothing to read.
MIN_STORY_TOKENS = 32
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True, slots=True)
class StoryPassage:
    text: str
    target: bool  # learned from; otherwise context only
    direction: str | None = None  # the /story continue direction a bot passage was written with


@dataclass(frozen=True, slots=True)
class SourceStory:
    """One story to learn from: its canonical passages, each marked whether it is a target."""

    source: str  # "#12" for a stored story, the path for a text file
    title: str
    passages: tuple[StoryPassage, ...]
    genre: str | None = None
    memory: str = ""
    note: str = ""
    lore: tuple[LoreItem, ...] = ()
    channel: str = ""  # the channel's key ("" for a text file)
    turned_down: int = 0  # bot passages left out: retried away, undone or rated down

    @property
    def targets(self) -> int:
        return sum(p.target for p in self.passages)

    @property
    def headings(self) -> int:
        """Canonical passages that are only a chapter heading (context, not targets)."""
        return sum(chapter_title(p.text) is not None for p in self.passages)

    @property
    def label(self) -> str:
        """``#12 “Title”`` or the file's path, for the summaries."""
        return f"{self.source} “{self.title}”" if self.source.startswith("#") else self.source


@dataclass(frozen=True, slots=True)
class Example:
    story: str  # SourceStory.source
    context: str  # the bot's prompt for this point of the story, framed
    target: str  # the passage to learn


@dataclass(frozen=True, slots=True)
class Selection:
    """What ``--story``, ``--channel`` and ``--text`` chose; none of them = every finished story."""

    story_ids: tuple[int, ...] = ()
    channels: tuple[ChannelRef, ...] = ()
    text_files: tuple[Path, ...] = ()

    @property
    def reads_database(self) -> bool:
        return bool(self.story_ids or self.channels or not self.text_files)


def stories_counted(number: int) -> str:
    """``1 story``, ``3 stories``."""
    return f"{number} {'story' if number == 1 else 'stories'}"


def learnable(text: str) -> bool:
    """Prose to learn from: not empty, not only a chapter heading."""
    return bool(text.strip()) and chapter_title(text) is None


async def read_stories(db: Database, selection: Selection) -> list[SourceStory]:
    """The finished stories ``selection`` names (all of them when it names none), oldest first.

    An unknown or unfinished ``--story``, and a ``--channel`` without finished stories, are
    one-line ``UserError``s: a typo should not quietly train on less.
    """

    async def read(tx: AsyncSession) -> list[SourceStory]:
        stories = await q.all_stories(tx)
        finished = [s for s in stories if s.status == StoryStatus.FINISHED]
        chosen: dict[int, Story] = {}
        by_id = {s.id: s for s in stories}
        for story_id in selection.story_ids:
            story = by_id.get(story_id)
            if story is None:
                raise UserError(f"there is no story #{story_id}; storybot list shows them.")
            if story.status != StoryStatus.FINISHED:
                raise UserError(
                    f"story #{story_id} is not finished: only finished stories are learned from (/story end finishes it)."
                )
            chosen[story.id] = story
        for channel in selection.channels:
            found = [s for s in finished if in_channel(s, channel)]
            if not found:
                raise UserError(f"there are no finished stories in {channel.key}; storybot list shows them.")
            chosen.update((s.id, s) for s in found)
        if not (selection.story_ids or selection.channels):
            chosen = {s.id: s for s in finished}
        return [await _source_story(tx, chosen[story_id]) for story_id in sorted(chosen)]

    return await db.transaction(read, write=False)


def in_channel(story: Story, channel: ChannelRef) -> bool:
    """The story ran in ``channel``, or in a thread under it when ``channel`` names no thread."""
    if story.channel_key == channel.key:
        return True
    return not channel.thread and (story.platform, story.workspace, story.channel) == (
        channel.platform,
        channel.workspace,
        channel.channel,
    )


async def _source_story(tx: AsyncSession, story: Story) -> SourceStory:
    rows = await q.all_passages(tx, story.id)
    votes = await q.vote_counts(tx, [row.id for row in rows if row.author_kind == AuthorKind.BOT])
    passages = []
    left_out = 0
    for row in rows:
        is_bot = row.author_kind == AuthorKind.BOT
        down = is_bot and turned_down(row.status, *votes.get(row.id, (0, 0)))
        left_out += down
        if row.status == PassageStatus.CANONICAL:
            passages.append(
                StoryPassage(
                    row.text, target=not down and learnable(row.text), direction=row.direction if is_bot else None
                )
            )
    lore = tuple(LoreItem(tuple(entry.keys), entry.text) for entry in await q.lore_entries(tx, story.id))
    return SourceStory(
        source=f"#{story.id}",
        title=story.title,
        passages=tuple(passages),
        genre=story.genre,
        memory=story.memory,
        note=story.note,
        lore=lore,
        channel=story.channel_key,
        turned_down=left_out,
    )


def read_text_stories(paths: Sequence[Path]) -> list[SourceStory]:
    """Each file is one story: its paragraphs (separated by blank lines) are its passages, its
    name without the extension its title. A file that cannot be read or holds no text is a
    one-line ``UserError``."""
    stories = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text.") from None
        except OSError as error:
            raise UserError(f"cannot read {path}: {error.strerror or error}.") from None
        paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")) if p.strip()]
        if not paragraphs:
            raise UserError(f"{path} holds no text: a story file is paragraphs separated by blank lines.")
        passages = tuple(StoryPassage(p, target=learnable(p)) for p in paragraphs)
        stories.append(SourceStory(source=str(path), title=path.stem, passages=passages))
    return stories


def split_by_story(
    stories: Sequence[SourceStory], holdout: float, seed: int
) -> tuple[list[SourceStory], list[SourceStory]]:
    """(training, held out): ``holdout`` of the stories that have targets (at least one, and
    never all) held out whole, chosen at random with ``seed``; each list in the given order."""
    usable = [s for s in stories if s.targets]
    if len(usable) < 2:
        found = "no story" if not usable else "only one story"
        raise UserError(
            f"fine-tuning needs at least two stories with passages to learn from (one is held out to measure "
            f"the adapter on), and {found} was found; add finished stories or text files."
        )
    order = list(range(len(usable)))
    random.Random(seed).shuffle(order)
    held_count = min(max(1, round(holdout * len(usable))), len(usable) - 1)
    held = set(order[:held_count])
    return (
        [s for i, s in enumerate(usable) if i not in held],
        [s for i, s in enumerate(usable) if i in held],
    )


def prompt_limits(
    context_tokens: int, frame: PromptFrame, story: StoryConfig, count_tokens: Callable[[str], int]
) -> PromptLimits:
    """The bot's prompt limits for a context of ``context_tokens`` (frame included)."""
    overhead = count_tokens(frame.overhead())
    budget = context_tokens - overhead
    if budget < MIN_STORY_TOKENS:
        raise UserError(
            f"--context {context_tokens} leaves no room for the story: this model's prompt frame alone takes "
            f"{overhead} tokens; give at least {overhead + MIN_STORY_TOKENS}."
        )
    return PromptLimits(budget_tokens=budget, lore_max_tokens=story.lore_max_tokens, note_depth=story.note_depth)


def story_examples(
    story: SourceStory, frame: PromptFrame, limits: PromptLimits, count_tokens: Callable[[str], int]
) -> list[Example]:
    """One example per target passage: the bot's prompt for that point of the story, and the passage."""
    texts = tuple(p.text for p in story.passages)
    examples = []
    for index, passage in enumerate(story.passages):
        if not passage.target:
            continue
        snapshot = StorySnapshot(
            title=story.title,
            genre=story.genre,
            memory=story.memory,
            note=story.note,
            passages=texts[:index],
            lore=story.lore,
            direction=passage.direction,
        )
        context = frame.around(build_prompt(snapshot, limits, count_tokens))
        examples.append(Example(story.source, context, passage.text.strip()))
    return examples
