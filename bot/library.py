"""The web archive's view of the stories: what ``storybot web`` may show, and to whom.

A story is public once it is finished and published (``/story publish``): then it is listed,
searchable, in the feed and readable by anyone. A share link (``/story share``) opens one story
to whoever holds it, published or not, finished or not, until its links are revoked; it lists
nothing. Every other story, and a wrong, tampered or revoked link, is "no such story": the
archive answers the same as for an id that never existed.

This is the core's side: plain data for the pages (``Card``, ``Listing``, ``Reading``, ``Found``),
read in one transaction each, and files from the export renderers. How it looks is the
adapter's (``adapters/web``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import migrated_database
from bot.config import Config
from bot.export import FORMATS, ExportOptions, RenderedFile, render
from bot.export.model import Chapter, Contributor, ExportStory, chapter_title
from bot.export.snapshot import load_story
from bot.share_links import link_secret, share_path, story_path, token_matches
from bot.words import word_count
from storage import library as lib
from storage import queries as q
from storage import search as index
from storage.database import Database
from storage.library import Place
from storage.models import Story
from storage.search import MARK_END, MARK_START, QueryError, SearchQuery

# The names the adapter needs from storage (adapters never import it).
__all__ = [
    "MARK_END",
    "MARK_START",
    "Card",
    "Found",
    "Library",
    "Listing",
    "Place",
    "QueryError",
    "Reading",
    "Stamp",
    "open_library",
]

PAGE_SIZE = 20
RENDERS_AT_ONCE = 2
FEED_SIZE = 30
SEARCH_RESULTS = 50
MAX_PAGE = 100_000
# The reading formats. The JSON export is for the channel's own people (``/story export``): it
# holds everyone's platform ids and the moderation log (who hid what, and why), which a public
# page must not hand to anyone who asks; so the archive never offers it.
PUBLIC_FORMATS = tuple(f for f in FORMATS if f != "json")


@dataclass(frozen=True, slots=True)
class Card:
    """A story in a list: what a reader decides by."""

    id: int
    title: str
    genre: str | None
    rating: str
    contributors: tuple[Contributor, ...]
    words: int
    published_at: datetime
    place: Place

    @property
    def path(self) -> str:
        return story_path(self.id)


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a list (the home page, a workspace's, a channel's)."""

    cards: tuple[Card, ...]
    page: int
    more: bool  # a next page follows
    place: Place | None


@dataclass(frozen=True, slots=True)
class Link:
    """Another story a story page names: a branch's parent, a parent's branch."""

    id: int
    title: str
    branched_at: int | None  # a branch's passage number in its parent
    public: bool  # a public story (linked), or only named

    @property
    def path(self) -> str:
        return story_path(self.id)


