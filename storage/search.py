"""Search over the web archive's stories: their titles and their passages' text, through one
interface on either database, each with its own full-text search.

**SQLite: FTS5.** Two external-content FTS5 tables, ``search_titles`` over ``stories.title`` and
``search_passages`` over ``passages.text``, hold only the index (the text stays in its table), and
triggers on those two tables keep them in step with every insert, update and delete, whichever
process writes (the bot's, ``storybot import``). **PostgreSQL: GIN indexes** on
``to_tsvector('simple', …)`` of the same two columns (``_words``), queried with
``websearch_to_tsquery``.

What may be found is decided when the query runs, never by what the index holds: only a finished,
published story's title and its canonical passages, joined with their rows at that moment. So
publishing, unpublishing, hiding or withholding a passage never touch the index, and no stale
entry can surface. Both use the ``simple`` tokenisation (lower case, no stemming, accents kept), so
a query finds the same stories on either database.

The index is the web archive's, so ``prepare`` creates it (``storybot web`` calls it at start),
not a migration: a bot that never serves the archive never pays for it, and the migrations keep
describing exactly the models' schema. ``prepare`` is also the repair: a later migration that
rebuilds ``stories`` or ``passages`` (SQLite's batch mode copies a table and drops the old one,
and its triggers with it) leaves the index without its triggers; ``search`` checks for them on
every query (a read of ``sqlite_master``) and rebuilds the index from the tables when one is
missing or differs from what this version creates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.database import Database
from storage.models import ContentRating, PassageStatus, StoryStatus

# Around each matched word in a snippet: control characters, which no stored text holds (the
# core strips them from everything people and the model write), so a reader can split on them
# and escape everything between.
MARK_START = "\x02"
MARK_END = "\x03"

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
SNIPPET_WORDS = 24

# A word as both databases' tokenisers cut text: a run of letters and digits (``_`` separates).
_WORD = re.compile(r"[^\W_]+")
_PHRASE_OR_WORD = re.compile(r'"([^"]*)"?|([^\s"]+)')


class QueryError(ValueError):
    """A query the search refuses (too long, too many terms); the message is one line for people."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What people typed, as words and quoted phrases, all of which a story must hold."""

    terms: tuple[tuple[str, ...], ...]  # each a word (one item) or a phrase (its words in order)

    @classmethod
    def parse(cls, typed: str) -> SearchQuery:
        """``lamp "dark and stormy"`` → the word ``lamp`` and the phrase ``dark and stormy``.

        Punctuation separates words, as the indexes cut them; no operator syntax reaches either
        database's parser, so no input is a syntax error there."""
        if len(typed) > MAX_QUERY_CHARS:
            raise QueryError(f"A search may be at most {MAX_QUERY_CHARS} characters long.")
        terms: list[tuple[str, ...]] = []
        # Composed, as people's keyboards and the model write (a decomposed "é" would otherwise
        # split into "e" and a lone accent, a phrase the text never holds).
        for phrase, word in _PHRASE_OR_WORD.findall(unicodedata.normalize("NFC", typed)):
            words = tuple(w.lower() for w in _WORD.findall(phrase or word))  # as both indexes fold case
            if words and words not in terms:
                terms.append(words)
        if len(terms) > MAX_TERMS:
            raise QueryError(f"A search may hold at most {MAX_TERMS} words or phrases.")
        return cls(tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def expression(self) -> str:
        """Each word or phrase in double quotes, side by side: all of them required, both as an
        FTS5 MATCH expression and as ``websearch_to_tsquery`` reads it (quoted, ``or`` and ``-``
        are words, not operators)."""
        return " ".join('"' + " ".join(term) + '"' for term in self.terms)


@dataclass(frozen=True, slots=True)
class Hit:
    """A story the query found, in its title or in a passage (``snippet``: the words around its
    best passage's matches, each match between ``MARK_START`` and ``MARK_END``), or both."""

    story_id: int
    snippet: str | None


# ---------------------------------------------------------------------------------------- SQLite

_TOKENIZER = "unicode61 remove_diacritics 0"  # as PostgreSQL's 'simple': accents are kept


def _fts5_objects(index: str, table: str, column: str) -> dict[str, str]:
    """The external-content FTS5 table over ``table.column`` and the triggers that keep it in step."""
    delete = f"INSERT INTO {index}({index}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
    insert = f"INSERT INTO {index}(rowid, {column}) VALUES (new.id, new.{column});"
    return {
        index: f"CREATE VIRTUAL TABLE {index} USING fts5({column}, content='{table}', content_rowid='id', "
        f"tokenize='{_TOKENIZER}')",
        f"{index}_insert": f"CREATE TRIGGER {index}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"{index}_delete": f"CREATE TRIGGER {index}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"{index}_update": f"CREATE TRIGGER {index}_update AFTER UPDATE OF {column} ON {table} "
        f"BEGIN {delete} {insert} END",
    }


_SQLITE_INDEXES = {"search_titles": ("stories", "title"), "search_passages": ("passages", "text")}
# Name -> the exact statement that creates it (SQLite keeps that text in sqlite_master.sql).
_SQLITE_OBJECTS = {
    name: sql
    for index, (table, column) in _SQLITE_INDEXES.items()
    for name, sql in _fts5_objects(index, table, column).items()
}

# ------------------------------------------------------------------------------------ PostgreSQL


def _words(column: str) -> str:
    """``column`` as PostgreSQL's ``simple`` configuration indexes it, cut into the words FTS5 cuts.

    PostgreSQL's parser reads markup, entities, e-mail addresses, URLs, hosts and paths as tokens
    of their own, and skips whatever sits between ``<script>`` tags: with the marks that make those
    read as spaces, a passage holds the same words on either database. The index is on this
    expression, so each query repeats it exactly."""
    marks = "<>&@/:."
    return f"to_tsvector('simple', translate({column}, '{marks}', '{' ' * len(marks)}'))"


_POSTGRES_INDEXES = {
    name: f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING gin ({_words(column)})"
    for name, table, column in (
        ("search_stories_title", "stories", "title"),
        ("search_passages_text", "passages", "text"),
    )
}
_PREPARE_LOCK_ID = 0x5707B08  # any constant (beside the migrations' lock): one process builds at a time

# What every query keeps: the story is finished and published, the passage is in the story.
_PUBLIC = f"s.status = '{StoryStatus.FINISHED}' AND s.published_at IS NOT NULL AND s.rating <> '{ContentRating.MATURE}'"
_IN_STORY = f"p.status = '{PassageStatus.CANONICAL}'"


async def prepare(db: Database) -> None:
    """Create the index, or repair it. On SQLite, in one writing transaction, it is rebuilt from
    the tables whenever any of its objects is missing or not what this version makes. On
    PostgreSQL each index is built ``CONCURRENTLY`` (the bot's writes go on meanwhile: a first
    build over a large table takes a while), by one process at a time; an index that a failed
    build left invalid is built again."""
    if db.is_sqlite:
        async with db.write() as tx:
            connection = await tx.connection()
            if await _sqlite_intact(connection):
                return
            await drop(connection)
            for statement in _SQLITE_OBJECTS.values():
                await connection.execute(text(statement))
            for index in _SQLITE_INDEXES:
                await connection.execute(text(f"INSERT INTO {index}({index}) VALUES ('rebuild')"))
        return
    async with db.engine.connect() as plain:
        connection = await plain.execution_options(isolation_level="AUTOCOMMIT")  # as CONCURRENTLY needs
        await connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PREPARE_LOCK_ID})
        try:
            for name, statement in _POSTGRES_INDEXES.items():
                valid = await connection.execute(
                    text(
                        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n"
                    ),
                    {"n": name},
                )
                if valid.scalar_one_or_none() is False:
                    await connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                await connection.execute(text(statement))
        finally:
            await connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PREPARE_LOCK_ID})


