"""The web archive: pages per second, on SQLite and on PostgreSQL.

    storybot bench web [--quick] [--seconds S] [--concurrency N] [--postgres-url URL] [--json]

For each database it fills a fresh one with 10,000 published stories (``--quick``: 1,000) of 12
passages each (60 to 120 words, the prose of ``bench.finetune_corpus``, three people and the
bot) and one published story of 5,000 passages (``--quick``: 1,000), then starts a real
``storybot web`` process on a free loopback port (so the server's CPU is its own, not shared
with the client's event loop) and asks it, from this process, with a bounded aiohttp client:
``concurrency`` requests in flight (default 8) for a fixed time (default 10 s) after a 1 s
warm-up, for

- ``home``: the home page (the newest 20 of all the stories, with their contributors and words);
- ``story``: the 5,000-passage story's page (title page, contributors, every passage);
- ``search``: a two-word search over every passage.

Printed: the CPU and its flags, the Python and SQLite versions, the data; per database and page
the pages per second, p50 and p95 latency in milliseconds, the first request's (before anything
was kept: the story page is made then, and kept while the story stays the same), and the bytes a page takes on the wire
(the client accepts gzip, as browsers do, and leaves the bytes packed: unpacking is the reader's
machine's work). PostgreSQL is
``--postgres-url`` (a fresh database is made there and dropped after), skipped with the reason
when no server answers. ``--json``: one JSON object on the last line. The client and the server
share the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from sqlalchemy import insert, text

from bench.finetune_corpus import STORIES
from bench.harness import cpu_info, describe_cpu, percentile
from storage.database import Database
from storage.models import AuthorKind, Participant, Passage, PassageStatus, Story, StoryStatus

STORIES_FULL, STORIES_QUICK = 10_000, 1_000
LONG_FULL, LONG_QUICK = 5_000, 1_000
PASSAGES_PER_STORY = 12
MIN_WORDS, MAX_WORDS = 60, 120
PEOPLE = ("Ida", "Tomas", "Neve")
BATCH = 2_000  # rows per INSERT
WARM_UP_S = 1.0
SEARCH = "/search?q=lighthouse+tide"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Figures:
    """One page's run: how many answered, how fast."""

    database: str
    page: str
    first_ms: float  # the first request: nothing kept yet (a story page is made, then kept)
    pages_per_s: float
    p50_ms: float
    p95_ms: float
    requests: int
    errors: int
    page_bytes: int


@cache
def _corpus_words() -> list[str]:
    return " ".join(paragraph for story in STORIES for paragraph in story.passages).split()


def texts(count: int, seed: int) -> Iterator[str]:
    """``count`` passages of the corpus's words, each ``MIN_WORDS`` to ``MAX_WORDS`` long."""
    words = _corpus_words()
    draw = random.Random(seed)
    for _ in range(count):
        length = draw.randint(MIN_WORDS, MAX_WORDS)
        start = draw.randrange(len(words) - length)
        yield " ".join(words[start : start + length])


def _story(number: int, passages: int) -> dict[str, Any]:
    at = START + timedelta(minutes=number)
    corpus = STORIES[number % len(STORIES)]
    return {
        "id": number,
        "channel_key": f"bench:guild:channel-{number % 50}",
        "platform": "bench",
        "workspace": "guild",
        "channel": f"channel-{number % 50}",
        "thread": "",
        "title": f"{corpus.title} ({number})" if passages == PASSAGES_PER_STORY else "The Long Voyage",
        "genre": corpus.genre,
        "mode": "alternate",
        "rating": ("general", "teen")[number % 2],
        "status": StoryStatus.FINISHED,
        "starter_id": "u-ida",
        "starter_name": "Ida",
        "settings": {},
        "turn_index": 0,
        "turn_started_at": at,
        "created_at": at,
        "finished_at": at + timedelta(hours=1),
        "published_at": at + timedelta(hours=2),
        "published_by_id": "u-ida",
        "publish_authors": True,
    }