# Everything a story's page is made from, as a value that changes whenever the page would: the
# story's row as the page shows it, its parent's title and visibility, its public branches, and its
# canonical passages' stamp (``storage.library.passage_stamps``). Equal stamps, equal pages: the
# adapter may keep a page it made and answer with it while the stamp stays the same.
Stamp = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything a story page shows."""

    id: int
    story: ExportStory
    contributors: tuple[Contributor, ...]
    words: int
    chapters: tuple[Chapter, ...]
    authors: bool  # name each passage's author (false: published without authors)
    public: bool
    parent: Link | None
    branches: tuple[Link, ...]
    formats: tuple[str, ...]
    base: str  # where this page and its downloads live: /stories/<id> or /shared/<id>/<token>
    stamp: Stamp  # what the page was made from (``Library.stamp``)

    def download_path(self, format: str) -> str:
        return f"{self.base}/download/{format}"


@dataclass(frozen=True, slots=True)
class Found:
    """A story the search found, and where in its text when not (only) in its title: a passage's
    words around the matches, which stand between ``MARK_START`` and ``MARK_END``."""

    card: Card
    snippet: str | None


class Library:
    """The stories the archive shows, read from ``db``; share links are checked with ``secret``."""

    def __init__(self, db: Database, config: Config, secret: bytes) -> None:
        self.db = db
        self.config = config
        self._secret = secret
        self._tallies = Tallies()
        # Downloads render anew each time (an EPUB of a long story takes a second of a core): a few
        # at once, the rest wait, so a burst of them cannot take every core from the pages.
        self._rendering = asyncio.Semaphore(RENDERS_AT_ONCE)

    async def listing(self, place: Place | None, page: int) -> Listing | None:
        """Page ``page`` (from 1) of the public stories of ``place`` (None: all), newest published
        first; None past the last page, or for a place without a public story (not shown to exist)."""
        if not 1 <= page <= MAX_PAGE:
            return None

        async def read(tx: AsyncSession) -> Listing | None:
            # One row past the page says whether another follows: no count of every story.
            stories = await lib.published(tx, place, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
            if not stories and (page > 1 or place is not None):
                return None
            cards = await _cards(tx, stories[:PAGE_SIZE], self._tallies)
            return Listing(cards, page, len(stories) > PAGE_SIZE, place)

        return await self.db.transaction(read, write=False)

    async def newest(self, limit: int = FEED_SIZE) -> tuple[Card, ...]:
        """The newest published stories, for the feed."""

        async def read(tx: AsyncSession) -> tuple[Card, ...]:
            return await _cards(tx, await lib.published(tx, None, limit=limit), self._tallies)

        return await self.db.transaction(read, write=False)

    async def stamp(self, story_id: int, token: str | None = None) -> Stamp | None:
        """What story ``story_id``'s page would be made from now (None: there is no page for it):
        a few small reads, where making the page reads and renders every passage."""

        async def read(tx: AsyncSession) -> Stamp | None:
            story = await self._visible(tx, story_id, token)
            return None if story is None else (await self._relatives(tx, story))[2]

        return await self.db.transaction(read, write=False)

    async def reading(self, story_id: int, token: str | None = None) -> Reading | None:
        """Story ``story_id``'s page: public, or opened by share link ``token``; else None."""

        async def read(tx: AsyncSession) -> Reading | None:
            story = await self._visible(tx, story_id, token)
            if story is None:
                return None
            parent, branches, stamp = await self._relatives(tx, story)
            snapshot = await load_story(tx, story, language=self.config.export.language)
            contributors = _contributors(snapshot.canonical)
            return Reading(
                id=story.id,
                story=snapshot,
                contributors=contributors,
                words=sum(person.words for person in contributors),
                chapters=snapshot.chapters(0),
                authors=story.publish_authors,
                public=lib.is_public(story),
                parent=parent,
                branches=branches,
                formats=PUBLIC_FORMATS,
                base=story_path(story.id) if token is None else share_path(story.id, token),
                stamp=stamp,
            )

        return await self.db.transaction(read, write=False)

    async def _relatives(self, tx: AsyncSession, story: Story) -> tuple[Link | None, tuple[Link, ...], Stamp]:
        """The stories a page names (its parent, its public branches) and the page's stamp."""
        parent = await q.story_by_id(tx, story.parent_id) if story.parent_id is not None else None
        named = Link(parent.id, parent.title, story.branched_at, lib.is_public(parent)) if parent is not None else None
        branches = tuple(Link(b.id, b.title, b.branched_at, True) for b in await lib.public_branches(tx, story.id))
        shown = (story.title, story.genre, story.rating, story.status, story.created_at, story.finished_at)
        visibility = (lib.is_public(story), story.publish_authors)
        passages = (await lib.passage_stamps(tx, [story.id]))[story.id]
        stamp = (story.id, *shown, *visibility, named, branches, passages)
        return named, branches, stamp

    async def download(self, story_id: int, format: str, token: str | None = None) -> RenderedFile | None:
        """Story ``story_id`` as a file in ``format``, by the export renderers; None where its
        page would be None, or the format is not offered for it."""

        async def read(tx: AsyncSession) -> tuple[ExportStory, ExportOptions] | None:
            story = await self._visible(tx, story_id, token)
            if story is None or format not in PUBLIC_FORMATS:
                return None
            snapshot = await load_story(tx, story, language=self.config.export.language)
            options = ExportOptions(authors=story.publish_authors, chapter_passages=self.config.export.chapter_passages)
            return snapshot, options

        found = await self.db.transaction(read, write=False)
        if found is None:
            return None
        # A long story as EPUB takes a moment: off the event loop, as /story export does.
        async with self._rendering:
            return await asyncio.to_thread(render, found[0], format, found[1])

    async def search(self, typed: str) -> tuple[SearchQuery, tuple[Found, ...]]:
        """The public stories that hold what was ``typed`` (``QueryError`` when it is refused)."""
        query = SearchQuery.parse(typed)

        async def read(tx: AsyncSession) -> tuple[Found, ...] | None:
            if not await index.intact(tx):
                return None
            hits = await index.search(tx, query, limit=SEARCH_RESULTS)
            stories = await lib.public_stories(tx, [hit.story_id for hit in hits])
            cards = {card.id: card for card in await _cards(tx, list(stories.values()), self._tallies)}
            return tuple(Found(cards[h.story_id], h.snippet) for h in hits if h.story_id in cards)

        found = await self.db.transaction(read, write=False)
        if found is None:  # a migration took the index's triggers away: rebuild it, then search
            await index.prepare(self.db)
            found = await self.db.transaction(read, write=False)
        return query, found or ()

    async def _visible(self, tx: AsyncSession, story_id: int, token: str | None) -> Story | None:
        story = await q.story_by_id(tx, story_id)
        if story is None:
            return None
        if token is None:
            return story if lib.is_public(story) else None
        return story if token_matches(self._secret, story.id, story.share_key, token) else None