async def drop(connection: AsyncConnection) -> None:
    """Remove the index (``prepare`` makes it again)."""
    if connection.dialect.name != "sqlite":
        for name in _POSTGRES_INDEXES:
            await connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        return
    for name in _SQLITE_OBJECTS:
        kind = "TABLE" if name in _SQLITE_INDEXES else "TRIGGER"
        await connection.execute(text(f"DROP {kind} IF EXISTS {name}"))


async def intact(tx: AsyncSession) -> bool:
    """Whether the index is there and kept in step (PostgreSQL's needs no triggers: True)."""
    connection = await tx.connection()
    return connection.dialect.name != "sqlite" or await _sqlite_intact(connection)


async def _sqlite_intact(connection: AsyncConnection) -> bool:
    names = ", ".join(f"'{name}'" for name in _SQLITE_OBJECTS)
    found = await connection.execute(text(f"SELECT name, sql FROM sqlite_master WHERE name IN ({names})"))
    return {name: sql for name, sql in found} == _SQLITE_OBJECTS


async def search(tx: AsyncSession, query: SearchQuery, *, limit: int) -> list[Hit]:
    """The published stories that hold every term of ``query`` in their title or in one passage:
    title hits first, then the rest by their best passage's rank; at most ``limit``."""
    if not query:
        return []
    connection = await tx.connection()
    if connection.dialect.name == "sqlite":
        titles, passages = await _sqlite_search(tx, query, limit)
    else:
        titles, passages = await _postgres_search(tx, query, limit)
    snippets: dict[int, str] = {}
    for story_id, snippet in passages:
        snippets.setdefault(story_id, snippet)
    order = list(dict.fromkeys([*titles, *snippets]))[:limit]
    return [Hit(story_id, snippets.get(story_id)) for story_id in order]