def _passages(story_id: int, count: int, first_id: int) -> Iterator[dict[str, Any]]:
    at = START + timedelta(minutes=story_id)
    for seq, body in enumerate(texts(count, seed=story_id), start=1):
        bot = seq % 2 == 0
        person = PEOPLE[(seq // 2) % len(PEOPLE)]
        yield {
            "id": first_id + seq,
            "story_id": story_id,
            "seq": seq,
            "author_kind": AuthorKind.BOT if bot else AuthorKind.HUMAN,
            "author_id": "bot" if bot else f"u-{person.lower()}",
            "author_name": "storybot" if bot else person,
            "text": body,
            "status": PassageStatus.CANONICAL,
            "created_at": at + timedelta(seconds=seq),
        }


async def fill(db: Database, stories: int, long_passages: int) -> None:
    """``stories`` published stories of ``PASSAGES_PER_STORY`` passages, and story ``stories + 1``
    of ``long_passages``: inserted in batches, ids given (no flush per row)."""
    long_id = stories + 1
    story_rows = [_story(n, PASSAGES_PER_STORY) for n in range(1, stories + 1)] + [_story(long_id, long_passages)]
    people = [
        {"story_id": row["id"], "user_id": f"u-{name.lower()}", "name": name, "position": i, "active": True}
        for row in story_rows
        for i, name in enumerate(PEOPLE)
    ]
    passage_rows: list[dict[str, Any]] = []
    for n in range(1, stories + 1):
        passage_rows += _passages(n, PASSAGES_PER_STORY, first_id=(n - 1) * PASSAGES_PER_STORY)
    passage_rows += _passages(long_id, long_passages, first_id=stories * PASSAGES_PER_STORY)
    for table, rows in ((Story, story_rows), (Participant, people), (Passage, passage_rows)):
        for start in range(0, len(rows), BATCH):
            async with db.write() as tx:
                await tx.execute(insert(table), rows[start : start + BATCH])
    if not db.is_sqlite:  # ids were given: move the sequences past them
        async with db.write() as tx:
            for name in ("stories", "participants", "passages"):
                await tx.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) FROM {name}"))
            await tx.execute(text("ANALYZE"))


@asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database next to ``admin_url``'s, dropped at the end."""
    import asyncpg

    name = f"storybot_bench_web_{uuid.uuid4().hex[:8]}"
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=3)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield f"{dsn.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+asyncpg://")
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def free_port() -> int:
    """A loopback port free right now, for the archive's process to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def archive_process(url: str, folder: Path) -> AsyncIterator[str]:
    """``storybot web`` on ``url``'s database, in a process of its own; yields its address."""
    port = free_port()
    env = {**os.environ, "STORYBOT_DATABASE_URL": url, "STORYBOT_LOGGING_LEVEL": "WARNING"}
    config = folder / "bench-web.toml"
    config.write_text("")
    command = [sys.executable, "-m", "adapters.cli", "--config", str(config), "web", "--host", "127.0.0.1"]
    server = subprocess.Popen([*command, "--port", str(port)], env=env)
    address = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    try:
        async with ClientSession() as http:
            for _ in range(600):  # the first start builds SQLite's search index: a few seconds
                if server.poll() is not None:
                    raise RuntimeError(f"storybot web exited with {server.returncode}")
                try:
                    async with http.get(address + "/healthz") as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("storybot web did not answer within 60 s")
        # Python's start, the migrations, and on SQLite the search index built from every passage.
        print(f"  storybot web answered {time.monotonic() - began:.1f} s after it was started", flush=True)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


