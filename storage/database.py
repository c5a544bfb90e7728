"""Engine set-up and the two kinds of transaction the core uses: short reads and short writes.

SQLite is the default and must behave well with many channels writing at once: WAL lets reads
run beside a writer, ``busy_timeout`` makes a second writer wait instead of failing, and every
writing transaction starts with ``BEGIN IMMEDIATE`` so that it takes the write lock up front
(a deferred transaction that upgrades from read to write can fail with "database is locked"
however long the timeout). PostgreSQL needs none of this; writers lock the story row instead.

Past the busy timeout a lock is still a normal moment of a busy day (a burst, a backup holding
the file), not an error: ``transaction`` runs the whole transaction again with backoff until
``deadline_s`` and only then raises ``DatabaseBusy``. A failed attempt was rolled back, so a
retry never stores anything twice.

SQLite serves one process: ``process_lock`` makes a second process on the same file refuse to
start, rather than take over (and re-run) the first one's bot turns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or set up; the message is one line and names it (no password)."""


class DatabaseBusy(Exception):
    """Other writers held the database for longer than the write deadline; nothing was changed."""


# PostgreSQL's "try again" errors: serialization_failure, deadlock_detected, lock_not_available.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0


def is_contention(error: BaseException) -> bool:
    """Whether ``error`` means another writer was in the way, so the same work may simply run again."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    if getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    message = str(error.orig).lower()
    return any(busy in message for busy in _SQLITE_BUSY_MESSAGES)


_WRITE_OPTION = "storybot_write"
_MIGRATION_LOCK_ID = 0x5707B07  # any constant; serialises concurrent migrations on PostgreSQL


def normalise_url(url: str) -> URL:
    """Accept the URLs people paste (``sqlite:///x.db``, ``postgresql://...``) and pick async drivers."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"database.url {url!r} is not a database URL (sqlite:///file.db or postgresql://...)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.get_driver_name() != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and parsed.get_driver_name() != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(f"database.url: only sqlite and postgresql are supported, got {backend!r}")
    return parsed


class Database:
    """Owns the engine; hands out ``read()`` and ``write()`` transactions."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        busy_timeout_ms: int = 5000,
        deadline_s: float = 20.0,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.deadline_s = deadline_s
        # The SQLite file, if the database is one (not PostgreSQL, not in memory).
        self.sqlite_file: Path | None = None
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            self.sqlite_file = Path(self.url.database).expanduser().resolve()
            self.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(
            self.url, echo=echo, connect_args=connect_args or {}, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writes = async_sessionmaker(
            self.engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )
        self._failure_listeners: list[Callable[[str], None]] = []

    def on_failure(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(kind)`` each time a ``transaction`` fails for the database's sake, once per
        transaction: ``"busy"`` (contended past ``deadline_s``: ``DatabaseBusy``), ``"conflict"`` (a
        unique constraint: two writers raced) or ``"error"`` (any other database or connection error).
        For whoever counts them (the metrics); a rule that says no is no failure."""
        self._failure_listeners.append(callback)

    def _failed(self, kind: str) -> None:
        for callback in self._failure_listeners:
            callback(kind)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (a snapshot on both databases)."""
        async with self._reads() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One short writing transaction: committed on exit, rolled back on any exception."""
        async with self._writes() as session, session.begin():
            yield session

    async def transaction(self, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = True) -> T:
        """``work`` in one transaction (committed when it returns), run again while the database is contended.

        ``work`` must be safe to run again: each attempt gets a fresh session, and a failed
        attempt was rolled back. Any other exception (a rule that said no) passes straight out.
        Raises ``DatabaseBusy`` when the database stayed contended past ``deadline_s``.
        """
        give_up_at = time.monotonic() + self.deadline_s
        backoff = _FIRST_BACKOFF_S
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self.write() if write else self.read() as tx:
                    return await work(tx)
            except DBAPIError as error:
                if not is_contention(error):
                    self._failed("conflict" if isinstance(error, IntegrityError) else "error")
                    raise
                wait = backoff * random.uniform(0.5, 1.5)
                if time.monotonic() + wait > give_up_at:
                    log.warning("database still busy after %d attempts in %.1f s; giving up", attempts, self.deadline_s)
                    self._failed("busy")
                    raise DatabaseBusy(f"the database stayed busy for {self.deadline_s:g} s") from error
                log.debug("database busy (attempt %d): %s; retrying in %.2f s", attempts, error.orig, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            except (OSError, SQLAlchemyError):  # no connection (a server down, a folder gone), a pool timeout
                self._failed("error")
                raise

    @contextmanager
    def process_lock(self) -> Iterator[None]:
        """Hold, for as long as this process serves stories, the right to be the only one on a SQLite file.

        A second process would take the first one's running bot turns for orphans and write
        them again. The lock is an ``flock`` on ``<database>.lock`` (never on the database file
        itself: closing another descriptor of that file would drop SQLite's own locks), so the
        kernel releases it when the process dies, however it dies. PostgreSQL needs none.
        """
        path = self.sqlite_file
        if path is None:
            yield
            return
        import fcntl

        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise DatabaseUnavailable(
                    f"another storybot process (pid {holder}) is already serving {path}; SQLite serves one "
                    "process at a time: stop that one, or use PostgreSQL to run several"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the flock

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to call at every start).

        This is the first contact with the database, so a server that is down or a path that
        cannot be written is reported here, in one line.
        """
        from storage.migrate import upgrade_to_head

        try:
            async with self.engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                await conn.run_sync(upgrade_to_head)
        except (OSError, SQLAlchemyError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            shown = self.url.render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot use the database {shown}: {reason}") from error

    async def close(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