async def _cards(tx: AsyncSession, stories: Sequence[Story], tallies: Tallies) -> tuple[Card, ...]:
    """Each story's card, with its contributors and words counted as the exports count them."""
    people = await tallies.of(tx, [story.id for story in stories])
    return tuple(
        Card(
            id=story.id,
            title=story.title,
            genre=story.genre,
            rating=story.rating,
            contributors=people[story.id],
            words=sum(person.words for person in people[story.id]),
            published_at=story.published_at or story.created_at,  # always set on a public story
            place=Place(story.platform, story.workspace, story.channel),
        )
        for story in stories
    )


class Tallies:
    """Each story's contributors, kept while its passages' stamp (``storage.library.passage_stamps``)
    stays the same: a list then reads the text only of stories new to it or changed since, where
    counting every passage of a page's stories (one of them 5,000 passages long) would read and
    count them all, for every page. Bounded: least recently used stories first out."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._kept: OrderedDict[int, tuple[object, tuple[Contributor, ...]]] = OrderedDict()

    async def of(self, tx: AsyncSession, story_ids: Sequence[int]) -> dict[int, tuple[Contributor, ...]]:
        stamps = await lib.passage_stamps(tx, story_ids)
        found: dict[int, tuple[Contributor, ...]] = {}
        for story_id, stamp in stamps.items():
            kept = self._kept.get(story_id)
            if kept is not None and kept[0] == stamp:
                self._kept.move_to_end(story_id)
                found[story_id] = kept[1]
        missing = [story_id for story_id in story_ids if story_id not in found]
        lines: dict[int, list[lib.Line]] = {story_id: [] for story_id in missing}
        for line in await lib.canonical_lines(tx, missing) if missing else ():
            lines[line.story_id].append(line)
        for story_id, written in lines.items():
            found[story_id] = _contributors(written)
            self._kept[story_id] = (stamps[story_id], found[story_id])
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return found


class Written(Protocol):
    """A passage as counting sees it: a list's row, or an export's passage."""

    @property
    def author_name(self) -> str: ...
    @property
    def author_kind(self) -> str: ...
    @property
    def text(self) -> str: ...


# A passage's text never changes once stored, so its count never does: lists and pages count the
# same passages again and again, and at ~30 µs a passage a 5,000-passage story would cost 0.15 s.
_words = lru_cache(maxsize=1 << 16)(word_count)


def _contributors(passages: Iterable[Written]) -> tuple[Contributor, ...]:
    """``ExportStory.contributors`` over ``passages`` (the canonical ones, in order): who wrote
    them (chapter headings are no passage) in order of their first, with passages and words."""
    totals: dict[tuple[str, str], list[int]] = {}
    for passage in passages:
        if chapter_title(passage.text) is not None:
            continue
        entry = totals.setdefault((passage.author_name, passage.author_kind), [0, 0])
        entry[0] += 1
        entry[1] += _words(passage.text)
    return tuple(Contributor(name, kind, count, words) for (name, kind), (count, words) in totals.items())


@asynccontextmanager
async def open_library(config: Config) -> AsyncIterator[Library]:
    """The configured database, migrated and with its search index, as the archive reads it: no
    process lock (it runs beside the bot), no queue, no model."""
    async with migrated_database(config) as db:
        await index.prepare(db)
        async with db.write() as tx:
            secret = await link_secret(tx, config.web.secret)
        yield Library(db, config, secret)