async def load(address: str, path: str, *, seconds: float, concurrency: int) -> tuple[float, list[float], int, int]:
    """One request for ``path``, then ``concurrency`` clients asking for it one after another for
    ``seconds`` (after a warm-up); returns the first one's latency, each timed request's (seconds),
    the errors and the bytes a page took on the wire."""
    latencies: list[float] = []
    errors = 0
    size = 0
    timeout = ClientTimeout(total=60)
    # As a browser asks (gzip accepted), but the bytes are not unpacked: that is the reader's
    # machine's work, not the archive's, and here it would take the server's CPU.
    connector = TCPConnector(limit=concurrency)
    async with ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as http:
        began = time.monotonic()
        async with http.get(address + path) as answer:
            await answer.read()
        first = time.monotonic() - began

        async def client(until: float, record: bool) -> None:
            nonlocal errors, size
            while time.monotonic() < until:
                began = time.monotonic()
                async with http.get(address + path) as answer:
                    body = await answer.read()
                if not record:
                    continue
                if answer.status != 200:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - began)
                size = len(body)

        await asyncio.gather(*(client(time.monotonic() + WARM_UP_S, False) for _ in range(concurrency)))
        await asyncio.gather(*(client(time.monotonic() + seconds, True) for _ in range(concurrency)))
    return first, latencies, errors, size


async def measure(name: str, url: str, args: argparse.Namespace, folder: Path) -> list[Figures]:
    stories = STORIES_QUICK if args.quick else STORIES_FULL
    long = LONG_QUICK if args.quick else LONG_FULL
    db = Database(url)
    try:
        await db.migrate()
        began = time.monotonic()
        await fill(db, stories, long)
        print(f"{name}: {stories:,} stories + one of {long:,} passages stored in {time.monotonic() - began:.1f} s")
    finally:
        await db.close()
    figures = []
    async with archive_process(url, folder) as address:
        for page, path in (("home", "/"), ("story", f"/stories/{stories + 1}"), ("search", SEARCH)):
            began = time.monotonic()
            first, latencies, errors, size = await load(
                address, path, seconds=args.seconds, concurrency=args.concurrency
            )
            elapsed = time.monotonic() - began - WARM_UP_S - first
            figures.append(
                Figures(
                    database=name,
                    page=page,
                    first_ms=round(first * 1000, 1),
                    pages_per_s=round(len(latencies) / elapsed, 1),
                    p50_ms=round(percentile(latencies, 50) * 1000, 1),
                    p95_ms=round(percentile(latencies, 95) * 1000, 1),
                    requests=len(latencies),
                    errors=errors,
                    page_bytes=size,
                )
            )
            print(_line(figures[-1]), flush=True)
    return figures


def _line(f: Figures) -> str:
    return (
        f"  {f.database:<10} {f.page:<7} {f.pages_per_s:>8.1f} pages/s   p50 {f.p50_ms:>7.1f} ms   "
        f"p95 {f.p95_ms:>7.1f} ms   first {f.first_ms:>6.1f} ms   {f.page_bytes / 1024:>5.0f} KB   "
        f"({f.requests} pages, {f.errors} errors)"
    )


async def postgres_reason(url: str) -> str | None:
    """None when a PostgreSQL server answers at ``url``, else why not."""
    try:
        import asyncpg

        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=3)
        await connection.close()
    except Exception as error:  # any failure to connect means "skip", with the reason
        return f"no PostgreSQL server answers at {url}: {error}"
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = cpu_info()
    print(describe_cpu(info))
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}; {args.concurrency} requests in flight, "
          f"{args.seconds:g} s per page after {WARM_UP_S:g} s of warm-up")  # fmt: skip
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="storybot-bench-web-") as folder:
        figures += await measure("sqlite", f"sqlite+aiosqlite:///{folder}/archive.db", args, Path(folder))
        reason = await postgres_reason(args.postgres_url)
        if reason is None:
            async with postgres_database(args.postgres_url) as url:
                figures += await measure("postgresql", url, args, Path(folder))
        else:
            print(f"postgresql: skipped ({reason})")
    return {"cpu": info, "figures": [asdict(f) for f in figures]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 stories and a 1,000-passage one, 3 s a page")
    parser.add_argument("--seconds", type=float, help="seconds per page (default 10; 3 with --quick)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help=f"PostgreSQL server (default {POSTGRES_URL})")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