async def _sqlite_search(
    tx: AsyncSession, query: SearchQuery, limit: int
) -> tuple[Sequence[int], Sequence[tuple[int, str]]]:
    match = {"match": query.expression(), "limit": limit}
    titles = await tx.execute(
        text(
            "SELECT s.id FROM search_titles JOIN stories s ON s.id = search_titles.rowid "
            f"WHERE search_titles MATCH :match AND {_PUBLIC} ORDER BY bm25(search_titles), s.id DESC LIMIT :limit"
        ),
        match,
    )
    # Each story's best passage (SQLite gives the other columns of the row that holds the MIN),
    # then the snippets of those passages alone: snippet() costs far more than bm25().
    best = await tx.execute(
        text(
            # MATERIALIZED: flattened into the GROUP BY, bm25() would be out of its MATCH's reach.
            "WITH ranked AS MATERIALIZED ("
            " SELECT p.story_id, p.id AS passage_id, bm25(search_passages) AS score FROM search_passages"
            " JOIN passages p ON p.id = search_passages.rowid JOIN stories s ON s.id = p.story_id"
            f" WHERE search_passages MATCH :match AND {_IN_STORY} AND {_PUBLIC}"
            ") SELECT story_id, passage_id, MIN(score) FROM ranked"
            " GROUP BY story_id ORDER BY MIN(score), story_id DESC LIMIT :limit"
        ),
        match,
    )
    stories = {passage_id: story_id for story_id, passage_id, _ in best}
    snippets = await tx.execute(
        text(
            "SELECT rowid, snippet(search_passages, 0, :start, :end, '', :words) FROM search_passages "
            "WHERE search_passages MATCH :match AND rowid IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {**match, "start": MARK_START, "end": MARK_END, "words": SNIPPET_WORDS, "ids": list(stories)},
    )
    found = {passage_id: snippet for passage_id, snippet in snippets}
    passages = [(story_id, found[passage_id]) for passage_id, story_id in stories.items()]
    return titles.scalars().all(), passages


async def _postgres_search(
    tx: AsyncSession, query: SearchQuery, limit: int
) -> tuple[Sequence[int], Sequence[tuple[int, str]]]:
    match = {"query": query.expression(), "limit": limit}
    titles = await tx.execute(
        text(
            "SELECT s.id FROM stories s, websearch_to_tsquery('simple', :query) q "
            f"WHERE {_words('s.title')} @@ q AND {_PUBLIC} "
            f"ORDER BY ts_rank({_words('s.title')}, q) DESC, s.id DESC LIMIT :limit"
        ),
        match,
    )
    # The best passage of each story (DISTINCT ON), then the best stories; ts_headline runs only
    # for the rows returned.
    options = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_WORDS}, MinWords=8, MaxFragments=1"
    passages = await tx.execute(
        text(
            "SELECT story_id, ts_headline('simple', body, q, :options) FROM ("
            " SELECT DISTINCT ON (p.story_id) p.story_id, p.id, p.text AS body, q,"
            f"  ts_rank({_words('p.text')}, q) AS score"
            " FROM passages p JOIN stories s ON s.id = p.story_id, websearch_to_tsquery('simple', :query) q"
            f" WHERE {_words('p.text')} @@ q AND {_IN_STORY} AND {_PUBLIC}"
            " ORDER BY p.story_id, score DESC, p.id"
            ") best ORDER BY score DESC, story_id DESC LIMIT :limit"
        ),
        {**match, "options": options},
    )
    return titles.scalars().all(), [(story_id, snippet) for story_id, snippet in passages]
